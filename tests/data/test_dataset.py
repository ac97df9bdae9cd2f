"""Dataset: splits, loaders, corruption records, immutability, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError, UnknownNameError


def _xy(n=200, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, size=n)


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine", "iris", "diabetes"])
def test_builtin_sets_load_split_and_standardize(name):
    ds = dv.load_dataset(name, random_state=0)
    total = ds.n_train + ds.n_valid + ds.n_test
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    assert total == bunch.data.shape[0]
    assert ds.n_features == bunch.data.shape[1]
    assert ds.task == ("regression" if name == "diabetes" else "classification")
    # Standardized with training statistics only.
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-9)
    # Raw values are recoverable exactly (up to float rounding).
    raw = ds.raw_features(ds.x_train)
    rows = {tuple(np.round(r, 6)) for r in bunch.data}
    assert all(tuple(np.round(r, 6)) in rows for r in raw[:20])
    if name == "digits":
        assert ds.image_shape == (8, 8)


def test_synthetic_sets_are_seeded_and_sized():
    a = dv.load_dataset("classification", n_samples=300, n_features=7, random_state=3)
    b = dv.load_dataset("classification", n_samples=300, n_features=7, random_state=3)
    c = dv.load_dataset("classification", n_samples=300, n_features=7, random_state=4)
    assert a.n_train + a.n_valid + a.n_test == 300 and a.n_features == 7
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    r = dv.load_dataset("regression", n_samples=100, random_state=0)
    assert r.task == "regression" and r.y_train.dtype == np.float64


def test_stratified_split_keeps_proportions_and_partitions_rows():
    X, y = _xy(1000, k=3)
    X[:, 0] = np.arange(1000)  # identify rows
    ds = dv.Dataset.from_arrays(X, y, valid_size=0.2, test_size=0.1, random_state=1)
    ids = np.concatenate([ds.x_train[:, 0], ds.x_valid[:, 0], ds.x_test[:, 0]])
    assert sorted(ids.astype(int).tolist()) == list(range(1000))
    assert (ds.n_valid, ds.n_test, ds.n_train) == (200, 100, 700)
    full = np.bincount(y) / len(y)
    for part in (ds.y_train, ds.y_valid, ds.y_test):
        np.testing.assert_allclose(np.bincount(part, minlength=3) / len(part), full, atol=0.02)


def test_absolute_split_sizes_and_train_size():
    X, y = _xy(1000)
    ds = dv.Dataset.from_arrays(X, y, train_size=300, valid_size=100, test_size=50)
    assert (ds.n_train, ds.n_valid, ds.n_test) == (300, 100, 50)


def test_labels_are_encoded_with_names_kept():
    X, _ = _xy(60)
    y = np.array(["cat", "dog", "eel"] * 20)
    ds = dv.Dataset.from_arrays(X, y, random_state=0)
    assert ds.class_names == ("cat", "dog", "eel")
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) <= {0, 1, 2}
    assert ds.label_name(ds.y_train[0]) in ds.class_names


def test_dataset_is_immutable_and_does_not_alias_input():
    X, y = _xy()
    ds = dv.Dataset.from_arrays(X, y)
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.x_train = X  # frozen dataclass
    X[:] = 0
    assert np.abs(ds.x_train).sum() > 0


def test_corrupt_labels_flips_to_a_different_class_uniformly():
    X, y = _xy(3000, k=4)
    ds = dv.Dataset.from_arrays(X, y, random_state=0)
    noisy = dv.corrupt_labels(ds, rate=0.3, random_state=2)
    idx = noisy.noisy_indices
    assert len(idx) == round(0.3 * ds.n_train)
    changed = np.flatnonzero(noisy.y_train != ds.y_train)
    np.testing.assert_array_equal(changed, idx)  # every recorded row changed, nothing else
    # Uniform over the other 3 classes: each offset 1, 2, 3 about a third of the time.
    offsets = (noisy.y_train[idx] - ds.y_train[idx]) % 4
    freq = np.bincount(offsets, minlength=4)[1:] / len(idx)
    np.testing.assert_allclose(freq, 1 / 3, atol=0.05)
    # valid/test untouched, original unchanged
    np.testing.assert_array_equal(noisy.y_valid, ds.y_valid)
    assert len(ds.noisy_indices) == 0


def test_corrupt_labels_is_seeded_and_accumulates():
    ds = dv.load_dataset("iris")
    a = dv.corrupt_labels(ds, 0.1, random_state=0)
    b = dv.corrupt_labels(ds, 0.1, random_state=0)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    both = dv.corrupt_features(a, 0.1, random_state=5)
    assert set(a.noisy_indices) <= set(both.noisy_indices)


def test_corrupt_features_records_rows():
    ds = dv.load_dataset("wine")
    noisy = dv.corrupt_features(ds, 0.2, scale=2.0, random_state=0)
    diff = np.flatnonzero(np.any(noisy.x_train != ds.x_train, axis=1))
    np.testing.assert_array_equal(diff, noisy.noisy_indices)
    np.testing.assert_array_equal(noisy.y_train, ds.y_train)


def test_regression_label_noise():
    ds = dv.load_dataset("diabetes", noise_rate=0.2)
    assert len(ds.noisy_indices) == round(0.2 * ds.n_train)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.1", True])
def test_bad_noise_rates(rate):
    with pytest.raises(InvalidParameterError, match="noise_rate"):
        dv.load_dataset("iris", noise_rate=rate)
    ds = dv.load_dataset("iris")
    with pytest.raises(InvalidParameterError, match="rate"):
        dv.corrupt_labels(ds, rate)


def test_unknown_name_and_missing_file():
    with pytest.raises(UnknownNameError, match="breast_cancer"):
        dv.load_dataset("no-such-set")
    with pytest.raises(InvalidParameterError, match="does not exist"):
        dv.load_dataset("missing.csv", target="y")


@pytest.mark.parametrize(
    "X,y,match",
    [
        (np.zeros(10), np.zeros(10), "2-D"),
        (np.zeros((10, 2)), np.zeros(9), "same length"),
        (np.array([[np.nan, 1]] * 10), np.arange(10) % 2, "NaN"),
        (np.array([[np.inf, 1]] * 10), np.arange(10) % 2, "NaN or infinite"),
        (np.zeros((10, 2)), np.zeros(10, dtype=int), "only one class"),
        (np.zeros((10, 2)), np.array([0.0, np.nan] * 5), "NaN"),
    ],
)
def test_bad_arrays(X, y, match):
    with pytest.raises(InvalidDataError, match=match):
        dv.Dataset.from_arrays(X, y, task="classification")


def test_csv_loader_encodes_categoricals_and_reports_missing_rows(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 70, n),
            "city": rng.choice(["paris", "rome", "oslo"], n, p=[0.5, 0.3, 0.2]),
            "income": rng.normal(size=n),
            "label": rng.choice(["yes", "no"], n),
        }
    )
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    ds = dv.Dataset.from_csv(path, target="label", random_state=0)
    # most frequent level (paris) dropped, others one-hot
    assert ds.feature_names == ("age", "city=oslo", "city=rome", "income")
    assert ds.class_names == ("no", "yes")
    frame.loc[[4, 17], "income"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidDataError, match=r"ids 6, 19.*line numbers"):
        dv.Dataset.from_csv(path, target="label")
    imputed = dv.Dataset.from_csv(path, target="label", missing="impute")
    assert np.isfinite(imputed.x_train).all()
    with pytest.raises(InvalidParameterError, match="'target' column 'nope'"):
        dv.Dataset.from_csv(path, target="nope")
    with pytest.raises(InvalidParameterError, match="target"):
        dv.load_dataset(path)


def test_npz_loader_reads_shared_format(shared_data):
    ds = dv.load_dataset(shared_data / "adult.npz", n_samples=2000, noise_rate=0.1)
    assert ds.n_train + ds.n_valid + ds.n_test == 2000
    assert ds.class_names == ("<=50K", ">50K")
    assert ds.feature_names[0] == "age"
    assert len(ds.noisy_indices) == round(0.1 * ds.n_train)
    reg = dv.load_dataset(shared_data / "diabetes.npz")
    assert reg.task == "regression"


def test_dataset_save_load_round_trip(tmp_path):
    ds = dv.load_dataset("digits", noise_rate=0.1)
    ds.save(tmp_path / "ds.npz")
    back = dv.Dataset.load(tmp_path / "ds.npz")
    for attr in ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test", "noisy_indices",
                 "feature_mean", "feature_scale"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(ds, attr))
    assert back.class_names == ds.class_names and back.image_shape == (8, 8)
    assert back.fingerprint() == ds.fingerprint()


def test_ids_and_the_table_encoding_survive_save_and_load(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"plan": ["a", "b", "a", "c"] * 10, "x": np.arange(40.0)},
                         index=[f"cust-{i}" for i in range(40)])
    y = np.array(["no", "yes"] * 20)
    ds = dv.Dataset.from_arrays(frame, y, random_state=0)
    assert set(ds.ids_train) | set(ds.ids_valid) | set(ds.ids_test) == set(frame.index)
    ds.save(tmp_path / "d.npz")
    back = dv.Dataset.load(tmp_path / "d.npz")
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(back, f"ids_{split}"), getattr(ds, f"ids_{split}"))
    assert back.source_columns == ("plan", "x") and back.fingerprint() == ds.fingerprint()
    # New rows are encoded like the training rows (an unseen level counts as the dropped one).
    new = pd.DataFrame({"plan": ["b", "zzz"], "x": [1.0, 2.0]})
    out = ds.transform(new)
    assert out.shape == (2, ds.n_features) and np.isfinite(out).all()
    with pytest.raises(InvalidParameterError, match="preprocessor"):
        back.transform(new)


# ---------------------------------------------------------------------- issue 23 sweep
@pytest.mark.parametrize("n_features", [0, 1, -3, 2.5, True])
def test_n_features_out_of_range_is_refused_not_replaced_by_the_default(n_features):
    # 0 used to give 20 features ("n_features or 20").
    with pytest.raises(InvalidParameterError, match="'n_features'.*>= 2"):
        dv.load_dataset("classification", n_features=n_features)
    assert dv.load_dataset("classification", n_features=2, n_samples=60).n_features == 2


@pytest.mark.parametrize("seed", ["x", -1, 1.5, True])
def test_bad_seeds_are_named_everywhere_a_dataset_is_made(seed):
    ds = dv.load_dataset("iris", random_state=0)
    calls = [lambda: dv.load_dataset("iris", random_state=seed),
             lambda: dv.load_dataset("classification", random_state=seed),
             lambda: dv.corrupt_labels(ds, 0.1, random_state=seed),
             lambda: dv.Dataset.from_arrays(ds.x_train, ds.y_train, random_state=seed)]
    for call in calls:
        with pytest.raises(InvalidParameterError, match="'random_state'.*non-negative int"):
            call()


def test_a_header_only_csv_says_it_has_no_rows(tmp_path):
    # It was "'y' contains only one class ([])".
    p = tmp_path / "h.csv"
    p.write_text("a,b,label\n")
    with pytest.raises(InvalidDataError, match="no rows.*header"):
        dv.Dataset.from_csv(p, target="label")
