"""DVRL (Yoon, Arik & Pfister, ICML 2020): the baseline update, determinism, checkpoint/resume,
a toy problem with a known best subset, flipped-label detection on breast cancer, regression,
the robust-learning predictor and parameter validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import datavalue as dv
from datavalue import InvalidModelError, InvalidParameterError
from datavalue._core.checkpoint import load_checkpoint
from datavalue.valuation import dvrl as dvrl_module
from datavalue.valuation.dvrl import DVRL, MLPPredictor, update_baseline

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small():
    """80 training points of a 2-class problem, 10% of labels flipped."""
    return dv.load_dataset("classification", n_samples=160, n_features=5, noise_rate=0.1,
                           random_state=3)


def _fit(ds, **params):
    params.setdefault("progress", False)
    return DVRL(**params).fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)


# ------------------------------------------------------------------ the baseline
def test_update_baseline_is_the_moving_average_of_algorithm_1():
    # delta <- (T - 1) / T * delta + perf / T on a toy sequence, by hand for T = 2.
    delta = 0.0
    expected = [0.5, 0.75, 0.875, 0.4375]
    for perf, want in zip([1.0, 1.0, 1.0, 0.0], expected, strict=True):
        delta = update_baseline(delta, perf, 2)
        assert delta == pytest.approx(want, abs=1e-15)
    # T = 1 follows the last performance; a constant sequence is a fixed point.
    assert update_baseline(0.3, 0.9, 1) == pytest.approx(0.9)
    assert update_baseline(0.7, 0.7, 20) == pytest.approx(0.7)
    # A long constant sequence converges geometrically: error * (19/20)^k.
    delta = 0.0
    for _ in range(100):
        delta = update_baseline(delta, 1.0, 20)
    assert delta == pytest.approx(1 - (19 / 20) ** 100, rel=1e-12)
    # None: the reference code's fixed baseline.
    assert update_baseline(0.25, 0.9, None) == 0.25


def test_the_fit_uses_the_baseline_update(small):
    """The run's final baseline is the update applied to its own performance sequence."""
    for window in (None, 5):
        v = _fit(small, n_iterations=30, baseline_window=window)
        delta = v.full_performance_
        for perf in v.performance_:
            delta = update_baseline(delta, perf, window)
        assert v.baseline_ == delta
        assert len(v.performance_) == 30


# ------------------------------------------------------------------ contract and determinism
def test_deterministic_for_a_seed_and_probabilities_in_open_interval(small):
    a = _fit(small, n_iterations=60, random_state=1)
    b = _fit(small, n_iterations=60, random_state=1)
    np.testing.assert_array_equal(a.values_, b.values_)
    np.testing.assert_array_equal(a.performance_, b.performance_)
    c = _fit(small, n_iterations=60, random_state=2)
    assert not np.array_equal(a.values_, c.values_)
    for v in (a, c):
        assert v.values_.dtype == np.float64 and v.values_.shape == (small.n_train,)
        assert np.all(v.values_ > 0) and np.all(v.values_ < 1)
    assert a.result_.method == "dvrl" and a.result_.status == "completed"
    assert a.result_.extra["iterations_done"] == 60


def test_importing_the_module_does_not_import_torch():
    code = "import sys, datavalue.valuation.dvrl; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_gives_a_clear_error(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"datavalue\[torch\]"):
        _fit(small, n_iterations=2)


# ------------------------------------------------------------------ quality
def test_toy_problem_ranks_the_known_best_subset_on_top():
    """8 correctly labelled points among 32 points whose labels are all wrong: the subset that
    maximises validation performance is the 8 clean points, and they get the top values.

    DVRL is a policy-gradient (REINFORCE) search, so one seed may stop in a partial selection
    after 300 iterations: measured here, seeds 0-4 put all 8 clean points on top for seeds
    1, 2, 3 (AUC 1.0) and 3 of 8 for seeds 0 and 4 (AUC 0.77), identically on 1 and 2 torch
    threads. The claim checked is therefore about the seeds together: at least 3 of 5 exact,
    and every seed well above chance (AUC >= 0.75)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)

    def blobs(n):
        y = rng.integers(0, 2, n)
        return rng.normal(size=(n, 2)) + 2.0 * (2 * y[:, None] - 1), y

    x_train, y_true = blobs(40)
    clean = np.arange(8)
    y_train = 1 - y_true
    y_train[clean] = y_true[clean]
    x_valid, y_valid = blobs(100)
    is_clean = np.isin(np.arange(40), clean)
    exact, aucs = 0, []
    for seed in range(5):
        v = DVRL(n_iterations=300, progress=False, random_state=seed).fit(
            x_train, y_train, x_valid, y_valid)
        top = np.argsort(-v.values_)[: len(clean)]
        exact += set(top) == set(clean)
        aucs.append(roc_auc_score(is_clean, v.values_))
    assert exact >= 3, (exact, aucs)
    assert min(aucs) >= 0.75, aucs


def test_breast_cancer_flipped_labels_are_detected():
    ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    v = _fit(ds, n_iterations=500)
    report = dv.evaluate.noisy_detection(v.values_, ds.noisy_indices)
    # Measured: AUC 0.995, k-means F1 0.79 (reference defaults, 500 of 2000 iterations).
    assert report["auc"] >= 0.8
    assert np.all(v.values_ > 0) and np.all(v.values_ < 1)
    # Robust learning: predictor_ is trained with the values as weights, predicts the labels.
    pred = v.predictor_.predict(ds.x_test)
    assert set(np.unique(pred)) <= set(np.unique(ds.y_train))
    assert np.mean(pred == ds.y_test) >= 0.9
    weights = v.predictor_.steps[-1][1]
    assert weights.__class__.__name__ == "LogisticRegression"


def test_regression_runs_with_the_negative_mse_reward():
    ds = dv.load_dataset("diabetes", noise_rate=0.2, noise_kind="features", random_state=0)
    v = _fit(ds, n_iterations=40)
    assert v.result_.extra["metric"] == "neg_mse"
    assert v.full_performance_ < 0
    assert np.all(v.values_ > 0) and np.all(v.values_ < 1)
    assert np.isfinite(v.values_).all() and v.values_.std() > 0
    pred = v.predictor_.predict(ds.x_test)
    assert pred.shape == (ds.n_test,) and pred.dtype.kind == "f"
    with pytest.raises(InvalidParameterError, match="'metric'"):
        _fit(ds, n_iterations=2, metric="accuracy")
    mlp = _fit(ds, n_iterations=3, predictor="mlp", inner_iterations=200, hidden_dim=16)
    # The MLP trains on standardized targets and predicts on the original scale.
    assert abs(mlp.predictor_.predict(ds.x_test).mean() - ds.y_train.mean()) < ds.y_train.std()


def test_other_predictors(small):
    from sklearn.linear_model import LogisticRegression

    mlp = _fit(small, n_iterations=5, predictor="mlp", inner_iterations=5, hidden_dim=8)
    assert isinstance(mlp.predictor_, MLPPredictor)
    proba = mlp.predictor_.predict_proba(small.x_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(mlp.predictor_.predict(small.x_test)) <= set(small.y_train)
    sk = _fit(small, n_iterations=5, predictor=LogisticRegression(), metric="accuracy")
    assert isinstance(sk.predictor_, LogisticRegression)
    assert np.all(sk.values_ > 0) and np.all(sk.values_ < 1)


def test_linear_predictor_matches_scikit_learn():
    """The in-loop solvers (Newton; L-BFGS for large softmax problems; normal equations) reach
    the models of LogisticRegression(C=1) and Ridge(alpha=1), the objectives they claim."""
    import torch
    from sklearn.linear_model import LogisticRegression, Ridge

    for name, task, k in [("breast_cancer", "classification", 2), ("diabetes", "regression", 0)]:
        ds = dv.load_dataset(name, random_state=0)
        splits = {"train": (ds.x_train, ds.y_train), "valid": (ds.x_valid, ds.y_valid)}
        engine = dvrl_module._LinearEngine(torch, task, k, splits)
        rows = np.arange(0, ds.n_train, 2)
        weights = np.linspace(0.1, 1.0, len(rows))
        out = engine.predict(engine.fit("train", rows, weights), "valid")
        if task == "classification":
            ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
            want = ref.fit(ds.x_train[rows], ds.y_train[rows], sample_weight=weights)
            np.testing.assert_allclose(out, want.predict_proba(ds.x_valid), atol=1e-5)
        else:
            ref = Ridge(alpha=1.0).fit(ds.x_train[rows], ds.y_train[rows], sample_weight=weights)
            np.testing.assert_allclose(out, ref.predict(ds.x_valid), rtol=1e-7)

    ds = dv.load_dataset("wine", random_state=0)
    splits = {"train": (ds.x_train, ds.y_train), "valid": (ds.x_valid, ds.y_valid)}
    engine = dvrl_module._LinearEngine(torch, "classification", 3, splits)
    rows = np.arange(ds.n_train)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(ds.x_train, ds.y_train)
    want = ref.predict_proba(ds.x_valid)
    newton = engine.predict(engine.fit("train", rows), "valid")
    np.testing.assert_allclose(newton, want, atol=1e-4)
    lbfgs = engine.predict(engine._fit_softmax_lbfgs(
        engine.x["train"], engine.y_onehot["train"], torch.ones(ds.n_train, dtype=torch.float64)
    ), "valid")
    np.testing.assert_allclose(lbfgs, want, atol=1e-4)


# ------------------------------------------------------------------ checkpoint / resume
class _StopAt:
    """A progress bar that raises KeyboardInterrupt after ``stop_at`` iterations, like Ctrl-C."""

    def __init__(self, stop_at):
        self.stop_at, self.count = stop_at, 0

    def __call__(self, total, desc, progress=None, unit="it"):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix(self, **kwargs):
        pass

    def update(self, k):
        self.count += k
        if k == 1 and self.count == self.stop_at:
            raise KeyboardInterrupt


def test_checkpoint_resume_gives_the_uninterrupted_values(small, tmp_path, monkeypatch):
    full = _fit(small, n_iterations=40, random_state=5)
    path = tmp_path / "dvrl.npz"
    with monkeypatch.context() as m:
        m.setattr(dvrl_module, "progress_bar", _StopAt(17))
        with pytest.raises(KeyboardInterrupt):
            _fit(small, n_iterations=40, random_state=5, checkpoint=path, checkpoint_every=1e9)
    header, _ = load_checkpoint(path)
    assert header["iteration"] == 17  # saved on the interruption, not only periodically
    with pytest.raises(InvalidParameterError, match="'checkpoint'.*already exists.*resume"):
        _fit(small, n_iterations=40, random_state=5, checkpoint=path)
    resumed = _fit(small, n_iterations=40, random_state=5, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.values_, full.values_)
    np.testing.assert_array_equal(resumed.performance_, full.performance_)
    assert resumed.baseline_ == full.baseline_
    # A finished checkpoint: resuming it returns the same values without training.
    again = _fit(small, n_iterations=40, random_state=5, checkpoint=path, resume=True)
    np.testing.assert_array_equal(again.values_, full.values_)


def test_checkpoint_can_be_extended_and_refuses_other_runs(small, tmp_path):
    path = tmp_path / "dvrl.npz"
    _fit(small, n_iterations=15, random_state=5, checkpoint=path, checkpoint_every=0)
    longer = _fit(small, n_iterations=40, random_state=5, checkpoint=path, resume=True,
                  baseline_window=None)
    np.testing.assert_array_equal(longer.values_, _fit(small, n_iterations=40,
                                                       random_state=5).values_)
    with pytest.raises(InvalidParameterError, match="'checkpoint'.*other settings or data"):
        _fit(small, n_iterations=40, random_state=6, checkpoint=path, resume=True)
    with pytest.raises(InvalidParameterError, match="'checkpoint'.*other settings or data"):
        DVRL(n_iterations=40, random_state=5, checkpoint=path, resume=True,
             progress=False).fit(small.x_train[:-1], small.y_train[:-1], small.x_valid,
                                 small.y_valid)
    with pytest.raises(InvalidParameterError, match="'checkpoint'.*more than n_iterations"):
        _fit(small, n_iterations=10, random_state=5, checkpoint=path, resume=True)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidParameterError, match="'checkpoint'"):
        _fit(small, n_iterations=5, checkpoint=junk, resume=True)


def test_ctrl_c_finishes_the_iteration_saves_and_raises(tmp_path):
    """A real SIGINT: the run stops between iterations, saves, raises KeyboardInterrupt; the
    resumed run ends with the values of an uninterrupted one."""
    import signal
    import time

    path = tmp_path / "run.npz"
    script = f"""
import datavalue as dv
from datavalue.valuation.dvrl import DVRL
ds = dv.load_dataset("classification", n_samples=160, n_features=5, noise_rate=0.1, random_state=3)
try:
    DVRL(n_iterations=100_000, random_state=5, checkpoint={str(path)!r}, checkpoint_every=0,
         progress=False).fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:  # saved after every iteration:
        time.sleep(0.05)  # once it exists, the loop (and its Ctrl-C handler) is running
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "interrupted" in out
    header, _ = load_checkpoint(path)
    done = header["iteration"]
    assert 0 < done < 100_000
    ds = dv.load_dataset("classification", n_samples=160, n_features=5, noise_rate=0.1,
                         random_state=3)
    resumed = DVRL(n_iterations=done + 5, random_state=5, checkpoint=path, resume=True,
                   progress=False).fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    full = _fit(ds, n_iterations=done + 5, random_state=5)
    np.testing.assert_array_equal(resumed.values_, full.values_)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "param, value",
    [
        ("n_iterations", 0),
        ("batch_size", 0),
        ("inner_iterations", -1),
        ("learning_rate", 0.0),
        ("threshold", 0.3),
        ("threshold", 1.0),
        ("baseline_window", 0),
        ("layer_number", 2),
        ("hidden_dim", 1.5),
        ("metric", "r2"),
        ("marginal", "yes"),
        ("random_state", -7),
        ("checkpoint_every", -1.0),
        ("checkpoint", 3),
        ("resume", 1),
    ],
)
def test_bad_parameters_raise_naming_them(small, param, value):
    with pytest.raises(InvalidParameterError, match=f"'{param}'"):
        _fit(small, **{param: value})


def test_bad_predictors_raise_naming_them(small):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    with pytest.raises(InvalidModelError, match="'predictor'"):
        _fit(small, predictor="forest")
    with pytest.raises(InvalidModelError, match="'predictor'.*sample_weight"):
        _fit(small, predictor=KNeighborsClassifier())
    with pytest.raises(InvalidModelError, match="predict_proba"):
        _fit(small, predictor=LinearSVC())
    with pytest.raises(dv.InvalidDataError, match="validation data"):
        DVRL().fit(small.x_train, small.y_train)


def test_a_diverging_value_estimator_is_named_not_a_sklearn_nan_error(small):
    from datavalue import ModelOutputError

    with pytest.raises(ModelOutputError, match="diverged.*learning_rate"):
        _fit(small, n_iterations=20, learning_rate=1e9, random_state=0)


def test_a_killed_checkpoint_write_leaves_no_temporary_behind(small, tmp_path):
    """A SIGKILL during the atomic write leaves '.<name>.<pid>.*.tmp'; the next write of the same
    file removes temporaries of writers that are no longer alive (and keeps live ones)."""
    import os

    path = tmp_path / "dvrl.ckpt"
    dead = tmp_path / ".dvrl.ckpt.999999999.abc.tmp"  # no such pid
    alive = tmp_path / f".dvrl.ckpt.{os.getpid()}.xyz.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"in progress")
    _fit(small, n_iterations=3, checkpoint=str(path), random_state=0)
    assert path.exists() and not dead.exists() and alive.exists()


@pytest.mark.parametrize("damage", ["nan estimator", "negative adam_v", "short performance"])
def test_a_damaged_dvrl_checkpoint_is_refused(small, tmp_path, damage):
    from datavalue._core.checkpoint import save_checkpoint

    path = tmp_path / "dvrl.ckpt"
    _fit(small, n_iterations=5, random_state=1, checkpoint=path)
    header, arrays = load_checkpoint(path)
    header.pop("version")
    if damage == "nan estimator":
        arrays["estimator"] = np.full_like(arrays["estimator"], np.nan)
    elif damage == "negative adam_v":
        arrays["adam_v"] = -np.ones_like(arrays["adam_v"])
    else:
        arrays["performance"] = arrays["performance"][:2]
    save_checkpoint(path, header, arrays)
    with pytest.raises(InvalidParameterError, match="damaged"):
        _fit(small, n_iterations=10, random_state=1, checkpoint=path, resume=True)
