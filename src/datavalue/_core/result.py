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
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.validation import check_ids

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


def _check_ids(ids: Any, n: int) -> np.ndarray:
    """Row ids: 0..n-1 by default, else unique ints or strings (:func:`check_ids`)."""
    if ids is None:
        return np.arange(n, dtype=np.int64)
    return check_ids(ids, n, "ids").copy()


def _library_version() -> str:
    from datavalue._core.version import __version__

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
    ids : numpy.ndarray of shape (n_train,)
        The user's id of each training row (a DataFrame's index, a CSV's id column or line);
        ints or strings, unique. Default: 0..n-1.
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
    ids: np.ndarray | None = None

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
        self.ids = _check_ids(self.ids, n)
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
            elif f.name == "ids":
                if a.dtype.kind != b.dtype.kind or not np.array_equal(a, b):
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
        """A pandas DataFrame with one row per training example: its id (the user's row id),
        index (position in the training data), value, stderr, count and rank (1 = most
        valuable)."""
        import pandas as pd

        rank = np.empty(len(self), dtype=np.int64)
        rank[self.ranking()] = np.arange(1, len(self) + 1)
        return pd.DataFrame(
            {
                "id": self.ids,
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
    def save(self, directory: str | os.PathLike, dataset: Any = None) -> Path:
        """Write ``values.npz`` (exact binary arrays), ``values.csv`` (for people and
        spreadsheets) and ``result.json`` (provenance) into the run folder ``directory``, with
        ``dataset.npz`` if ``dataset`` (the :class:`~datavalue.Dataset` valued) is given.

        The folder must be new, empty or a datavalue run folder (see :mod:`datavalue._core.folder`);
        the files are moved in as one unit, so a reader sees the previous result or this one,
        never a mix. Files of an earlier run in the folder are removed (they describe other
        values); files datavalue did not write are never touched.
        """
        from datavalue._core.folder import RunWriter

        if dataset is not None and not hasattr(dataset, "fingerprint"):
            raise InvalidParameterError(
                f"'dataset' must be the datavalue Dataset that was valued. Got "
                f"{type(dataset).__name__}."
            )
        with RunWriter(directory, kind="value", replace=True, what="The result folder") as writer:
            if dataset is not None:
                dataset.save(writer.path("dataset.npz"))
            self._write_to(writer)
        return Path(directory)

    def _write_to(self, writer: Any, prefix: str = "") -> None:
        """Stage this result's files in an open :class:`datavalue._core.folder.RunWriter`."""
        buf = io.BytesIO()
        np.savez(buf, values=self.values, stderr=self.stderr, counts=self.counts, ids=self.ids)
        writer.write_bytes(prefix + "values.npz", buf.getvalue())
        from datavalue._core.io import csv_text

        writer.write_text(prefix + "values.csv", csv_text(self.to_frame(), float_format="%.17g"))
        writer.write_text(prefix + "result.json", json.dumps(self.metadata(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ValuationResult:
        """Read a result written by :meth:`save` (every file checked against the run's
        manifest; a half-written or mixed folder is refused with a clear error)."""
        from datavalue._core.folder import RunReader

        with RunReader(directory, what="result folder") as reader:
            return cls._read_from(reader)

    @classmethod
    def _read_from(cls, reader: Any, prefix: str = "") -> ValuationResult:
        d = reader.directory
        for name in ("result.json", "values.npz"):
            if not reader.has(prefix + name):
                raise InvalidParameterError(
                    f"{str(d)!r} does not hold a saved ValuationResult ({prefix + name} is "
                    "missing)."
                )
        meta = reader.read_json(prefix + "result.json")
        npz = reader.read_bytes(prefix + "values.npz")
        where = str(d / (prefix + "values.npz"))
        try:
            with np.load(io.BytesIO(npz), allow_pickle=False) as f:
                arrays = {k: f[k] for k in _ARRAYS}
                ids = f["ids"] if "ids" in f.files else None
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
            raise InvalidDataError(f"{where!r} is not a values file written by datavalue "
                                   f"({exc}).") from exc
        keys = ("method", "params", "seed", "library_version", "data_fingerprint", "wall_time",
                "status", "n")
        if not isinstance(meta, dict) or any(k not in meta for k in keys):
            raise InvalidDataError(
                f"{str(d / (prefix + 'result.json'))!r} is not a result.json written by "
                f"datavalue (it needs the keys {', '.join(keys)})."
            )
        n = meta["n"]
        if any(a.shape != (n,) for a in arrays.values()):
            raise InvalidDataError(
                f"{str(d)!r} is inconsistent: result.json says n={n} but values.npz holds "
                f"arrays of shapes {[a.shape for a in arrays.values()]}."
            )
        wall = meta["wall_time"]
        try:
            return cls(
                **arrays,
                method=meta["method"],
                params=meta["params"],
                seed=meta["seed"],
                library_version=meta["library_version"],
                data_fingerprint=meta["data_fingerprint"],
                wall_time=float(wall),
                status=meta["status"],
                extra=meta.get("extra", {}),
                ids=ids,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"{str(d)!r} holds an invalid result: {exc}") from exc
