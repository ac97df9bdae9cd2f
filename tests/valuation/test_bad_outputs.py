"""No silent wrong results: non-finite model outputs, failed fits and extreme scales.

Every case here once returned NaN, zeros or wrong values with status "completed".
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError, ModelOutputError


class NaNRegressor(RegressorMixin, BaseEstimator):
    """Fits, then predicts NaN (a diverged model)."""

    def fit(self, X, y):
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.full(X.shape[0], np.nan)


class InfRegressor(NaNRegressor):
    def predict(self, X):
        return np.full(X.shape[0], np.inf)


class ShortClassifier(ClassifierMixin, BaseEstimator):
    """Predicts one label too few."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.zeros(X.shape[0] - 1, dtype=int)


class AlwaysFails(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise RuntimeError("solver exploded")

    def predict(self, X):  # pragma: no cover - never fitted
        raise RuntimeError


class FailsOnSmallSets(ClassifierMixin, BaseEstimator):
    """A real logistic regression that refuses fewer than 6 rows."""

    def fit(self, X, y):
        if len(X) < 6:
            raise RuntimeError("too few rows")
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)


@pytest.fixture(scope="module")
def reg():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=30)
    return x[:20], y[:20], x[20:], y[20:]


@pytest.fixture(scope="module")
def clf():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] > 0).astype(int)
    return x[:24], y[:24], x[24:], y[24:]


_REG_METHODS = {
    "loo": lambda m, metric: dv.LOO(model=m, metric=metric),
    "tmc": lambda m, metric: dv.TMCShapley(model=m, metric=metric, max_permutations=4,
                                           truncation_tol=None, progress=False),
    "banzhaf": lambda m, metric: dv.DataBanzhaf(model=m, metric=metric, max_subsets=40,
                                                progress=False),
}


@pytest.mark.parametrize("method", sorted(_REG_METHODS))
@pytest.mark.parametrize("metric", ["r2", "neg_mse"])
@pytest.mark.parametrize("model", [NaNRegressor(), InfRegressor()], ids=["nan", "inf"])
def test_non_finite_predictions_raise_instead_of_nan_values(reg, method, metric, model):
    with pytest.raises(ModelOutputError, match="NaN or infinite"):
        _REG_METHODS[method](model, metric).fit(*reg)


def test_data_oob_with_a_nan_model_raises(reg):
    with pytest.raises(ModelOutputError, match="NaN or infinite"):
        dv.DataOOB(model=NaNRegressor(), n_estimators=10, progress=False).fit(*reg[:2])


def test_predictions_of_the_wrong_length_are_named(clf):
    with pytest.raises(ModelOutputError, match="shape.*one value per row"):
        dv.LOO(model=ShortClassifier()).fit(*clf)


@pytest.mark.parametrize("make", [
    lambda: dv.LOO(model=AlwaysFails(), catch_errors=True),
    lambda: dv.TMCShapley(model=AlwaysFails(), catch_errors=True, max_permutations=3,
                          progress=False),
], ids=["loo", "tmc"])
def test_every_fit_failing_is_an_error_not_zeros(clf, make):
    with pytest.raises(ModelOutputError, match="every one of the .* fits failed.*exploded"):
        make().fit(*clf)


def test_some_fits_failing_are_counted_in_the_result(clf):
    v = dv.TMCShapley(model=FailsOnSmallSets(), catch_errors=True, max_permutations=4,
                      truncation_tol=None, n_jobs=2, progress=False, random_state=0).fit(*clf)
    # Every permutation's prefixes of 2..5 rows that hold both classes fail: counted, across
    # worker processes.
    assert v.result_.extra["n_failed_fits"] > 0
    seq = dv.TMCShapley(model=FailsOnSmallSets(), catch_errors=True, max_permutations=4,
                        truncation_tol=None, n_jobs=1, progress=False, random_state=0).fit(*clf)
    assert seq.result_.extra["n_failed_fits"] == v.result_.extra["n_failed_fits"]
    loo = dv.LOO(model=FailsOnSmallSets(), catch_errors=True).fit(*clf)
    assert loo.result_.extra["n_failed_fits"] == 0


# ---------------------------------------------------------------------- input
def test_complex_features_are_refused_and_sparse_ones_valued(clf):
    import scipy.sparse as sp

    x, y, xv, yv = clf
    with pytest.raises(InvalidDataError, match="'x_train' holds complex"):
        dv.LOO().fit(x + 1j, y, xv, yv)
    with pytest.raises(InvalidDataError, match="'x_train' holds complex"):
        dv.LOO().fit(sp.csr_matrix(x + 1j), y, xv, yv)
    # A sparse matrix is densified by KNN-Shapley's preprocessor: the same values as dense.
    dense = dv.KNNShapley(n_neighbors=3).fit(x, y, xv, yv).values_
    sparse = dv.KNNShapley(n_neighbors=3).fit(sp.csr_matrix(x), y, sp.csr_matrix(xv), yv)
    np.testing.assert_array_equal(sparse.values_, dense)
    with pytest.raises(InvalidDataError, match="needs finite numbers"):
        dv.KNNShapley(preprocessor=None).fit(sp.csr_matrix(x), y, xv, yv)


def test_corrupt_features_names_a_tuple(clf):
    with pytest.raises(InvalidParameterError, match="Dataset.from_arrays"):
        dv.corrupt_features((clf[0], clf[1]))


# ---------------------------------------------------------------------- extreme scales
@pytest.mark.parametrize("factor", [1e-200, 1e200])
def test_knn_shapley_values_do_not_depend_on_the_scale_of_the_features(clf, factor):
    """Scaling every feature by one constant leaves every distance order, hence every value,
    unchanged. Before, 1e-200 gave all-equal values (squares underflow) and 1e200 wrong ones
    (squares overflow)."""
    x, y, xv, yv = clf
    base = dv.KNNShapley(n_neighbors=3, progress=False).fit(x, y, xv, yv).values_
    scaled = dv.KNNShapley(n_neighbors=3, progress=False).fit(x * factor, y, xv * factor,
                                                              yv).values_
    np.testing.assert_allclose(scaled, base, rtol=0, atol=1e-12)
    assert np.ptp(scaled) > 0


@pytest.mark.parametrize("factor", [1e-200, 1e300])
def test_data_oob_trees_do_not_depend_on_the_scale_of_a_column(clf, factor):
    """Trees split on order; a column scaled far outside float32 (where trees work) must give
    the same values. Before, 1e300 became inf in float32 and 1e-200 became 0."""
    x, y = clf[0], clf[1]
    base = dv.DataOOB(n_estimators=50, random_state=0, progress=False).fit(x, y).values_
    xs = x.copy()
    xs[:, 0] *= factor
    scaled = dv.DataOOB(n_estimators=50, random_state=0, progress=False).fit(xs, y).values_
    np.testing.assert_array_equal(scaled, base)


@pytest.mark.parametrize("factor", [1e-200, 1e300])
def test_standardizing_extreme_columns_keeps_them(factor):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(int)
    ds = dv.Dataset.from_arrays(x * factor, y, valid_size=0.2, test_size=0.2, random_state=0,
                                standardize=True)
    ref = dv.Dataset.from_arrays(x, y, valid_size=0.2, test_size=0.2, random_state=0,
                                 standardize=True)
    np.testing.assert_allclose(ds.x_train, ref.x_train, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(ds.x_train)) and ds.x_train.std(axis=0).min() > 0.5


def test_ridge_model_still_works_at_normal_scale(reg):
    """The guards above cost nothing on ordinary data: LOO of a ridge model matches a
    hand-written leave-one-out loop exactly."""
    x, y, xv, yv = reg
    v = dv.LOO(model=Ridge(), metric="neg_mse").fit(x, y, xv, yv).values_

    def score(idx):
        pred = Ridge().fit(x[idx], y[idx]).predict(xv)
        return -float(np.mean((yv - pred) ** 2))

    full = score(np.arange(20))
    by_hand = np.array([full - score(np.delete(np.arange(20), i)) for i in range(20)])
    np.testing.assert_allclose(v, by_hand, rtol=0, atol=1e-12)


def test_data_oob_names_predictions_of_the_wrong_length(clf):
    with pytest.raises(ModelOutputError, match="one value per row"):
        dv.DataOOB(model=ShortClassifier(), n_estimators=5, progress=False).fit(*clf[:2])


# ---------------------------------------------------------------------- issue 23 sweep
@pytest.fixture(scope="module")
def huge():
    """Breast cancer features times 1e300: products overflow, LogisticRegression stops at its
    first iteration and learns nothing (every value came out 0 with status "completed")."""
    ds = dv.load_dataset("breast_cancer", random_state=0)
    return ds.x_train[:30] * 1e300, ds.y_train[:30], ds.x_valid * 1e300, ds.y_valid


@pytest.mark.parametrize("make", [
    lambda: dv.LOO(),
    lambda: dv.TMCShapley(max_permutations=3, progress=False),
    lambda: dv.BetaShapley(max_permutations=3, progress=False),
    lambda: dv.DataBanzhaf(max_subsets=20, progress=False),
], ids=["loo", "tmc", "beta", "banzhaf"])
def test_a_model_that_learns_nothing_is_an_error_before_the_run(huge, make):
    with pytest.raises(ModelOutputError, match="same output for every one of the 114 "
                                               "validation rows.*largest magnitude is 6.*e\\+300"):
        make().fit(*huge)


def test_the_exact_methods_refuse_a_model_that_learns_nothing(huge):
    x, y, xv, yv = huge
    with pytest.raises(ModelOutputError, match="learns nothing"):
        rows = np.r_[np.flatnonzero(y == 0)[:4], np.flatnonzero(y == 1)[:4]]
        dv.ExactShapley().fit(x[rows], y[rows], xv, yv)


def test_methods_that_multiply_features_refuse_overflowing_magnitudes(huge):
    x, y, xv, yv = huge
    with pytest.raises(InvalidDataError, match="'x_train' holds values up to 6.*e\\+300.*"
                                               "G-Shapley.*Rescale"):
        dv.GShapley(max_permutations=2, progress=False).fit(x, y, xv, yv)
    torch = pytest.importorskip("torch")  # noqa: F841 - influence and DVRL need it
    with pytest.raises(InvalidDataError, match="'x_train' holds values up to .*DVRL"):
        dv.DVRL(n_iterations=2, progress=False).fit(x, y, xv, yv)
    model = LogisticRegression().fit(x, y)
    with pytest.raises(InvalidDataError, match="'x_train' holds values up to .*influence"):
        dv.InfluenceFunction(model).fit(x, y)


def test_a_model_that_learns_is_not_mistaken_for_one_that_does_not(clf):
    # LOO values of a model that learns may all be 0 (no single row changes a prediction):
    # that is an answer, not an error.
    v = dv.LOO().fit(*clf)
    assert v.result_.status == "completed"


def test_the_default_model_encodes_text_categories_of_a_dataframe():
    # The sweep: "could not convert string to float" from deep inside scikit-learn.
    import pandas as pd

    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    df = pd.DataFrame({"a": a, "c": np.where(a > 0, "hi", "lo")})
    y = (a + 0.3 * rng.normal(size=40) > 0).astype(int)
    v = dv.LOO().fit(df, y, df, y)
    assert v.values_.shape == (40,) and np.isfinite(v.values_).all()
    with pytest.raises(InvalidDataError, match="LogisticRegression needs numeric features.*"
                                               "text.*OneHotEncoder"):
        dv.LOO(model=LogisticRegression()).fit(df, y, df, y)


def test_a_category_missing_from_a_subset_names_the_subset_and_the_fix():
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=60), "c": list("uvw" * 19) + ["z", "z", "q"]})
    y = rng.integers(0, 2, 60)
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="error"), ["c"]),
                                                 remainder="passthrough"), LogisticRegression())
    with pytest.raises(ModelOutputError, match="subset of .* of the 60 training rows failed.*"
                                               "unknown categories.*handle_unknown='ignore'"):
        dv.TMCShapley(model=pipe, max_permutations=2, progress=False).fit(df, y, df, y)


def test_a_dataframe_column_of_lists_is_named():
    import pandas as pd

    df = pd.DataFrame({"a": np.arange(20.0), "tags": [[1, 2]] * 20})
    with pytest.raises(InvalidDataError, match="Column 'tags' of 'x_train' holds lists"):
        dv.DataOOB(n_estimators=5).fit(df, np.arange(20) % 2)


def test_an_infinite_cell_is_reported_as_one_cell_of_its_column():
    # The sweep: one inf cell became "'x_train' contains 64 NaN or infinite value(s), in
    # row(s) 0, 1, 2, ..." once standardization had spread it over the column.
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=80), "b": ["x", "y"] * 40,
                       "label": rng.integers(0, 2, 80)}, index=np.arange(100, 180))
    df.loc[105, "a"] = np.inf
    with pytest.raises(InvalidDataError, match=r"Column 'a' of 'X' holds 1 infinite value\(s\), "
                                               r"in row\(s\) 105\."):
        dv.Dataset.from_arrays(df[["a", "b"]], df["label"])
    with pytest.raises(InvalidDataError, match="Column 'a' of 'x_train' holds 1 infinite"):
        dv.DataOOB(n_estimators=5).fit(df[["a", "b"]], df["label"])
