"""The ``descentlab`` command: parsing and printing only; the work lives in the wings."""
