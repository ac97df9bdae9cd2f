"""Errors raised by datavalue.

Every error names the argument that was wrong, what was received and, where possible, how to
fix it. They subclass the built-in ``ValueError``/``TypeError`` so that code written against
scikit-learn conventions keeps working.
"""

from __future__ import annotations

__all__ = [
    "DatavalueError",
    "InvalidParameterError",
    "InvalidDataError",
    "InvalidModelError",
    "UnknownNameError",
    "ModelOutputError",
    "StoreMismatchError",
]


class DatavalueError(Exception):
    """Base class of every error datavalue raises on purpose."""


class InvalidParameterError(DatavalueError, ValueError, TypeError):
    """A constructor or function parameter has a wrong value or type."""


class InvalidDataError(DatavalueError, ValueError):
    """Input arrays have the wrong shape, contain NaN/inf, or cannot be used for the task."""


class InvalidModelError(DatavalueError, TypeError):
    """A model does not follow the scikit-learn estimator contract that a method needs."""


class UnknownNameError(DatavalueError, ValueError):
    """A method, model, metric or data set name is not known."""


class ModelOutputError(DatavalueError, ValueError):
    """A model produced unusable output: NaN or infinite predictions or scores, predictions of
    the wrong length, or every fit failed. Raised instead of reporting values computed from it."""


class StoreMismatchError(DatavalueError, ValueError):
    """A folder of stored results (an influence ``store``) was computed for another model, data
    set or setting; it is neither read nor overwritten."""
