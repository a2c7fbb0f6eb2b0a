"""SPEC parts C and D: preference optimisation (generalised DPO, the proper on-policy loss)."""
