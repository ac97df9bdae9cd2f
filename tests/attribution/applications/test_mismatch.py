"""Debugging a domain mismatch: group influences equal the summed per-example influences, and
on a table where one sub-population was collected wrongly the report blames it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import datavalue as dv
from datavalue import InvalidDataError
from datavalue.attribution.applications.mismatch import debug_group

pytest.importorskip("torch")


def test_group_report_sums_the_influences_and_matches_perturbation_influence():
    ds = dv.load_dataset("breast_cancer", random_state=0)
    model = LogisticRegression(max_iter=2000).fit(ds.x_train, ds.y_train)
    inf = dv.InfluenceFunction(model, solver="exact").fit(ds.x_train, ds.y_train)
    group = np.zeros(ds.n_test, dtype=bool)
    group[:15] = True
    rep = debug_group(inf, ds.x_test, ds.y_test, mask=group, top=5,
                      feature_names=ds.feature_names)
    full = inf.influence(ds.x_test[group], ds.y_test[group])
    np.testing.assert_allclose(rep.influence, full.sum(0), rtol=1e-9, atol=1e-12)
    by_label = {g: full.sum(0)[ds.y_train == g].sum() for g in (0, 1)}
    for row in rep.groups.itertuples():
        assert row.influence == pytest.approx(by_label[row.group], rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(rep.harmful, np.argsort(full.sum(0), kind="stable")[:5])
    pert = inf.perturbation_influence(ds.x_test[group], ds.y_test[group], rep.harmful)
    expected = pert.sum(0).mean(0)  # summed over the group, averaged over the examples
    got = rep.features.set_index("feature").loc[list(ds.feature_names), "gradient"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)
    with pytest.raises(InvalidDataError, match="train_groups"):
        debug_group(inf, ds.x_test, ds.y_test, train_groups=np.zeros(3))
    with pytest.raises(InvalidDataError, match="mask"):
        debug_group(inf, ds.x_test, ds.y_test, mask=np.zeros(ds.n_test, dtype=bool))


def test_a_subpopulation_collected_wrongly_is_blamed(shared_data):
    # Telco customers: in training, the two-year-contract customers were recorded mostly as
    # churners (a collection bug: 20 of them, 16 marked "Yes"); on the test customers with
    # two-year contracts (who almost never churn) the model errs. The report must put the
    # training group "Two year" first among the harmful groups, find its rows among the most
    # harmful examples, and the contract among the features that move the group's loss.
    import pandas as pd

    from datavalue.data import Dataset

    table = pd.read_csv(shared_data / "telco_churn_raw.csv").dropna().reset_index(drop=True)
    rng = np.random.default_rng(0)
    two = np.flatnonzero(table["contract"] == "Two year")
    other = np.flatnonzero(table["contract"] != "Two year")
    train_rows = np.concatenate([rng.choice(other, 1500, replace=False),
                                 rng.choice(two, 20, replace=False)])
    test_rows = np.setdiff1d(two, train_rows)[:200]
    train = table.iloc[train_rows].copy()
    train.loc[train.index[train["contract"] == "Two year"][:16], "churn"] = "Yes"
    ds = Dataset.from_arrays(train.drop(columns="churn"), train["churn"], valid_size=0,
                             test_size=0, random_state=0)
    x_group = ds.transform(table.iloc[test_rows].drop(columns="churn"))
    y_group = np.searchsorted(np.asarray(ds.class_names), table.iloc[test_rows]["churn"])
    model = LogisticRegression(max_iter=5000).fit(ds.x_train, ds.y_train)
    inf = dv.InfluenceFunction(model, solver="exact").fit(ds.x_train, ds.y_train)
    contract = table.loc[ds.ids_train, "contract"].to_numpy()
    rep = debug_group(inf, x_group, y_group, train_groups=contract,
                      feature_names=ds.feature_names, top=20)
    assert rep.groups.iloc[0]["group"] == "Two year" and rep.groups.iloc[0]["effect"] == "hurts"
    assert np.mean(contract[rep.harmful[:10]] == "Two year") >= 0.8
    assert any("contract" in f for f in rep.features["feature"].head(5))
