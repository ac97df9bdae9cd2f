"""Retraining ground truth: outputs, seeds, parallel workers, and a resumable cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from datavalue import InvalidDataError, InvalidParameterError
from datavalue.evaluate.retrain import Retrain, loo_outputs, subset_outputs


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return x[:120], y[:120], x[300:330], y[300:330]


def test_outputs_are_the_losses_and_margins_of_the_retrained_model(cancer):
    xt, yt, xs, ys = cancer
    rows = np.arange(0, 120, 2)
    fitted = LogisticRegression(max_iter=2000).fit(xt[rows], yt[rows])
    p = fitted.predict_proba(xs)[np.arange(len(ys)), ys]
    loss = Retrain(LogisticRegression(max_iter=2000), xt, yt, xs, ys, output="loss")
    np.testing.assert_allclose(loss(rows, 0), -np.log(p), rtol=1e-10)
    assert loss.goal == "minimize"
    margin = Retrain(LogisticRegression(max_iter=2000), xt, yt, xs, ys, output="margin")
    # log(p / (1 - p)) = s * decision_function for a binary logistic regression
    s = np.where(ys == 1, 1.0, -1.0)
    np.testing.assert_allclose(margin(rows, 0), s * fitted.decision_function(xs), rtol=1e-6)
    assert margin.goal == "maximize"
    reg = Retrain(Ridge(), xt, yt.astype(float), xs, ys.astype(float), output="loss")
    pred = Ridge().fit(xt[rows], yt[rows]).predict(xs)
    np.testing.assert_allclose(reg(rows, 0), (pred - ys) ** 2, rtol=1e-10)


def test_torch_retraining_follows_the_seed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    r = Retrain(net, x, y, x[:10], y[:10], output="loss", train_fn=_sgd,
                loss=torch.nn.CrossEntropyLoss(reduction="none"))
    a, b, c = r(np.arange(30), 1), r(np.arange(30), 1), r(np.arange(30), 2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # the seed re-initialises the network
    m = Retrain(net, x, y, x[:10], y[:10], output="margin", train_fn=_sgd)(np.arange(30), 1)
    assert m.shape == (10,) and np.all(np.isfinite(m))


def _sgd(module, x, y):
    import torch

    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(xt), yt).backward()
        opt.step()
    return module


def test_subsets_and_results_do_not_depend_on_workers(cancer):
    xt, yt, xs, ys = cancer
    r = Retrain(LogisticRegression(max_iter=2000), xt, yt, xs, ys, output="loss")
    one = subset_outputs(r, n_subsets=8, n_seeds=2, random_state=3, n_jobs=1, progress=False)
    two = subset_outputs(r, n_subsets=8, n_seeds=2, random_state=3, n_jobs=2, progress=False)
    np.testing.assert_array_equal(one.masks, two.masks)
    np.testing.assert_array_equal(one.outputs, two.outputs)
    assert one.masks.sum(1).tolist() == [60] * 8 and one.outputs.shape == (8, 30)
    other = subset_outputs(r, n_subsets=8, random_state=4, progress=False)
    assert not np.array_equal(other.masks, one.masks)
    loo = loo_outputs(r, [0, 5, 7], n_jobs=2, progress=False)
    full = r(np.arange(120), _first_seed(0))
    np.testing.assert_allclose(loo.full, full)
    np.testing.assert_allclose(loo.outputs[1], r(np.delete(np.arange(120), 5), _first_seed(0)))


def _first_seed(random_state):
    from datavalue._core.parallel import spawn_seeds

    return spawn_seeds(random_state, 1)[0]


class _Counting:
    """A retraining that records its calls and stops (like Ctrl-C) after ``stop_after``."""

    goal = "maximize"
    n_train = 20

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = 0, stop_after
        self.w = np.random.default_rng(0).normal(size=(4, 20))

    def fingerprint(self):
        return "counting-additive-v1"

    def __call__(self, idx, seed):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        return self.w[:, idx].sum(1) + 1e-3 * (seed % 7)


def test_cache_resumes_after_an_interruption_with_identical_outputs(tmp_path):
    cache = tmp_path / "gt.npz"
    plain = subset_outputs(_Counting(), n_subsets=12, n_jobs=1, progress=False)
    stopped = _Counting(stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        subset_outputs(stopped, n_subsets=12, n_jobs=1, cache=cache, progress=False)
    assert cache.exists()  # chunks finished before the interruption were saved
    resumed = _Counting()
    out = subset_outputs(resumed, n_subsets=12, n_jobs=1, cache=cache, progress=False)
    assert 0 < resumed.calls < 12  # only the missing ones were run
    np.testing.assert_array_equal(out.outputs, plain.outputs)
    reread = _Counting()
    np.testing.assert_array_equal(
        subset_outputs(reread, n_subsets=12, n_jobs=1, cache=cache, progress=False).outputs,
        plain.outputs)
    assert reread.calls == 0
    # another setting, or another retraining, is refused, not mixed in
    with pytest.raises(InvalidParameterError, match="other settings"):
        subset_outputs(_Counting(), n_subsets=13, n_jobs=1, cache=cache, progress=False)
    foreign = tmp_path / "mine.npz"
    foreign.write_bytes(b"user data")
    with pytest.raises(InvalidParameterError, match="not a datavalue checkpoint"):
        subset_outputs(_Counting(), n_subsets=12, cache=foreign, progress=False)
    assert foreign.read_bytes() == b"user data"


SLOW_RUN = textwrap.dedent("""
    import sys, time
    import numpy as np
    from datavalue.evaluate.retrain import subset_outputs

    class Slow:
        goal = "maximize"
        n_train = 20
        def fingerprint(self):
            return "slow-additive-v1"
        def __call__(self, idx, seed):
            time.sleep(0.15)
            return np.random.default_rng(0).normal(size=(4, 20))[:, idx].sum(1)

    out = subset_outputs(Slow(), n_subsets=40, n_jobs=1, cache=sys.argv[1], progress=False)
    np.save(sys.argv[2], out.outputs)
""")


def test_cache_survives_kill_9(tmp_path):
    cache, result = tmp_path / "gt.npz", tmp_path / "out.npy"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(cache), str(result)])
    try:
        deadline = time.time() + 120
        while not cache.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert cache.exists()
        time.sleep(0.4)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not result.exists()  # it really was stopped before the end
    subprocess.run([sys.executable, "-c", SLOW_RUN, str(cache), str(result)], check=True,
                   timeout=300)
    rng_w = np.random.default_rng(0).normal(size=(4, 20))
    truth = subset_outputs(lambda idx, seed: rng_w[:, idx].sum(1), 20, n_subsets=40,
                           goal="maximize", progress=False)
    np.testing.assert_array_equal(np.load(result), truth.outputs)


def test_bad_retraining_settings_are_named(cancer):
    xt, yt, xs, ys = cancer
    with pytest.raises(InvalidParameterError, match="'output'"):
        Retrain(LogisticRegression(), xt, yt, xs, ys, output="accuracy")
    with pytest.raises(TypeError):
        Retrain(LogisticRegression(), xt, yt, xs, ys)  # the output is never implied
    with pytest.raises(InvalidParameterError, match="goal"):
        Retrain(LogisticRegression(), xt, yt, xs, ys, output=lambda m, x, y: x[:, 0])
    with pytest.raises(InvalidParameterError, match="predict_proba"):
        Retrain(Ridge(), xt, yt, xs, ys, output="margin")(np.arange(50), 0)
    with pytest.raises(InvalidDataError, match="x_test"):
        Retrain(LogisticRegression(), xt, yt, xs[:, :3], ys, output="loss")
    with pytest.raises(InvalidParameterError, match="goal"):
        subset_outputs(lambda idx, seed: np.zeros(3), 10, n_subsets=3)
    with pytest.raises(InvalidParameterError, match="alpha"):
        subset_outputs(_Counting(), alpha=1.5)
    with pytest.raises(InvalidParameterError, match="train_indices"):
        loo_outputs(_Counting(), [0, 0, 3])
    with pytest.raises(InvalidDataError, match="finite"):
        subset_outputs(lambda idx, seed: np.full(3, np.nan), 10, n_subsets=3, goal="minimize",
                       progress=False)


def test_scores_with_other_columns_than_the_retraining_has_rows_are_refused(cancer):
    # The sweep: lds(S[:, 5:], rt) gave 0.044 and loo_correlation -0.149 without a word (the
    # subsets silently indexed other rows); more columns raised a bare IndexError.
    from datavalue import evaluate

    xt, yt, xs, ys = cancer
    r = Retrain(LogisticRegression(max_iter=2000), xt[::3], yt[::3], xs[:5], ys[:5],
                output="loss")
    scores = np.zeros((5, 40))
    for bad in (scores[:, 5:], np.zeros((5, 45))):
        with pytest.raises(InvalidDataError, match=f"{bad.shape[1]} columns.*40 training rows"):
            evaluate.lds(bad, r, n_subsets=3, progress=False)
        with pytest.raises(InvalidDataError, match=f"{bad.shape[1]} columns.*40 training rows"):
            evaluate.loo_correlation(bad, r, n_points=3, progress=False)
    # ground truth computed once is checked the same way
    truth = loo_outputs(r, [0, 1, 2], progress=False)
    assert truth.n_train == 40
    with pytest.raises(InvalidDataError, match="35 columns.*40 training rows"):
        evaluate.loo_correlation(scores[:, 5:], truth)
    subsets = subset_outputs(r, n_subsets=3, progress=False)
    with pytest.raises(InvalidDataError, match="35 columns.*subsets are of 40"):
        evaluate.lds(scores[:, 5:], subsets)


@pytest.mark.parametrize("seed", ["x", -1, 1.5, True])
def test_bad_seeds_name_random_state(cancer, seed):
    from datavalue import evaluate

    xt, yt, xs, ys = cancer
    r = Retrain(LogisticRegression(), xt[::3], yt[::3], xs[:5], ys[:5], output="loss")
    with pytest.raises(InvalidParameterError, match="'random_state'.*non-negative int"):
        evaluate.lds(np.zeros((5, 40)), r, n_subsets=3, random_state=seed, progress=False)
    with pytest.raises(InvalidParameterError, match="'random_state'.*non-negative int"):
        evaluate.loo_correlation(np.zeros((5, 40)), r, random_state=seed, progress=False)
