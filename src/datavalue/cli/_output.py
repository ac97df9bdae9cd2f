"""Printing and saving shared by 'value', 'demo' and 'evaluate' (tables, run folders)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._io import atomic_write_text
from ..data import Dataset
from ..result import ValuationResult, jsonable

#: Files ``evaluate`` writes; ``value`` removes them from its folder, so they never describe an
#: older result.
_EVALUATION_FILES = (
    "evaluation.json",
    "removal.csv",
    "addition.csv",
    "removal.png",
    "addition.png",
    "detection.png",
    "values.png",
    # 'clean', 'fix' and 'report' outputs describe the values too
    "clean.json",
    "clean_curve.csv",
    "clean.png",
    "cleaned_dataset.npz",
    "cleaned_train.csv",
    "sample_weight.npy",
    "fix.json",
    "fix_curve.csv",
    "fix.png",
    "review.csv",
    "report.html",
)
_N_SHOWN = 10


# ---------------------------------------------------------------------- printing
def _lowest_table(
    ds: Dataset, result: ValuationResult, word: str, *, k: int = _N_SHOWN, indent: str = "  "
) -> str:
    """The ``k`` lowest-valued training examples as an aligned text table."""
    known = len(ds.noisy_indices) > 0
    mask = ds.noise_mask
    rows = [("rank", "index", "value", "label") + ((word,) if known else ())]
    shown = result.ranking(ascending=True)[:k]
    for r, i in enumerate(shown, 1):
        row = (str(r), str(i), f"{result.values[i]:.4g}", ds.label_name(ds.y_train[i].item()))
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
    from ..evaluate import noisy_detection

    return noisy_detection(values, ds.noisy_indices)


def _detection_lines(det: dict[str, Any], word: str = "corrupted", indent: str = "  ") -> str:
    k = det["k"]
    return "\n".join(
        [
            f"{indent}AUC              {det['auc']:.3f}  (0.5 = guessing, 1 = every {word} example "
            "below every clean one)",
            f"{indent}F1 (k-means)     {det['f1_kmeans']:.3f}  (values split into a low and a "
            "high group, the low one flagged)",
            f"{indent}precision at {k:<3} {det['precision_at_k']:.3f}  (share of the {k} "
            f"lowest-valued examples that were {word})",
        ]
    )


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def _save_figure(fig: Any, path: Path) -> None:
    # evaluate's figures are built without pyplot: nothing opens a window or stays in memory.
    fig.savefig(path, dpi=120)


def _save_run(out: Path, ds: Dataset, result: ValuationResult, run: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in _EVALUATION_FILES:
        (out / name).unlink(missing_ok=True)
    ds.save(out / "dataset.npz")
    _write_json(out / "run.json", run)
    result.save(out)  # result.json last: a folder with one holds a complete run


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
