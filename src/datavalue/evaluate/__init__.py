"""Evaluation: do the values mean anything?

The experiments of the data valuation literature, as plain functions of the values (higher =
more helpful), each returning plain numbers or a tidy :class:`pandas.DataFrame`:

- :func:`noisy_detection` and :func:`inspection_curve`: corrupted training points should get
  the lowest values (Ghorbani & Zou 2019, Sec. 4.2; Kwon & Zou 2023, Sec. 5; OpenDataVal,
  Jiang et al. 2023).
- :func:`point_removal` and :func:`point_addition`: retraining without the most valuable points
  should hurt the model most, training on them first should help most (Ghorbani & Zou 2019,
  Figs. 2-3; OpenDataVal's ``remove_high_low``); :func:`summarize_curve` turns a curve into one
  number per order.
- :func:`loo_agreement`: correlation with leave-one-out values by actual retraining.
- :func:`lds` and :func:`loo_correlation`: how well an attribution matrix (influence, TRAK,
  TracIn, or a value vector) predicts models actually retrained on random subsets (the linear
  datamodeling score, Park et al. 2023) or without single examples (ground truth from
  :mod:`datavalue.evaluate.retrain`, cached on disk and resumable).

Figures (:func:`plot_values`, :func:`plot_noisy_detection`, :func:`plot_point_removal`,
:func:`plot_point_addition`) return :class:`matplotlib.figure.Figure` objects built without
pyplot: nothing is shown and no global state is touched; save them with ``fig.savefig(path)``.

References
----------
A. Ghorbani and J. Zou. Data Shapley: Equitable valuation of data for machine learning. ICML 2019.
Y. Kwon and J. Zou. Data-OOB: Out-of-bag estimate as a simple and efficient data value. ICML 2023.
K. F. Jiang, W. Liang, J. Zou and Y. Kwon. OpenDataVal: a unified benchmark for data valuation.
NeurIPS 2023 Datasets and Benchmarks.
S. M. Park, K. Georgiev, A. Ilyas, G. Leclerc and A. Madry. TRAK: Attributing model behavior at
scale. ICML 2023 (Sec. 2.2, the linear datamodeling score).
"""


from __future__ import annotations

from datavalue.evaluate._checks import ORDERS
from datavalue.evaluate.agreement import lds, loo_agreement, loo_correlation
from datavalue.evaluate.curves import point_addition, point_removal, summarize_curve
from datavalue.evaluate.detection import inspection_curve, kmeans_low_cluster, noisy_detection
from datavalue.evaluate.plots import (
    plot_noisy_detection,
    plot_point_addition,
    plot_point_removal,
    plot_values,
)

__all__ = [
    "ORDERS",
    "noisy_detection",
    "kmeans_low_cluster",
    "inspection_curve",
    "point_removal",
    "point_addition",
    "summarize_curve",
    "loo_agreement",
    "lds",
    "loo_correlation",
    "plot_values",
    "plot_noisy_detection",
    "plot_point_removal",
    "plot_point_addition",
]
