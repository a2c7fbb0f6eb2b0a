"""descentlab: trust gradient descent.

Gradient-based trajectory planning (``descentlab.planning``), preference optimisation
(``descentlab.preference``) and retrieval-augmented LM training (``descentlab.rag``) over a
small shared core (``descentlab.core``, ``descentlab.lm``). See docs/architecture.md.
"""

__version__ = "0.1.0"
