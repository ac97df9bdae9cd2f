"""Real tables in, the user's own rows out: DataFrames with text categories and missing values,
scikit-learn Pipelines, string labels, any scorer, row ids.

Data: ``../shared/data/telco_churn_raw.csv``, the raw customer table (11 missing
``total_charges``, text categories, target "Yes"/"No").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer, get_scorer_names, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError

RAW = Path(__file__).resolve().parents[3] / "shared" / "data" / "telco_churn_raw.csv"

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    if not RAW.is_file():
        pytest.skip(f"{RAW} not found (CI clones ../shared beside the repo)")
    return pd.read_csv(RAW)


def _split(frame: pd.DataFrame, n_train: int, n_valid: int, seed: int = 0):
    rows = frame.sample(n_train + n_valid, random_state=seed)
    y = rows.pop("churn").to_numpy().astype(object)  # string labels "Yes"/"No"
    return rows.iloc[:n_train], y[:n_train], rows.iloc[n_train:], y[n_train:]


def _fixed_encoder(frame: pd.DataFrame) -> ColumnTransformer:
    """One-hot with the categories of the whole table, numbers passed through: encodes any row
    subset identically, so a pipeline refitted on subsets sees exactly the pre-encoded rows."""
    cat = [c for c in frame.columns if frame[c].dtype.kind not in "fiub"]
    cats = [sorted(frame[c].dropna().unique()) for c in cat]
    return ColumnTransformer([("cat", OneHotEncoder(categories=cats, sparse_output=False), cat)],
                             remainder="passthrough", sparse_threshold=0.0)


def _lr() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


# ---------------------------------------------------------------------- DataFrame == arrays
@pytest.fixture(scope="module")
def small(telco):
    """120 training and 80 validation customers without missing values."""
    complete = telco.dropna()
    xt, yt, xv, yv = _split(complete, 120, 80, seed=1)
    enc = _fixed_encoder(complete.drop(columns=["churn"])).fit(complete.drop(columns=["churn"]))
    codes = {"No": 0, "Yes": 1}
    arrays = (enc.transform(xt), np.array([codes[v] for v in yt]), enc.transform(xv),
              np.array([codes[v] for v in yv]))
    pipe = make_pipeline(_fixed_encoder(complete.drop(columns=["churn"])), StandardScaler(), _lr())
    return (xt, yt, xv, yv), arrays, pipe


_DETERMINISTIC = {
    "loo": lambda m: dv.LOO(model=m),
    "tmc-shapley": lambda m: dv.TMCShapley(model=m, max_permutations=2, truncation_tol=None,
                                           progress=False, random_state=0),
    "data-oob": lambda m: dv.DataOOB(model=m, n_estimators=12, progress=False, random_state=0),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(_DETERMINISTIC))
def test_a_pipeline_on_the_dataframe_equals_the_model_on_pre_encoded_arrays(small, method):
    """Deterministic methods: exactly the values of the same model on the encoded arrays; the
    DataFrame's index comes back as the ids."""
    frame_args, array_args, pipe = small
    make = _DETERMINISTIC[method]
    on_frame = make(pipe).fit(*frame_args)
    on_arrays = make(make_pipeline(StandardScaler(), _lr())).fit(*array_args)
    np.testing.assert_array_equal(on_frame.values_, on_arrays.values_)
    assert on_frame.result_.ids.tolist() == frame_args[0].index.tolist()
    assert on_arrays.result_.ids.tolist() == list(range(120))


@pytest.mark.slow
def test_dvrl_values_a_dataframe_through_its_preprocessor(small, telco):
    frame_args, array_args, _ = small
    enc = _fixed_encoder(telco.drop(columns=["churn"]).dropna())
    kw = dict(n_iterations=8, batch_size=64, inner_iterations=5, progress=False, random_state=0)
    on_frame = dv.DVRL(preprocessor=enc, **kw).fit(*frame_args)
    on_arrays = dv.DVRL(preprocessor=None, **kw).fit(*array_args)
    np.testing.assert_array_equal(on_frame.values_, on_arrays.values_)
    # the default preprocessor (impute, scale, one-hot; fitted on training rows) also runs
    default = dv.DVRL(**kw).fit(*frame_args)
    assert np.isfinite(default.values_).all()
    assert default.result_.ids.tolist() == frame_args[0].index.tolist()


def test_knn_shapley_on_a_raw_table_with_missing_values(telco):
    xt, yt, xv, yv = _split(telco, 400, 200, seed=2)
    assert xt.isna().any().any() or xv.isna().any().any() or telco.isna().any().any()
    knn = dv.KNNShapley(n_neighbors=5).fit(xt, yt, xv, yv)
    assert np.isfinite(knn.values_).all() and knn.result_.ids.tolist() == xt.index.tolist()
    with pytest.raises(InvalidDataError, match="needs finite numbers"):
        dv.KNNShapley(preprocessor=None).fit(xt, yt, xv, yv)


@pytest.mark.slow
def test_data_oob_finds_flipped_labels_in_the_raw_table(telco):
    """10% of labels flipped in 2,000 customers; Data-OOB bagging the user's Pipeline
    (impute + scale + one-hot + logistic regression) straight from the DataFrame.

    Measured AUC: 0.853 (seed 0), 0.852 (seed 1), 0.839 (seed 2); the default trees reach 0.833
    at seed 0. Logistic regression itself is only ~0.80 accurate on this table, which bounds
    how well any out-of-bag score can separate flips from hard customers."""
    rows = telco.sample(2000, random_state=0)
    y = rows.pop("churn").to_numpy().astype(object)
    flip = np.random.default_rng(0).choice(len(y), len(y) // 10, replace=False)
    noisy = y.copy()
    noisy[flip] = np.where(y[flip] == "Yes", "No", "Yes")
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         make_column_selector(dtype_include="number")),
        ("cat", OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_exclude="number")),
    ])
    pipe = make_pipeline(pre, LogisticRegression(max_iter=1000))
    oob = dv.DataOOB(model=pipe, n_estimators=200, random_state=0, n_jobs=2,
                     progress=False).fit(rows, noisy)
    clean = ~np.isin(np.arange(len(y)), flip)
    auc = roc_auc_score(clean, oob.values_)
    assert auc >= 0.85, auc
    assert oob.result_.ids.tolist() == rows.index.tolist()


# ---------------------------------------------------------------------- scorers
def _binary(telco):
    complete = telco.dropna()
    xt, yt, xv, yv = _split(complete, 150, 100, seed=3)
    enc = _fixed_encoder(complete.drop(columns=["churn"])).fit(complete.drop(columns=["churn"]))
    return enc.transform(xt), (yt == "Yes").astype(int), enc.transform(xv), (yv == "Yes").astype(int)


def test_built_in_metrics_equal_sklearn_scorers(telco):
    """The fast built-in paths give get_scorer's numbers (binary task: sklearn's 'f1' and
    'roc_auc' scorers are binary only)."""
    xt, yt, xv, yv = _binary(telco)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    subsets = [np.arange(150), np.arange(0, 150, 2), np.arange(40)]
    for builtin, name in [("accuracy", "accuracy"), ("f1", "f1"), ("roc_auc", "roc_auc"),
                          ("neg_log_loss", "neg_log_loss")]:
        fast = dv.Utility(model, xt, yt, xv, yv, metric=builtin)
        slow = dv.Utility(model, xt, yt, xv, yv, metric=get_scorer(name))
        for s in subsets:
            assert fast(s) == pytest.approx(slow(s), abs=1e-12), (builtin, len(s))


def test_regression_built_ins_equal_sklearn_scorers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = x @ [1.0, 2.0, -1.0] + rng.normal(size=80)
    from sklearn.linear_model import Ridge

    for builtin, name in [("r2", "r2"), ("neg_mse", "neg_mean_squared_error")]:
        fast = dv.Utility(Ridge(), x[:50], y[:50], x[50:], y[50:], metric=builtin)
        slow = dv.Utility(Ridge(), x[:50], y[:50], x[50:], y[50:], metric=name)
        for s in (np.arange(50), np.arange(0, 50, 3)):
            assert fast(s) == pytest.approx(slow(s), abs=1e-12)


@pytest.mark.slow
def test_every_sklearn_scorer_name_works_for_its_task(telco):
    xt, yt, xv, yv = _binary(telco)
    rng = np.random.default_rng(0)
    xr = rng.normal(size=(60, 3))
    yr = np.abs(xr @ [1.0, 2.0, -1.0]) + 1.0  # positive: the Poisson/Gamma deviances apply
    from sklearn.linear_model import Ridge

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    worked = 0
    for name in get_scorer_names():
        scorer = get_scorer(name)
        try:  # which task a scorer is for: ask scikit-learn, on a fitted model
            scorer(Ridge().fit(xr[:40], yr[:40]), xr[40:], yr[40:])
            args, m = (xr[:40], yr[:40], xr[40:], yr[40:]), Ridge()
        except Exception:
            try:
                scorer(model.fit(xt, yt), xv, yv)
                args, m = (xt[:30], yt[:30], xv, yv), model  # 31 fits per scorer
            except Exception:
                continue  # clustering or multilabel scorers: not a valuation metric
        v = dv.LOO(model=m, metric=name).fit(*args)
        assert np.isfinite(v.values_).all(), name
        worked += 1
    assert worked >= 30


def test_a_scorer_object_and_balanced_accuracy(telco):
    xt, yt, xv, yv = _binary(telco)
    from sklearn.metrics import make_scorer, recall_score

    model = make_pipeline(StandardScaler(), _lr())
    a = dv.LOO(model=model, metric="balanced_accuracy").fit(xt, yt, xv, yv).values_
    b = dv.LOO(model=model, metric=make_scorer(recall_score)).fit(xt, yt, xv, yv).values_
    assert np.isfinite(a).all() and np.isfinite(b).all() and not np.array_equal(a, b)
    with pytest.raises(Exception, match="Did you mean 'balanced_accuracy'"):
        dv.LOO(metric="balanced_acuracy").fit(xt, yt, xv, yv)


# ---------------------------------------------------------------------- no silent ignores
def test_warm_start_reaches_a_pipelines_final_step(telco):
    xt, yt, xv, yv = _binary(telco)
    pipe = make_pipeline(StandardScaler(), _lr())
    u = dv.Utility(pipe, xt, yt, xv, yv, warm_start=True)
    assert u.warm_start and u._warm_key == "logisticregression__warm_start"
    u(np.arange(100))
    assert u._warm_model.get_params()["logisticregression__warm_start"] is True
    with pytest.raises(InvalidParameterError, match="warm_start"):
        dv.Utility(make_pipeline(StandardScaler(), dv.make_model("knn", "classification", 0)),
                   xt, yt, xv, yv, warm_start=True)


def test_classification_targets_that_are_not_labels_raise():
    x = np.arange(12.0).reshape(6, 2)
    with pytest.raises(InvalidDataError, match="not class labels"):
        dv.DataOOB(task="classification").fit(x, [0.5, 1.5, 0.5, 1.5, 0.5, 1.5])
    with pytest.raises(InvalidDataError, match="never truncated"):
        dv.Dataset(x, np.array([0.5, 1.5] * 3), x, np.zeros(6), x, np.zeros(6),
                   task="classification")
    with pytest.raises(InvalidDataError, match="class code 9.*'class_names'"):
        dv.Dataset(x, np.array([5, 9] * 3), x, np.array([5, 9] * 3), x,
                   np.array([5, 9] * 3), class_names=("a", "b"))
    with pytest.raises(InvalidDataError, match="from_arrays"):
        dv.Dataset(x, np.array(["a", "b"] * 3), x, np.array(["a", "b"] * 3), x,
                   np.array(["a", "b"] * 3))
    ds = dv.Dataset.from_arrays(np.arange(40.0).reshape(20, 2), ["yes", "no"] * 10)
    assert ds.class_names == ("no", "yes")
    bools = dv.Dataset.from_arrays(np.arange(40.0).reshape(20, 2), [True, False] * 10)
    assert bools.n_classes == 2


def test_table_imputation_uses_training_rows_only():
    """Missing values are filled with the median of the training rows: the validation and test
    rows (here with huge values) never leak into the training features."""
    n = 100
    frame = pd.DataFrame({"a": np.arange(n, dtype=float), "c": ["x", "y"] * (n // 2)})
    y = np.array([0, 1] * (n // 2))
    ds0 = dv.Dataset.from_arrays(frame, y, random_state=0)
    held_out = np.concatenate([ds0.ids_valid, ds0.ids_test])
    frame.loc[held_out, "a"] = 1e9
    frame.loc[ds0.ids_train[:3], "a"] = np.nan
    ds = dv.Dataset.from_arrays(frame, y, random_state=0, missing="impute")
    train_values = frame.loc[ds.ids_train, "a"].dropna()
    col = ds.feature_names.index("a")
    filled = ds.x_train[:3, col]
    assert np.all(filled == np.median(train_values)) and np.median(train_values) < 1e3
    with pytest.raises(InvalidDataError, match="missing values.*impute"):
        dv.Dataset.from_arrays(frame, y, random_state=0)


# ---------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def telco_csv(telco, tmp_path_factory) -> Path:
    """The raw table with a customer id column, 600 customers."""
    rows = telco.sample(600, random_state=0).reset_index(drop=True)
    rows.insert(0, "customer_id", [f"C{7000 + 13 * i:05d}" for i in range(len(rows))])
    path = tmp_path_factory.mktemp("telco") / "customers.csv"
    rows.to_csv(path, index=False)
    return path


def _cli(capsys, *argv):
    from datavalue import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.slow
def test_cli_outputs_are_keyed_by_the_files_ids(telco_csv, tmp_path, capsys):
    out = tmp_path / "run"
    printed = _cli(capsys, "value", "--data", telco_csv, "--target", "churn", "--id-column",
                   "customer_id", "--impute", "--noise", "0.1", "--n-estimators", "50",
                   "--quiet", "--out", out)
    source = pd.read_csv(telco_csv)
    values = pd.read_csv(out / "values.csv")
    ds = dv.Dataset.load(out / "dataset.npz")
    # Data-OOB needs no validation split: every row outside the test split is valued.
    assert ds.n_valid == 0 and len(values) == ds.n_train == 600 - ds.n_test
    valued = printed.split("Valued:")[1].splitlines()[0]
    assert f"{ds.n_train} of 600 rows" in valued and "validation" not in valued
    assert f"{ds.n_test} test rows" in valued
    assert values["id"].is_unique and set(values["id"]) <= set(source["customer_id"])
    assert set(values["id"]) | set(ds.ids_test) == set(source["customer_id"])
    # a row's value can be found by its id, and is the value of that customer's row
    result = dv.ValuationResult.load(out)
    some = values.sample(5, random_state=0)
    for cid, v in zip(some["id"], some["value"], strict=True):
        i = list(result.ids).index(cid)
        assert result.values[i] == v
    lowest = values.sort_values("value")["id"].iloc[0]
    assert lowest in printed  # the table of lowest values names customers by id

    _cli(capsys, "fix", out, "--rankings", "loss", "--fractions", "0.1", "--quiet")
    review = pd.read_csv(out / "review.csv")
    for ranking, part in review.groupby("ranking"):
        assert part["id"].is_unique and set(part["id"]) == set(values["id"]), ranking

    _cli(capsys, "clean", out, "--fractions", "0.05", "--quiet")
    cleaned = pd.read_csv(out / "cleaned_train.csv")
    assert list(cleaned.columns) == list(source.columns)  # the user's own columns
    kept = source.set_index("customer_id").loc[cleaned["customer_id"]]
    pd.testing.assert_frame_equal(cleaned.set_index("customer_id"), kept, check_dtype=False)

    _cli(capsys, "report", out, "--quiet")
    html = (out / "report.html").read_text()
    assert lowest in html


@pytest.mark.slow
def test_cli_cross_fit_values_every_non_test_row(telco_csv, tmp_path, capsys):
    out = tmp_path / "knn"
    printed = _cli(capsys, "value", "--data", telco_csv, "--target", "churn", "--id-column",
                   "customer_id", "--impute", "--method", "knn-shapley", "--cross-fit", "3",
                   "--quiet", "--out", out)
    ds = dv.Dataset.load(out / "dataset.npz")
    result = dv.ValuationResult.load(out)
    assert ds.n_valid == 0 and len(result) == ds.n_train == 600 - ds.n_test
    assert result.params["cross_fit"] == 3 and "cross-fitted" in printed
    # Without --cross-fit the method holds out a validation split and says so.
    out2 = tmp_path / "knn2"
    printed = _cli(capsys, "value", "--data", telco_csv, "--target", "churn", "--impute",
                   "--method", "knn-shapley", "--quiet", "--out", out2)
    assert "validation rows (the method scores its models on them)" in printed
    assert "--cross-fit K" in printed


def test_compare_and_evaluate_take_a_raw_table(telco):
    """compare on (DataFrame, labels): split, encoded on each seed's training rows, corrupted,
    valued and evaluated; the saved values carry the table's row ids."""
    rows = telco.sample(300, random_state=4)
    y = rows.pop("churn").to_numpy().astype(object)
    from datavalue.actions.compare import compare

    cmp = compare((rows, y), methods=["data-oob", "knn-shapley"], seeds=[0], noise_rate=0.1,
                  params={"data-oob": {"n_estimators": 30}}, fractions=[0.0, 0.1],
                  load_options={"missing": "impute"}, progress=False)
    assert set(cmp.table["method"]) == {"data-oob", "knn-shapley"}
    assert (cmp.table["auc"] > 0.5).all()
    ds = cmp.datasets[0]
    assert set(ds.ids_train) <= set(rows.index)
    for (_, _seed), result in cmp.results.items():
        assert result.ids.tolist() == ds.ids_train.tolist()
