"""ValuationResult: the one thing every valuation method returns.

Aligned arrays (one entry per training example) plus provenance. It holds no sorting state and
does no arithmetic; :meth:`ValuationResult.ranking` and :meth:`ValuationResult.to_frame` derive
views on demand. ``save``/``load`` round-trip exactly (values are stored as binary float64).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, atomic_write_text
from .exceptions import InvalidDataError, InvalidParameterError

__all__ = ["ValuationResult", "jsonable"]

_ARRAYS = ("values", "stderr", "counts")
_STATUSES = ("converged", "max_iterations", "max_time", "completed", "interrupted", "failed")


def jsonable(obj: Any) -> Any:
    """Turn parameters into JSON-compatible values (estimators and callables become their repr),
    so that provenance always saves and loads to an identical dict."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else repr(v)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.size <= 64:
        return jsonable(obj.tolist())
    if callable(obj) and hasattr(obj, "__name__") and not hasattr(obj, "get_params"):
        return f"<callable {getattr(obj, '__module__', '')}.{obj.__name__}>"
    return repr(obj)


def _library_version() -> str:
    from . import __version__

    return __version__


@dataclass(eq=False)
class ValuationResult:
    """Values of training examples, with their uncertainty and provenance.

    Attributes
    ----------
    values : numpy.ndarray of shape (n_train,)
        Higher = more helpful. float64.
    stderr : numpy.ndarray of shape (n_train,)
        Standard error of each value (0 for exact methods, NaN where unknown).
    counts : numpy.ndarray of shape (n_train,)
        Number of samples (marginal contributions, out-of-bag models, ...) behind each value.
    method : str
        Name of the method (the key of ``datavalue.METHODS``).
    params : dict
        The valuator's parameters, JSON-compatible.
    seed : int or None
        The ``random_state`` used.
    library_version : str
    data_fingerprint : str
        Hash of the training data (see :meth:`datavalue.Dataset.fingerprint`), or of the arrays.
    wall_time : float
        Seconds spent in ``fit``.
    status : str
        How the run ended: "completed" (exact methods), "converged", "max_iterations",
        "max_time", "interrupted" or "failed".
    extra : dict
        Method-specific scalars (e.g. the number of utility calls), JSON-compatible.
    """

    values: np.ndarray
    stderr: np.ndarray | None = None
    counts: np.ndarray | None = None
    method: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    library_version: str = ""
    data_fingerprint: str = ""
    wall_time: float = float("nan")
    status: str = "completed"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64).copy()
        if self.values.ndim != 1:
            raise InvalidDataError(
                f"'values' must be 1-D (one value per training example); got shape "
                f"{self.values.shape}."
            )
        n = self.values.shape[0]
        self.stderr = (
            np.full(n, np.nan) if self.stderr is None else np.asarray(self.stderr, np.float64).copy()
        )
        self.counts = (
            np.ones(n, dtype=np.int64)
            if self.counts is None
            else np.asarray(self.counts, dtype=np.int64).copy()
        )
        for name in ("stderr", "counts"):
            if getattr(self, name).shape != (n,):
                raise InvalidDataError(
                    f"'{name}' must have shape ({n},) like 'values'; got "
                    f"{getattr(self, name).shape}."
                )
        if self.status not in _STATUSES:
            raise InvalidParameterError(
                f"The 'status' of a ValuationResult must be one of {', '.join(_STATUSES)}. "
                f"Got {self.status!r}."
            )
        self.params = jsonable(dict(self.params))
        self.extra = jsonable(dict(self.extra))
        self.seed = None if self.seed is None else int(self.seed)
        self.wall_time = float(self.wall_time)
        if not self.library_version:
            self.library_version = _library_version()

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        return (
            f"ValuationResult(method={self.method!r}, n={len(self)}, status={self.status!r}, "
            f"wall_time={self.wall_time:.3g}s)"
        )

    def __eq__(self, other: object) -> bool:
        """Exact equality of every array (NaN equal to NaN) and every provenance field."""
        if not isinstance(other, ValuationResult):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _ARRAYS:
                if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif f.name == "wall_time":
                if not (a == b or (math.isnan(a) and math.isnan(b))):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ views
    def ranking(self, ascending: bool = False) -> np.ndarray:
        """Training indices from most to least valuable (``ascending=True``: least first).

        Ties keep index order (stable sort), so rankings are deterministic.
        """
        order = np.argsort(self.values if ascending else -self.values, kind="stable")
        return order.astype(np.int64)

    def to_frame(self):
        """A pandas DataFrame with one row per training example: index, value, stderr, count
        and rank (1 = most valuable)."""
        import pandas as pd

        rank = np.empty(len(self), dtype=np.int64)
        rank[self.ranking()] = np.arange(1, len(self) + 1)
        return pd.DataFrame(
            {
                "index": np.arange(len(self)),
                "value": self.values,
                "stderr": self.stderr,
                "count": self.counts,
                "rank": rank,
            }
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "seed": self.seed,
            "library_version": self.library_version,
            "data_fingerprint": self.data_fingerprint,
            "wall_time": jsonable(self.wall_time),
            "status": self.status,
            "extra": self.extra,
            "n": len(self),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``values.npz`` (exact binary arrays), ``values.csv`` (for people and
        spreadsheets) and ``result.json`` (provenance) into ``directory``.

        Each file is written atomically; ``result.json`` is written last, so a folder with a
        ``result.json`` always holds a complete result.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, values=self.values, stderr=self.stderr, counts=self.counts)
        atomic_write_bytes(d / "values.npz", buf.getvalue())
        atomic_write_text(d / "values.csv", self.to_frame().to_csv(index=False, float_format="%.17g"))
        atomic_write_text(d / "result.json", json.dumps(self.metadata(), indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ValuationResult:
        """Read a result written by :meth:`save`."""
        d = Path(directory)
        meta_path, arr_path = d / "result.json", d / "values.npz"
        if not meta_path.is_file() or not arr_path.is_file():
            raise InvalidParameterError(
                f"{str(d)!r} does not hold a saved ValuationResult (result.json and values.npz "
                "are missing)."
            )
        meta = json.loads(meta_path.read_text())
        with np.load(arr_path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _ARRAYS}
        wall = meta["wall_time"]
        return cls(
            **arrays,
            method=meta["method"],
            params=meta["params"],
            seed=meta["seed"],
            library_version=meta["library_version"],
            data_fingerprint=meta["data_fingerprint"],
            wall_time=float(wall) if not isinstance(wall, str) else float(wall),
            status=meta["status"],
            extra=meta.get("extra", {}),
        )
