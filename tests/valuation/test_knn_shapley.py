"""KNN-Shapley equals the Shapley value of the K-NN utility, computed by enumerating subsets.

The oracle below is written from the definitions only (Jia et al. 2019, Eq. 6 and the Shapley
formula), not from Theorem 1: for every subset S of n <= 10 training points,
U(S) = mean over validation points of (1/K) * #{the min(K, |S|) nearest points of S with the
validation label}, U(empty) = 0, and phi_i = sum_S |S|! (n - |S| - 1)! / n! (U(S + i) - U(S)).
Ties in distance go to the lower training index (a stable sort), the rule KNNShapley documents.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError
from datavalue.valuation import METHODS, make_valuator


# ---------------------------------------------------------------------------------- the oracle
def _distances(x_train, x_valid, metric="euclidean"):
    """Distances used to rank neighbours. Squared euclidean is computed as a direct sum of
    squares (same ranking as euclidean, exact for the small-integer data used below)."""
    if metric == "euclidean":
        return ((x_valid[:, None, :] - x_train[None, :, :]) ** 2).sum(axis=-1)
    return cdist(x_valid, x_train, metric={"manhattan": "cityblock"}.get(metric, metric))


def _ranks(dist):
    """rank[r, i] = position of training point i in validation point r's neighbour order."""
    return np.argsort(np.argsort(dist, axis=1, kind="stable"), axis=1, kind="stable")


def _knn_utility(members, ranks, match, k):
    """U(S) for the training indices ``members``, averaged over validation points."""
    if not members:
        return 0.0
    total = 0.0
    for r in range(ranks.shape[0]):
        nearest = sorted(members, key=lambda i: ranks[r, i])[:k]
        total += match[r, nearest].sum() / k
    return total / ranks.shape[0]


def brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, k, metric="euclidean"):
    n = len(x_train)
    assert n <= 10, "enumeration of 2^n subsets"
    ranks = _ranks(_distances(x_train, x_valid, metric))
    match = np.asarray(y_train)[None, :] == np.asarray(y_valid)[:, None]
    utility = np.array(
        [
            _knn_utility([i for i in range(n) if mask >> i & 1], ranks, match, k)
            for mask in range(2**n)
        ]
    )
    phi = np.zeros(n)
    for i in range(n):
        for mask in range(2**n):
            if mask >> i & 1:
                continue
            s = bin(mask).count("1")
            weight = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            phi[i] += weight * (utility[mask | 1 << i] - utility[mask])
    return phi


def full_utility(x_train, y_train, x_valid, y_valid, k):
    """U(N): mean fraction of the K nearest training points (of all of them) with the label."""
    order = np.argsort(_distances(x_train, x_valid), axis=1, kind="stable")[:, :k]
    return float(np.mean((y_train[order] == y_valid[:, None]).sum(axis=1) / k))


def theorem1_reference(x_train, y_train, x_valid, y_valid, k, metric="euclidean"):
    """Jia et al. (2019) Theorem 1 as printed, one validation point and one rank at a time,
    on the oracle's distances and tie rule (checked against enumeration in the tests above it
    is used beside; here it reaches sizes enumeration cannot)."""
    n = len(x_train)
    order = np.argsort(_distances(x_train, x_valid, metric), axis=1, kind="stable")
    total = np.zeros(n)
    for r in range(len(x_valid)):
        m = (y_train[order[r]] == y_valid[r]).astype(float)
        s = np.zeros(n)
        s[n - 1] = m[n - 1] * min(k, n) / (k * n)
        for i in range(n - 1, 0, -1):  # 1-based rank i, 0-based position i - 1
            s[i - 1] = s[i] + (m[i - 1] - m[i]) / k * min(k, i) / i
        total[order[r]] += s
    return total / len(x_valid)


def _problem(seed, n_train=9, n_valid=4, n_classes=2, d=3):
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(n_train, d))
    y_train = rng.integers(0, n_classes, n_train)
    y_train[:n_classes] = np.arange(n_classes)  # every class present
    x_valid = rng.normal(size=(n_valid, d))
    y_valid = rng.integers(0, n_classes, n_valid)
    return x_train, y_train, x_valid, y_valid


# ------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("k", [1, 3, 5, 12])  # 12 > n_train: every point always counts
def test_equals_brute_force_enumeration(seed, n_classes, k):
    x_train, y_train, x_valid, y_valid = _problem(seed, n_classes=n_classes)
    values = dv.KNNShapley(n_neighbors=k).fit(x_train, y_train, x_valid, y_valid).values_
    expected = brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, k)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("metric", ["cosine", "manhattan", "chebyshev"])
def test_other_metrics_equal_brute_force(metric):
    x_train, y_train, x_valid, y_valid = _problem(3, n_train=10, n_classes=3)
    knn = dv.KNNShapley(n_neighbors=3, distance=metric).fit(x_train, y_train, x_valid, y_valid)
    expected = brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, 3, metric)
    np.testing.assert_allclose(knn.values_, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_ties_go_to_the_lower_training_index(k):
    """Small-integer features: many exactly equal distances and duplicate rows, computed
    exactly by both sides, so the tie rule decides the values."""
    rng = np.random.default_rng(5)
    x_train = rng.integers(0, 3, size=(10, 2)).astype(float)
    y_train = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 1])
    x_valid = rng.integers(0, 3, size=(6, 2)).astype(float)
    y_valid = rng.integers(0, 2, 6)
    dist = _distances(x_train, x_valid)
    assert any(len(np.unique(row)) < len(row) for row in dist)  # the data does have ties
    values = dv.KNNShapley(n_neighbors=k).fit(x_train, y_train, x_valid, y_valid).values_
    expected = brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, k)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10)


def test_distances_one_ulp_apart_are_ranked_exactly():
    """The fast sort packs a truncated distance with the index; two distances that differ only
    in the dropped low bits must still come out in distance order, not index order."""
    x_train = np.array([[1.0, 2.0**-26], [1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [-5.0, 0.0],
                        [2.0, 2.0]])
    # Squared distances to the origin: 1 + 2^-52 (index 0, farther) and 1 (index 1, nearer).
    y_train = np.array([0, 1, 0, 0, 1, 1])
    x_valid, y_valid = np.zeros((1, 2)), np.array([1])
    knn = dv.KNNShapley(n_neighbors=1).fit(x_train, y_train, x_valid, y_valid)
    expected = brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, 1)
    np.testing.assert_allclose(knn.values_, expected, rtol=0, atol=1e-12)
    assert knn.values_[1] > knn.values_[0]


def test_efficiency_on_a_larger_problem():
    x_train, y_train, x_valid, y_valid = _problem(7, n_train=400, n_valid=60, n_classes=3, d=5)
    for k in (1, 5, 25, 500):
        values = dv.KNNShapley(n_neighbors=k).fit(x_train, y_train, x_valid, y_valid).values_
        expected = full_utility(x_train, y_train, x_valid, y_valid, k)
        assert values.sum() == pytest.approx(expected, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    n_train=st.integers(2, 40),
    n_valid=st.integers(1, 5),
    k=st.integers(1, 45),
    seed=st.integers(0, 2**31),
)
def test_efficiency_property_with_many_ties(n_train, n_valid, k, seed):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 3, size=(n_train, 2)).astype(float)
    y_train = rng.integers(0, 3, n_train)
    y_train[:2] = [0, 1]
    x_valid = rng.integers(0, 3, size=(n_valid, 2)).astype(float)
    y_valid = rng.integers(0, 3, n_valid)
    values = dv.KNNShapley(n_neighbors=k).fit(x_train, y_train, x_valid, y_valid).values_
    assert values.sum() == pytest.approx(
        full_utility(x_train, y_train, x_valid, y_valid, k), abs=1e-10
    )


# ---------------------------------------------------------------- invariance and the result
@pytest.fixture(scope="module")
def medium():
    """300 x 90, features rounded to one decimal so that equal distances occur."""
    x_train, y_train, x_valid, y_valid = _problem(11, n_train=300, n_valid=90, n_classes=3, d=2)
    return np.round(x_train, 1), y_train, np.round(x_valid, 1), y_valid


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_duplicates_and_rounding_ties_follow_the_tie_rule(medium, offset):
    """Rounded features: duplicate rows and mathematically equal distances, which BLAS
    computes some ulps apart depending on the block; the values must follow the per-pair
    distances and the index rule exactly. The offset makes ||v||^2 + ||t||^2 - 2 v.t cancel
    badly (errors ~1e-9 on distances ~1e-2), so the fast pre-sort is often wrong there."""
    x_train, y_train, x_valid, y_valid = medium
    assert len(np.unique(x_train, axis=0)) < len(x_train)
    problem = (x_train + offset, y_train, x_valid + offset, y_valid)
    for k in (1, 5):
        for batch_size in (None, 1):
            knn = dv.KNNShapley(n_neighbors=k, batch_size=batch_size).fit(*problem)
            expected = theorem1_reference(*problem, k)
            np.testing.assert_allclose(knn.values_, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["manhattan", "chebyshev"])
def test_ties_in_other_metrics_follow_the_tie_rule(medium, metric):
    values = dv.KNNShapley(n_neighbors=3, distance=metric).fit(*medium).values_
    expected = theorem1_reference(*medium, 3, metric)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)


def test_cosine_values_do_not_depend_on_the_block_size(medium):
    a = dv.KNNShapley(n_neighbors=3, distance="cosine").fit(*medium).values_
    b = dv.KNNShapley(n_neighbors=3, distance="cosine", batch_size=1).fit(*medium).values_
    np.testing.assert_array_equal(a, b)


def test_batch_size_and_n_jobs_do_not_change_the_values(medium):
    reference = dv.KNNShapley(n_neighbors=5).fit(*medium).result_
    for params in ({"batch_size": 1}, {"batch_size": 7}, {"batch_size": 10_000}, {"n_jobs": 2}):
        other = dv.KNNShapley(n_neighbors=5, **params).fit(*medium).result_
        np.testing.assert_array_equal(other.values, reference.values)
        np.testing.assert_array_equal(other.stderr, reference.stderr)


def test_stderr_is_the_spread_over_validation_points(medium):
    x_train, y_train, x_valid, y_valid = medium
    knn = dv.KNNShapley(n_neighbors=4).fit(x_train, y_train, x_valid, y_valid)
    per_point = np.array(
        [
            dv.KNNShapley(n_neighbors=4).fit(x_train, y_train, x_valid[[r]], y_valid[[r]]).values_
            for r in range(len(x_valid))
        ]
    )
    np.testing.assert_allclose(knn.values_, per_point.mean(axis=0), rtol=0, atol=1e-14)
    expected = per_point.std(axis=0, ddof=1) / np.sqrt(len(x_valid))
    np.testing.assert_allclose(knn.result_.stderr, expected, rtol=1e-7, atol=1e-15)
    np.testing.assert_array_equal(knn.result_.counts, len(x_valid))
    single = dv.KNNShapley(n_neighbors=4).fit(x_train, y_train, x_valid[:1], y_valid[:1])
    assert np.isnan(single.result_.stderr).all()


def test_contract_labels_and_registry():
    x_train, y_train, x_valid, y_valid = _problem(4, n_train=8, n_valid=3, n_classes=3)
    names = np.array(["cat", "dog", "emu"])
    knn = dv.KNNShapley(n_neighbors=2)
    assert knn.fit(x_train, names[y_train], x_valid, names[y_valid]) is knn
    np.testing.assert_allclose(
        knn.values_, brute_force_knn_shapley(x_train, y_train, x_valid, y_valid, 2), atol=1e-10
    )
    assert knn.values_.dtype == np.float64 and knn.values_.shape == (8,)
    assert knn.result_.method == "knn-shapley" and knn.result_.params["n_neighbors"] == 2
    # A validation label that no training point has: no neighbour ever matches.
    y_other = np.array(["cat", "dog", "fox"])[y_valid]
    np.testing.assert_allclose(
        dv.KNNShapley(n_neighbors=2).fit(x_train, names[y_train], x_valid, y_other).values_,
        brute_force_knn_shapley(x_train, names[y_train], x_valid, y_other, 2),
        atol=1e-10,
    )
    assert METHODS["knn-shapley"] is dv.KNNShapley
    made = make_valuator("knn-shapley", n_neighbors=3)
    assert isinstance(made, dv.KNNShapley) and made.n_neighbors == 3


# ------------------------------------------------------------------------ noisy labels
def test_flags_flipped_labels_breast_cancer():
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    knn = dv.KNNShapley().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    # measured: AUC 0.984 (K=10, 341 training points, 34 flips); 0.976-0.985 for K in 1..50.
    assert roc_auc_score(ds.noise_mask, -knn.values_) >= 0.9


@pytest.mark.shared_data
def test_flags_flipped_labels_adult(shared_data):
    ds = dv.load_dataset(shared_data / "adult.npz", n_samples=2000, noise_rate=0.1,
                         random_state=0)
    knn = dv.KNNShapley().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    # measured: AUC 0.817 (K=10, 1,200 training points, 120 flips); 0.80-0.83 for K in 1..50.
    assert roc_auc_score(ds.noise_mask, -knn.values_) >= 0.75


# ------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 2.5}, "n_neighbors"),
        ({"distance": "minkowski"}, "distance"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"n_jobs": "two"}, "n_jobs"),
    ],
)
def test_bad_parameters_name_the_parameter(params, name):
    x_train, y_train, x_valid, y_valid = _problem(0)
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        dv.KNNShapley(**params).fit(x_train, y_train, x_valid, y_valid)


def test_bad_data_names_the_argument():
    x_train, y_train, x_valid, y_valid = _problem(0)
    knn = dv.KNNShapley(n_neighbors=3)
    with_nan = x_train.copy()
    with_nan[2, 1] = np.nan
    with pytest.raises(InvalidDataError, match="'x_train'.*NaN"):
        knn.fit(with_nan, y_train, x_valid, y_valid)
    with_nan = x_valid.copy()
    with_nan[0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="'x_valid'.*NaN"):
        knn.fit(x_train, y_train, with_nan, y_valid)
    with pytest.raises(InvalidDataError, match="'x_valid' has 2 features"):
        knn.fit(x_train, y_train, x_valid[:, :2], y_valid)
    with pytest.raises(InvalidDataError, match="'y_train'"):
        knn.fit(x_train, y_train[:-1], x_valid, y_valid)
    with pytest.raises(InvalidDataError, match="'y_valid'"):
        knn.fit(x_train, y_train, x_valid, y_valid[:-1])
    with pytest.raises(InvalidDataError, match="validation data"):
        knn.fit(x_train, y_train, None, None)
    regression_target = np.linspace(0.1, 3.3, len(x_train))
    with pytest.raises(InvalidDataError, match="class labels"):
        knn.fit(x_train, regression_target, x_valid, y_valid + 0.5)
