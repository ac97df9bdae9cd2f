"""The Ray backend: a real Ray cluster on 127.0.0.1 gives the same values as local workers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datavalue as dv
from datavalue.valuation.semivalue import DataBanzhaf, TMCShapley

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Start a one-node Ray cluster with `ray start --head` on 127.0.0.1; stop it afterwards."""
    ray_bin = Path(sys.executable).with_name("ray")
    ray_cmd = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    if ray_cmd is None:
        pytest.skip("the ray command line is not installed")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    start = [
        ray_cmd, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    subprocess.run(start, check=True, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    try:
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_cluster(temp)


def _stop_cluster(temp: Path) -> None:
    """Stop only this cluster's processes (those whose command line names its temp folder;
    their workers die with their raylet). ``ray stop --force`` would kill every Ray process
    on the machine, including another test run's cluster and the drivers connected to it."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(temp) in " ".join(proc.info["cmdline"] or []):
                # with its children (the agents rename themselves "ray::..." and would be
                # left behind)
                mine += [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    mine = list({p.pid: p for p in mine}.values())
    for proc in mine:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(mine, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def test_ray_backend_gives_identical_values(ray_cluster):
    ds = dv.load_dataset("iris", n_samples=60, random_state=0)
    args = (ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    kw = dict(max_permutations=16, round_size=8, progress=False, random_state=1)
    local1 = TMCShapley(n_jobs=1, **kw).fit(*args)
    local2 = TMCShapley(n_jobs=2, **kw).fit(*args)
    on_ray = TMCShapley(n_jobs=2, backend="ray", ray_address=ray_cluster, **kw).fit(*args)
    np.testing.assert_array_equal(local1.values_, local2.values_)
    np.testing.assert_array_equal(local1.values_, on_ray.values_)
    np.testing.assert_array_equal(local1.result_.stderr, on_ray.result_.stderr)
    assert ray.is_initialized()  # it really ran through the cluster connection
    banz_kw = dict(max_subsets=256, progress=False, random_state=2)
    a = DataBanzhaf(n_jobs=1, **banz_kw).fit(*args)
    b = DataBanzhaf(n_jobs=2, backend="ray", ray_address=ray_cluster, **banz_kw).fit(*args)
    np.testing.assert_array_equal(a.values_, b.values_)


def test_retraining_ground_truth_on_ray_equals_local(ray_cluster, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from datavalue.evaluate import lds
    from datavalue.evaluate.retrain import Retrain, subset_outputs

    ds = dv.load_dataset("breast_cancer", random_state=0)
    retrain = Retrain(LogisticRegression(max_iter=2000), ds.x_train[:100], ds.y_train[:100],
                      ds.x_test[:20], ds.y_test[:20], output="margin")
    local = subset_outputs(retrain, n_subsets=6, n_jobs=1, progress=False)
    remote = subset_outputs(retrain, n_subsets=6, n_jobs=2, backend="ray",
                            ray_address=ray_cluster, cache=tmp_path / "gt.npz", progress=False)
    np.testing.assert_array_equal(local.outputs, remote.outputs)
    scores = np.random.default_rng(0).normal(size=(20, 100))
    assert lds(scores, local)["lds"] == lds(scores, remote)["lds"]
