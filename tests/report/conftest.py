"""Results folders the report tests draw: a valuation of an image data set (with clean and fix
results), a tabular one, a comparison and explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

import datavalue as dv
from datavalue.actions import clean, fix
from datavalue.actions.compare import compare


def _value_folder(out: Path, name: str, **load) -> tuple[dv.Dataset, dv.ValuationResult]:
    ds = dv.load_dataset(name, noise_rate=0.1, random_state=0, **load)
    result = dv.KNNShapley(n_neighbors=5).fit(ds.x_train, ds.y_train, ds.x_valid,
                                              ds.y_valid).result_
    out.mkdir(parents=True)
    result.save(out, dataset=ds)
    return ds, result


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """digits (image_shape 8x8), 400 rows, KNN-Shapley values, clean and fix results."""
    out = tmp_path_factory.mktemp("report") / "digits"
    ds, result = _value_folder(out, "digits", n_samples=400)
    clean(ds, result, fraction=0.1, fractions=[0.05], progress=False).save(out)
    truth = dv.load_dataset("digits", random_state=0, n_samples=400)
    fix(ds, truth, values=result, rankings=["loss", "random"], fractions=[0.1, 0.2],
        progress=False).save(out, ds)
    return out


@pytest.fixture(scope="session")
def tabular_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "cancer"
    _value_folder(out, "breast_cancer")
    return out


@pytest.fixture(scope="session")
def compare_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "compare"
    compare("breast_cancer", methods=["knn-shapley", "random", "loo"], seeds=[0, 1],
            load_options={"n_samples": 150}, fractions=[0.0, 0.1, 0.2], progress=False, out=out)
    return out


@pytest.fixture(scope="session")
def explain_folder(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="explanations use influence functions (torch extra)")
    from datavalue.actions.explain import explain
    from datavalue.report import save_explanations

    out = tmp_path_factory.mktemp("report") / "explain"
    ds = dv.load_dataset("digits", noise_rate=0.1, random_state=0, n_samples=400)
    save_explanations(out, ds, [explain(ds, i, k=4) for i in (0, 5)])
    return out


@pytest.fixture(scope="session")
def attack_folder(tmp_path_factory) -> Path:
    """``datavalue attack`` on digits test row 6 (two rows moved, flipped in one step)."""
    pytest.importorskip("torch", reason="the attack uses influence functions (torch extra)")
    from datavalue import cli

    out = tmp_path_factory.mktemp("report") / "attack"
    assert cli.main(["attack", "--data", "digits", "--test-index", "6", "--n-train", "1,2",
                     "--max-steps", "2", "--quiet", "--out", str(out)]) == 0
    return out
