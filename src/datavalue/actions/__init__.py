"""Act on data values: clean a training set, and fix its mislabeled examples.

- :func:`clean` drops (or down-weights) the lowest-valued fraction of the training set, retrains
  the model and reports the test score before and after, with the curve over fractions and a
  random choice of the same size as the baseline.
- :func:`fix` is the label-fixing experiment of Koh & Liang (2017, Sec. 5.4): a person reviews
  training examples in some order — by self-influence, by data value, by training loss, at
  random — and restores the true label of every flipped one found. It reports the fraction of
  flipped labels found against the fraction checked, and the test score after fixing them.

References
----------
P. W. Koh and P. Liang. Understanding black-box predictions via influence functions. ICML 2017,
Sec. 5.4 ("Fixing mislabeled examples").
A. Ghorbani and J. Zou. Data Shapley: Equitable valuation of data for machine learning. ICML 2019
(removing low-value data improves performance, Sec. 4).
"""

from __future__ import annotations

from datavalue.actions.clean import CLEAN_MODES, CleanResult, clean, plot_clean
from datavalue.actions.fix import (
    FIX_RANKINGS,
    FixResult,
    fix,
    original_labels,
    plot_fix,
    self_influence,
    training_loss,
)

__all__ = [
    "clean",
    "fix",
    "CleanResult",
    "FixResult",
    "CLEAN_MODES",
    "FIX_RANKINGS",
    "original_labels",
    "training_loss",
    "self_influence",
    "plot_clean",
    "plot_fix",
]
