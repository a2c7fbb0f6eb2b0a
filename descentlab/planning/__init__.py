"""SPEC parts A and B: gradient-based trajectory planning, mapping and navigation."""
