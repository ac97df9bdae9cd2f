"""Resumable Monte Carlo state: running statistics, sample position and stopping history.

A checkpoint is one ``.npz`` (arrays + a JSON header), written atomically (temporary file +
``os.replace``), so a run killed at any moment — even by SIGKILL — leaves either the previous
complete checkpoint or the new one. Because every sample's seed derives from
``(random_state, sample index)`` and samples are folded into the statistics in index order, a
resumed run continues with exactly the samples an uninterrupted run would draw, and ends with
identical values.

The header stores a fingerprint of the run's configuration (method, parameters, data); resuming
with different settings is refused instead of silently mixing two runs.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, header: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write ``arrays`` and the JSON-compatible ``header`` to ``path``."""
    buf = io.BytesIO()
    payload = dict(arrays)
    payload["__header__"] = np.array(json.dumps({"version": CHECKPOINT_VERSION, **header}))
    np.savez(buf, **payload)
    return atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(
    path: str | os.PathLike, expected_config: str | None = None, *,
    what: str = "'checkpoint' file",
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Read a checkpoint; None if the file does not exist.

    Raises :class:`InvalidParameterError` if the file is not a checkpoint of this version or was
    written by a run with a different configuration fingerprint.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        with np.load(p, allow_pickle=False) as f:
            header = json.loads(str(f["__header__"]))
            arrays = {k: f[k] for k in f.files if k != "__header__"}
    except Exception as exc:
        raise InvalidParameterError(
            f"The {what} {str(p)!r} is not a datavalue checkpoint ({exc})."
        ) from exc
    if header.get("version") != CHECKPOINT_VERSION:
        raise InvalidParameterError(
            f"The {what} {str(p)!r} has version {header.get('version')}, expected "
            f"{CHECKPOINT_VERSION}."
        )
    if expected_config is not None and header.get("config") != expected_config:
        raise InvalidParameterError(
            f"The {what} {str(p)!r} belongs to a run with other settings or data"
            + (f" (method {header['method']!r})" if header.get("method") else "")
            + "; delete it or choose another path to start over."
        )
    return header, arrays
