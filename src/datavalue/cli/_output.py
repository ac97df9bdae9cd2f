"""Printing and saving shared by 'value', 'demo' and 'evaluate' (tables, run folders)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.folder import RunWriter
from datavalue._core.result import ValuationResult, jsonable
from datavalue._core.version import __version__
from datavalue.data import Dataset

_N_SHOWN = 10


# ---------------------------------------------------------------------- printing
def _lowest_table(
    ds: Dataset, result: ValuationResult, word: str, *, k: int = _N_SHOWN, indent: str = "  "
) -> str:
    """The ``k`` lowest-valued training examples as an aligned text table."""
    known = len(ds.noisy_indices) > 0
    mask = ds.noise_mask
    rows = [("rank", "id", "value", "label") + ((word,) if known else ())]
    shown = result.ranking(ascending=True)[:k]
    for r, i in enumerate(shown, 1):
        row = (str(r), str(result.ids[i]), f"{result.values[i]:.4g}",
               ds.label_name(ds.y_train[i].item()))
        rows.append(row + (("yes" if mask[i] else "no",) if known else ()))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        indent
        + "  ".join(
            cell.rjust(w) if c < 3 else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    if known:
        lines.append(f"{indent}{int(mask[shown].sum())} of these {len(shown)} were {word} on purpose.")
    return "\n".join(lines)


def _detection(values: np.ndarray, ds: Dataset) -> dict[str, Any] | None:
    if not len(ds.noisy_indices):
        return None
    from datavalue.evaluate import noisy_detection

    return noisy_detection(values, ds.noisy_indices)


def _detection_lines(det: dict[str, Any], word: str = "corrupted", indent: str = "  ") -> str:
    k = det["k"]
    return "\n".join(
        [
            f"{indent}AUC              {det['auc']:.3f}  (0.5 = guessing, 1 = every {word} example "
            "below every clean one)",
            f"{indent}F1 (k-means)     {det['f1_kmeans']:.3f}  (values split into a low and a "
            "high group, the low one flagged)",
            f"{indent}{'precision at ' + str(k):<16} {det['precision_at_k']:.3f}  (share of the {k} "
            f"lowest-valued examples that were {word})",
        ]
    )


def _json_text(obj: dict[str, Any]) -> str:
    return json.dumps(jsonable(obj), indent=2) + "\n"


def _save_figure(fig: Any, path: Path) -> None:
    # evaluate's figures are built without pyplot: nothing opens a window or stays in memory.
    fig.savefig(path, dpi=120)


def _save_run(
    out: Path, ds: Dataset, result: ValuationResult, run: dict[str, Any],
    figures: dict[str, Any] | None = None, protect: tuple[str, ...] = (),
) -> None:
    """Write a new run into ``out`` as one unit (see :mod:`datavalue._core.folder`): the data set,
    run.json, the result and ``figures`` ({file name: matplotlib figure}). Files of an earlier
    run in the folder (evaluate's, clean's, ...) are removed, since they describe other values;
    files datavalue did not write are never touched."""
    with RunWriter(out, kind="value", replace=True, protect=protect, what="--out") as w:
        ds.save(w.path("dataset.npz"))
        w.write_text("run.json", json.dumps(jsonable(run), indent=2) + "\n")
        result._write_to(w)
        for name, fig in (figures or {}).items():
            _save_figure(fig, w.path(name))


def _data_inputs(data: str) -> tuple[str, ...]:
    """The input file of --data (protected from being overwritten by the run), if any."""
    p = Path(data)
    return (data,) if p.suffix and p.is_file() else ()


def _run_info(
    command: str, options: dict[str, Any], ds: Dataset, argv: list[str]
) -> dict[str, Any]:
    return {
        "command": command,
        "options": options,
        "argv": argv,
        "data": ds.describe(),
        "task": ds.task,
        "data_fingerprint": ds.fingerprint(),
        "library_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
