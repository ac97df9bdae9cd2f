"""Reading explanation folders for the report.

An explanation folder holds one or more :class:`datavalue.actions.explain.Explanation` files —
``explanation.json`` (what :meth:`Explanation.save` writes) and/or ``explanation-<name>.json``
for more test examples — beside ``dataset.npz`` (:meth:`Dataset.save`), the data set their
indices refer to. :func:`save_explanations` writes such a folder; ``datavalue explain --out DIR``
writes the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.folder import RunWriter
from datavalue.actions.explain import Explanation
from datavalue.data import Dataset

__all__ = ["save_explanations", "load_explanations", "explanation_files"]


def explanation_files(directory: str | os.PathLike) -> list[Path]:
    """``explanation.json`` and ``explanation-*.json`` in ``directory``, sorted."""
    d = Path(directory)
    return sorted(p for p in d.glob("explanation*.json")
                  if p.name == "explanation.json" or p.name.startswith("explanation-"))


def save_explanations(directory: str | os.PathLike, dataset: Dataset,
                      explanations: Sequence[Explanation]) -> list[Path]:
    """Write ``dataset.npz`` and one ``explanation-<test_index>.json`` per explanation."""
    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            f"The 'dataset' parameter must be a Dataset. Got {type(dataset).__name__}."
        )
    for e in explanations:
        if not isinstance(e, Explanation):
            raise InvalidParameterError(
                f"'explanations' must hold Explanation objects. Got {type(e).__name__}."
            )
        if e.data_fingerprint != dataset.fingerprint():
            raise InvalidDataError(
                f"The explanation of test example {e.test_index} was computed on other data "
                "than 'dataset' (fingerprints differ)."
            )
    d = Path(directory)
    with RunWriter(d, kind="explain", what="The explanation folder") as w:
        dataset.save(w.path("dataset.npz"))
        for e in explanations:
            w.write_text(f"explanation-{e.test_index}.json", json.dumps(
                {f.name: getattr(e, f.name) for f in fields(e)}, indent=2) + "\n")
    return [d / f"explanation-{e.test_index}.json" for e in explanations]


def load_explanations(directory: str | os.PathLike) -> tuple[list[Explanation], Dataset]:
    """The explanations of a folder and their data set, checking that they belong together."""
    d = Path(directory)
    files = explanation_files(d)
    if not files:
        raise InvalidParameterError(f"{str(d)!r} has no explanation.json.")
    if not (d / "dataset.npz").is_file():
        raise InvalidDataError(
            f"{str(d)!r} has {files[0].name} but no dataset.npz, the data set its indices refer "
            "to; save it beside (Dataset.save)."
        )
    ds = Dataset.load(d / "dataset.npz")
    out = []
    for path in files:
        try:
            e = Explanation.load(path)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InvalidDataError(f"{str(path)!r} is not an explanation written by datavalue: "
                                   f"{exc}") from exc
        if e.data_fingerprint and e.data_fingerprint != ds.fingerprint():
            raise InvalidDataError(
                f"{path.name} was computed on other data than {d.name}/dataset.npz "
                "(fingerprints differ)."
            )
        bad = not 0 <= e.test_index < ds.n_test or any(
            not 0 <= i < ds.n_train for i in [*e.helpful, *e.harmful])
        if bad:
            raise InvalidDataError(f"{str(path)!r} has an index outside dataset.npz.")
        out.append(e)
    return out, ds
