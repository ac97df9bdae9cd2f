"""Figures of values, detection and curves, built without pyplot (nothing shown, no global
state); save them with ``fig.savefig(path)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue.evaluate._checks import (
    _METHOD_LINESTYLES,
    _ORDER_LABELS,
    _ORDER_STYLES,
    _check_int,
    _check_noisy,
    _check_values,
)
from datavalue.evaluate.detection import inspection_curve, noisy_detection


# ---------------------------------------------------------------------------- figures
def _axes(ax: Any, ncols: int = 1, figsize: tuple[float, float] = (6.0, 4.0)):
    if ax is not None:
        first = ax[0] if ncols > 1 else ax
        return first.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(1, ncols)


def plot_values(values: Any, noisy_indices: Any = None, *, ax: Any = None, bins: int = 30):
    """Histogram of the values; corrupted and clean points apart if ``noisy_indices`` is given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = _check_values(values)
    bins = _check_int(bins, "bins", 1)
    fig, ax = _axes(ax)
    edges = np.histogram_bin_edges(v, bins=bins)
    if noisy_indices is None:
        ax.hist(v, bins=edges, color="tab:blue", alpha=0.8, label=f"all points (n={v.size})")
    else:
        mask = _check_noisy(noisy_indices, v.size, need_both=False)
        ax.hist(v[~mask], bins=edges, color="tab:blue", alpha=0.6,
                label=f"clean (n={int((~mask).sum())})")
        ax.hist(v[mask], bins=edges, color="tab:red", alpha=0.6,
                label=f"corrupted (n={int(mask.sum())})")
    ax.set_xlabel("Data value (higher = more helpful)")
    ax.set_ylabel("Number of training points")
    ax.set_title("Distribution of data values")
    ax.legend()
    return fig


def plot_noisy_detection(values: Any, noisy_indices: Any, *, ax: Any = None):
    """Values of corrupted vs clean points, and the corrupted-data discovery curve.

    Left: histograms (:func:`plot_values`). Right: fraction of corrupted points found when
    inspecting points by increasing value (:func:`inspection_curve`), with the optimal curve and
    the random-inspection diagonal (Ghorbani & Zou 2019, Fig. 3).

    Parameters
    ----------
    ax : pair of matplotlib Axes or None
        Where to draw (a new 1x2 figure if None).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is not None and (isinstance(ax, str) or not hasattr(ax, "__len__") or len(ax) != 2):
        raise InvalidParameterError("'ax' must be a pair of matplotlib Axes or None.")
    curve = inspection_curve(values, noisy_indices)
    scores = noisy_detection(values, noisy_indices)
    fig, (left, right) = _axes(ax, 2, (11.0, 4.2))
    plot_values(values, noisy_indices, ax=left)
    x = curve["fraction_inspected"]
    right.plot(x, curve["fraction_found"], color="tab:red", lw=2,
               label=f"by increasing value (AUC {scores['auc']:.3f})")
    right.plot(x, curve["optimal"], color="k", ls="--", lw=1, label="optimal")
    right.plot(x, curve["random"], color="0.5", ls=":", lw=1.5, label="random inspection")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.02)
    right.set_xlabel("Fraction of training data inspected (lowest values first)")
    right.set_ylabel("Fraction of corrupted points found")
    right.set_title(f"Finding corrupted points (k-means F1 {scores['f1_kmeans']:.3f})")
    right.legend(loc="lower right")
    return fig


def _plot_curve(frame: pd.DataFrame, ax: Any, verb: str, title: str | None):
    if not isinstance(frame, pd.DataFrame) or not {"order", "fraction", "score"} <= set(frame):
        raise InvalidDataError(
            f"'frame' must be the DataFrame returned by "
            f"point_{'removal' if verb == 'removed' else 'addition'} (columns order, fraction, "
            "score)."
        )
    fig, ax = _axes(ax)
    by_method = "method" in frame
    methods = list(dict.fromkeys(frame["method"])) if by_method else []
    for key, g in frame.groupby(["method", "order"] if by_method else ["order"], sort=False):
        method, order = key if by_method else (None, key[0])
        label = f"{'Remove' if verb == 'removed' else 'Add'} {_ORDER_LABELS.get(order, order)}"
        if method is None:
            style = _ORDER_STYLES.get(order, {})
        else:  # colour = method, line style = order
            label = f"{method}: {label}"
            style = dict(color=f"C{methods.index(method) % 10}",
                         linestyle=_METHOD_LINESTYLES.get(order, "-"), marker=".")
        g = g.sort_values("fraction")
        ax.plot(g["fraction"], g["score"], label=label, **style)
    metric = frame.attrs.get("metric", "score")
    split = frame.attrs.get("split", "test")
    ax.set_xlabel(f"Fraction of training data {verb}")
    ax.set_ylabel(f"{split.capitalize()} {metric}")
    ax.set_title(title or ("Point removal" if verb == "removed" else "Point addition"))
    ax.legend()
    return fig


def plot_point_removal(frame: pd.DataFrame, *, ax: Any = None, title: str | None = None):
    """Score vs fraction removed, one line per order (and per method if the frame has a
    ``method`` column). Returns the :class:`matplotlib.figure.Figure`."""
    return _plot_curve(frame, ax, "removed", title)


def plot_point_addition(frame: pd.DataFrame, *, ax: Any = None, title: str | None = None):
    """Score vs fraction added, one line per order (and per method if the frame has a
    ``method`` column). Returns the :class:`matplotlib.figure.Figure`."""
    return _plot_curve(frame, ax, "added", title)
