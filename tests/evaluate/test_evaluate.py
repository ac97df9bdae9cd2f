"""Tests of datavalue.evaluate: every metric against a hand computation or an independent
implementation (scikit-learn, scipy, an explicit model fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, average_precision_score, r2_score, roc_auc_score

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue import evaluate as ev


@pytest.fixture(scope="module")
def noisy_cancer() -> dv.Dataset:
    return dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)


@pytest.fixture(scope="module")
def small_cancer() -> dv.Dataset:
    return dv.load_dataset("breast_cancer", n_samples=150, random_state=1)


def _sse(v: np.ndarray, low: np.ndarray) -> float:
    return float(sum(((v[m] - v[m].mean()) ** 2).sum() for m in (low, ~low) if m.any()))


# ---------------------------------------------------------------------------- detection
def test_perfect_values_detect_everything() -> None:
    mask = np.zeros(50, dtype=bool)
    mask[[3, 7, 20, 41, 49]] = True
    values = np.where(mask, -1.0, 0.0) + np.linspace(0, 0.1, 50)
    out = ev.noisy_detection(values, np.flatnonzero(mask))
    assert out["auc"] == 1.0
    assert out["average_precision"] == 1.0
    assert out["f1_kmeans"] == 1.0
    assert out["precision_at_k"] == out["recall_at_k"] == 1.0
    assert (out["k"], out["n_noisy"], out["n_train"], out["n_flagged_kmeans"]) == (5, 5, 50, 5)
    # a boolean mask means the same as the indices
    assert ev.noisy_detection(values, mask) == out


def test_reversed_values_detect_nothing() -> None:
    noisy = np.array([0, 1, 2])
    values = np.zeros(10)
    values[noisy] = 1.0
    out = ev.noisy_detection(values, noisy)
    assert out["auc"] == 0.0
    assert out["precision_at_k"] == 0.0
    assert out["f1_kmeans"] == 0.0  # the low cluster is exactly the clean points


def test_precision_recall_at_k_by_hand() -> None:
    values = np.array([0.1, 0.5, -0.2, 0.9, 0.3, 0.0])
    noisy = [2, 4]
    # increasing value: 2, 5, 0, 4, 1, 3
    expected = {1: (1.0, 0.5), 2: (0.5, 0.5), 3: (1 / 3, 0.5), 4: (0.5, 1.0), 6: (2 / 6, 1.0)}
    for k, (precision, recall) in expected.items():
        out = ev.noisy_detection(values, noisy, k=k)
        assert out["k"] == k
        assert out["precision_at_k"] == pytest.approx(precision)
        assert out["recall_at_k"] == pytest.approx(recall)
    assert ev.noisy_detection(values, noisy)["k"] == 2  # default k = number of noisy points


def test_kmeans_f1_by_hand() -> None:
    # Two obvious groups; the low one is {0, 1, 2}. Noisy {0, 1, 3}: tp 2, fp 1, fn 1.
    values = np.array([0.0, 0.1, 0.05, 1.0, 1.1, 0.95, 1.05])
    out = ev.noisy_detection(values, [0, 1, 3])
    assert out["f1_kmeans"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert out["precision_kmeans"] == pytest.approx(2 / 3)
    assert out["recall_kmeans"] == pytest.approx(2 / 3)
    assert out["n_flagged_kmeans"] == 3


def test_kmeans_split_is_the_least_squares_one_not_the_largest_gap() -> None:
    # Sorted splits and their within-cluster sums of squares (computed by hand):
    # {0}|{4..10}: 28, {0,4}|{5..10}: 25.5, {0,4,5}|{6..10}: 24, {0,4,5,6}|{7..10}: 25.75.
    values = np.array([0, 4, 5, 6, 7, 8, 9, 10.0])
    low = ev.kmeans_low_cluster(values)
    assert low.tolist() == [True, True, True, False, False, False, False, False]
    assert _sse(values, low) == pytest.approx(24.0)
    # shuffled input: the same points are flagged
    perm = np.random.default_rng(0).permutation(8)
    assert np.array_equal(ev.kmeans_low_cluster(values[perm]), low[perm])


def test_kmeans_matches_sklearn_and_is_never_worse() -> None:
    for seed in range(15):
        rng = np.random.default_rng(seed)
        v = np.concatenate([rng.normal(0, 1, 80), rng.normal(rng.uniform(0, 4), 0.7, 15)])
        if seed % 3 == 0:
            v = np.round(v, 1)  # ties
        ours = ev.kmeans_low_cluster(v)
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(v.reshape(-1, 1))
        theirs = km.labels_ == np.argmin(km.cluster_centers_.ravel())
        # the exact optimum: never worse than Lloyd's algorithm, which can stop at a local one
        assert _sse(v, ours) <= km.inertia_ + 1e-9
        if _sse(v, theirs) < _sse(v, ours) + 1e-9:  # sklearn found the optimum too
            assert np.array_equal(ours, theirs)
        assert ours.any() and not ours.all()
        # equal values always land in the same cluster
        assert all(len(set(ours[v == x])) == 1 for x in np.unique(v))
    # well separated groups: exactly sklearn's partition
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(0, 0.3, 60), rng.normal(5, 0.3, 20)])
    km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(v.reshape(-1, 1))
    assert np.array_equal(ev.kmeans_low_cluster(v), km.labels_ == np.argmin(km.cluster_centers_))


def test_kmeans_constant_values_flag_nothing() -> None:
    assert not ev.kmeans_low_cluster(np.ones(5)).any()
    out = ev.noisy_detection(np.ones(5), [1])
    assert out["f1_kmeans"] == 0.0 and out["auc"] == 0.5


def test_auc_and_average_precision_agree_with_sklearn() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=200), 1)  # many ties
    noisy = rng.choice(200, size=30, replace=False)
    mask = np.zeros(200, dtype=bool)
    mask[noisy] = True
    out = ev.noisy_detection(values, noisy)
    assert out["auc"] == pytest.approx(roc_auc_score(mask, -values), abs=1e-12)
    assert out["average_precision"] == pytest.approx(average_precision_score(mask, -values))
    # and the AUC is the probability that a noisy point is below a clean one (ties half)
    diff = values[mask][:, None] - values[~mask][None, :]
    assert out["auc"] == pytest.approx(np.mean((diff < 0) + 0.5 * (diff == 0)))


def test_detection_accepts_valuation_result(noisy_cancer: dv.Dataset) -> None:
    res = dv.RandomValuation(random_state=0).fit(noisy_cancer.x_train, noisy_cancer.y_train)
    assert ev.noisy_detection(res.result_, noisy_cancer.noisy_indices) == ev.noisy_detection(
        res.values_, noisy_cancer.noisy_indices
    )


def test_inspection_curve_by_hand() -> None:
    values = np.array([0.1, 0.5, -0.2, 0.9, 0.3, 0.0])
    curve = ev.inspection_curve(values, [2, 4])
    # inspection order 2, 5, 0, 4, 1, 3 -> found 1, 1, 1, 2, 2, 2
    assert curve["n_found"].tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert curve["fraction_found"].tolist() == [0, 0.5, 0.5, 0.5, 1, 1, 1]
    assert np.allclose(curve["fraction_inspected"], np.arange(7) / 6)
    assert np.allclose(curve["random"], curve["fraction_inspected"])
    assert np.allclose(curve["optimal"], [0, 0.5, 1, 1, 1, 1, 1])
    assert list(curve.columns) == [
        "n_inspected", "fraction_inspected", "n_found", "fraction_found", "optimal", "random"
    ]


# ---------------------------------------------------------------------------- curves
def _fit_score(ds: dv.Dataset, idx: np.ndarray) -> float:
    model = LogisticRegression(max_iter=1000).fit(ds.x_train[idx], ds.y_train[idx])
    return accuracy_score(ds.y_test, model.predict(ds.x_test))


def test_point_removal_rows_are_explicit_fits(small_cancer: dv.Dataset) -> None:
    ds = small_cancer
    values = np.random.default_rng(0).normal(size=ds.n_train)
    frame = ev.point_removal(values, ds, fractions=[0.0, 0.2, 0.5], random_state=3)
    assert list(frame.columns) == ["order", "fraction", "n_points", "n_remaining", "score"]
    assert frame["order"].unique().tolist() == list(ev.ORDERS)
    assert len(frame) == 9
    assert (frame["n_points"] + frame["n_remaining"] == ds.n_train).all()
    full = _fit_score(ds, np.arange(ds.n_train))
    assert np.allclose(frame.loc[frame["fraction"] == 0, "score"], full)
    n = ds.n_train
    by_value = np.argsort(-values)
    checks = {
        ("most_valuable_first", 0.2): by_value[int(np.floor(0.2 * n + 0.5)):],
        ("least_valuable_first", 0.5): by_value[: n - int(np.floor(0.5 * n + 0.5))],
        ("random", 0.5): np.random.default_rng(3).permutation(n)[int(np.floor(0.5 * n + 0.5)):],
    }
    for (order, f), keep in checks.items():
        row = frame[(frame["order"] == order) & (frame["fraction"] == f)].iloc[0]
        assert row["n_remaining"] == len(keep)
        assert row["score"] == pytest.approx(_fit_score(ds, keep), abs=1e-12)
    assert frame.attrs["metric"] == "accuracy" and frame.attrs["n_train"] == n


def test_point_addition_rows_are_explicit_fits(small_cancer: dv.Dataset) -> None:
    ds = small_cancer
    values = np.random.default_rng(1).normal(size=ds.n_train)
    frame = ev.point_addition(values, ds, fractions=[0.1, 0.4, 1.0], include_random=False)
    assert list(frame.columns) == ["order", "fraction", "n_points", "score", "n_classes"]
    assert frame["order"].unique().tolist() == ["most_valuable_first", "least_valuable_first"]
    full = _fit_score(ds, np.arange(ds.n_train))
    assert np.allclose(frame.loc[frame["fraction"] == 1.0, "score"], full)
    n = ds.n_train
    for order, ranking in [("most_valuable_first", np.argsort(-values)),
                           ("least_valuable_first", np.argsort(values))]:
        row = frame[(frame["order"] == order) & (frame["fraction"] == 0.4)].iloc[0]
        m = int(np.floor(0.4 * n + 0.5))
        assert row["n_points"] == m
        assert row["score"] == pytest.approx(_fit_score(ds, ranking[:m]), abs=1e-12)


def test_point_addition_handles_one_class_and_empty_subsets(small_cancer: dv.Dataset) -> None:
    ds = small_cancer
    # the most valuable points are all of class 1: the first subsets hold one class
    values = ds.y_train.astype(float) + np.linspace(0, 0.01, ds.n_train)
    frame = ev.point_addition(values, ds, fractions=[0.0, 0.05], orders=["most_valuable_first"],
                              include_random=False)
    assert frame["n_points"].tolist() == [0, int(np.floor(0.05 * ds.n_train + 0.5))]
    # empty: the training majority class; one class: that class
    majority = np.bincount(ds.y_train).argmax()
    assert frame["score"].iloc[0] == pytest.approx(np.mean(ds.y_test == majority))
    assert frame["score"].iloc[1] == pytest.approx(np.mean(ds.y_test == 1))


def test_removing_clean_points_hurts_more_than_removing_noisy_ones(
    noisy_cancer: dv.Dataset,
) -> None:
    ds = noisy_cancer
    oracle = -ds.noise_mask.astype(float)  # clean points are the valuable ones
    frame = ev.point_removal(oracle, ds, fractions=np.linspace(0, 0.3, 7))
    summary = ev.summarize_curve(frame)
    assert summary["least_valuable_first"] > summary["most_valuable_first"]
    assert summary["least_valuable_first"] >= summary["random"]
    # removing exactly the noisy points (10%) does not hurt
    at_10 = frame[(frame["order"] == "least_valuable_first") & np.isclose(frame["fraction"], 0.1)]
    assert at_10["score"].iloc[0] >= frame["score"].iloc[0]
    added = ev.summarize_curve(ev.point_addition(oracle, ds, fractions=[0.1, 0.2, 0.3]))
    assert added["most_valuable_first"] > added["least_valuable_first"]


def test_curves_are_identical_for_any_n_jobs(noisy_cancer: dv.Dataset) -> None:
    values = np.random.default_rng(2).normal(size=noisy_cancer.n_train)
    kw = dict(fractions=[0.0, 0.1, 0.3], random_state=5)
    one = ev.point_removal(values, noisy_cancer, n_jobs=1, **kw)
    two = ev.point_removal(values, noisy_cancer, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(one, two)
    three = ev.point_addition(values, noisy_cancer, n_jobs=1, **kw | {"fractions": [0.05, 0.2]})
    four = ev.point_addition(values, noisy_cancer, n_jobs=2, **kw | {"fractions": [0.05, 0.2]})
    pd.testing.assert_frame_equal(three, four)
    # the random order depends on the seed, and only on it
    other = ev.point_addition(values, noisy_cancer, fractions=[0.05, 0.2], random_state=6,
                              orders=["random"])
    assert not np.array_equal(other["score"], three.loc[three["order"] == "random", "score"])


def test_regression_defaults_to_ridge_and_r2() -> None:
    ds = dv.load_dataset("diabetes", n_samples=200, random_state=0)
    values = np.arange(ds.n_train, dtype=float)
    frame = ev.point_removal(values, ds, fractions=[0.0, 0.25], orders=["most_valuable_first"],
                             include_random=False)
    assert frame.attrs["metric"] == "r2"
    keep = np.argsort(-values)[int(np.floor(0.25 * ds.n_train + 0.5)):]
    model = Ridge().fit(ds.x_train[keep], ds.y_train[keep])
    assert frame["score"].iloc[1] == pytest.approx(r2_score(ds.y_test, model.predict(ds.x_test)))


def test_custom_model_and_metric(small_cancer: dv.Dataset) -> None:
    values = np.random.default_rng(0).normal(size=small_cancer.n_train)
    from sklearn.neighbors import KNeighborsClassifier

    frame = ev.point_removal(values, small_cancer, KNeighborsClassifier(3), metric="f1",
                             fractions=[0.0], include_random=False)
    model = KNeighborsClassifier(3).fit(small_cancer.x_train, small_cancer.y_train)
    from sklearn.metrics import f1_score

    expected = f1_score(small_cancer.y_test, model.predict(small_cancer.x_test))
    assert np.allclose(frame["score"], expected)


def test_summarize_curve_is_the_mean_per_order() -> None:
    frame = pd.DataFrame({
        "order": ["most_valuable_first"] * 3 + ["random"] * 3,
        "fraction": [0.0, 0.1, 0.2] * 2,
        "score": [0.9, 0.6, 0.3, 0.9, 0.85, 0.8],
    })
    assert ev.summarize_curve(frame) == pytest.approx({"most_valuable_first": 0.6, "random": 0.85})
    with pytest.raises(InvalidDataError, match="several methods"):
        ev.summarize_curve(frame.assign(method=["a", "b"] * 3))
    with pytest.raises(InvalidDataError, match="'frame'"):
        ev.summarize_curve(frame.drop(columns="score"))


# ---------------------------------------------------------------------------- LOO agreement
def test_loo_agreement() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=40)
    assert ev.loo_agreement(2 * ref + 1, ref) == pytest.approx(
        {"pearson": 1.0, "spearman": 1.0, "kendall": 1.0, "n": 40})
    assert ev.loo_agreement(-np.exp(ref), ref)["spearman"] == pytest.approx(-1.0)
    values = ref + rng.normal(size=40)
    out = ev.loo_agreement(values, ref)
    assert out["pearson"] == pytest.approx(stats.pearsonr(values, ref)[0])
    assert out["spearman"] == pytest.approx(stats.spearmanr(values, ref)[0])
    assert out["kendall"] == pytest.approx(stats.kendalltau(values, ref)[0])
    assert np.isnan(ev.loo_agreement(values, np.zeros(40))["pearson"])
    with pytest.raises(InvalidDataError, match="'reference' has 39 entries"):
        ev.loo_agreement(values, ref[:-1])


# ---------------------------------------------------------------------------- figures
def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_values_and_noisy_detection(tmp_path) -> None:
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    noisy = np.arange(10)
    values = rng.normal(size=100)
    values[noisy] -= 2
    fig = ev.plot_values(values)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert _legend_texts(fig.axes[0]) == ["all points (n=100)"]
    fig = ev.plot_values(values, noisy)
    ax = fig.axes[0]
    assert _legend_texts(ax) == ["clean (n=90)", "corrupted (n=10)"]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    fig.savefig(tmp_path / "values.png")

    fig = ev.plot_noisy_detection(values, noisy)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    assert len(right.get_lines()) == 3
    auc = ev.noisy_detection(values, noisy)["auc"]
    assert _legend_texts(right) == [f"by increasing value (AUC {auc:.3f})", "optimal",
                                    "random inspection"]
    assert "inspected" in right.get_xlabel() and "corrupted" in right.get_ylabel()
    curve = ev.inspection_curve(values, noisy)
    assert np.allclose(right.get_lines()[0].get_ydata(), curve["fraction_found"])
    fig.savefig(tmp_path / "detection.png")
    assert (tmp_path / "detection.png").stat().st_size > 1000


def test_plot_curves(tmp_path, small_cancer: dv.Dataset) -> None:
    from matplotlib.figure import Figure

    values = np.random.default_rng(0).normal(size=small_cancer.n_train)
    removal = ev.point_removal(values, small_cancer, fractions=[0.0, 0.2])
    fig = ev.plot_point_removal(removal)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert _legend_texts(ax) == ["Remove most valuable first", "Remove least valuable first",
                                 "Remove in random order"]
    assert ax.get_xlabel() == "Fraction of training data removed"
    assert ax.get_ylabel() == "Test accuracy"
    fig.savefig(tmp_path / "removal.png")

    addition = ev.point_addition(values, small_cancer, fractions=[0.1, 0.3], include_random=False)
    fig = ev.plot_point_addition(addition, title="KNN-Shapley")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2 and ax.get_title() == "KNN-Shapley"
    assert ax.get_xlabel() == "Fraction of training data added"
    fig.savefig(tmp_path / "addition.png")

    # several methods on one axes the caller owns
    from matplotlib.figure import Figure as F

    own = F()
    target = own.subplots()
    both = pd.concat([removal.assign(method="a"), removal.assign(method="b")])
    assert ev.plot_point_removal(both, ax=target) is own
    assert len(target.get_lines()) == 6
    assert _legend_texts(target)[0] == "a: Remove most valuable first"
    own.savefig(tmp_path / "both.png")


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("values", "noisy", "kwargs", "error", "match"),
    [
        ([0.1, np.nan, 0.3], [0], {}, InvalidDataError, "'values' contains 1 NaN"),
        ([[0.1, 0.2]], [0], {}, InvalidDataError, "'values' must be a 1-D"),
        ([], [], {}, InvalidDataError, "'values' is empty"),
        ([0.1, 0.2, 0.3], [], {}, InvalidDataError, "'noisy_indices' is empty"),
        ([0.1, 0.2, 0.3], [0, 1, 2], {}, InvalidDataError, "all 3 points"),
        ([0.1, 0.2, 0.3], [0, 3], {}, InvalidDataError, "0..2"),
        ([0.1, 0.2, 0.3], [-1], {}, InvalidDataError, "0..2"),
        ([0.1, 0.2, 0.3], [1, 1], {}, InvalidDataError, "duplicate"),
        ([0.1, 0.2, 0.3], [0.5], {}, InvalidDataError, "integer indices"),
        ([0.1, 0.2, 0.3], [True, False], {}, InvalidDataError, "boolean mask"),
        ([0.1, 0.2, 0.3], [0], {"k": 0}, InvalidParameterError, "'k'"),
        ([0.1, 0.2, 0.3], [0], {"k": 4}, InvalidParameterError, "'k'"),
    ],
)
def test_detection_bad_input(values, noisy, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ev.noisy_detection(values, noisy, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"values": np.zeros(5)}, InvalidDataError, "dataset.n_train"),
        ({"fractions": [0.0, 1.0]}, InvalidParameterError, r"\[0, 1\)"),
        ({"fractions": [-0.1]}, InvalidParameterError, "'fractions'"),
        ({"fractions": [0.1, 0.1]}, InvalidParameterError, "duplicates"),
        ({"fractions": []}, InvalidParameterError, "'fractions'"),
        ({"orders": ["best_first"]}, UnknownNameError, "best_first"),
        ({"orders": []}, InvalidParameterError, "'orders'"),
        ({"include_random": "yes"}, InvalidParameterError, "'include_random'"),
        ({"random_state": -1}, InvalidParameterError, "'random_state'"),
        ({"n_jobs": 0}, InvalidParameterError, "'n_jobs'"),
        ({"split": "train"}, InvalidParameterError, "'split'"),
        ({"metric": "r2"}, InvalidParameterError, "r2"),
        ({"metric": "bogus"}, UnknownNameError, "bogus"),
        ({"model": object()}, dv.InvalidModelError, "'model'"),
        ({"dataset": (np.zeros((3, 2)), np.zeros(3))}, InvalidParameterError, "'dataset'"),
    ],
)
def test_curve_bad_input(small_cancer: dv.Dataset, kwargs, error, match) -> None:
    args = {"values": np.zeros(small_cancer.n_train), "dataset": small_cancer, **kwargs}
    with pytest.raises(error, match=match):
        ev.point_removal(**args)


def test_curve_bad_input_nan_and_addition_fractions(small_cancer: dv.Dataset) -> None:
    values = np.zeros(small_cancer.n_train)
    values[4] = np.inf
    with pytest.raises(InvalidDataError, match="at index 4"):
        ev.point_removal(values, small_cancer)
    with pytest.raises(InvalidParameterError, match=r"\[0, 1\]"):
        ev.point_addition(np.zeros(small_cancer.n_train), small_cancer, fractions=[0.5, 1.01])


def test_plot_bad_input() -> None:
    with pytest.raises(InvalidDataError, match="'frame'"):
        ev.plot_point_removal(pd.DataFrame({"a": [1]}))
    with pytest.raises(InvalidParameterError, match="'ax'"):
        ev.plot_noisy_detection([0.0, 1.0], [0], ax="left")
    with pytest.raises(InvalidDataError, match="'noisy_indices'"):
        ev.plot_values([0.0, 1.0], [5])


def test_addition_curve_says_when_the_added_points_hold_one_class():
    """KNN-Shapley's top 5% on breast_cancer are all of one class: the model trained on them
    predicts it everywhere and scores that class's test share (0.62), which the curve records."""
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    v = dv.KNNShapley().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid).values_
    curve = dv.evaluate.point_addition(v, ds, fractions=[0.05, 0.5])
    first = curve[(curve["order"] == "most_valuable_first") & (curve["fraction"] == 0.05)]
    assert int(first["n_classes"].iloc[0]) == 1
    share = max(np.mean(ds.y_test == c) for c in np.unique(ds.y_test))
    assert float(first["score"].iloc[0]) == pytest.approx(share)
    assert (curve[curve["fraction"] == 0.5]["n_classes"] == 2).all()


# ---------------------------------------------------------------------------- LDS and LOO
class _Additive:
    """Outputs exactly additive over training rows: ``out_t(S) = sum_{i in S} w[t, i]``
    (a loss when ``goal="minimize"``: then helpful rows have negative w)."""

    n_train = 40

    def __init__(self, w, goal="maximize"):
        self.w, self.goal = w, goal

    def fingerprint(self):
        return f"additive-{self.goal}-{hash(self.w.tobytes())}"

    def __call__(self, idx, seed):
        return self.w[:, idx].sum(1)


def test_lds_of_an_exact_linear_datamodel_is_one_and_of_random_scores_about_zero():
    from datavalue.evaluate import lds

    rng = np.random.default_rng(0)
    w = rng.normal(size=(30, 40))
    assert lds(w, _Additive(w), n_subsets=50)["lds"] == pytest.approx(1.0, abs=1e-12)
    # a loss: the helpful rows lower it, so the scores are -w
    assert lds(-w, _Additive(w, "minimize"), n_subsets=50)["lds"] == pytest.approx(1.0, abs=1e-12)
    # Random scores: each test example's Spearman rho over 200 subsets has sd ~ 1/sqrt(199)
    # = 0.07, the mean over 30 of them ~ 0.013; 0.08 is 6 of those.
    out = lds(rng.normal(size=(30, 40)), _Additive(w), n_subsets=200)
    assert abs(out["lds"]) < 0.08 and out["per_test"].shape == (30,)
    # monotone in quality: scores with noise rank the subsets worse
    noisy = lds(w + rng.normal(scale=2.0, size=w.shape), _Additive(w), n_subsets=200)["lds"]
    assert 0.2 < noisy < 0.95
    # a value vector is judged against the mean output over the test examples
    assert lds(w.mean(0), _Additive(w), n_subsets=50)["lds"] == pytest.approx(1.0, abs=1e-12)


def test_loo_correlation_of_an_exact_linear_datamodel_is_one():
    from datavalue.evaluate import loo_correlation

    rng = np.random.default_rng(1)
    w = rng.normal(size=(10, 40))
    out = loo_correlation(w, _Additive(w), n_points=15)
    assert out["pearson"] == pytest.approx(1.0, abs=1e-12)
    assert out["overall"] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(out["actual"], w[:, out["train_indices"]], atol=1e-12)
    loss = loo_correlation(-w, _Additive(w, "minimize"), train_indices=[1, 4, 9])
    np.testing.assert_array_equal(loss["train_indices"], [1, 4, 9])
    assert loss["pearson"] == pytest.approx(1.0, abs=1e-12)
    flipped = loo_correlation(w, _Additive(w, "minimize"), n_points=15)
    assert flipped["pearson"] == pytest.approx(-1.0, abs=1e-12)


def test_influence_agrees_with_actual_retraining_of_a_logistic_regression(tmp_path):
    # Koh & Liang's check on a convex model: first-order influence vs leave-one-out
    # retraining (Pearson measured 0.996) and the LDS over 30 half-size subsets (0.89).
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from datavalue import InfluenceFunction, Retrain
    from datavalue.evaluate import lds, loo_correlation

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    xt, yt, xs, ys = x[:200], y[:200], x[300:340], y[300:340]
    est = LogisticRegression(max_iter=2000)
    scores = InfluenceFunction(LogisticRegression(max_iter=2000).fit(xt, yt),
                               solver="exact").fit(xt, yt).influence(xs, ys)
    retrain = Retrain(est, xt, yt, xs, ys, output="loss")
    loo = loo_correlation(scores, retrain, n_points=40, cache=tmp_path / "loo.npz",
                          progress=False)
    assert loo["pearson"] > 0.98 and loo["overall"] > 0.98
    out = lds(scores, retrain, n_subsets=30, cache=tmp_path / "lds.npz", n_jobs=2,
              progress=False)
    assert out["lds"] > 0.8
    # the ground truth is cached: another attribution is judged on the same retrainings
    again = lds(np.zeros_like(scores) + np.arange(200), retrain, n_subsets=30,
                cache=tmp_path / "lds.npz", progress=False)
    assert again["n_subsets"] == 30


def test_attribution_metrics_reject_bad_scores():
    from datavalue.evaluate import lds, loo_correlation

    w = np.random.default_rng(0).normal(size=(5, 40))
    with pytest.raises(InvalidDataError, match="same test examples"):
        lds(w[:3], _Additive(w), n_subsets=5)
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        lds(bad, _Additive(w), n_subsets=5)
    with pytest.raises(InvalidDataError, match="attribution matrix"):
        loo_correlation(np.zeros((2, 3, 4)), _Additive(w))
    with pytest.raises(InvalidParameterError, match="retrain"):
        lds(w, "not a function")
