"""clean() and fix(): acting on data values, checked against retraining by hand."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

import datavalue as dv
from datavalue import InvalidDataError, InvalidModelError, InvalidParameterError
from datavalue.actions import (
    clean,
    fix,
    original_labels,
    self_influence,
    training_loss,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _accuracy(model, ds, x, y, sample_weight=None) -> float:
    kw = {} if sample_weight is None else {"sample_weight": sample_weight}
    fitted = clone(model).fit(x, y, **kw)
    return float(np.mean(fitted.predict(ds.x_test) == ds.y_test))


@pytest.fixture(scope="module")
def bc():
    """breast_cancer, 20% flipped labels: 341 training rows, 68 flipped."""
    ds = dv.load_dataset("breast_cancer", noise_rate=0.2, random_state=1)
    values = dv.KNNShapley(n_neighbors=5).fit(ds.x_train, ds.y_train, ds.x_valid,
                                              ds.y_valid).result_
    return ds, values


# ---------------------------------------------------------------------- the true labels
@pytest.mark.parametrize("name,kw", [
    ("digits", {}), ("breast_cancer", {"n_samples": 200}), ("classification", {}),
    ("iris", {"train_size": 50, "valid_size": 20, "test_size": 20}), ("regression", {}),
])
@pytest.mark.parametrize("seed", [0, 3])
def test_loading_without_noise_gives_the_same_rows_and_the_true_labels(name, kw, seed):
    """What fix relies on: the split and subsample do not depend on noise_rate, so loading
    again with noise_rate=0 gives the same rows, and the targets differ exactly at
    noisy_indices."""
    noisy = dv.load_dataset(name, noise_rate=0.2, random_state=seed, **kw)
    clean_ds = dv.load_dataset(name, noise_rate=0.0, random_state=seed, **kw)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(noisy, f"x_{split}"), getattr(clean_ds, f"x_{split}"))
    np.testing.assert_array_equal(noisy.y_test, clean_ds.y_test)
    np.testing.assert_array_equal(np.flatnonzero(noisy.y_train != clean_ds.y_train),
                                  noisy.noisy_indices)
    np.testing.assert_array_equal(original_labels(noisy, clean_ds), clean_ds.y_train)


@pytest.mark.shared_data
def test_true_labels_of_the_shared_adult_split(shared_data):
    kw = dict(train_size=1000, valid_size=100, test_size=500, random_state=2)
    noisy = dv.load_dataset(shared_data / "adult.npz", noise_rate=0.2, **kw)
    clean_ds = dv.load_dataset(shared_data / "adult.npz", **kw)
    assert len(noisy.noisy_indices) == 200
    np.testing.assert_array_equal(original_labels(noisy, clean_ds), clean_ds.y_train)


def test_original_labels_rejects_other_data():
    noisy = dv.load_dataset("iris", noise_rate=0.2, random_state=0)
    with pytest.raises(InvalidDataError, match="features differ"):
        original_labels(noisy, dv.load_dataset("iris", random_state=1))
    wrong = np.array(noisy.y_train)
    clean_rows = np.setdiff1d(np.arange(noisy.n_train), noisy.noisy_indices)
    wrong[clean_rows[0]] = (wrong[clean_rows[0]] + 1) % 3
    with pytest.raises(InvalidDataError, match="not in dataset.noisy_indices"):
        original_labels(noisy, wrong)
    with pytest.raises(InvalidDataError, match="shape"):
        original_labels(noisy, wrong[:-1])


# ---------------------------------------------------------------------- clean
def test_clean_drops_the_lowest_values_and_scores_like_a_retrain(bc):
    ds, values = bc
    model = LogisticRegression(max_iter=1000)
    res = clean(ds, values, fraction=0.1, model=model, progress=False)
    k = round(0.1 * ds.n_train)  # 34
    flagged = np.argsort(values.values, kind="stable")[:k]
    np.testing.assert_array_equal(res.flagged, flagged)
    kept = np.setdiff1d(np.arange(ds.n_train), flagged)
    np.testing.assert_array_equal(res.kept, kept)
    np.testing.assert_array_equal(res.dataset.x_train, ds.x_train[kept])
    np.testing.assert_array_equal(res.dataset.y_train, ds.y_train[kept])
    np.testing.assert_array_equal(res.dataset.x_test, ds.x_test)
    # noisy_indices follow the kept rows into the new numbering.
    np.testing.assert_array_equal(kept[res.dataset.noisy_indices],
                                  np.intersect1d(ds.noisy_indices, kept))
    assert res.n_noisy_flagged == int(ds.noise_mask[flagged].sum())
    assert res.score_before == _accuracy(model, ds, ds.x_train, ds.y_train)
    assert res.score_after == _accuracy(model, ds, ds.x_train[kept], ds.y_train[kept])
    # The curve: both orders over the grid, 0 and the fraction included.
    assert set(res.curve["order"]) == {"least_valuable_first", "random"}
    assert {0.0, 0.1, 0.3} <= set(res.curve["fraction"])
    by_random = res.curve[res.curve["order"] == "random"].set_index("fraction")["score"]
    perm = np.random.default_rng(0).permutation(ds.n_train)
    assert by_random.loc[0.2] == _accuracy(model, ds, np.delete(ds.x_train, perm[:68], 0),
                                           np.delete(ds.y_train, perm[:68]))


def test_clean_weight_mode_uses_sample_weight(bc):
    ds, values = bc
    model = LogisticRegression(max_iter=1000)
    res = clean(ds, values.values, fraction=0.2, mode="weight", weight=0.25, model=model,
                fractions=[0.1], progress=False)
    w = np.ones(ds.n_train)
    w[np.argsort(values.values, kind="stable")[:68]] = 0.25
    np.testing.assert_array_equal(res.sample_weight, w)
    assert res.dataset is ds
    assert res.score_after == _accuracy(model, ds, ds.x_train, ds.y_train, w)
    assert sorted(set(res.curve["fraction"])) == [0.0, 0.1, 0.2]
    with pytest.raises(InvalidModelError, match="sample_weight"):
        clean(ds, values, mode="weight", model=KNeighborsClassifier())


def test_clean_saves_the_cleaned_data(tmp_path):
    ds = dv.load_dataset("digits", noise_rate=0.1, random_state=0, n_samples=400)
    values = dv.KNNShapley().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid).values_
    res = clean(ds, values, fraction=0.1, fractions=[0.05], progress=False)
    files = res.save(tmp_path)
    loaded = dv.Dataset.load(files["dataset"])
    np.testing.assert_array_equal(loaded.x_train, res.dataset.x_train)
    np.testing.assert_array_equal(loaded.noisy_indices, res.dataset.noisy_indices)
    frame = pd.read_csv(files["train_csv"])
    assert list(frame.columns[:2]) == ["id", "pixel_0_0"]
    # the user's row ids of the kept rows (here positions in the data before splitting)
    assert frame["id"].tolist() == res.dataset.ids_train.tolist()
    pixels = frame[list(ds.feature_names)].to_numpy()
    # Original units: digits' pixels are whole numbers 0..16 again.
    np.testing.assert_array_equal(pixels, np.round(pixels))
    assert pixels.min() == 0 and pixels.max() == 16
    summary = json.loads(files["summary"].read_text())
    assert summary["score_after"] == res.score_after and summary["n_flagged"] == 24
    assert files["figure"].read_bytes()[:8] == PNG_MAGIC


def test_clean_rejects_bad_input(bc):
    ds, values = bc
    with pytest.raises(InvalidParameterError, match="fraction"):
        clean(ds, values, fraction=1.0)
    with pytest.raises(InvalidParameterError, match="mode"):
        clean(ds, values, mode="shrink")
    with pytest.raises(InvalidDataError, match="values"):
        clean(ds, values.values[:-1])


# ---------------------------------------------------------------------- fix
def test_fix_counts_found_flips_and_retrains_on_fixed_labels(bc):
    ds, values = bc
    true = dv.load_dataset("breast_cancer", random_state=1)
    model = LogisticRegression(max_iter=1000)
    res = fix(ds, true, values={"knn": values}, rankings=["loss", "random"], model=model,
              fractions=[0.1, 0.3, 1.0], random_state=7, progress=False)
    assert list(res.orders) == ["knn", "loss", "random"]
    np.testing.assert_array_equal(res.flipped, ds.noisy_indices)
    # Orders: lowest value first; largest training loss first; a seeded permutation.
    np.testing.assert_array_equal(res.orders["knn"], np.argsort(values.values, kind="stable"))
    fitted = clone(model).fit(ds.x_train, ds.y_train)
    p = fitted.predict_proba(ds.x_train)[np.arange(ds.n_train), ds.y_train]
    np.testing.assert_allclose(res.priorities["loss"], -np.log(p), rtol=1e-12)
    np.testing.assert_array_equal(res.orders["random"],
                                  np.random.default_rng(7).permutation(ds.n_train))
    curve = res.curve.set_index(["ranking", "fraction_checked"])
    for name, order in res.orders.items():
        assert curve.loc[(name, 0.0), "n_found"] == 0
        assert curve.loc[(name, 0.0), "score"] == res.score_noisy
        assert curve.loc[(name, 1.0), "fraction_found"] == 1.0
        assert curve.loc[(name, 1.0), "score"] == res.score_clean
        checked = order[:102]  # 30% of 341, rounded half up
        found = np.intersect1d(checked, ds.noisy_indices)
        assert curve.loc[(name, 0.3), "n_found"] == found.size
        y = np.array(ds.y_train)
        y[found] = true.y_train[found]
        assert curve.loc[(name, 0.3), "score"] == _accuracy(model, ds, ds.x_train, y)
    assert res.score_noisy == _accuracy(model, ds, ds.x_train, ds.y_train)
    assert res.score_clean == _accuracy(model, ds, ds.x_train, true.y_train)
    # Ranked review beats random review (measured at 10%: 33 (knn) and 32 (loss) of the 68
    # flips found, 5 at random).
    at10 = res.curve[res.curve["fraction_checked"] == 0.1].set_index("ranking")["n_found"]
    assert at10["knn"] > 2 * at10["random"] and at10["loss"] > 2 * at10["random"]


def test_fix_by_self_influence_matches_influence_functions():
    pytest.importorskip("torch", reason="self-influence needs the torch extra")
    from datavalue.attribution import InfluenceFunction

    ds = dv.load_dataset("digits", noise_rate=0.1, random_state=0)
    true = dv.load_dataset("digits", random_state=0)
    model = LogisticRegression(max_iter=1000)
    res = fix(ds, true, rankings=["self-influence", "random"], model=model,
              fractions=[0.1], progress=False)
    fitted = clone(model).fit(ds.x_train, ds.y_train)
    expected = InfluenceFunction(fitted, solver="exact").fit(ds.x_train, ds.y_train)
    np.testing.assert_allclose(res.priorities["self-influence"], expected.self_influence(),
                               rtol=1e-10)
    # Koh & Liang, Sec. 5.4: checking the 10% most self-influential rows finds most flips
    # (measured: 93 of 108 = 86%), random checking about 10% (13 of 108).
    found = res.curve[res.curve["fraction_checked"] == 0.1].set_index("ranking")
    assert found.loc["self-influence", "fraction_found"] > 0.7
    assert found.loc["random", "fraction_found"] < 0.25
    assert found.loc["self-influence", "score"] > found.loc["random", "score"]


def test_self_influence_errors_are_clear(bc, monkeypatch):
    ds, _ = bc
    true = dv.load_dataset("breast_cancer", random_state=1)
    from sklearn.ensemble import RandomForestClassifier

    pytest.importorskip("torch", reason="self-influence needs the torch extra")
    with pytest.raises(InvalidModelError, match="self-influence"):
        fix(ds, true, rankings=["self-influence"], model=RandomForestClassifier(5),
            progress=False)
    fitted = LogisticRegression().fit(ds.x_train, ds.y_train)

    def no_torch():
        raise ImportError("Influence functions need PyTorch")

    with monkeypatch.context() as m:  # PyTorch missing: fit raises ImportError
        m.setattr(sys.modules["datavalue.attribution.influence"], "_torch", no_torch)
        with pytest.raises(InvalidParameterError, match="self-influence.*torch"):
            self_influence(fitted, ds.x_train, ds.y_train)
    monkeypatch.setitem(sys.modules, "datavalue.attribution", None)  # as if not importable
    with pytest.raises(InvalidParameterError, match="self-influence.*torch"):
        self_influence(fitted, ds.x_train, ds.y_train)


def test_fix_saves_review_lists(bc, tmp_path):
    ds, values = bc
    true = dv.load_dataset("breast_cancer", random_state=1)
    res = fix(ds, true, values=values, rankings=["random"], fractions=[0.1], progress=False)
    files = res.save(tmp_path, ds)
    review = pd.read_csv(files["review"])
    assert len(review) == 2 * ds.n_train
    first = review[review["ranking"] == "knn-shapley"]
    assert first["index"].tolist() == res.orders["knn-shapley"].tolist()
    assert first["flipped"].sum() == 68 and first["position"].iloc[0] == 1
    summary = json.loads(files["summary"].read_text())
    assert summary["n_flipped"] == 68 and set(summary["rankings"]) == {"knn-shapley", "random"}
    assert files["figure"].read_bytes()[:8] == PNG_MAGIC


def test_fix_rejects_bad_input(bc):
    ds, values = bc
    true = dv.load_dataset("breast_cancer", random_state=1)
    with pytest.raises(dv.UnknownNameError, match="influence"):
        fix(ds, true, rankings=["influence"])
    with pytest.raises(InvalidParameterError, match="Nothing to rank"):
        fix(ds, true, rankings=[])
    with pytest.raises(InvalidDataError, match="values"):
        fix(ds, true, values={"v": values.values[:5]}, rankings=[])


def test_training_loss_regression_is_squared_error():
    ds = dv.load_dataset("diabetes", random_state=0)
    from sklearn.linear_model import Ridge

    m = Ridge().fit(ds.x_train, ds.y_train)
    np.testing.assert_allclose(training_loss(m, ds.x_train, ds.y_train, "regression"),
                               (m.predict(ds.x_train) - ds.y_train) ** 2)


# ---------------------------------------------------------------------- choosing the fraction
def test_auto_fraction_is_chosen_on_validation_never_on_test():
    """The chosen fraction maximises the validation score ("clean nothing" wins ties) and does
    not move when the test labels are scrambled: the test split is only the check."""
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    values = dv.KNNShapley().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid).result_
    res = clean(ds, values, progress=False)
    sel = res.selection
    assert set(sel["on"]) == {"validation"} and 0.0 in set(sel["fraction"])
    best = sel["score"].max()
    assert res.fraction == sel.loc[sel["score"] >= best - 1e-12, "fraction"].min()
    scrambled = replace(ds, y_test=1 - ds.y_test)
    assert clean(scrambled, values, progress=False).fraction == res.fraction
    summary = res.summary()
    assert summary["chosen_on"] == "validation" and len(summary["selection"]) == len(sel)


def test_auto_fraction_without_a_validation_split_cross_validates():
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0, valid_size=0)
    oob = dv.DataOOB(n_estimators=100, random_state=0).fit(ds.x_train, ds.y_train).result_
    res = clean(ds, oob, progress=False)
    assert set(res.selection["on"]) == {"cross-validation"}
    assert res.fraction > 0 and res.score_after > res.score_before  # measured 0.9123 -> 0.9474


def test_nothing_is_cleaned_when_no_fraction_helps():
    """Values that carry no information (constant) flag arbitrary rows; on clean data dropping
    them does not raise the validation score, and ties go to cleaning nothing."""
    ds = dv.load_dataset("iris", random_state=0)
    res = clean(ds, np.zeros(ds.n_train), fractions=[0.0, 0.05, 0.1], progress=False)
    sel = res.selection.set_index("fraction")["score"]
    if res.fraction == 0.0:
        assert res.flagged.size == 0 and res.dataset.n_train == ds.n_train
    else:  # chosen only if strictly better than keeping everything
        assert sel.loc[res.fraction] > sel.loc[0.0]
