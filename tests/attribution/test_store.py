"""The on-disk store: reuse in this and another process is bit-identical, anything else is
refused before a file is touched."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import datavalue as dv
from datavalue import InvalidDataError, InvalidParameterError, StoreMismatchError

from ._nets import trained_tanh_net


@pytest.fixture(scope="module")
def setup():
    return trained_tanh_net(80, 5, 6, (1.0, -1.0), 200)


SOLVERS = {
    "exact": {},
    "cg": {"preconditioner": "ekfac"},
    "arnoldi": {"rank": 15, "random_state": 1},
    "ekfac": {},
    "lissa": {"depth": 100, "scale": 20.0, "batch_size": 16, "random_state": 3},
}


def _inf(net, store, solver="ekfac", **kw):
    return dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=solver,
                                solver_options=SOLVERS[solver], weight_decay=1e-2,
                                damping=1e-3, store=store, progress=False, **kw)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_a_second_run_reads_the_store_and_gives_bit_identical_scores(setup, tmp_path, solver):
    net, x, y = setup
    first = _inf(net, tmp_path / "a", solver).fit(x, y)
    scores, own = first.influence(x[:6], y[:6]), first.self_influence()
    assert not first.solver_.info_.get("restored")
    second = _inf(net, tmp_path / "a", solver).fit(x, y)
    assert second.solver_.info_["restored"]
    # A new query computed from the restored solver (not read from stored scores)...
    np.testing.assert_array_equal(second.influence(x[10:13], y[10:13]),
                                  first.influence(x[10:13], y[10:13]))
    # ...and stored scores read back.
    np.testing.assert_array_equal(second.influence(x[:6], y[:6]), scores)
    np.testing.assert_array_equal(second.self_influence(), own)
    # The store changes nothing: the same scores as without it.
    plain = _inf(net, None, solver).fit(x, y)
    np.testing.assert_allclose(scores, plain.influence(x[:6], y[:6]), rtol=1e-6, atol=1e-12)


def test_another_process_reuses_the_stored_factors_and_solved_gradients(setup, tmp_path):
    net, x, y = setup
    torch.save({"net": net, "x": x, "y": y}, tmp_path / "inputs.pt")
    first = _inf(net, tmp_path / "store").fit(x, y)
    first.self_influence()  # n_train solves: the training gradients are solved and stored
    expected = first.influence(x[20:25], y[20:25])
    assert (tmp_path / "store" / "train-solved.npy").exists()
    script = textwrap.dedent(f"""
        import numpy as np, torch, datavalue as dv
        d = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=False)
        inf = dv.InfluenceFunction(d["net"], torch.nn.CrossEntropyLoss(), solver="ekfac",
                                   solver_options={{}}, weight_decay=1e-2, damping=1e-3,
                                   store={str(tmp_path / 'store')!r}, progress=False)
        inf.fit(d["x"], d["y"])
        assert inf.solver_.info_["restored"]
        np.save({str(tmp_path / 'out.npy')!r}, inf.influence(d["x"][20:25], d["y"][20:25]))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_a_changed_model_data_or_setting_is_refused_and_nothing_is_written(setup, tmp_path):
    net, x, y = setup
    store = tmp_path / "s"
    _inf(net, store).fit(x, y).self_influence()
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    moved = copy.deepcopy(net)
    with torch.no_grad():
        moved[0].bias[0] += 1e-9
    with pytest.raises(StoreMismatchError, match="the model"):
        _inf(moved, store).fit(x, y)
    flipped = y.clone()
    flipped[5] = 1 - flipped[5]
    with pytest.raises(StoreMismatchError, match="the training data \\(same size"):
        _inf(net, store).fit(x, flipped)
    with pytest.raises(StoreMismatchError, match="80 examples stored, 79 now"):
        _inf(net, store).fit(x[:79], y[:79])
    with pytest.raises(StoreMismatchError, match="setting 'damping' \\(stored 0.001, now 0.01\\)"):
        dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="ekfac", damping=1e-2,
                             weight_decay=1e-2, store=store).fit(x, y)
    with pytest.raises(StoreMismatchError, match="setting 'solver'"):
        _inf(net, store, "exact").fit(x, y)
    with pytest.raises(StoreMismatchError, match="the model"):
        dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(label_smoothing=0.1),
                             solver="ekfac", weight_decay=1e-2, damping=1e-3,
                             store=store).fit(x, y)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before


def test_a_folder_of_the_users_and_a_changed_file_are_refused(setup, tmp_path):
    net, x, y = setup
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(InvalidParameterError, match="did not write \\(notes.txt\\)"):
        _inf(net, mine).fit(x, y)
    assert sorted(os.listdir(mine)) == ["notes.txt"]
    store = tmp_path / "s"
    _inf(net, store).fit(x, y).self_influence()  # solves and stores the training gradients
    with open(store / "train-solved.npy", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    inf = _inf(net, store).fit(x, y)
    with pytest.raises(InvalidDataError, match="checksum differs"):
        inf.influence(x[3:4], y[3:4])


def test_streamed_data_keeps_solved_gradients_on_disk_beyond_max_memory(setup, tmp_path):
    # max_memory=0: the n x p solved gradients may not be held; with a store they are written
    # block by block and memory-mapped, and the scores equal the in-memory computation's.
    net, x, y = setup
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    inf = _inf(net, tmp_path / "s", cache_train_solves=True, max_memory=0.0).fit(loader)
    scores = inf.influence(x[:3], y[:3])
    on_disk = np.load(tmp_path / "s" / "train-solved.npy", mmap_mode="r")
    assert on_disk.shape == (80, inf.n_params_)
    np.testing.assert_array_equal(inf._train_solved.numpy(), on_disk)
    ref = _inf(net, None, cache_train_solves=True).fit(x, y)
    np.testing.assert_array_equal(scores, ref.influence(x[:3], y[:3]))
    with pytest.raises(InvalidParameterError, match="give a 'store' folder"):
        _inf(net, None, cache_train_solves=True, max_memory=0.0).fit(loader)


def test_a_preconditioner_given_as_a_function_cannot_be_stored(setup, tmp_path):
    net, x, y = setup
    with pytest.raises(InvalidParameterError, match="'preconditioner' is a function"):
        dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="cg", damping=1e-3,
                             solver_options={"preconditioner": lambda v: v},
                             store=tmp_path / "s").fit(x, y)
    assert not (tmp_path / "s").exists()
