"""Keeping an influence analysis on disk: fitted solvers, solved training gradients and scores,
reused by later runs in the same or another process.

``InfluenceFunction(..., store="folder")`` keeps, in one folder (a datavalue run folder: see
:mod:`datavalue._core.folder` for the manifest, checksums, locking and atomic writes):

- ``influence-key.json``: what the contents were computed from: a fingerprint of the model
  (architecture, every parameter and buffer, the loss), of the training data (every input and
  target, in order) and the settings (solver and options, damping, curvature, parameters, dtype,
  batch size);
- ``solver.pt`` and ``solver-info.json``: the fitted solver (Cholesky factor, eigenvectors,
  (E)K-FAC factors and eigenvalues, LiSSA's scale, a CG preconditioner), read back with
  ``torch.load(weights_only=True)``;
- ``train-solved.npy``: ``(H + lambda I)^{-1} grad L(z_i)`` for every training point (written
  block by block, memory-mapped when read: it may be larger than memory), and
  ``train-projection.npy``: the training gradients in Arnoldi's low-rank basis;
- ``scores/*.npy``: influence matrices and self-influences, keyed by a fingerprint of the queries.

A later run with the same key reads them instead of computing them (scores bit-identical to the
first run's); a run with another key is refused, naming what differs, before any file is
touched. This is what Kronfluence's named analysis folders and TRAK's saved features are for:
score new queries tomorrow without recomputing today's curvature and training gradients.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError, StoreMismatchError
from datavalue._core.fingerprint import describe_callable, hash_named_tensors
from datavalue._core.folder import RunReader, RunWriter, check_output_folder, work_file

__all__ = ["InfluenceStore", "model_fingerprint", "describe_callable"]

KEY = "influence-key.json"
SOLVER = "solver.pt"
SOLVER_INFO = "solver-info.json"
FORMAT = 1


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a wrapped model (:class:`~datavalue.attribution.model.InfluenceModel`): its kind,
    architecture, loss and every parameter and buffer value."""
    h = hashlib.sha256(f"{model.kind}\n{model.module!r}\n".encode())
    h.update(describe_callable(getattr(model.loss, "loss", model.loss)).encode())
    if model.regularizer is not None:
        h.update(repr(sorted(vars(model.regularizer).items())).encode())
    hash_named_tensors(h, model.params)
    hash_named_tensors(h, model.frozen)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class InfluenceStore:
    """The folder of one influence analysis (see the module docstring).

    Parameters
    ----------
    path : str or path
        The folder: new, empty, or written by an earlier analysis with the same key.
    key : dict
        What the contents depend on (JSON-able): ``model``, ``data``, ``settings``.
    """

    def __init__(self, path: str | os.PathLike, key: dict[str, Any]) -> None:
        self.path = Path(path)
        self.key = {"format": FORMAT, **key}
        check_output_folder(self.path, what="The 'store' folder")
        self._key_entry: dict[str, Any] | None = None
        stored = self._read_key()
        if stored is not None:
            self._compare(stored)

    # -- the key ------------------------------------------------------------------------------
    def _read_key(self) -> dict[str, Any] | None:
        if not (self.path / KEY).exists():
            return None
        with RunReader(self.path, what="'store' folder") as r:
            if not r.has(KEY):
                return None
            self._key_entry = r.manifest["files"][KEY]
            return r.read_json(KEY)

    def _compare(self, stored: dict[str, Any]) -> None:
        mine = self.key
        diffs = []
        if stored.get("format") != mine["format"]:
            diffs.append(f"its format ({stored.get('format')}, this version writes "
                         f"{mine['format']})")
        if stored.get("model") != mine["model"]:
            diffs.append("the model (its architecture, parameters, buffers or loss)")
        if stored.get("data") != mine["data"]:
            sn = (stored.get("data") or {}).get("n")
            diffs.append(f"the training data ({sn} examples stored, {mine['data']['n']} now, "
                         "or different values)" if sn != mine["data"]["n"]
                         else "the training data (same size, different values or order)")
        old, new = stored.get("settings", {}), mine["settings"]
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                diffs.append(f"setting {name!r} (stored {old.get(name)!r}, now {new.get(name)!r})")
        if diffs:
            raise StoreMismatchError(
                f"The store {str(self.path)!r} holds an analysis of another setup; it differs in "
                + "; ".join(diffs) + ". Nothing was read or written: use another folder for "
                "this setup (or the same settings as the stored analysis).")

    def _writer(self) -> RunWriter:
        based = None if self._key_entry is None else {KEY: self._key_entry}
        return RunWriter(self.path, kind="store", what="The 'store' folder", based_on=based)

    def _after_write(self) -> None:
        if self._key_entry is None:
            with RunReader(self.path, what="'store' folder") as r:
                self._key_entry = r.manifest["files"][KEY]

    def has(self, name: str) -> bool:
        if self._key_entry is None:
            return False
        with RunReader(self.path, what="'store' folder") as r:
            return r.has(name)

    # -- the solver ---------------------------------------------------------------------------
    def load_solver(self, solver: Any, op: Any, damping: float) -> bool:
        """Restore ``solver`` from the folder; False if it holds none yet."""
        import torch

        if not self.has(SOLVER):
            return False
        with RunReader(self.path, what="'store' folder") as r:
            path = r.verified_path(SOLVER)
            state = torch.load(path, map_location=op.device, weights_only=True)
            info = r.read_json(SOLVER_INFO) if r.has(SOLVER_INFO) else None
        solver.restore(op, damping, state, info)
        return True

    def save_solver(self, solver: Any) -> None:
        import torch

        with self._writer() as w:
            if self._key_entry is None:
                w.write_text(KEY, json.dumps(self.key, indent=1, sort_keys=True))
            torch.save(solver.state(), w.path(SOLVER))
            w.write_text(SOLVER_INFO, json.dumps(solver.info_, default=_jsonable))
        self._after_write()

    def scores(self, shape: tuple[int, int], queries: str, compute: Callable[[np.ndarray], Any],
               measure: Any = None) -> np.ndarray:
        """The score matrix of the query set with fingerprint ``queries`` (and ``measure``, a
        callable or None for the loss): read if stored, else filled by ``compute`` and
        stored."""
        what = "" if measure is None else "-" + hashlib.sha256(
            describe_callable(measure).encode()).hexdigest()[:12]
        name = f"scores/influence{what}-{queries[:32]}.npy"
        stored = self.array(name)
        if stored is None:
            stored = self.write_array(name, shape, compute)
        return np.array(stored)

    # -- arrays -------------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray | None:
        """The stored ``.npy`` file ``name``, checked and memory-mapped read-only, or None."""
        if not self.has(name):
            return None
        with RunReader(self.path, what="'store' folder") as r:
            path = r.verified_path(name)
            return np.load(path, mmap_mode="r")

    def write_array(self, name: str, shape: tuple[int, ...],
                    fill: Callable[[np.ndarray], None], dtype: Any = np.float64) -> np.ndarray:
        """Create ``name`` (``dtype``: numpy or torch, ``shape``), let ``fill`` write it block by block (it is a
        memory map: only the blocks being written are in memory), commit it atomically, and
        return it memory-mapped read-only."""
        if not name.endswith(".npy"):
            raise InvalidParameterError(f"store arrays are .npy files; got {name!r}.")
        if not isinstance(dtype, np.dtype | type):  # a torch dtype
            dtype = {"torch.float32": np.float32}.get(str(dtype), np.float64)
        # Filled without the folder's lock (it may take long, and may itself read or write
        # other arrays of the store), then committed in one short locked step.
        work = work_file(self.path, ".npy")
        try:
            target = np.lib.format.open_memmap(work, mode="w+", dtype=dtype, shape=shape)
            fill(target)
            target.flush()
            del target
            with self._writer() as w:
                if self._key_entry is None:
                    w.write_text(KEY, json.dumps(self.key, indent=1, sort_keys=True))
                w.adopt(name, work)
        finally:
            work.unlink(missing_ok=True)
        self._after_write()
        out = self.array(name)
        assert out is not None
        return out
