"""The version of datavalue (read by run folders and results as they are written)."""

__version__ = "0.1.0"
