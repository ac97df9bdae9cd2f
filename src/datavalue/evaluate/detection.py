"""Do low values find the corrupted training rows? (Ghorbani & Zou 2019, Sec. 4.2; Kwon & Zou
2023, Sec. 5; OpenDataVal.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from datavalue.evaluate._checks import _check_int, _check_noisy, _check_values


# ---------------------------------------------------------------------------- detection
def _low_cluster(v: np.ndarray) -> np.ndarray:
    """Exact 1-D 2-means of validated values: mask of the cluster with the lower mean."""
    order = np.argsort(v, kind="stable")
    s = v[order] - v.mean()  # centring keeps the cumulative sums well conditioned
    n = s.size
    mask = np.zeros(n, dtype=bool)
    # Optimal 1-D k-means clusters are contiguous in sorted order, so the best 2-means is the
    # split i (low = s[:i]) minimising the within-cluster sum of squares, i.e. maximising the
    # between-cluster sum c_i^2 / i + (S - c_i)^2 / (n - i). Equal values are never separated.
    i = np.arange(1, n)
    if i.size == 0:
        return mask
    c = np.cumsum(s)[:-1]
    between = c**2 / i + (c[-1] + s[-1] - c) ** 2 / (n - i)
    between[~(s[1:] > s[:-1])] = -np.inf
    if not np.isfinite(between).any():  # all values equal: nothing stands out
        return mask
    mask[order[: i[int(np.argmax(between))]]] = True
    return mask


def kmeans_low_cluster(values: Any) -> np.ndarray:
    """Which points fall in the low-value cluster of a 2-means clustering of the values.

    The rule behind the detection F1 score of Kwon & Zou (2023) and OpenDataVal (Jiang et al.
    2023): cluster the values into two groups with k-means and flag the group with the lower
    centre as corrupted. Kwon & Zou run ``sklearn.cluster.KMeans(n_clusters=2,
    random_state=0)`` on the values and flag ``labels_ == argmin(cluster_centers_)``; OpenDataVal
    (``experiment/util.py: oned_twonn_clustering``) computes the exact optimum by scanning the
    splits of the sorted values. We compute the same exact optimum (no seed, no local minima):
    the split of the sorted values that minimises the within-cluster sum of squares, never
    separating equal values. Lloyd's algorithm returns this partition when it finds the global
    optimum; it can stop at a local one (for scikit-learn's ``KMeans(n_init=10)`` in about one
    of eight random two-component mixtures we tried), so Kwon & Zou's F1 can differ slightly.

    Parameters
    ----------
    values : array-like of shape (n_train,)

    Returns
    -------
    numpy.ndarray of bool, shape (n_train,)
        True for the low cluster. All False if every value is equal (no split exists).
    """
    return _low_cluster(_check_values(values))


def noisy_detection(values: Any, noisy_indices: Any, *, k: int | None = None) -> dict[str, Any]:
    """How well low values single out corrupted training points.

    Parameters
    ----------
    values : array-like of shape (n_train,) or ValuationResult
        Data values, higher = more helpful; low values are read as "suspicious".
    noisy_indices : array-like of int, or bool mask of shape (n_train,)
        The training points that were corrupted (``Dataset.noisy_indices``). At least one point
        must be corrupted and one clean.
    k : int or None
        Number of lowest-valued points flagged for ``precision_at_k``/``recall_at_k``
        (default: the number of corrupted points, so precision = recall).

    Returns
    -------
    dict
        - ``auc``: ROC-AUC of the score ``-values`` with the corrupted points as positives
          (1 = every corrupted point below every clean one, 0.5 = random, ties count half).
        - ``average_precision``: area under the precision-recall curve of the same score.
        - ``f1_kmeans``: F1 score of the low-value cluster of a 2-means clustering of the values
          (:func:`kmeans_low_cluster`) as a detector — the metric of Kwon & Zou (2023) and
          OpenDataVal (Jiang et al. 2023); ``precision_kmeans``, ``recall_kmeans`` and
          ``n_flagged_kmeans`` go with it.
        - ``precision_at_k``, ``recall_at_k``, ``k``: flag the ``k`` lowest values (ties broken by
          index) — the recall of Kwon & Zou (2023) with ``k = n_noisy``.
        - ``n_noisy``, ``n_train``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    v = _check_values(values)
    mask = _check_noisy(noisy_indices, v.size)
    n, n_noisy = v.size, int(mask.sum())
    k = n_noisy if k is None else _check_int(k, "k", 1, n)
    hits = int(mask[np.argsort(v, kind="stable")[:k]].sum())
    low = _low_cluster(v)
    tp, fp, fn = int((low & mask).sum()), int((low & ~mask).sum()), int((~low & mask).sum())
    return {
        "auc": float(roc_auc_score(mask, -v)),
        "average_precision": float(average_precision_score(mask, -v)),
        "f1_kmeans": 2 * tp / (2 * tp + fp + fn),
        "precision_kmeans": tp / (tp + fp) if tp + fp else 0.0,
        "recall_kmeans": tp / n_noisy,
        "n_flagged_kmeans": tp + fp,
        "precision_at_k": hits / k,
        "recall_at_k": hits / n_noisy,
        "k": k,
        "n_noisy": n_noisy,
        "n_train": n,
    }


def inspection_curve(values: Any, noisy_indices: Any) -> pd.DataFrame:
    """Fraction of corrupted points found when inspecting points in order of increasing value.

    The "corrupted data discovery" curve of Ghorbani & Zou (2019, Fig. 3) and OpenDataVal's
    ``discover_corrupted_sample``, at every number of inspected points (ties broken by index).

    Returns
    -------
    pandas.DataFrame with n_train + 1 rows
        ``n_inspected`` (0..n), ``fraction_inspected``, ``n_found``, ``fraction_found``,
        ``optimal`` (every inspected point corrupted until all are found) and ``random``
        (expected fraction found inspecting at random, = ``fraction_inspected``).
    """
    v = _check_values(values)
    mask = _check_noisy(noisy_indices, v.size)
    n, n_noisy = v.size, int(mask.sum())
    inspected = np.arange(n + 1)
    found = np.concatenate([[0], np.cumsum(mask[np.argsort(v, kind="stable")])])
    return pd.DataFrame({
        "n_inspected": inspected,
        "fraction_inspected": inspected / n,
        "n_found": found,
        "fraction_found": found / n_noisy,
        "optimal": np.minimum(inspected / n_noisy, 1.0),
        "random": inspected / n,
    })
