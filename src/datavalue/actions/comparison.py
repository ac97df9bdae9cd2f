"""The result of :func:`~datavalue.actions.compare.compare`: a tidy table of every (method,
seed) with its evaluations, the summary over seeds, and the folder it is saved to and read back
from (``compare.json``, CSV / Parquet tables, values and data sets per seed, a run log)."""


from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import RunReader, RunWriter
from datavalue._core.io import atomic_write_text, csv_text
from datavalue._core.result import ValuationResult, jsonable
from datavalue.data import Dataset

__all__ = ["Comparison", "load_comparison", "summarize", "format_summary", "markdown_table",
           "DETECTION_COLUMNS", "CURVE_COLUMNS", "RETRAINING_COLUMNS", "OUTPUT_FILES"]

logger = logging.getLogger("datavalue.actions.compare")

#: Detection scores of :func:`datavalue.evaluate.noisy_detection` kept in the table.
DETECTION_COLUMNS: tuple[str, ...] = (
    "auc", "average_precision", "f1_kmeans", "precision_at_k", "recall_at_k",
)
#: Curve summaries (mean test score over the fractions, :func:`summarize_curve`).
CURVE_COLUMNS: tuple[str, ...] = tuple(
    f"{experiment}_{order}"
    for experiment in ("removal", "addition")
    for order in ("most_valuable_first", "least_valuable_first", "random")
)
_ID_COLUMNS = ("method", "seed", "data", "n_train", "n_noisy", "noise_rate", "model", "metric",
               "status", "error")
#: Agreement with actual retraining (:func:`datavalue.evaluate.lds`, ``loo_correlation``), when
#: asked for with ``lds_subsets`` / ``loo_points``.
RETRAINING_COLUMNS: tuple[str, ...] = ("lds", "loo_pearson")
_NUMERIC_COLUMNS = ("wall_time", *DETECTION_COLUMNS, *CURVE_COLUMNS, *RETRAINING_COLUMNS)
#: Files :func:`compare` writes into ``out`` (besides ``values/`` and ``datasets/``).
OUTPUT_FILES = ("compare.json", "compare.csv", "compare.parquet", "summary.csv", "summary.md",
                "curves.csv", "run.log")


# ---------------------------------------------------------------------------- results
@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (method, seed): the identifiers (``method``, ``seed``, ``data``,
        ``n_train``, ``n_noisy``, ``noise_rate``, ``model``, ``metric``, ``status``, ``error``),
        ``wall_time`` (seconds in ``fit``), the detection scores :data:`DETECTION_COLUMNS` (NaN
        without corrupted points) and the curve summaries :data:`CURVE_COLUMNS` (mean test score
        over the fractions of each order).
    summary : pandas.DataFrame
        Per method: ``n_seeds`` and ``<column>_mean``, ``<column>_sd`` of every numeric column
        (sd with ddof=1, NaN for one seed). See :func:`format_summary` for "mean ± sd" text.
    curves : pandas.DataFrame
        Every removal and addition curve: ``method``, ``seed``, ``experiment``, ``order``,
        ``fraction``, ``n_points``, ``score``.
    results : dict
        ``(method, seed) -> ValuationResult``.
    datasets : dict
        ``seed -> Dataset`` (the splits every method of that seed was run on).
    config : dict
        The options of the run, with each method's resolved parameters (JSON-compatible).
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    curves: pd.DataFrame
    results: dict[tuple[str, int], ValuationResult] = field(default_factory=dict)
    datasets: dict[int, Dataset] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def format_summary(self, columns: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
        """The summary as "mean ± sd" strings (see :func:`format_summary`)."""
        return format_summary(self.summary, columns, digits)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) over seeds of every numeric column, per method, in
    the order the methods first appear."""
    order = list(dict.fromkeys(table["method"]))
    numeric = [c for c in _NUMERIC_COLUMNS if c in table]
    groups = table.groupby("method", sort=False)
    out = pd.DataFrame({"method": order})
    out["n_seeds"] = [int(groups.get_group(m)["seed"].nunique()) for m in order]
    for c in numeric:
        stats = groups[c].agg(["mean", "std"])
        out[f"{c}_mean"] = [float(stats.loc[m, "mean"]) for m in order]
        out[f"{c}_sd"] = [float(stats.loc[m, "std"]) for m in order]
    return out


def format_summary(summary: pd.DataFrame, columns: Sequence[str] | None = None,
                   digits: int = 3) -> pd.DataFrame:
    """Text table: one row per method, "mean ± sd" per column (just the mean for one seed).

    ``columns`` defaults to wall time, AUC, F1 and the removal summaries present.
    """
    if columns is None:
        columns = [c for c in ("f1_kmeans", "auc", "removal_most_valuable_first",
                               "removal_least_valuable_first", "addition_most_valuable_first",
                               *RETRAINING_COLUMNS, "wall_time")
                   if f"{c}_mean" in summary and (
                       c not in RETRAINING_COLUMNS or summary[f"{c}_mean"].notna().any())]
    out = pd.DataFrame({"method": summary["method"]})
    for c in columns:
        if f"{c}_mean" not in summary:
            raise InvalidParameterError(f"The summary has no column {c!r}.")
        d = 1 if c == "wall_time" else digits
        cells = []
        for mean, sd in zip(summary[f"{c}_mean"], summary[f"{c}_sd"], strict=True):
            if not np.isfinite(mean):
                cells.append("–")
            elif np.isfinite(sd):
                cells.append(f"{mean:.{d}f} ± {sd:.{d}f}")
            else:
                cells.append(f"{mean:.{d}f}")
        out[c] = cells
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- output folder
def _have_pyarrow() -> bool:
    """Parquet needs pyarrow (the dev extra); the CSV is always written."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


class _Output:
    """Writes the comparison into a folder, as it goes (a crash keeps what was done)."""

    def __init__(self, out: str | os.PathLike | None) -> None:
        self.dir = None if out is None else Path(out)
        self.handler: logging.Handler | None = None
        self.previous_level = logger.level
        if self.dir is None:
            return
        # A new, empty or datavalue folder only; the files of an earlier comparison there
        # (compare.json first, which marks a complete one) are removed before anything is run.
        with RunWriter(self.dir, kind="compare", replace=True, what="The 'out' folder"):
            pass
        self.handler = logging.FileHandler(self.dir / "run.log", mode="w", encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def dataset(self, seed: int, ds: Dataset) -> None:
        if self.dir is not None:
            ds.save(self.dir / "datasets" / f"seed-{seed}.npz")

    def result(self, method: str, seed: int, result: ValuationResult) -> None:
        if self.dir is not None:
            result.save(self.dir / "values" / method / f"seed-{seed}")

    def table(self, rows: list[dict[str, Any]]) -> None:
        if self.dir is not None:
            atomic_write_text(self.dir / "compare.csv",
                              pd.DataFrame(rows).to_csv(index=False, float_format="%.10g"))

    def finish(self, comparison: Comparison) -> None:
        if self.dir is None:
            return
        d = self.dir
        with RunWriter(d, kind="compare", what="The 'out' folder") as w:
            w.write_text("compare.csv", csv_text(comparison.table))
            w.write_text("summary.csv", csv_text(comparison.summary))
            w.write_text("curves.csv", csv_text(comparison.curves))
            w.write_text("summary.md", markdown_table(comparison.format_summary()))
            if _have_pyarrow():
                buf = io.BytesIO()
                comparison.table.to_parquet(buf, index=False)
                w.write_bytes("compare.parquet", buf.getvalue())
                comparison.config["parquet"] = True
            else:
                comparison.config["parquet"] = False
                logger.warning("pyarrow is not installed: compare.parquet not written (CSV only).")
            files = {
                "table": "compare.csv", "summary": "summary.csv", "curves": "curves.csv",
                "values": "values/<method>/seed-<seed>/", "datasets": "datasets/seed-<seed>.npz",
            }
            comparison.config["files"] = files
            w.write_text("compare.json", json.dumps(jsonable(comparison.config), indent=2) + "\n")

    def close(self) -> None:
        if self.handler is not None:
            logger.removeHandler(self.handler)
            self.handler.close()
            self.handler = None
            logger.setLevel(self.previous_level)



def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    cols = [c for c in (*_ID_COLUMNS, *_NUMERIC_COLUMNS) if c in table]
    table = table[cols]
    for c in _NUMERIC_COLUMNS:
        if c in table:
            table[c] = table[c].astype(np.float64)
    return table


def load_comparison(directory: str | os.PathLike) -> Comparison:
    """Read a folder written by :func:`compare` (tables, values and data sets)."""
    d = Path(directory)
    cfg_path = d / "compare.json"
    if not cfg_path.is_file():
        raise InvalidParameterError(
            f"{str(d)!r} does not hold a complete comparison (no compare.json): run "
            "'datavalue compare --out DIR' (or dv.compare(..., out=DIR)) first."
        )
    text_columns = ("status", "error", "metric")
    # Every file through the checksummed reader: a table edited or swapped since is refused.
    with RunReader(d, what="comparison folder") as r:
        config = r.read_json("compare.json")
        table = pd.read_csv(io.BytesIO(r.read_bytes("compare.csv")),
                            dtype={c: str for c in text_columns})
        curves = (pd.read_csv(io.BytesIO(r.read_bytes("curves.csv"))) if r.has("curves.csv")
                  else pd.DataFrame())
    for c in text_columns:
        if c in table:
            table[c] = table[c].fillna("")
    results, datasets = {}, {}
    for seed in config.get("seeds", []):
        path = d / "datasets" / f"seed-{seed}.npz"
        if path.is_file():
            datasets[int(seed)] = Dataset.load(path)
        for name in config.get("methods", []):
            rdir = d / "values" / name / f"seed-{seed}"
            if (rdir / "result.json").is_file():
                results[(name, int(seed))] = ValuationResult.load(rdir)
    return Comparison(table=table, summary=summarize(table), curves=curves, results=results,
                      datasets=datasets, config=config)
