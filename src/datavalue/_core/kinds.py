"""The kinds of results folder, written down once: which files each kind writes, what each
holds, and the format version of its files.

Every writer of a run folder names its kind (``RunWriter(dir, kind="clean")``) and may write
only the files its kind declares here; the manifest records the kind and version of every file
(``datavalue-run.json``: ``"kinds": {"value": 1, "clean": 1}``). A reader therefore knows what a
folder holds without guessing from file names, and a folder written by a newer datavalue (a
kind it does not know, or a newer version of one) is refused with a clear message instead of
being misread. ``docs/results-folders.md`` is generated from :data:`KINDS`
(:func:`markdown`), and a test keeps the two equal.

A folder can hold several kinds at once: ``datavalue value`` writes a ``value`` run, then
``evaluate``, ``clean``, ``fix`` and ``report`` add their files beside it. A new ``value`` run
replaces all of them (they described the old values); files datavalue did not write are never
touched (see :mod:`datavalue._core.folder`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

__all__ = ["Kind", "KINDS", "kind", "markdown"]


@dataclass(frozen=True)
class Kind:
    """One kind of results folder (or of files added to one)."""

    #: The kind's name, as recorded in the manifest.
    name: str
    #: Format version of its files; raised whenever a file's layout changes incompatibly.
    version: int
    #: Who writes it (commands and functions).
    written_by: str
    #: What it is, in one sentence.
    summary: str
    #: ``(file name or glob pattern, what it holds)`` for every file it may write.
    files: tuple[tuple[str, str], ...]

    def allows(self, name: str) -> bool:
        """Whether the file ``name`` (relative to the folder) is one this kind declares."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern, _ in self.files)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("value", 1, "`datavalue value`, `datavalue demo`, `ValuationResult.save`",
         "One value per training row, with the data it was computed on.", (
             ("values.npz", "values, standard errors, sample counts and row ids, exactly"),
             ("values.csv", "the same as a table: id, value, stderr, count"),
             ("result.json", "provenance: method, parameters, seed, status, data fingerprint, "
                             "library version, wall time"),
             ("dataset.npz", "the data set: splits, row ids, feature and class names, the rows "
                             "corrupted on purpose"),
             ("run.json", "the command line and options of the run"),
             ("values.png", "histogram of the values (demo)"),
             ("detection.png", "share of the corrupted rows found, lowest values first (demo)"),
         )),
    Kind("evaluate", 1, "`datavalue evaluate DIR`",
         "Do the values mean something: detection, removal and addition curves.", (
             ("evaluation.json", "detection scores and curve summaries"),
             ("removal.csv", "test score after removing a fraction of rows, by order"),
             ("addition.csv", "test score after training on a fraction of rows, by order"),
             ("values.png", "histogram of the values"),
             ("detection.png", "share of the corrupted rows found, lowest values first"),
             ("removal.png", "the removal curves"),
             ("addition.png", "the addition curves"),
         )),
    Kind("clean", 1, "`datavalue clean DIR`, `CleanResult.save`",
         "The training set without (or down-weighting) its lowest-valued rows, retrained.", (
             ("cleaned_dataset.npz", "the cleaned data set"),
             ("cleaned_train.csv", "the kept training rows, by id"),
             ("sample_weight.npy", "the weight of every training row (mode 'weight')"),
             ("clean_curve.csv", "validation and test score by fraction removed"),
             ("clean.json", "the chosen fraction, scores before and after, the random baseline"),
             ("clean.png", "the curve"),
         )),
    Kind("fix", 1, "`datavalue fix DIR`, `FixResult.save`",
         "Labels reviewed in ranked order (Koh & Liang Sec. 5.4).", (
             ("fix_curve.csv", "share of flipped labels found against share checked, by order"),
             ("review.csv", "the rows in review order with their ids, labels and scores"),
             ("fix.json", "summary: flips found and test score after fixing, by order"),
             ("fix.png", "the curves"),
         )),
    Kind("compare", 1, "`datavalue compare`, `dv.compare(..., out=DIR)`",
         "Several methods over several seeds on the same splits (OpenDataVal's protocol).", (
             ("compare.json", "the configuration; marks a complete comparison"),
             ("compare.csv", "one row per (method, seed): detection, curves, retraining, time"),
             ("compare.parquet", "the same table (when pyarrow is installed)"),
             ("summary.csv", "mean and standard deviation over seeds"),
             ("summary.md", "the summary as a Markdown table"),
             ("curves.csv", "every removal and addition curve"),
         )),
    Kind("explain", 1, "`datavalue explain`, `Explanation.save`, `report.save_explanations`",
         "Test predictions explained by their most helpful and harmful training rows.", (
             ("explanation.json", "one explanation: test row, scores, helpful and harmful rows"),
             ("explanation-*.json", "more explanations, one per test row"),
             ("dataset.npz", "the data set the rows refer to"),
         )),
    Kind("attack", 1, "`datavalue attack --out DIR`",
         "Training-set attacks (Koh & Liang Sec. 5.2) and their random baselines.", (
             ("attack.json", "target, moved rows (ids), originals and perturbed inputs, "
                             "losses, flips"),
             ("dataset.npz", "the data set the rows refer to"),
         )),
    Kind("recommend", 1, "`datavalue recommend --out DIR`",
         "Recommendations for a user and the ratings behind each.", (
             ("recommendations.json", "the user, the items and their explanations"),
             ("recommendations.csv", "the same as a table"),
             ("model.npz", "the fitted matrix factorization (for `--model`)"),
         )),
    Kind("unlearn", 1, "`datavalue unlearn --out DIR`",
         "A user's (or an item's) ratings removed from a fitted recommender.", (
             ("unlearning.json", "what was removed, how predictions moved, the retraining check"),
             ("prediction_changes.csv", "every changed prediction, keyed by the log's rating "
                                        "ids"),
             ("model.npz", "the updated model"),
         )),
    Kind("augment", 1, "`datavalue augment --out DIR`",
         "Candidate rows ranked by how much they would help if added.", (
             ("candidates.csv", "id, value and rank of every candidate"),
             ("addition-curve.csv", "test score when adding the top candidates (`--curve`)"),
             ("augment.json", "method, data, candidates and timings"),
         )),
    Kind("report", 1, "`datavalue report DIR`", "The self-contained HTML report.", (
        ("report.html", "summary, figures and examples of every kind in the folder"),
    )),
    Kind("dataset", 1, "`Dataset.save(path)`", "A data set saved on its own.", (
        ("*.npz", "the data set"),
    )),
    Kind("store", 1, "`InfluenceFunction(store=DIR)`, `TracIn/TRAK(store=DIR)`",
         "An attribution kept on disk for reuse by later fits and processes.", (
             ("influence-key.json", "what the contents were computed from (model, data, "
                                    "settings)"),
             ("solver.pt", "the fitted inverse-Hessian solver"),
             ("solver-info.json", "the solver's diagnostics"),
             ("train-solved.npy", "solved training gradients, one row per training row"),
             ("train-projection.npy", "training gradients in Arnoldi's low-rank basis"),
             ("train-features.npy", "projected training gradients (TracIn, TRAK)"),
             ("train-kernel-features.npy", "TRAK's kernel features"),
             ("kernel-ranks.npy", "the rank of each TRAK kernel"),
             ("scores/*.npy", "scores of each query set, keyed by its fingerprint"),
         )),
)}


def kind(name: str) -> Kind:
    """The kind called ``name`` (a clear error for an unknown one: a programming error)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown results-folder kind {name!r}; known: "
                         f"{', '.join(KINDS)}.") from None


def markdown() -> str:
    """The page ``docs/results-folders.md``: every kind and its files."""
    lines = [
        "# Results folders",
        "",
        "Generated from `src/datavalue/_core/kinds.py` (a test keeps this page equal to it).",
        "",
        "Every folder datavalue writes holds a manifest, `datavalue-run.json`, listing its "
        "files with their SHA-256 and, for each file, the kind that wrote it and that kind's "
        "format version. A folder may hold several kinds (a `value` run, then `evaluate`, "
        "`clean`, `fix`, `report` beside it). A writer may write only the files its kind "
        "declares below; a folder holding a kind this version does not know, or a newer "
        "version of one, is refused with a message saying so.",
        "",
    ]
    for k in KINDS.values():
        lines += [f"## `{k.name}` (format {k.version})", "", f"{k.summary} Written by "
                  f"{k.written_by}.", "", "| file | holds |", "|---|---|"]
        lines += [f"| `{pattern}` | {what} |" for pattern, what in k.files]
        lines.append("")
    return "\n".join(lines)
