"""ValuationResult: exact save/load round trip, atomic writes, views."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError


def _result(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return dv.ValuationResult(
        values=rng.normal(size=n) * 1e-7 + np.pi,  # digits beyond what %g would keep
        stderr=np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        counts=rng.integers(0, 100, n),
        method="loo",
        params={"model": LogisticRegression(C=0.5), "metric": np.log, "n_jobs": np.int64(2),
                "tol": float("inf")},
        seed=3,
        data_fingerprint="abc",
        wall_time=1.25,
        status="converged",
        extra={"n_fits": 51},
    )


def test_round_trip_is_exact(tmp_path):
    r = _result()
    r.save(tmp_path / "out")
    back = dv.ValuationResult.load(tmp_path / "out")
    assert back == r
    np.testing.assert_array_equal(back.values, r.values)  # bitwise, not approximately
    assert back.params["model"] == "LogisticRegression(C=0.5)"
    assert back.params["tol"] == "inf"
    assert back.library_version == dv.__version__


def test_saved_folder_is_readable_by_people(tmp_path):
    r = _result()
    r.save(tmp_path)
    meta = json.loads((tmp_path / "result.json").read_text())
    assert meta["method"] == "loo" and meta["n"] == 50
    import pandas as pd

    frame = pd.read_csv(tmp_path / "values.csv")
    np.testing.assert_array_equal(frame["value"].to_numpy(), r.values)  # %.17g is exact
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "result.json").stat().st_mode)
    assert mode == 0o666 & ~umask  # an ordinary file, not mkstemp's private 0600


def test_failed_write_keeps_the_previous_result(tmp_path, monkeypatch):
    r = _result(seed=0)
    r.save(tmp_path)
    import datavalue._core.io as io_mod

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io_mod.os, "fsync", boom)
    with pytest.raises(OSError):
        _result(seed=1).save(tmp_path)
    monkeypatch.undo()
    assert dv.ValuationResult.load(tmp_path) == r
    assert not list(tmp_path.glob(".*.tmp"))


def test_ranking_and_frame():
    r = dv.ValuationResult(values=[0.2, -1.0, 0.5, 0.2])
    np.testing.assert_array_equal(r.ranking(), [2, 0, 3, 1])  # ties keep index order
    np.testing.assert_array_equal(r.ranking(ascending=True), [1, 0, 3, 2])
    frame = r.to_frame()
    assert list(frame.columns) == ["id", "index", "value", "stderr", "count", "rank"]
    assert frame["rank"].tolist() == [2, 4, 1, 3]
    assert frame["id"].tolist() == [0, 1, 2, 3]  # positions when no ids are known


def test_ids_are_kept_saved_and_checked(tmp_path):
    r = dv.ValuationResult(values=[0.2, -1.0, 0.5], ids=["cust-7", "cust-3", "=cmd"])
    assert r.to_frame()["id"].tolist() == ["cust-7", "cust-3", "=cmd"]
    r.save(tmp_path / "r")
    back = dv.ValuationResult.load(tmp_path / "r")
    assert back == r and back.ids.tolist() == ["cust-7", "cust-3", "=cmd"]
    # values.csv is safe to open in a spreadsheet
    assert "'=cmd" in (tmp_path / "r" / "values.csv").read_text()
    ints = dv.ValuationResult(values=[1.0, 2.0], ids=np.array([1001, 17]))
    ints.save(tmp_path / "i")
    assert dv.ValuationResult.load(tmp_path / "i").ids.tolist() == [1001, 17]
    assert ints != dv.ValuationResult(values=[1.0, 2.0])
    with pytest.raises(InvalidDataError, match="unique"):
        dv.ValuationResult(values=[1.0, 2.0], ids=["a", "a"])
    with pytest.raises(InvalidDataError, match="'ids'"):
        dv.ValuationResult(values=[1.0, 2.0], ids=["a"])


def test_validation():
    with pytest.raises(InvalidDataError, match="'values' must be 1-D"):
        dv.ValuationResult(values=np.zeros((2, 2)))
    with pytest.raises(InvalidDataError, match="'stderr'"):
        dv.ValuationResult(values=np.zeros(3), stderr=np.zeros(2))
    with pytest.raises(InvalidParameterError, match="status"):
        dv.ValuationResult(values=np.zeros(3), status="done?")
    with pytest.raises(InvalidParameterError, match="does not exist"):
        dv.ValuationResult.load("/nonexistent/folder")


def test_equality_detects_differences():
    a, b = _result(), _result()
    assert a == b
    b.values[0] += 1e-12
    assert a != b
