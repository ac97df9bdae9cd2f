"""Figures of a comparison (one colour per method), built without pyplot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from datavalue.data import Dataset

__all__ = ["plot_compare_detection", "plot_compare_curves", "plot_compare_values"]

_ORDER_TITLES = {
    "most_valuable_first": "most valuable first",
    "least_valuable_first": "least valuable first",
}


def _figure(nrows: int, ncols: int, size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def plot_compare_detection(summary: pd.DataFrame):
    """Mean (± sd over seeds) two-cluster F1 and AUC of flip detection, one bar per method."""
    metrics = [("f1_kmeans", "Detection F1 (two-cluster)"), ("auc", "Detection AUC")]
    methods = list(summary["method"])
    fig, axes = _figure(1, 2, (10.0, 0.45 * len(methods) + 1.6))
    y = np.arange(len(methods))
    for ax, (col, title) in zip(axes[0], metrics, strict=True):
        mean = summary[f"{col}_mean"].to_numpy(dtype=float)
        sd = np.nan_to_num(summary[f"{col}_sd"].to_numpy(dtype=float))
        ax.barh(y, np.nan_to_num(mean), xerr=sd, color=[f"C{i % 10}" for i in y], alpha=0.85,
                capsize=3)
        for yi, m, e in zip(y, mean, sd, strict=True):
            if np.isfinite(m):
                ax.text(m + e + 0.01, yi, f"{m:.3f}", va="center", fontsize=8)
        ax.set_yticks(y, methods)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.15)
        if col == "auc":
            ax.axvline(0.5, color="0.5", ls=":", lw=1)
        ax.set_title(title)
    return fig


def plot_compare_curves(curves: pd.DataFrame, experiment: str, methods: Sequence[str],
                        metric: str = "score"):
    """Mean curve over seeds of each method, one panel per order, the random order dashed."""
    data = curves[curves["experiment"] == experiment]
    fig, axes = _figure(1, 2, (11.0, 4.2))
    random = data[data["order"] == "random"].groupby("fraction")["score"].mean()
    verb = "removed" if experiment == "removal" else "added"
    for ax, (order, title) in zip(axes[0], _ORDER_TITLES.items(), strict=True):
        for i, name in enumerate(methods):
            g = data[(data["method"] == name) & (data["order"] == order)]
            if g.empty:
                continue
            mean = g.groupby("fraction")["score"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker=".", color=f"C{i % 10}", label=name)
        if not random.empty:
            ax.plot(random.index, random.to_numpy(), color="0.4", ls="--", label="random order")
        ax.set_xlabel(f"Fraction of training data {verb}")
        ax.set_ylabel(f"Test {metric}")
        ax.set_title(f"{experiment.capitalize()}: {title}")
    axes[0][1].legend(fontsize=8, loc="best")
    return fig


def plot_compare_values(results: Mapping[str, Any], dataset: Dataset, ncols: int = 3):
    """Histogram of each method's values, corrupted and clean points apart."""
    names = list(results)
    nrows = -(-len(names) // ncols)
    fig, axes = _figure(nrows, ncols, (11.0, 2.6 * nrows + 0.4))
    mask = dataset.noise_mask
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        v = np.asarray(results[names[k]].values, dtype=float)
        edges = np.histogram_bin_edges(v, bins=25)
        if mask.any():
            ax.hist(v[~mask], bins=edges, color="tab:blue", alpha=0.6, label="clean")
            ax.hist(v[mask], bins=edges, color="tab:red", alpha=0.6, label="corrupted")
        else:
            ax.hist(v, bins=edges, color="tab:blue", alpha=0.8)
        ax.set_title(names[k], fontsize=10)
        ax.tick_params(labelsize=8)
        if k == 0 and mask.any():
            ax.legend(fontsize=8)
    return fig
