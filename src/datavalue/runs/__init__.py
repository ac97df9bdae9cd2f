"""Results folders by kind: what each kind of run writes and how it is read back.

The envelope every kind shares (the manifest, the lock, staged writes, verified reads) is
:mod:`datavalue._core.folder`; this package names the kinds built on it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.folder import RunReader
from datavalue._core.result import ValuationResult
from datavalue.data import Dataset

__all__ = ["load_run", "kinds_of"]

#: For folders written before kinds were recorded in the manifest: the files that show a kind.
_MARKERS = {"compare": ("compare.json",), "value": ("result.json", "dataset.npz"),
            "explain": ("explanation.json",), "recommend": ("recommendations.json",),
            "unlearn": ("unlearning.json",), "attack": ("attack.json", "dataset.npz")}


def kinds_of(directory: str | os.PathLike) -> set[str]:
    """The kinds of results a folder holds (:mod:`datavalue._core.kinds`), read from its
    manifest (checked: a kind of a newer datavalue is refused); for a folder written before
    kinds were recorded, recognised by the files that mark each kind."""
    d = Path(directory)
    with RunReader(d, what="folder") as r:
        if r.kinds:
            return set(r.kinds)
        names = set(r.manifest["files"])
    found = {k for k, marks in _MARKERS.items() if all(m in names for m in marks)}
    if any(n.startswith("explanation-") and n.endswith(".json") for n in names):
        found.add("explain")
    return found


def __getattr__(name: str) -> Any:
    # The envelope (RunWriter, RunReader, MANIFEST, check_output_folder, ...) was this module
    # before the kinds moved in; its names keep working for one release.
    from datavalue._core import folder

    if name in folder.__all__ or name == "MANIFEST":
        import warnings

        warnings.warn(f"'datavalue.runs.{name}' moved to 'datavalue._core.folder.{name}'; the "
                      "old path works for this release only.", DeprecationWarning, stacklevel=2)
        return getattr(folder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_run(
    directory: str | os.PathLike, *, what: str = "run folder"
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The data set, values and run.json options of a folder written by 'value' (or 'demo'),
    every file checked against the run's manifest and against each other; last, the manifest
    entries of the values and data, for ``RunWriter(based_on=...)``.

    Returns ``(dataset, result, options, base)``.
    """
    d = Path(directory)
    with RunReader(d, what=what) as r:
        if not r.has("result.json") or not r.has("dataset.npz"):
            missing = " and ".join(n for n in ("dataset.npz", "result.json") if not r.has(n))
            raise InvalidParameterError(
                f"{str(d)!r} has no {missing}: give a folder written by 'datavalue value'."
            )
        result = ValuationResult._read_from(r)
        try:
            ds = Dataset.load(io.BytesIO(r.read_bytes("dataset.npz")))
        except InvalidDataError as exc:
            raise InvalidDataError(f"{str(d / 'dataset.npz')!r}: {exc}") from exc
        run = r.read_json("run.json") if r.has("run.json") else {}
        base = {n: r.manifest["files"][n] for n in ("values.npz", "dataset.npz")}
    if not isinstance(run, dict) or not isinstance(run.get("options", {}), dict):
        raise InvalidDataError(f"{str(d / 'run.json')!r} is not a run.json written by datavalue.")
    if len(result) != ds.n_train or (
        result.data_fingerprint and result.data_fingerprint != ds.fingerprint()
    ):
        raise InvalidDataError(
            f"The result in {str(d)!r} does not belong to its dataset.npz ({len(result)} values, "
            f"{ds.n_train} training rows, fingerprints {result.data_fingerprint} and "
            f"{ds.fingerprint()})."
        )
    return ds, result, run.get("options", {}), base
