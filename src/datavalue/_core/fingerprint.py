"""Fingerprints: what every cache, checkpoint, store and result uses to recognise its inputs.

One module, so that "the same data" means the same thing everywhere: a checkpoint refuses a run
of other settings, a store refuses another model, a result belongs to its data set. Each
function states what it covers and what it leaves out on purpose (a batch dimension, a
callable's closure), because a fingerprint that misses an input would let a stale answer be
reused, and one that covers too much would refuse an answer that is still right.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fingerprint_arrays", "fingerprint_table", "digest_json", "digest_raw",
           "hash_array", "hash_batch", "hash_named_tensors", "describe_callable"]


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the arrays' shapes, dtypes and bytes (a data set,
    the validation rows of a checkpoint)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def fingerprint_table(x: Any, y: np.ndarray) -> str:
    """First 16 hex digits of a SHA-256 of features as the user gave them (array, DataFrame,
    sparse matrix or lists) and encoded targets. For numeric arrays it equals
    :func:`fingerprint_arrays` (so values computed from ``fit(x, y)`` match their Dataset)."""
    if isinstance(x, np.ndarray) and x.dtype.kind != "O":
        return fingerprint_arrays(x, y)
    h = hashlib.sha256()
    if type(x).__name__ == "DataFrame" and hasattr(x, "columns"):
        import pandas as pd

        h.update(repr(list(x.columns)).encode())
        h.update(repr([str(t) for t in x.dtypes]).encode())
        h.update(pd.util.hash_pandas_object(x, index=False).to_numpy().tobytes())
    elif hasattr(x, "tocsr") and hasattr(x, "nnz"):
        c = x.tocsr()
        for a in (np.asarray(c.shape), c.indptr, c.indices, c.data):
            h.update(np.ascontiguousarray(a).tobytes())
    else:
        h.update(repr(np.asarray(x).tolist()).encode())
    y = np.ascontiguousarray(y)
    h.update(f"{y.shape}{y.dtype.str}".encode())
    h.update(y.tobytes())
    return h.hexdigest()[:16]


def digest_json(obj: Any, length: int | None = None) -> str:
    """SHA-256 of ``obj`` as sorted JSON (settings of a run, a cache key), optionally cut to
    ``length`` hex digits."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    return digest if length is None else digest[:length]


def digest_raw(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes alone (no shapes: for arrays whose lengths are fixed by
    each other, as the columns of a ratings log)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def hash_array(h: Any, a: Any) -> None:
    """Add an array (dtype, shape, bytes; object arrays by their repr) to the hash ``h``."""
    arr = np.ascontiguousarray(np.asarray(a))
    h.update(f"{arr.dtype}{arr.shape}".encode())
    h.update(arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode())


def _numpy_of(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.contiguous().numpy()


def hash_batch(h: Any, t: Any) -> None:
    """Add one batch of a tensor to ``h`` without its batch size: the examples hash alike
    however a loader cuts them into batches."""
    h.update(f"{t.dtype}{tuple(t.shape[1:])}".encode())
    h.update(_numpy_of(t).tobytes())


def hash_named_tensors(h: Any, named: Mapping[str, Any]) -> None:
    """Add named tensors (a model's parameters and buffers) to ``h``, in name order."""
    for name in sorted(named):
        t = named[name]
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(_numpy_of(t).tobytes())


def _module_name(name: str | None) -> str:
    """A module's name, with a script run as ``__main__`` named by its file (the same function
    is then described alike whether the script is run or imported)."""
    if name == "__main__":
        path = getattr(sys.modules.get("__main__"), "__file__", None)
        if path:
            return Path(path).stem
    return name or ""


def describe_callable(fn: Any) -> str:
    """A stable description of a loss or function: its qualified name, its plain attributes (an
    ``nn.Module`` loss's ``reduction``, ``label_smoothing``...) and, for Python functions, a
    hash of their code, so that an edited loss does not match a stored analysis. (Closures'
    captured values are not covered: they have no stable description.)"""
    kind = type(fn)
    parts = [f"{_module_name(kind.__module__)}.{kind.__qualname__}"]
    code = getattr(fn, "__code__", None)
    if code is not None:
        parts = [f"{_module_name(getattr(fn, '__module__', ''))}."
                 f"{getattr(fn, '__qualname__', '')}"]
        h = hashlib.sha256(code.co_code)
        h.update(repr(code.co_consts).encode())
        parts.append(h.hexdigest()[:16])
    attrs = getattr(fn, "__dict__", {})
    plain = {k: v for k, v in sorted(attrs.items())
             if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None))}
    if plain:
        parts.append(json.dumps(plain, sort_keys=True))
    return " ".join(parts)
