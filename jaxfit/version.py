"""jaxfit's version (a module of its own: the checkpoint format records it without importing the rest)."""

__version__ = "0.1.0"
