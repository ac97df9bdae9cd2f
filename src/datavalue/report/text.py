"""Text for people: the one place that turns examples, images and explanations into lines of
text (the command line prints them; the HTML report builds on the same pieces).

Images are drawn with characters (darker = higher value), tabular rows as ``name=value`` in the
data's original units, numbers in full when they are whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datavalue.actions.explain import Explanation
from datavalue.data import Dataset

__all__ = ["ascii_image", "number", "features_text", "row_text", "largest_changes",
           "render_explanation", "render_attack"]


def number(v: float) -> str:
    """Whole numbers in full (fnlwgt=91580, not 9.158e+04), others to 4 significant digits."""
    if abs(v) < 1e-9:
        return "0"
    if abs(v) < 1e12 and abs(v - round(v)) <= 1e-9 * max(1.0, abs(v)):
        return str(int(round(v)))
    return f"{v:.4g}"


def features_text(ds: Dataset, x: np.ndarray, *, limit: int = 60) -> str:
    """``name=value`` pairs in original units; one-hot columns (``name=level``) shown only when
    set, as the level name alone."""
    raw = np.asarray(ds.raw_features(np.asarray(x)[None, :]), dtype=np.float64)[0]
    parts = []
    for name, v in zip(ds.feature_names, raw, strict=True):
        if "=" in name and abs(v) < 1e-9:
            continue
        if "=" in name and abs(v - 1.0) < 1e-9:
            parts.append(name)
        else:
            parts.append(f"{name}={number(v)}")
    more = f", … ({len(parts) - limit} more)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def largest_changes(ds: Dataset, before: np.ndarray, after: np.ndarray,
                    k: int = 4) -> list[tuple[str, float, float]]:
    """The ``k`` features of one example that changed most between ``before`` and ``after``
    (model units), as ``(name, old, new)`` in original units, ranked by the change relative to
    the feature's training range."""
    raw = np.asarray(ds.raw_features(np.vstack([before, after])), dtype=np.float64)
    train = np.asarray(ds.raw_features(ds.x_train), dtype=np.float64)
    span = train.max(axis=0) - train.min(axis=0)
    rel = np.abs(raw[1] - raw[0]) / np.where(span > 0, span, 1.0)
    top = [int(j) for j in np.argsort(-rel, kind="stable")[:k] if rel[j] > 0]
    return [(ds.feature_names[j], float(raw[0, j]), float(raw[1, j])) for j in top]


_SHADES = " .:-=+*#%@"


def ascii_image(pixels: np.ndarray, shape: tuple[int, ...],
                value_range: tuple[float, float] | None = None) -> list[str]:
    """Rows of characters drawing a grey-level image (darker = higher value), scaled to its own
    range or to ``value_range`` (the same for images compared side by side)."""
    img = np.asarray(pixels, dtype=np.float64).reshape(shape)
    lo, hi = (float(img.min()), float(img.max())) if value_range is None else value_range
    img = np.clip(img, lo, hi)
    scaled = np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)
    idx = np.minimum((scaled * len(_SHADES)).astype(int), len(_SHADES) - 1)
    return ["".join(_SHADES[i] * 2 for i in row) for row in idx]


def row_text(ds: Dataset, x: np.ndarray, n_features: int = 6) -> str:
    raw = ds.raw_features(x[None, :])[0]
    shown = ", ".join(f"{name}={value:.4g}" for name, value in
                      zip(ds.feature_names[:n_features], raw[:n_features], strict=False))
    more = f", ... ({ds.n_features} features)" if ds.n_features > n_features else ""
    return shown + more


def render_explanation(expl: Explanation, ds: Dataset) -> str:
    """The explanation as text: the test example, then its helpful and harmful examples."""
    image = ds.image_shape is not None
    noisy = set(ds.noisy_indices.tolist())
    lines = [
        f"Test example {expl.test_index}: label {ds.label_name(expl.test_label)}, predicted "
        f"{ds.label_name(expl.predicted_label)} (loss {expl.test_loss:.4g}; model {expl.model}, "
        + (f"solver {expl.solver})" if expl.method == "influence" else f"method {expl.method})"),
    ]
    if image:
        lines += ["  " + r for r in ascii_image(ds.raw_features(ds.x_test[expl.test_index]),
                                                ds.image_shape)]
    else:
        lines.append("  " + row_text(ds, ds.x_test[expl.test_index]))
    if expl.measure == "margin" and expl.method == "influence":
        lines.append("")
        lines.append(
            "The test loss is exactly 0 here (the example lies beyond the model's margin), so "
            "removing any single training example would leave it at 0: every loss influence is "
            "0. The examples below are ranked by their influence on the test example's margin "
            "(how confidently it is classified) instead."
        )
    what = "this test loss" if expl.measure == "loss" else "this test example's margin"
    raise_, lower = (("raise", "lower") if expl.measure == "loss" else ("lower", "raise"))
    titles = (f"removing them would {raise_} {what}", f"removing them would {lower} {what}")
    score_name = "influence"
    if expl.method in ("tracin", "grad-cos"):
        titles = (f"their gradients lower {what}", f"their gradients raise {what}")
        score_name = "grad-dot" if expl.method == "tracin" else "cosine"
    elif expl.method == "trak":
        titles = (f"they raise {what}", f"they lower {what}")
        score_name = "TRAK score"
    for title, idx, scores in (
        (f"Most helpful training examples ({titles[0]})", expl.helpful, expl.helpful_scores),
        (f"Most harmful training examples ({titles[1]})", expl.harmful, expl.harmful_scores),
    ):
        lines.append("")
        lines.append(title + ":")
        blocks = []
        for rank, (i, s) in enumerate(zip(idx, scores, strict=True), start=1):
            flag = "  [label was flipped]" if i in noisy else ""
            head = (f"  {rank}. train #{i}  label {ds.label_name(ds.y_train[i])}  "
                    f"{score_name} {s:+.4g}{flag}")
            if image:
                blocks.append([head] + ["     " + r for r in
                                        ascii_image(ds.raw_features(ds.x_train[i]),
                                                    ds.image_shape)])
            else:
                blocks.append([head, "     " + row_text(ds, ds.x_train[i])])
        for b in blocks:
            lines.extend(b)
    return "\n".join(lines)


def _draw_pairs(ds: Dataset, rec: dict, show: int) -> list[str]:
    """Moved training images, original beside perturbed (one grey scale for all), two pairs
    to a line."""
    raw_train = ds.raw_features(ds.x_train)
    rng = (float(raw_train.min()), float(raw_train.max()))
    blocks = []
    for j in range(min(show, len(rec["train_indices"]))):
        before = ds.raw_features(np.asarray(rec["x_original"][j])[None, :])[0]
        after = ds.raw_features(np.asarray(rec["x_perturbed"][j])[None, :])[0]
        head = (f"train #{rec['row_ids'][j]} ({ds.label_name(rec['labels'][j])}): "
                "original | perturbed")
        rows = [f"{a}  | {b}" for a, b in zip(ascii_image(before, ds.image_shape, rng),
                                             ascii_image(after, ds.image_shape, rng),
                                             strict=True)]
        blocks.append([head] + rows)
    lines = []
    for k in range(0, len(blocks), 2):  # two pairs per line: 2 x 37 characters
        pair = blocks[k:k + 2]
        width = max(len(r) for r in pair[0]) + 4
        for i in range(len(pair[0])):
            lines.append("    " + "".join(b[i].ljust(width) for b in pair).rstrip())
        lines.append("")
    return lines


def render_attack(attack: Any, show: int = 4) -> str:
    """A :class:`~datavalue.actions.attack.DatasetAttack` as text: the target, one line per
    count (attack and random baseline), then up to ``show`` moved rows per count (images
    side by side, or the features that moved most)."""
    ds, t = attack.dataset, attack.test_index
    image = ds.is_image
    label = ds.label_name(ds.y_test[t])
    first = attack.runs[0]["attack"]
    lines = [f"Target: test #{attack.test_id}, label {label}, predicted "
             f"{label} (loss {first['test_loss'][0]:.3g}); every input may move by "
             f"{attack.epsilon:g} of its range."]
    if image:
        raw = ds.raw_features(ds.x_train)
        rng = (float(raw.min()), float(raw.max()))
        lines += ["    " + r for r in ascii_image(ds.raw_features(ds.x_test[[t]])[0],
                                                  ds.image_shape, rng)]
    lines += ["", f"{'moved':>5}  {'attack (influence)':<44}  random rows, random signs"]
    for run in attack.runs:
        a, b = run["attack"], run["random"]
        verdict = (f"FLIPPED to {ds.label_name(a['predictions'][-1])} in {a['steps']} step(s)"
                   if a["flipped"] else f"not flipped in {a['steps']} steps")
        base = (f"flipped to {ds.label_name(b['predictions'][-1])}" if b["flipped"]
                else "not flipped")
        lines.append(f"{run['n_train']:>5}  {verdict + ',':<29} loss {a['test_loss'][0]:.3g} -> "
                     f"{a['test_loss'][-1]:<6.3g}  {base}, loss -> {b['test_loss'][-1]:.3g}")
        lines.append(f"{'':>5}  rows {a['row_ids']}, {a['seconds']:.1f} s")
    for run in attack.runs if show else ():
        lines += ["", f"{run['n_train']} moved:"]
        if image:
            lines += _draw_pairs(ds, run["attack"], show)
            continue
        a = run["attack"]
        for j in range(min(show, len(a["train_indices"]))):
            moved = largest_changes(ds, np.asarray(a["x_original"][j]),
                                    np.asarray(a["x_perturbed"][j]))
            lines.append(f"    row {a['row_ids'][j]} ({ds.label_name(a['labels'][j])}): "
                         + ", ".join(f"{n} {number(o)} -> {number(v)}" for n, o, v in moved))
    return "\n".join(lines).rstrip()
