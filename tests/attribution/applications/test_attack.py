"""Training-set attacks: the step follows the finite-difference gradient of the retrained test
loss, stays in its box, re-fits exactly, and beats random perturbations of the same size."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

import datavalue as dv
from datavalue import InvalidParameterError
from datavalue.attribution.applications.attack import training_set_attack

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ones_sevens():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    keep = np.isin(y, [1, 7])
    x, y = x[keep] / 16.0, (y[keep] == 7).astype(int)
    return x[:200], y[:200], x[200:], y[200:]


def _loss(model, x, y):
    return float(-np.log(model.predict_proba(x)[0, y[0]]))


def test_perturbation_gradient_equals_finite_differences_of_retraining(ones_sevens):
    # d L(test; retrained) / d x_i[f] by central differences with exact re-fits (h = 1e-4,
    # tol 1e-12): first-order influence agrees to 2% on the largest components.
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(x, y)
    inf = dv.InfluenceFunction(model, solver="exact").fit(x, y)
    t = np.argmin(np.abs(model.decision_function(xs)))  # a test point near the boundary
    g = inf.perturbation_influence(xs[[t]], ys[[t]], [3])[0, 0]
    feats = np.argsort(-np.abs(g))[:6]
    h = 1e-4
    fd = []
    for f in feats:
        vals = []
        for sgn in (1, -1):
            xp = x.copy()
            xp[3, f] += sgn * h
            vals.append(_loss(clone(model).fit(xp, y), xs[[t]], ys[[t]]))
        fd.append((vals[0] - vals[1]) / (2 * h))
    np.testing.assert_allclose(g[feats], fd, rtol=0.02)


def test_attack_stays_in_its_box_refits_exactly_and_beats_random(ones_sevens):
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    margins = np.abs(model.decision_function(xs))
    correct = model.predict(xs) == ys
    t = int(np.flatnonzero(correct)[np.argmin(margins[correct])])
    kw = dict(n_train=5, epsilon=0.25, step=0.05, max_steps=20, bounds=(0.0, 1.0))
    res = training_set_attack(model, x, y, xs[t], ys[t], **kw)
    delta = res.x_perturbed - res.x_original
    assert np.all(np.abs(delta) <= 0.25 + 1e-12)
    assert np.all((res.x_perturbed >= 0) & (res.x_perturbed <= 1))
    assert res.perturbation <= 0.25 + 1e-12 and len(res.test_loss) == res.steps + 1
    modified = x.copy()
    modified[res.train_indices] = res.x_perturbed
    np.testing.assert_array_equal(res.model.coef_, clone(model).fit(modified, y).coef_)
    assert res.flipped and res.predictions[-1] != ys[t]
    assert res.test_loss[-1] > res.test_loss[0]
    # the same number of random rows, random signs of the same size: the test loss moves less
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), 5, replace=False)
    noise = x.copy()
    noise[rows] = np.clip(x[rows] + 0.25 * rng.choice([-1, 1], size=x[rows].shape), 0, 1)
    random_loss = _loss(clone(model).fit(noise, y), xs[[t]], ys[[t]])
    assert res.test_loss[-1] > random_loss


def test_attack_rejects_bad_settings(ones_sevens):
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(max_iter=5000).fit(x, y)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        training_set_attack(model, x, y, xs[0], ys[0], epsilon=0)
    with pytest.raises(InvalidParameterError, match="n_train"):
        training_set_attack(model, x, y, xs[0], ys[0], n_train=0)
    with pytest.raises(InvalidParameterError, match="refit"):
        training_set_attack(model, x, y, xs[0], ys[0], refit=lambda m, a, b: m)


# ---------------------------------------------------------------------------- torch networks
@pytest.fixture(scope="module")
def small_net(ones_sevens):
    import torch
    from torch import nn

    from datavalue.attribution.applications.attack import warm_refit

    x, y, xs, ys = ones_sevens
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    loss = nn.CrossEntropyLoss(reduction="none")
    net = warm_refit(loss, weight_decay=1e-2, max_iter=1000)(net, x, y)
    return net, loss


def _objective_grad(net, loss, x, y, wd):
    import torch

    net.zero_grad()
    value = loss(net(torch.as_tensor(x)), torch.as_tensor(y)).mean()
    value = value + 0.5 * wd * sum((p * p).sum() for p in net.parameters())
    value.backward()
    return max(float(p.grad.abs().max()) for p in net.parameters())


def test_torch_attack_warm_refit_is_a_refit_and_first_order_predicts_the_step(ones_sevens,
                                                                              small_net):
    import torch

    from datavalue.attribution.applications.attack import random_perturbation, warm_refit

    x, y, xs, ys = ones_sevens
    net, loss = small_net
    wd = 1e-2
    with torch.no_grad():
        out = net(torch.as_tensor(xs))
    correct = np.flatnonzero(out.argmax(1).numpy() == ys)
    margin = (out[:, 1] - out[:, 0]).abs().numpy()[correct]
    t = int(correct[np.argsort(margin)[1]])  # the second closest call: flipped in 3 steps
    refit = warm_refit(loss, weight_decay=wd, max_iter=200)
    kw = dict(n_train=5, epsilon=0.25, bounds=(0.0, 1.0), loss=loss, refit=refit)
    inf = dv.InfluenceFunction(net, loss, damping=wd, hessian="exact", progress=False).fit(x, y)
    res = training_set_attack(net, x, y, xs[t], ys[t], step=0.05, max_steps=20, damping=wd,
                              **kw)
    assert res.flipped and res.steps >= 2 and res.predictions[-1] != ys[t]
    assert np.all(np.abs(res.x_perturbed - res.x_original) <= 0.25 + 1e-12)
    assert np.all((res.x_perturbed >= 0) & (res.x_perturbed <= 1))
    modified = x.copy()
    modified[res.train_indices] = res.x_perturbed
    # the warm start ends at a stationary point of the perturbed objective (L-BFGS tolerance)
    assert _objective_grad(res.model, loss, modified, y, wd) < 1e-6
    # I_pert,loss of the attacked rows (exact Hessian + weight decay, the re-fit's objective)
    # against central differences of warm re-fits along its sign (h = 1e-3, L-BFGS to 1e-12):
    # rtol 1e-3 (measured 6e-5; InfluenceFunction's default Gauss-Newton curvature is 10% off).
    g = inf.perturbation_influence(xs[[t]], ys[[t]], res.train_indices)[0]
    tight = warm_refit(loss, weight_decay=wd, max_iter=500, tolerance=1e-12)
    moved = []
    for sign in (1, -1):
        xp = x.copy()
        xp[res.train_indices] += sign * 1e-3 * np.sign(g)
        with torch.no_grad():
            moved.append(float(loss(tight(net, xp, y)(torch.as_tensor(xs[[t]])),
                                    torch.as_tensor(ys[[t]]))[0]))
    np.testing.assert_allclose((moved[0] - moved[1]) / 2, 1e-3 * np.abs(g).sum(), rtol=1e-3)
    base = random_perturbation(net, x, y, xs[t], ys[t], random_state=0, **kw)
    assert not base.flipped and base.steps == 1
    assert abs(base.test_loss[1] - base.test_loss[0]) < 0.1 * (res.test_loss[-1]
                                                               - res.test_loss[0])


def test_per_feature_box_and_misclassified_target(ones_sevens):
    from datavalue import InvalidDataError
    from datavalue.attribution.applications.attack import random_perturbation

    x, y, xs, ys = ones_sevens
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    eps = np.linspace(0.05, 0.3, 64)  # standardized features have one radius each
    res = random_perturbation(model, x, y, xs[0], ys[0], n_train=10, epsilon=eps,
                              bounds=(np.zeros(64), np.ones(64)), random_state=3)
    delta = np.abs(res.x_perturbed - res.x_original)
    assert np.all(delta <= eps + 1e-12) and np.any(np.isclose(delta, eps[None, :]))
    again = random_perturbation(model, x, y, xs[0], ys[0], n_train=10, epsilon=eps,
                                bounds=(0, 1), random_state=3)
    np.testing.assert_array_equal(again.x_perturbed, res.x_perturbed)
    other = 1 - model.predict(xs[[0]])[0]  # the label the model does not predict
    with pytest.raises(InvalidDataError, match="already misclassifies"):
        training_set_attack(model, x, y, xs[0], other)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        training_set_attack(model, x, y, xs[0], ys[0], epsilon=np.ones(3))
    with pytest.raises(InvalidDataError, match="bounds"):
        training_set_attack(model, x, y, xs[0], ys[0], bounds=(0.0, 0.5))
    with pytest.raises(InvalidDataError, match="x_target"):
        training_set_attack(model, x, y, xs[0, :10], ys[0])


# ---------------------------------------------------------------------------- command line
def _run(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "datavalue", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_attack_command_flips_draws_and_saves(tmp_path):
    # digits test row 6 (id 43): two training digits moved by at most 2 of 16 grey levels flip
    # the logistic regression's prediction after one step; random rows do not.
    out = tmp_path / "atk"
    proc = _run("attack", "--data", "digits", "--test-index", 6, "--n-train", "2,5",
                "--max-steps", 3, "--show", 2, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Target: test #43" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\s+[25]  ", line)]
    assert len(lines) == 2 and all("FLIPPED" in line for line in lines), proc.stdout
    assert all("not flipped, loss" in line for line in lines)  # the random baseline
    assert proc.stdout.count("original | perturbed") == 4  # two pairs drawn per count
    doc = json.loads((out / "attack.json").read_text())
    ds = dv.Dataset.load(out / "dataset.npz")
    for run in doc["runs"]:
        for kind in ("attack", "random"):
            r = run[kind]
            assert len(r["row_ids"]) == run["n_train"]
            assert r["row_ids"] == ds.ids_train[r["train_indices"]].tolist()
            before = ds.raw_features(np.asarray(r["x_original"]))
            after = ds.raw_features(np.asarray(r["x_perturbed"]))
            assert np.all(np.abs(after - before) <= 2 + 1e-9)  # 0.125 of 16 grey levels
            assert after.min() >= -1e-9 and after.max() <= 16 + 1e-9
            np.testing.assert_allclose(before, ds.raw_features(ds.x_train[r["train_indices"]]))
        assert run["attack"]["flipped"] and not run["random"]["flipped"]
        assert run["attack"]["test_loss"][-1] > run["attack"]["test_loss"][0]
    report = _run("report", out)
    assert report.returncode == 0, report.stderr
    page = (out / "report.html").read_text()
    assert "Training-set attack on test #43" in page
    assert page.count("<img ") == 1 + 2 * (2 + 5)  # the target + every original/perturbed pair


@pytest.mark.parametrize("args, message", [
    (["--n-train", "0,2"], "--n-train must be"),
    (["--model", "forest"], "Unknown model 'forest'"),
    (["--epsilon", "0"], "--epsilon must be"),
    (["--test-index", "93"], "already misclassifies"),
    (["--test-index", "9999"], "--test-index must be"),
])
def test_attack_command_errors_are_one_line(args, message, tmp_path):
    base = {"--test-index": "6"}
    argv = ["attack", "--data", "digits", "--max-steps", "1", "--n-train", "1"]
    flags = dict(base)
    flags.update(dict(zip(args[::2], args[1::2], strict=True)))
    for key, value in flags.items():
        if key in argv:
            argv[argv.index(key) + 1] = value
        else:
            argv += [key, value]
    proc = _run(*argv)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_attack_command_on_a_csv_keeps_categories_and_names_rows_by_id(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 160
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(x1 + 0.5 * x2 + (color == "red") + 0.3 * rng.normal(size=n) > 0.3,
                     "yes", "no")
    path = tmp_path / "table.csv"
    pd.DataFrame({"customer": [f"c{i:03d}" for i in range(n)], "x1": x1, "x2": x2,
                  "color": color, "label": label}).to_csv(path, index=False)
    out = tmp_path / "atk"
    proc = _run("attack", "--data", path, "--target", "label", "--id-column", "customer",
                "--test-index", 0, "--n-train", "2", "--max-steps", 3, "--epsilon", 0.25,
                "--out", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "attack.json").read_text())
    ds = dv.Dataset.load(out / "dataset.npz")
    run = doc["runs"][0]["attack"]
    assert all(str(r).startswith("c") for r in run["row_ids"])  # the user's ids
    assert f"row {run['row_ids'][0]} (" in proc.stdout  # the changed features, named by id
    onehot = [i for i, name in enumerate(ds.feature_names) if "=" in name]
    assert onehot and np.array_equal(np.asarray(run["x_perturbed"])[:, onehot],
                                     np.asarray(run["x_original"])[:, onehot])
    moved = np.abs(np.asarray(run["x_perturbed"]) - np.asarray(run["x_original"]))
    assert moved.max() > 0
    assert _run("report", out).returncode == 0
    assert "feature (largest changes)" in (out / "report.html").read_text()


def test_a_diverging_refit_is_an_error_not_a_result(ones_sevens, small_net):
    import torch

    from datavalue import ModelOutputError
    from datavalue.attribution.applications.attack import warm_refit

    x, y, xs, ys = ones_sevens
    net, loss = small_net

    def diverging(module, xa, ya):
        broken = warm_refit(loss, weight_decay=1e-2, max_iter=5)(module, xa, ya)
        with torch.no_grad():
            next(broken.parameters()).fill_(float("nan"))
        return broken

    with torch.no_grad():
        t = int(np.flatnonzero(net(torch.as_tensor(xs)).argmax(1).numpy() == ys)[0])
    with pytest.raises(ModelOutputError, match="diverged"):
        training_set_attack(net, x, y, xs[t], ys[t], n_train=2, epsilon=0.25, bounds=(0, 1),
                            loss=loss, refit=diverging, damping=1e-2)
    with pytest.raises(InvalidParameterError, match="weight_decay"):
        warm_refit(loss, weight_decay="0.1")
