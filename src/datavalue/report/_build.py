"""Assemble ``report.html`` from a folder written by ``value`` (+ ``evaluate``, ``clean``,
``fix``), ``compare`` or ``explain``."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.folder import (
    RunReader,
    RunWriter,
    check_output_file,
    check_output_folder,
    is_run_folder,
)
from datavalue._core.io import atomic_write_text
from datavalue._core.result import ValuationResult
from datavalue.data import Dataset
from datavalue.report import _html as h
from datavalue.report._examples import cards, rows_table
from datavalue.report._figures import (
    plot_compare_curves,
    plot_compare_detection,
    plot_compare_values,
)
from datavalue.report._html import REPORT_MARKER
from datavalue.report.explain import explanation_files, load_explanations
from datavalue.report.text import features_text, largest_changes, number
from datavalue.runs import kinds_of, load_run

__all__ = ["build_report"]

Section = tuple[str, str, str]  # (anchor, title, html)

#: Column headers of the comparison tables (with spaces, so they wrap between words).
_LABELS = {
    "f1_kmeans": "F1 (two-cluster)",
    "auc": "AUC",
    "removal_most_valuable_first": "removal, most valuable first",
    "removal_least_valuable_first": "removal, least valuable first",
    "addition_most_valuable_first": "addition, most valuable first",
    "wall_time": "wall time (s)",
}


def _png_file(path: Path, alt: str, caption: str = "") -> str:
    return h.figure(path.read_bytes(), alt, caption)


def _fig(fig: Any, alt: str, caption: str = "") -> str:
    return h.figure(h.figure_png(fig), alt, caption)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file of a run, checked against the run's manifest (its checksum) like every
    other file the report reads."""
    with RunReader(path.parent, what="run folder") as r:
        return r.read_json(path.name)


# ---------------------------------------------------------------------------- examples
def _examples_html(ds: Dataset, values: np.ndarray, k: int) -> str:
    """The ``k`` lowest- and ``k`` highest-valued training examples."""
    order = np.argsort(values, kind="stable")
    mask = ds.noise_mask
    known = bool(mask.any())
    word = "flipped" if ds.task == "classification" else "corrupted"
    out = []
    for title, idx in (("Most harmful: the lowest values", order[:k]),
                       ("Most helpful: the highest values", order[::-1][:k])):
        out.append(f"<h3>{h.esc(title)}</h3>")
        if ds.is_image:
            captions = [[f"#{ds.ids_train[i]}  value {values[i]:.3g}",
                         f"label {ds.label_name(ds.y_train[i].item())}"]
                        + ([word] if known and mask[i] else []) for i in idx]
            out.append(cards(ds, ds.x_train[idx], captions, flags=mask[idx], alt=title))
        else:
            cols: dict[str, list] = {
                "rank": list(range(1, len(idx) + 1)),
                "id": [ds.ids_train[i].item() for i in idx],
                "value": [float(values[i]) for i in idx],
                "label": [ds.label_name(ds.y_train[i].item()) for i in idx],
            }
            if known:
                cols[word] = ["yes" if mask[i] else "no" for i in idx]
            out.append(rows_table(ds, ds.x_train[idx], cols, flags=mask[idx]))
    if known:
        out.append(f"<p class='muted'>Highlighted: training examples {word} on purpose.</p>")
    return "".join(out)


# ---------------------------------------------------------------------------- value folders
def _curves(d: Path, ds: Dataset, result: ValuationResult, options: dict[str, Any],
            model: Any, metric: Any, fractions: Any, n_jobs: Any, progress: Any):
    """Removal (and addition) curves: the ones ``evaluate`` saved, else removal computed now."""
    from datavalue import evaluate as ev
    from datavalue.valuation.models import make_model

    default = "accuracy" if ds.task == "classification" else "r2"
    frames = {}
    if model is None and metric is None and fractions is None:
        with RunReader(d, what="run folder") as r:  # checked against the manifest
            saved = r.read_json("evaluation.json") if r.has("evaluation.json") else {}
            saved_metric = saved.get("metric") or options.get("metric") or default
            for name in ("removal", "addition"):
                if r.has(f"{name}.csv"):
                    frame = pd.read_csv(io.BytesIO(r.read_bytes(f"{name}.csv")))
                    frame.attrs.update(metric=saved_metric, split="test")
                    frames[name] = frame
        if "removal" in frames:
            return frames, saved_metric
    metric_name = metric or options.get("metric") or default
    if "removal" not in frames:
        seed = int(options.get("seed") or 0)
        model_name = model or options.get("model") or "logreg"
        est = make_model(model_name, ds.task, seed) if isinstance(model_name, str) else model_name
        frames["removal"] = ev.point_removal(result.values, ds, est, metric=metric_name,
                                             fractions=fractions, random_state=seed,
                                             n_jobs=n_jobs, progress=progress)
    return frames, metric_name


def _value_sections(d: Path, *, model: Any, metric: Any, fractions: Any, k: int,
                    n_jobs: Any, progress: Any) -> list[Section]:
    from datavalue import evaluate as ev

    ds, result, options, _ = load_run(d)
    known = len(ds.noisy_indices) > 0
    params = ", ".join(f"{k_}={v}" for k_, v in result.params.items()
                       if v is not None and k_ != "progress")
    pairs = [("data", ds.describe()), ("method", result.method), ("parameters", params or "–"),
             ("wall time (s)", result.wall_time), ("status", result.status),
             ("library version", result.library_version)]
    body = h.kv(pairs)
    if known:
        det = ev.noisy_detection(result.values, ds.noisy_indices)
        rows = [("AUC", det["auc"], "0.5 = guessing, 1 = every corrupted example below every "
                 "clean one"),
                ("F1 (two-cluster)", det["f1_kmeans"], "the low group of a 2-means split of the "
                 "values, flagged as corrupted"),
                (f"precision at {det['k']}", det["precision_at_k"],
                 f"share of the {det['k']} lowest values that were corrupted")]
        body += "<h3>Finding the corrupted examples</h3>" + h.table(
            ["score", "value", "meaning"], rows, numeric=[False, True, False])
    sections: list[Section] = [("summary", "Summary", body)]

    if known:  # the left panel is the histogram of corrupted and clean values
        dist = _fig(ev.plot_noisy_detection(result.values, ds.noisy_indices),
                    "Value histogram and detection of corrupted examples",
                    "Left: values of corrupted and clean training examples. Right: share of the "
                    "corrupted examples found when inspecting the lowest values first.")
    else:
        dist = _fig(ev.plot_values(result.values), "Histogram of the data values",
                    "Values of the training examples.")
    sections.append(("values", "Value distribution and detection", dist))

    frames, metric_name = _curves(d, ds, result, options, model, metric, fractions, n_jobs,
                                  progress)
    body = _fig(ev.plot_point_removal(frames["removal"]), "Point removal curves",
                f"Test {metric_name} after removing training examples in order of value; good "
                "values make it fall fastest when the most valuable go first.")
    if "addition" in frames:
        body += _fig(ev.plot_point_addition(frames["addition"]), "Point addition curves")
    means = pd.DataFrame([{"curve": name, **ev.summarize_curve(f)} for name, f in frames.items()])
    body += h.frame_table(means, caption=f"Mean test {metric_name} over the fractions")
    sections.append(("curves", "Removal and addition curves", body))

    if (d / "clean.json").is_file():
        sections.append(("clean", "Cleaning", _clean_html(d)))
    if (d / "fix.json").is_file():
        sections.append(("fix", "Fixing mislabeled examples", _fix_html(d)))
    sections.append(("examples", "Most harmful and most helpful training examples",
                     _examples_html(ds, result.values, k)))
    return sections


def _clean_html(d: Path) -> str:
    s = _read_json(d / "clean.json")
    verb = "dropped" if s.get("mode") == "drop" else f"down-weighted to {s.get('weight')}"
    pairs = [("rows " + verb, f"{s.get('n_flagged')} ({s.get('fraction', 0):.1%}, lowest values)"),
             (f"test {s.get('metric')} before", s.get("score_before")),
             (f"test {s.get('metric')} after", s.get("score_after"))]
    if s.get("n_noisy_flagged") is not None:
        pairs.append(("of them corrupted", s["n_noisy_flagged"]))
    body = h.kv(pairs)
    if (d / "clean.png").is_file():
        body += _png_file(d / "clean.png", "Test score against the fraction cleaned")
    return body


def _fix_html(d: Path) -> str:
    s = _read_json(d / "fix.json")
    frac = s.get("fraction_checked", 0)
    rows = [(name, r["fraction_found"], r["score"]) for name, r in s.get("rankings", {}).items()]
    body = h.kv([("flipped labels", s.get("n_flipped")),
                 (f"test {s.get('metric')} with the flips", s.get("score_noisy")),
                 (f"test {s.get('metric')} with every label fixed", s.get("score_all_fixed"))])
    body += h.table(["review order", f"flips found checking {frac:.0%}",
                     f"test {s.get('metric')} after fixing them"], rows,
                    numeric=[False, True, True])
    if (d / "fix.png").is_file():
        body += _png_file(d / "fix.png", "Flipped labels found and test score after fixing",
                          "Koh & Liang (2017), Sec. 5.4: reviewing training labels in ranked "
                          "order.")
    return body


# ---------------------------------------------------------------------------- compare folders
def _compare_sections(d: Path, k: int) -> list[Section]:
    from datavalue.actions.comparison import load_comparison

    comp = load_comparison(d)
    cfg = comp.config
    methods = [m for m in cfg.get("methods", []) if m in set(comp.table["method"])]
    params = "; ".join(f"{m}: {', '.join(f'{a}={b}' for a, b in p.items())}"
                       for m, p in cfg.get("params", {}).items() if p) or "method defaults"
    body = h.kv([("data", cfg.get("data")), ("methods", ", ".join(methods)),
                 ("seeds", ", ".join(map(str, cfg.get("seeds", [])))),
                 ("corrupted", f"{cfg.get('noise_rate')} ({cfg.get('noise_kind')})"),
                 ("model", cfg.get("model")),
                 ("metric", cfg.get("metric") or ", ".join(sorted(set(comp.table["metric"])))),
                 ("budgets and options", params),
                 ("total time (s)", cfg.get("total_time"))])
    table = comp.format_summary().rename(columns=_LABELS)
    body += h.frame_table(table, caption="Mean ± sd over seeds")
    body += ("<p class='muted'>F1 and AUC: finding the corrupted training examples (higher is "
             "better). Removal curves: mean test score over the fractions removed — after "
             "removing the most valuable first (lower is better) or the least valuable first "
             "(higher is better). Addition: training on the most valuable first (higher is "
             "better). Wall time: seconds in fit.</p>")
    failed = comp.table[comp.table["status"] == "failed"]
    if len(failed):
        body += "<h3>Failed runs</h3>" + h.frame_table(failed[["method", "seed", "error"]])
    sections: list[Section] = [("compare", "Comparison of methods", body)]
    if comp.summary["auc_mean"].notna().any():
        sections.append(("compare-detection", "Detection of corrupted examples by method",
                         _fig(plot_compare_detection(comp.summary), "Detection by method")))
    if not comp.curves.empty:
        metric = cfg.get("metric") or str(comp.table["metric"].iloc[0])
        body = "".join(_fig(plot_compare_curves(comp.curves, e, methods, metric),
                            f"{e} curves by method", f"Mean over seeds, {e}.")
                       for e in ("removal", "addition"))
        sections.append(("compare-curves", "Removal and addition curves by method", body))
    seed = min(comp.datasets) if comp.datasets else None
    if seed is not None:
        ds = comp.datasets[seed]
        res = {m: comp.results[(m, seed)] for m in methods if (m, seed) in comp.results}
        if res:
            sections.append(("compare-values", f"Value distributions (seed {seed})",
                             _fig(plot_compare_values(res, ds), "Value histograms by method")))
            best = _best_method(comp.summary, list(res))
            sections.append(("compare-examples", f"Most harmful and most helpful training examples "
                             f"({best}, seed {seed})",
                             _examples_html(ds, res[best].values, k)))
    cols = [c for c in ("method", "seed", "status", "wall_time", "f1_kmeans", "auc",
                        "removal_most_valuable_first", "removal_least_valuable_first",
                        "addition_most_valuable_first") if c in comp.table]
    sections.append(("compare-runs", "Every run",
                     h.frame_table(comp.table[cols].rename(columns=_LABELS))))
    return sections


def _best_method(summary: pd.DataFrame, candidates: list[str]) -> str:
    s = summary.set_index("method").loc[candidates]
    if s["auc_mean"].notna().any():
        return str(s["auc_mean"].idxmax())
    return candidates[0]


# ---------------------------------------------------------------------------- explanations
def _explain_sections(d: Path, k: int, max_examples: int = 12) -> list[Section]:
    explanations, ds = load_explanations(d)
    mask = ds.noise_mask
    first = explanations[0]
    method = getattr(first, "method", "influence")
    if method == "influence":
        intro = (f"Influence functions (Koh &amp; Liang 2017), model <b>{h.esc(first.model)}</b>,"
                 f" solver {h.esc(first.solver)}. Score: the predicted change of the test "
                 "example's loss if the training example were removed and the model retrained; "
                 "positive = it helped this prediction.")
    elif method == "trak":
        intro = (f"TRAK (Park et al. 2023), model <b>{h.esc(first.model)}</b>. Score: the "
                 "training example's predicted effect on the test example's margin; positive "
                 "= it helped this prediction.")
    else:
        intro = (f"{'Grad-Dot' if method == 'tracin' else 'Grad-Cos'} (TracIn with the "
                 f"trained model as its checkpoint, Pruthi et al. 2020), model "
                 f"<b>{h.esc(first.model)}</b>. Score: the agreement of the two examples' loss "
                 "gradients; positive = a training step on it lowers this test loss.")
    parts = [f"<p>{intro}</p>"]
    for e in explanations[:max_examples]:
        head = [f"test #{e.test_index}", f"label {ds.label_name(e.test_label)}",
                f"predicted {ds.label_name(e.predicted_label)}", f"loss {e.test_loss:.3g}"]
        groups = []
        for title, idx_list, score_list in (("Most helpful", e.helpful, e.helpful_scores),
                                            ("Most harmful", e.harmful, e.harmful_scores)):
            idx = np.asarray(idx_list[:k], dtype=np.int64)
            scores = list(score_list[:k])
            if ds.is_image:
                caps = [[f"#{j}  {s:+.3g}", f"label {ds.label_name(ds.y_train[j].item())}"]
                        for j, s in zip(idx, scores, strict=True)]
                inner = cards(ds, ds.x_train[idx], caps, flags=mask[idx], alt=title)
            else:
                inner = rows_table(ds, ds.x_train[idx], {
                    "index": [int(j) for j in idx], "score": scores,
                    "label": [ds.label_name(ds.y_train[j].item()) for j in idx]},
                    flags=mask[idx])
            groups.append(f'<div class="group"><h3>{title}</h3>{inner}</div>')
        if ds.is_image:
            query = cards(ds, ds.x_test[[e.test_index]], [head], query=[True],
                          alt="test example")
        else:
            query = (f"<p><b>{h.esc(', '.join(head))}</b></p>"
                     f"<p class='muted'>{h.esc(features_text(ds, ds.x_test[e.test_index]))}</p>")
        parts.append(f'<div class="explain"><div>{query}</div>{"".join(groups)}</div>')
    if mask.any():
        parts.append("<p class='muted'>Highlighted: training examples corrupted on purpose.</p>")
    if len(explanations) > max_examples:
        parts.append(f"<p class='muted'>{len(explanations) - max_examples} more explanation "
                     "files in the folder.</p>")
    return [("explain", "Explanations: training examples behind test predictions",
             "".join(parts))]


def _recommend_sections(d: Path) -> list[Section]:
    """The recommendation-explanation view: each recommended item with the user's own ratings
    that raised and lowered its prediction, and the other users' ratings that moved it most."""
    rec = _read_json(d / "recommendations.json")
    parts = [h.kv([("user", rec.get("user_id")), ("their ratings", rec.get("n_user_ratings")),
                   ("data", rec.get("data")), ("model", json.dumps(rec.get("model"))),
                   ("influence over", rec.get("scope") or "(no explanations: run with "
                                                            "--explain)")])]
    parts.append("<p>Score: the change of the predicted rating that a training rating causes "
                 "(influence functions: the predicted effect of removing it and retraining). "
                 "Positive = it raised the prediction.</p>")
    for r in rec.get("recommendations", []):
        head = (f"{r['rank']}. {h.esc(str(r['title']))} "
                f"<span class='muted'>(item {h.esc(str(r['item_id']))}, predicted "
                f"{float(r['predicted']):.2f})</span>")
        body = []
        for key, title in (("because", "Because you rated"), ("despite", "Despite your"),
                           ("helpful", "All ratings that raised it most"),
                           ("harmful", "All ratings that lowered it most")):
            rows = r.get(key)
            if not rows:
                continue
            frame = pd.DataFrame(rows)
            cols = [c for c in ("title", "rating", "score", "user_id", "row_id")
                    if c in frame.columns and (key in ("helpful", "harmful") or c != "user_id")]
            body.append(f'<div class="group"><h4>{title}</h4>'
                        f'<div class="scroll">{h.frame_table(frame[cols], digits=3)}</div></div>')
        parts.append(f"<h3>{head}</h3>" + ("".join(body) or "<p class='muted'>(not explained)"
                                                              "</p>"))
    return [("recommend", f"Recommendations for user {rec.get('user_id')}", "".join(parts))]


def _unlearn_sections(d: Path) -> list[Section]:
    u = _read_json(d / "unlearning.json")
    rm, other = u["removed_ratings"], u["other_ratings"]
    pairs = [("removed", f"{u['removed']['n_ratings']} ratings ({u['removed']['what']} "
                         f"{u['removed']['value']})"),
             ("Newton step", f"{u['seconds'] * 1000:.0f} ms on {u['n_parameters_updated']} "
                             "parameters"),
             ("removed ratings, RMSE before -> after", f"{rm['rmse_before']:.3f} -> "
                                                        f"{rm['rmse_after']:.3f}"),
             ("other ratings, mean / max |change|", f"{other['mean_abs_change']:.4f} / "
                                                     f"{other['max_abs_change']:.3f}"),
             ("other ratings, RMSE before -> after", f"{other['rmse_before']:.4f} -> "
                                                      f"{other['rmse_after']:.4f}")]
    if "verify" in u:
        v = u["verify"]
        pairs += [("retraining (check)", f"{v['retrain_seconds']:.1f} s, "
                                          f"{v['speedup']:.0f}x the step"),
                  ("gap to the retrained model", f"{v['gap_original_vs_retrained']:.4f} "
                   f"(original) -> {v['gap_unlearned_vs_retrained']:.4f} (unlearned)")]
    body = h.kv(pairs)
    if (d / "prediction_changes.csv").is_file():
        changes = pd.read_csv(d / "prediction_changes.csv", nrows=15)
        body += ("<h3>Largest prediction changes</h3><div class='scroll'>"
                 f"{h.frame_table(changes, digits=3)}</div>")
    return [("unlearn", "Unlearning: ratings removed without retraining", body)]


def _attack_sections(d: Path, k: int) -> list[Section]:
    """A training-set attack (``datavalue attack``): per count of moved examples, whether the
    prediction flipped (and for the random baseline), and each moved training example before
    and after, side by side."""
    doc = _read_json(d / "attack.json")
    ds = Dataset.load(d / "dataset.npz")
    t = int(doc["test_index"])
    if not 0 <= t < ds.n_test:
        raise InvalidDataError(
            f"attack.json names test row {t}; the dataset.npz beside it has {ds.n_test}.")
    label = ds.label_name(doc["test_label"])
    rows = []
    for run in doc["runs"]:
        a, b = run["attack"], run["random"]
        rows.append([run["n_train"],
                     f"flipped to {ds.label_name(a['predictions'][-1])}" if a["flipped"]
                     else "not flipped", a["steps"], f"{a['test_loss'][0]:.3g} → "
                     f"{a['test_loss'][-1]:.3g}", f"{a['seconds']:.1f}",
                     f"flipped to {ds.label_name(b['predictions'][-1])}" if b["flipped"]
                     else "not flipped", f"{b['test_loss'][-1]:.3g}"])
    parts = [f"<p>Koh &amp; Liang (2017, Sec. 5.2): the training inputs whose gradient of this "
             f"test loss (I<sub>pert,loss</sub>) is largest are moved by signed steps, each "
             f"value by at most {float(doc['epsilon_fraction']):g} of its range, the model "
             f"(<b>{h.esc(doc['model'])}</b>) re-fitted after every step, until the prediction "
             "flips. Baseline: as many random rows, moved by random signs of the same size.</p>",
             h.table(["moved", "attack", "steps", "test loss", "seconds", "random rows",
                      "random: test loss"], rows)]
    image = ds.is_image
    if image:
        parts.append(cards(ds, ds.x_test[[t]], [[f"test #{doc['test_id']}", f"label {label}"]],
                           query=[True], alt="target"))
    for run in doc["runs"]:
        a = run["attack"]
        x0, x1 = np.asarray(a["x_original"]), np.asarray(a["x_perturbed"])
        shown = min(k, len(x0))
        title = (f"{run['n_train']} moved: {'flipped' if a['flipped'] else 'not flipped'} "
                 f"after {a['steps']} step(s)")
        if image:
            both = np.empty((2 * shown, x0.shape[1]))  # original, perturbed, original, ...
            both[0::2], both[1::2] = x0[:shown], x1[:shown]
            caps = []
            for j in range(shown):
                head = f"#{a['row_ids'][j]} label {ds.label_name(a['labels'][j])}"
                caps += [[head, "original"], [head, "perturbed"]]
            body = cards(ds, both, caps, flags=[j % 2 == 1 for j in range(2 * shown)],
                         alt="attacked example")
        else:
            changes = [[a["row_ids"][j], name, number(old), number(new)]
                       for j in range(shown)
                       for name, old, new in largest_changes(ds, x0[j], x1[j], k=4)]
            body = h.table(["row", "feature (largest changes)", "original", "perturbed"],
                           changes)
        more = (f"<p class='muted'>{len(x0) - shown} more in attack.json.</p>"
                if len(x0) > shown else "")
        parts.append(f'<div class="group"><h3>{h.esc(title)}</h3>{body}{more}</div>')
    return [("attack", f"Training-set attack on test #{h.esc(str(doc['test_id']))}",
             "".join(parts))]


# ---------------------------------------------------------------------------- entry point
def build_report(
    directory: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    model: Any = None,
    metric: str | None = None,
    fractions: Any = None,
    k: int = 8,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Write one self-contained HTML report of a results folder and return its path.

    The folder may hold a valuation (``datavalue value``: result.json + dataset.npz, with
    ``evaluate``, ``clean`` and ``fix`` outputs if present), a comparison (``datavalue
    compare``: compare.json) and/or explanations (explanation.json files with dataset.npz, see
    :mod:`datavalue.report.explain`); every part found gets its sections. Figures are embedded
    as base64 PNG, so the file opens offline and can be mailed.

    Parameters
    ----------
    directory : path
    out : path or None
        Where to write (default ``directory/report.html``).
    model, metric, fractions :
        For a valuation without saved curves (``evaluate`` not run), the model, metric and
        fractions of the removal curve computed here (default: those of the run, logreg).
        Giving any of them recomputes the curve.
    k : int
        Harmful and helpful examples shown (and neighbours per explained example).
    n_jobs, progress : for the curve's fits.
    """
    d = Path(directory)
    if not d.is_dir():
        raise InvalidParameterError(
            f"The folder {str(d)!r} does not exist." if not d.exists() else
            f"{str(d)!r} is a file; give the folder written by datavalue that holds it."
        )
    if out is None:
        check_output_folder(d, what="The report's folder")
    else:
        check_output_file(out, what="The report file", marker=REPORT_MARKER)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidParameterError(f"The 'k' parameter must be a positive int. Got {k!r}.")
    sections: list[Section] = []
    shown = []
    present = kinds_of(d) if is_run_folder(d) else set()
    if "compare" in present:
        sections += _compare_sections(d, k)
        shown.append("comparison")
    if "value" in present:
        sections += _value_sections(d, model=model, metric=metric, fractions=fractions, k=k,
                                    n_jobs=n_jobs, progress=progress)
        shown.append("valuation")
    if "explain" in present and explanation_files(d):
        sections += _explain_sections(d, k)
        shown.append("explanation")
    if "recommend" in present:
        sections += _recommend_sections(d)
        shown.append("recommendations")
    if "unlearn" in present:
        sections += _unlearn_sections(d)
        shown.append("unlearning")
    if "attack" in present:
        sections += _attack_sections(d, k)
        shown.append("attack")
    if not sections:
        raise InvalidParameterError(
            f"{str(d)!r} holds no results: give a folder written by 'datavalue value', "
            "'compare', 'explain', 'recommend', 'unlearn' or 'attack' (result.json + "
            "dataset.npz, compare.json, explanation.json + dataset.npz, recommendations.json, "
            "unlearning.json or attack.json + dataset.npz)."
        )
    from datavalue._core.version import __version__

    subtitle = (f"{' + '.join(shown).capitalize()} in {d.resolve()}; written "
                f"{time.strftime('%Y-%m-%d %H:%M')} by datavalue {__version__}.")
    html = h.page(f"datavalue report: {d.resolve().name}", subtitle, sections)
    if out is None:
        with RunWriter(d, kind="report", what="The report's folder") as w:
            w.write_text("report.html", html)
        return d / "report.html"
    path = check_output_file(out, what="The report file", marker=REPORT_MARKER)
    atomic_write_text(path, html)
    return path
