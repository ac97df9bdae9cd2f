"""The public API: names, the method registry, and the estimator contract of every method."""

from __future__ import annotations

import importlib.metadata
import inspect

import numpy as np
import pytest
from sklearn.base import clone

import datavalue as dv
from datavalue import InvalidParameterError, UnknownNameError


def test_all_is_the_public_api():
    assert sorted(dv.__all__) == sorted(set(dv.__all__))
    for name in dv.__all__:
        assert hasattr(dv, name), name
    assert dv.__version__ == importlib.metadata.version("datavalue")


def test_registry_names_match_classes():
    for name, cls in dv.METHODS.items():
        assert cls.method_name == name
        assert issubclass(cls, dv.Valuator)


def test_make_valuator_rejects_unknown_and_misspelled_names():
    v = dv.make_valuator("random", random_state=5)
    assert isinstance(v, dv.RandomValuation) and v.random_state == 5
    with pytest.raises(UnknownNameError, match="data-oob"):
        dv.make_valuator("shapley?")
    with pytest.raises(UnknownNameError, match="Did you mean 'tmc-shapley'"):
        dv.make_valuator("tmc-shapely")
    # A typo is never a silently ignored option ...
    with pytest.raises(UnknownNameError, match="max_permutaions.*Did you mean 'max_permutations'"):
        dv.make_valuator("tmc-shapley", max_permutaions=5)
    # ... nor is a parameter the method does not have.
    with pytest.raises(UnknownNameError, match="'model'"):
        dv.make_valuator("random", model="ignored")


def test_make_valuator_passes_explicit_none_and_models():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert dv.make_valuator("tmc-shapley", truncation_tol=None).truncation_tol is None
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    assert dv.make_valuator("data-oob", model=pipe).model is pipe
    assert dv.make_valuator("knn-shapley", distance="cosine").distance == "cosine"


@pytest.fixture(scope="module")
def tiny():
    return dv.load_dataset("iris", random_state=0)


@pytest.fixture(scope="module")
def twelve():
    """8 training points: small enough for the exact (enumeration) methods (2^8 fits)."""
    return dv.load_dataset("iris", n_samples=40, train_size=8, valid_size=20, test_size=8,
                           random_state=0)


#: Small budgets so the contract checks stay fast; the methods' own tests check quality.
FAST_PARAMS = {
    "data-oob": {"n_estimators": 20},
    "tmc-shapley": {"max_permutations": 8},
    "beta-shapley": {"max_permutations": 8},
    "data-banzhaf": {"max_subsets": 64},
    "g-shapley": {"max_permutations": 8},
    "dvrl": {"n_iterations": 20},
}


def _data_for(name, tiny, twelve):
    return twelve if name.startswith("exact-") else tiny


@pytest.mark.parametrize("name", list(dv.METHODS))
def test_estimator_contract(name, tiny, twelve):
    tiny = _data_for(name, tiny, twelve)
    cls = dv.METHODS[name]
    sig = inspect.signature(cls.__init__)
    est = dv.make_valuator(name, **FAST_PARAMS.get(name, {}))
    # __init__ stores its parameters unchanged; clone works (sklearn contract).
    params = est.get_params(deep=False)
    assert set(params) == set(sig.parameters) - {"self"}
    clone(est)
    assert not any(k.endswith("_") for k in vars(est))
    out = est.fit(tiny.x_train, tiny.y_train, tiny.x_valid, tiny.y_valid)
    assert out is est
    assert est.values_.shape == (tiny.n_train,) and est.values_.dtype == np.float64
    assert isinstance(est.result_, dv.ValuationResult)
    assert est.result_.method == name
    assert est.result_.data_fingerprint
    # fit is idempotent for a fixed seed
    again = clone(est).fit(tiny.x_train, tiny.y_train, tiny.x_valid, tiny.y_valid)
    np.testing.assert_array_equal(again.values_, est.values_)


@pytest.mark.parametrize("name", list(dv.METHODS))
def test_invalid_params_raise_naming_the_parameter(name, tiny, twelve):
    tiny = _data_for(name, tiny, twelve)
    est = dv.make_valuator(name, **FAST_PARAMS.get(name, {}))
    for key in est.get_params(deep=False):
        if key in ("n_jobs", "n_estimators", "n_neighbors", "random_state"):
            bad = est.set_params(**{key: 0 if key == "n_jobs" else -7})
            with pytest.raises(InvalidParameterError, match=f"'{key}'"):
                bad.fit(tiny.x_train, tiny.y_train, tiny.x_valid, tiny.y_valid)
            est = dv.make_valuator(name, **FAST_PARAMS.get(name, {}))


def _bad_data_cases(ds):
    xt, yt, xv, yv = ds.x_train, ds.y_train, ds.x_valid, ds.y_valid
    nan_x = xt.copy()
    nan_x[3, 1] = np.nan
    inf_x = xt.copy()
    inf_x[0, 0] = np.inf
    return [
        ((nan_x, yt, xv, yv), "x_train.*NaN"),
        ((inf_x, yt, xv, yv), "x_train.*infinite"),
        ((xt[:, 0], yt, xv, yv), "x_train.*2-D"),
        ((xt, yt[:-1], xv, yv), "y_train.*same length"),
        ((xt, np.zeros_like(yt), xv, yv), "y_train.*one class"),
        ((xt, yt, xv[:, :2], yv), "x_valid.*features"),
        ((xt, yt, xv, yv[:-2]), "y_valid.*same length"),
    ]


@pytest.mark.parametrize("name", list(dv.METHODS))
def test_bad_data_raises_naming_the_argument(name, tiny):
    from datavalue import InvalidDataError

    for args, match in _bad_data_cases(tiny):
        with pytest.raises(InvalidDataError, match=match):
            dv.make_valuator(name).fit(*args)


def test_the_public_names_are_exactly_the_documented_list():
    # docs/api.md is the list; equality, not existence, so nothing public goes undocumented.
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", doc, flags=re.M))
    assert documented == set(dv.__all__)
    assert len(dv.__all__) == len(set(dv.__all__))
    for name in dv.__all__:
        assert getattr(dv, name) is not None


def test_the_results_folder_page_equals_the_kinds_in_the_code():
    from pathlib import Path

    from datavalue._core.kinds import markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "results-folders.md"
    assert page.read_text() == markdown(), (
        "docs/results-folders.md is out of date: write datavalue._core.kinds.markdown() to it")


def test_moved_modules_import_from_their_old_paths_with_a_warning():
    import importlib
    import sys
    import warnings

    from datavalue._core.moved import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old  # the same module, not a copy
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
                   for w in caught), old
    from datavalue.influence.gradients import per_example_gradients as before

    from datavalue.attribution.gradients import per_example_gradients as now

    assert before is now
