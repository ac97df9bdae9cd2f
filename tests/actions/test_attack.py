"""Training-set attacks on a data set from Python (what 'datavalue attack' runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import datavalue as dv
from datavalue.actions.attack import attack_box, attack_dataset


@pytest.fixture(scope="module")
def digits():
    return dv.load_dataset("digits", random_state=0)


def test_an_attack_keeps_rows_by_id_and_saves_its_kind(digits, tmp_path):
    # Test row 6 flips with 2 moved digits in the command-line test; here 3 steps each.
    res = attack_dataset(digits, 6, [2], max_steps=3)
    run = res.runs[0]
    a = run["attack"]
    assert run["n_train"] == 2 and len(a["row_ids"]) == 2
    assert a["row_ids"] == [digits.ids_train[i].item() for i in a["train_indices"]]
    assert len(a["test_loss"]) == a["steps"] + 1
    # every move stays within 2 of 16 grey levels and inside the pixel range
    raw0 = digits.raw_features(np.asarray(a["x_original"]))
    raw1 = digits.raw_features(np.asarray(a["x_perturbed"]))
    assert np.abs(raw1 - raw0).max() <= 2.0 + 1e-9 and raw1.min() >= -1e-9 and raw1.max() <= 16 + 1e-9
    summary = res.summary()
    assert summary["runs"][0]["attack_steps"] == a["steps"]
    d = res.save(tmp_path / "atk")
    doc = json.loads((d / "attack.json").read_text())
    assert doc["kind"] == "attack" and doc["format"] == 1 and doc["runs"] == res.runs
    manifest = json.loads((d / "datavalue-run.json").read_text())
    assert manifest["kinds"] == {"attack": 1}


def test_one_hot_columns_never_move(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "c": rng.choice(["x", "y"], 80),
                          "label": rng.integers(0, 2, 80)})
    ds = dv.Dataset.from_arrays(frame[["a", "c"]], frame["label"], random_state=0)
    eps, (low, high) = attack_box(ds, 0.1)
    onehot = np.array(["=" in n for n in ds.feature_names])
    assert onehot.any() and np.all(eps[onehot] == 0) and np.all(eps[~onehot] > 0)
    assert np.all(low <= high)


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilon": 0}, "'epsilon' must be a fraction"),
    ({"epsilon": 1.5}, "'epsilon' must be a fraction"),
    ({"max_steps": 0}, "'max_steps' must be a positive"),
    ({"n_train": [0]}, "'n_train' must be a positive count"),
    ({"n_train": [5000]}, "'n_train' asks for 5000"),
    ({"model": "forest"}, "Unknown model 'forest'"),
    ({"test_index": 9999}, "'test_index' must be a row of the test split"),
], ids=lambda v: str(v)[:20])
def test_bad_settings_are_named(digits, kwargs, message):
    args = {"test_index": 6, "n_train": [1], "max_steps": 1, **kwargs}
    with pytest.raises(dv.DatavalueError, match=message):
        attack_dataset(digits, args.pop("test_index"), args.pop("n_train"), **args)


def test_a_regression_data_set_is_refused():
    with pytest.raises(dv.InvalidParameterError, match="flips a classification"):
        attack_dataset(dv.load_dataset("diabetes", random_state=0), 0, [1])
