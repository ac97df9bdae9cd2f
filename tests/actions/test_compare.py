"""compare(): every method on the same splits, every evaluation, one tidy table.

The oracle is running each method alone: the values, detection scores and curve summaries that
compare reports must be exactly those of ``dv.<Method>(...).fit(...)`` followed by the
evaluation functions, on the data set loaded with the same seed.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue.actions.compare import COMPARE_BUDGETS, compare, default_methods, method_params
from datavalue.actions.comparison import (
    CURVE_COLUMNS,
    DETECTION_COLUMNS,
    RETRAINING_COLUMNS,
    format_summary,
    load_comparison,
)
from datavalue.evaluate import noisy_detection, point_addition, point_removal, summarize_curve

DATA = "breast_cancer"
LOAD = {"n_samples": 200}  # 120 train / 40 valid / 40 test
NOISE = 0.2
FRACTIONS = [0.0, 0.1, 0.2]
SEEDS = [0, 1]
METHODS = ["data-oob", "knn-shapley", "loo"]
ID_COLUMNS = ["method", "seed", "data", "n_train", "n_noisy", "noise_rate", "model", "metric",
              "status", "error"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    comparison = compare(
        DATA, methods=METHODS, seeds=SEEDS, noise_rate=NOISE, model="logreg",
        params={"data-oob": {"n_estimators": 30}}, fractions=FRACTIONS, load_options=LOAD,
        progress=False, out=out,
    )
    return comparison, out


def _alone(name: str, ds: dv.Dataset, seed: int) -> np.ndarray:
    """The method run on its own, built by hand (not through compare's helpers)."""
    lr = LogisticRegression(max_iter=1000)
    if name == "data-oob":
        est = dv.DataOOB(n_estimators=30, model=lr, random_state=seed)
    elif name == "knn-shapley":
        est = dv.KNNShapley()
    else:
        est = dv.LOO(model=lr)
    return est.fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid).values_


def test_table_has_every_column_and_a_row_per_method_and_seed(run):
    comparison, out = run
    table = comparison.table
    assert list(table.columns) == [*ID_COLUMNS, "wall_time", *DETECTION_COLUMNS, *CURVE_COLUMNS,
                                   *RETRAINING_COLUMNS]
    assert table[list(RETRAINING_COLUMNS)].isna().all().all()  # not asked for
    assert list(zip(table["method"], table["seed"], strict=True)) == [
        (m, s) for s in SEEDS for m in METHODS
    ]
    assert (table["status"] == "completed").all() and (table["error"] == "").all()
    assert (table["n_train"] == 120).all() and (table["n_noisy"] == 24).all()
    assert (table["metric"] == "accuracy").all() and (table["model"] == "logreg").all()
    numeric = table[["wall_time", *DETECTION_COLUMNS, *CURVE_COLUMNS]].to_numpy()
    assert np.isfinite(numeric).all() and (table["wall_time"] > 0).all()
    # The files hold the same table.
    for frame in (pd.read_csv(out / "compare.csv"), pd.read_parquet(out / "compare.parquet")):
        assert list(frame.columns) == list(table.columns)
        pd.testing.assert_frame_equal(frame[["wall_time", *DETECTION_COLUMNS, *CURVE_COLUMNS]],
                                      table[["wall_time", *DETECTION_COLUMNS, *CURVE_COLUMNS]],
                                      rtol=1e-9)
    for name in ("summary.csv", "summary.md", "curves.csv", "run.log", "compare.json"):
        assert (out / name).is_file(), name


def test_numbers_equal_running_each_method_alone(run):
    comparison, _ = run
    table = comparison.table.set_index(["method", "seed"])
    for seed in SEEDS:
        ds = dv.load_dataset(DATA, noise_rate=NOISE, random_state=seed, **LOAD)
        np.testing.assert_array_equal(comparison.datasets[seed].x_train, ds.x_train)
        np.testing.assert_array_equal(comparison.datasets[seed].noisy_indices, ds.noisy_indices)
        model = LogisticRegression(max_iter=1000)
        for name in METHODS:
            values = _alone(name, ds, seed)
            np.testing.assert_array_equal(comparison.results[(name, seed)].values, values)
            row = table.loc[(name, seed)]
            det = noisy_detection(values, ds.noisy_indices)
            for col in DETECTION_COLUMNS:
                assert row[col] == det[col], (name, seed, col)
            removal = point_removal(values, ds, model, fractions=FRACTIONS, random_state=seed)
            addition = point_addition(values, ds, model, fractions=FRACTIONS, random_state=seed)
            for experiment, frame in (("removal", removal), ("addition", addition)):
                for order, mean in summarize_curve(frame).items():
                    assert row[f"{experiment}_{order}"] == mean, (name, seed, experiment, order)
            assert row["wall_time"] == comparison.results[(name, seed)].wall_time


def test_summary_is_mean_and_sd_over_seeds(run):
    comparison, out = run
    summary = comparison.summary.set_index("method")
    for name, g in comparison.table.groupby("method"):
        assert summary.loc[name, "n_seeds"] == len(SEEDS)
        for col in ("f1_kmeans", "auc", "removal_most_valuable_first", "wall_time"):
            assert summary.loc[name, f"{col}_mean"] == pytest.approx(g[col].mean(), abs=1e-15)
            assert summary.loc[name, f"{col}_sd"] == pytest.approx(g[col].std(ddof=1), abs=1e-15)
    text = format_summary(comparison.summary)
    f1 = summary.loc["data-oob"]
    assert text.set_index("method").loc["data-oob", "f1_kmeans"] == (
        f"{f1['f1_kmeans_mean']:.3f} ± {f1['f1_kmeans_sd']:.3f}"
    )
    md = (out / "summary.md").read_text()
    assert md.startswith("| method |") and "±" in md and all(m in md for m in METHODS)


def test_files_round_trip_and_log_the_run(run):
    comparison, out = run
    loaded = load_comparison(out)
    pd.testing.assert_frame_equal(loaded.summary, comparison.summary, rtol=1e-9)
    assert set(loaded.results) == set(comparison.results)
    for key, result in comparison.results.items():
        assert loaded.results[key] == result
    for seed in SEEDS:
        np.testing.assert_array_equal(loaded.datasets[seed].y_train,
                                      comparison.datasets[seed].y_train)
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["order"]) == {"most_valuable_first", "least_valuable_first", "random"}
    assert set(curves["experiment"]) == {"removal", "addition"}
    config = json.loads((out / "compare.json").read_text())
    assert config["methods"] == METHODS and config["seeds"] == SEEDS
    assert config["params"]["data-oob"] == {"n_estimators": 30}
    assert config["parquet"] is True
    log = (out / "run.log").read_text()
    assert "seed 1: loo done" in log and "n_estimators" in log and "done in" in log
    # compare leaves the logger as it found it (no handler on the file any more).
    assert not any(isinstance(h, logging.FileHandler)
                   for h in logging.getLogger("datavalue.actions.compare").handlers)


def test_registry_drives_the_methods(monkeypatch):
    """A newly registered method is compared without any change to compare."""

    class Constant(dv.RandomValuation):
        method_name = "constant-test"

    monkeypatch.setitem(dv.METHODS, "constant-test", Constant)
    assert "constant-test" in default_methods()
    assert not any(m.startswith("exact-") for m in default_methods())
    assert set(default_methods()) | {m for m in dv.METHODS if m.startswith("exact-")} == set(
        dv.METHODS)
    c = compare("iris", methods=["constant-test"], seeds=[3], fractions=[0.0, 0.2],
                progress=False)
    assert c.table["method"].tolist() == ["constant-test"]
    assert c.results[("constant-test", 3)].method == "constant-test"


def test_budgets_and_params():
    p = method_params("tmc-shapley", task="classification", seed=4, model="logreg",
                      params=COMPARE_BUDGETS["tmc-shapley"])
    assert p["max_permutations"] == 50 and p["random_state"] == 4
    assert isinstance(p["model"], LogisticRegression)
    # KNN-Shapley's 'metric' is a distance: a score metric is not passed to it.
    assert "metric" not in method_params("knn-shapley", task="classification", seed=0,
                                         metric="accuracy")
    assert method_params("loo", task="classification", seed=0, metric="f1")["metric"] == "f1"
    with pytest.raises(UnknownNameError, match="max_permutations"):
        compare("iris", methods=["loo"], params={"loo": {"max_permutations": 3}})
    with pytest.raises(UnknownNameError, match="tmc-shapley"):
        compare("iris", methods=["loo"], params={"tmc-shapley": {"max_permutations": 3}})
    with pytest.raises(UnknownNameError, match="no-such"):
        compare("iris", methods=["loo", "no-such"])
    with pytest.raises(InvalidParameterError, match="seeds"):
        compare("iris", methods=["loo"], seeds=[1, 1])
    with pytest.raises(UnknownNameError, match="model"):
        compare("iris", methods=["loo"], model="no-such-model")
    # Invalid values are caught before anything runs, naming the parameter.
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        compare("iris", methods=["random", "knn-shapley"],
                params={"knn-shapley": {"n_neighbors": -3}}, progress=False)


def test_failures_are_recorded_or_raised(tmp_path):
    kw = dict(methods=["knn-shapley", "exact-shapley"], seeds=[0], fractions=[0.0, 0.2],
              progress=False)
    with pytest.raises(InvalidDataError, match="20"):
        compare("iris", **kw)
    c = compare("iris", on_error="record", out=tmp_path / "c", **kw)
    row = c.table.set_index("method").loc["exact-shapley"]
    assert row["status"] == "failed" and "20" in row["error"]
    assert np.isnan(row["auc"]) and np.isnan(row["wall_time"])
    assert c.table.set_index("method").loc["knn-shapley", "status"] == "completed"
    assert "exact-shapley failed" in (tmp_path / "c" / "run.log").read_text()


def test_without_pyarrow_writes_csv_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["datavalue.actions.comparison"], "_have_pyarrow", lambda: False)
    c = compare("iris", methods=["random"], seeds=[0], fractions=[0.0, 0.2], progress=False,
                out=tmp_path / "c")
    assert (tmp_path / "c" / "compare.csv").is_file()
    assert not (tmp_path / "c" / "compare.parquet").exists()
    assert c.config["parquet"] is False
    assert "pyarrow is not installed" in (tmp_path / "c" / "run.log").read_text()


def test_a_dataset_gives_the_same_splits_to_every_seed():
    ds = dv.load_dataset("iris", noise_rate=0.2, random_state=5)
    c = compare(ds, methods=["random"], seeds=[0, 1], fractions=[0.0, 0.2], progress=False)
    assert c.datasets[0] is ds and c.datasets[1] is ds
    # The random method's seed does follow the seed.
    assert not np.array_equal(c.results[("random", 0)].values, c.results[("random", 1)].values)
    assert (c.table["data"] == "iris").all()


def test_progress_bars_per_seed_and_per_method(capsys):
    compare("iris", methods=["random", "knn-shapley"], seeds=[0, 1], fractions=[0.0, 0.2],
            progress=True)
    err = capsys.readouterr().err
    assert "seeds" in err and "methods (seed 0)" in err and "methods (seed 1)" in err
    assert "point removal" in err  # the evaluation's own bars
    compare("iris", methods=["random"], seeds=[0], fractions=[0.0, 0.2], progress=False)
    assert capsys.readouterr().err == ""


def test_the_default_list_goes_on_past_methods_that_do_not_apply(monkeypatch):
    module = sys.modules["datavalue.actions.compare"]
    monkeypatch.setattr(module, "default_methods", lambda: ["knn-shapley", "random"])
    c = compare("diabetes", seeds=[0], noise_rate=0.0, fractions=[0.0, 0.2], progress=False)
    rows = c.table.set_index("method")
    assert rows.loc["knn-shapley", "status"] == "failed"
    assert "regression" in rows.loc["knn-shapley", "error"]
    assert rows.loc["random", "status"] == "completed"
    assert np.isnan(rows.loc["random", "auc"])  # nothing corrupted: no detection scores
    assert format_summary(c.summary).set_index("method").loc["random", "auc"] == "–"
    with pytest.raises(InvalidDataError, match="regression"):  # listed: stop
        compare("diabetes", methods=["knn-shapley"], seeds=[0], progress=False)


def test_lds_and_loo_columns_equal_the_evaluation_functions():
    from datavalue.evaluate import lds, loo_correlation
    from datavalue.evaluate.retrain import Retrain

    cmp = compare(DATA, methods=["tracin", "random"], seeds=[0], noise_rate=NOISE,
                  model="logreg", fractions=FRACTIONS, load_options=LOAD, lds_subsets=8,
                  loo_points=6, progress=False)
    ds = cmp.datasets[0]
    retrain = Retrain(LogisticRegression(max_iter=1000, random_state=0), ds.x_train,
                      ds.y_train, ds.x_test, ds.y_test, output="loss")
    for name in ("tracin", "random"):
        values = cmp.results[(name, 0)].values
        row = cmp.table[cmp.table["method"] == name].iloc[0]
        assert row["lds"] == pytest.approx(
            lds(values, retrain, n_subsets=8, random_state=0)["lds"], abs=1e-12)
        rows = np.sort(np.random.default_rng(0).choice(ds.n_train, 6, replace=False))
        assert row["loo_pearson"] == pytest.approx(
            loo_correlation(values, retrain, train_indices=rows, random_state=0)["pearson"],
            abs=1e-12)
    assert "lds" in cmp.format_summary().columns
    plain = compare(DATA, methods=["random"], seeds=[0], fractions=FRACTIONS, load_options=LOAD,
                    progress=False)
    assert plain.table["lds"].isna().all() and "lds" not in plain.format_summary().columns
    with pytest.raises(InvalidParameterError, match="lds_subsets"):
        compare(DATA, methods=["random"], seeds=[0], lds_subsets=1, progress=False)
    with pytest.raises(InvalidParameterError, match="predict_proba"):
        compare(DATA, methods=["random"], seeds=[0], model="svm", loo_points=5,
                load_options=LOAD, fractions=FRACTIONS, progress=False)
