"""InfluenceFunction against closed forms and actual retraining.

Oracles: Sherman-Morrison / Woodbury leave-out formulas for least squares, refitting the
scikit-learn estimator without the points (tight tolerance), refitting the smooth-hinge SVM,
finite differences of retrained models, dense autograd Hessians for a torch MLP.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import datavalue as dv  # noqa: E402
from datavalue import (  # noqa: E402
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    UnknownNameError,
)
from datavalue.attribution import (  # noqa: E402
    InfluenceFunction,
    fit_smooth_hinge_svm,
    make_solver,
)
from datavalue.valuation.influence import (  # noqa: E402
    InfluenceValuation,
    SelfInfluenceValuation,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)




def _refit(est, x, y):
    # One BLAS thread: tiny problems, and no contention with torch's thread pool.
    with threadpool_limits(1, user_api="blas"):
        return clone(est).fit(x, y)


# ---------------------------------------------------------------------------- least squares
@pytest.fixture(scope="module")
def lsq():
    rng = np.random.default_rng(0)
    n, d = 40, 3
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d) + 0.5 + 0.3 * rng.normal(size=n)
    x_test = rng.normal(size=(6, d))
    y_test = x_test @ np.ones(d)
    return x, y, x_test, y_test


def _aug(x):
    return np.hstack([x, np.ones((len(x), 1))])


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_linear_regression_matches_sherman_morrison(lsq, solver):
    """For least squares, removing z_i changes theta by -A^{-1} x_i r_i / (1 - h_i)
    (Sherman-Morrison, A = X^T X). The influence function is the first-order term:
    influence[t, i] = 2 r_t r_i x_t^T A^{-1} x_i, i.e. (1 - h_i) times the exact change of the
    test residual's linear term; the Newton step of `unlearn` is exact."""
    x, y, xt, yt = lsq
    est = LinearRegression().fit(x, y)
    opts = {"rtol": 1e-13} if solver == "cg" else None
    inf = InfluenceFunction(est, solver=solver, solver_options=opts).fit(x, y)
    xa, xta = _aug(x), _aug(xt)
    a_inv = np.linalg.inv(xa.T @ xa)
    r, rt = y - est.predict(x), yt - est.predict(xt)
    lev = np.einsum("ij,jk,ik->i", xa, a_inv, xa)
    closed = 2 * rt[:, None] * r[None, :] * (xta @ a_inv @ xa.T)
    scores = inf.influence(xt, yt)
    np.testing.assert_allclose(scores, closed, rtol=1e-6, atol=1e-12)

    for i in (0, 7, 33):
        loo_delta = -a_inv @ xa[i] * r[i] / (1 - lev[i])  # Sherman-Morrison
        refit = LinearRegression().fit(np.delete(x, i, 0), np.delete(y, i))
        np.testing.assert_allclose(est.coef_ + loo_delta[:-1], refit.coef_, atol=1e-10)
        exact_change = (yt - refit.predict(xt)) ** 2 - rt**2
        # first-order part of the exact change = influence / (1 - h_i)
        np.testing.assert_allclose(2 * rt * (-xta @ loo_delta), scores[:, i] / (1 - lev[i]),
                                   rtol=1e-6, atol=1e-12)
        out = inf.unlearn([i], xt, yt)
        np.testing.assert_allclose(out.delta, loo_delta, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(out.test_loss - out.base_test_loss, exact_change,
                                   rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(out.model.coef_, refit.coef_, rtol=1e-6)
    # Several points at once: Woodbury, i.e. the refit.
    idx = [2, 5, 11, 30]
    refit = LinearRegression().fit(np.delete(x, idx, 0), np.delete(y, idx))
    out = inf.unlearn(idx, xt, yt)
    np.testing.assert_allclose(out.params, np.r_[refit.coef_, refit.intercept_], rtol=1e-6)
    np.testing.assert_allclose(out.test_loss, (yt - refit.predict(xt)) ** 2, rtol=1e-6)


def test_ridge_influence_closed_form(lsq):
    x, y, xt, yt = lsq
    alpha = 4.0
    est = Ridge(alpha=alpha).fit(x, y)
    inf = InfluenceFunction(est, solver="exact").fit(x, y)
    xa, xta = _aug(x), _aug(xt)
    reg = alpha * np.diag([1.0] * x.shape[1] + [0.0])  # the intercept is not penalised
    a_inv = np.linalg.inv(xa.T @ xa + reg)
    r, rt = y - est.predict(x), yt - est.predict(xt)
    closed = 2 * rt[:, None] * r[None, :] * (xta @ a_inv @ xa.T)
    np.testing.assert_allclose(inf.influence(xt, yt), closed, rtol=1e-6, atol=1e-12)
    idx = [1, 4, 9]
    refit = Ridge(alpha=alpha).fit(np.delete(x, idx, 0), np.delete(y, idx))
    np.testing.assert_allclose(inf.unlearn(idx).params, np.r_[refit.coef_, refit.intercept_],
                               rtol=1e-6)


# ---------------------------------------------------------------------------- digits 1 vs 7
@pytest.fixture(scope="module")
def digits17(shared_data):
    with np.load(shared_data / "digits.npz") as f:
        x, y = f["X"].astype(np.float64) / 16.0, f["y"]
    keep = (y == 1) | (y == 7)
    x, y = x[keep], (y[keep] == 7).astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:252], perm[252:]
    return x[tr], y[tr], x[te], y[te]


LOGREG = LogisticRegression(C=1.0, solver="newton-cg", tol=1e-12, max_iter=1000)


@pytest.fixture(scope="module")
def logreg17(digits17):
    xtr, ytr, _, _ = digits17
    est = _refit(LOGREG, xtr, ytr)
    return est, InfluenceFunction(est, solver="exact").fit(xtr, ytr)


def _params(est):
    return np.r_[est.coef_.ravel(), est.intercept_]


def test_logistic_regression_predicts_leave_one_out(digits17, logreg17):
    """Koh & Liang Fig. 2: predicted vs actual LOO test-loss change, 50 largest |influence| on
    each of 5 test points, actual = refitting the estimator without the point."""
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    tests = np.random.default_rng(1).choice(len(yte), 5, replace=False)
    scores = inf.influence(xte[tests], yte[tests])
    base = inf.losses(xte[tests], yte[tests])
    predicted, actual = [], []
    for a, t in enumerate(tests):
        for i in np.argsort(-np.abs(scores[a]))[:50]:
            refit = _refit(LOGREG, np.delete(xtr, i, 0), np.delete(ytr, i))
            loss = inf.losses(xte[t : t + 1], yte[t : t + 1], _params(refit))[0]
            actual.append(loss - base[a])
            predicted.append(scores[a, i])
    r = np.corrcoef(predicted, actual)[0, 1]
    print(f"logistic regression LOO Pearson: {r:.4f}")
    assert r >= 0.99, r


def test_smooth_hinge_svm_predicts_leave_one_out(digits17):
    """Koh & Liang Sec. 4.1 / Fig. 3: the smooth-hinge SVM against retraining with the same
    smoothed loss (test points inside the margin, where the loss has a gradient)."""
    xtr, ytr, xte, yte = digits17
    C, t = 0.1, 0.1
    est = LinearSVC(loss="hinge", C=C, tol=1e-8, max_iter=100_000).fit(xtr, ytr)
    inf = InfluenceFunction(est, solver="exact", temperature=t).fit(xtr, ytr)
    losses = inf.losses(xte, yte)
    candidates = np.flatnonzero(losses > 0.01 * losses.max())
    tests = np.random.default_rng(2).choice(candidates, 5, replace=False)
    scores = inf.influence(xte[tests], yte[tests])
    w0, b0 = inf.params_[:-1], inf.params_[-1]
    predicted, actual = [], []
    for a, k in enumerate(tests):
        for i in np.argsort(-np.abs(scores[a]))[:50]:
            w, b = fit_smooth_hinge_svm(np.delete(xtr, i, 0), np.delete(ytr, i), C=C,
                                        temperature=t, intercept_penalty=1.0, init=(w0, b0))
            new = inf.losses(xte[k : k + 1], yte[k : k + 1], np.r_[w, b])[0]
            actual.append(new - losses[k])
            predicted.append(scores[a, i])
    r = np.corrcoef(predicted, actual)[0, 1]
    print(f"smooth-hinge SVM LOO Pearson: {r:.4f}")
    assert r >= 0.95, r


def test_perturbation_influence_matches_finite_difference(digits17, logreg17):
    """d test loss / d x_i[j] by central differences of refitted models."""
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    t = int(np.argmax(inf.losses(xte, yte)))  # the worst test point: large, clear signal
    scores = inf.influence(xte[t : t + 1], yte[t : t + 1])[0]
    train = np.sort(np.argsort(-np.abs(scores))[:2])[::-1]  # descending: order is kept
    grads = inf.perturbation_influence(xte[t : t + 1], yte[t : t + 1], train)
    assert grads.shape == (1, 2, xtr.shape[1])
    h = 1e-2
    for a, i in enumerate(train):
        for j in np.argsort(-np.abs(grads[0, a]))[:3]:
            losses = []
            for s in (1.0, -1.0):
                xp = xtr.copy()
                xp[i, j] += s * h
                refit = _refit(LOGREG, xp, ytr)
                losses.append(-np.log(refit.predict_proba(xte[t : t + 1])[0, yte[t]]))
            fd = (losses[0] - losses[1]) / (2 * h)
            np.testing.assert_allclose(grads[0, a, j], fd, rtol=1e-3)


@pytest.mark.parametrize("fraction, tol", [(0.01, 0.03), (0.05, 0.06)])
def test_unlearn_matches_retraining(digits17, logreg17, fraction, tol):
    """One Newton step vs refitting without 1% / 5% of the data. Measured (3 seeds): parameter
    error 0.2-1.1% (1%) and 2.5% (5%) of the change; first-order params_influence 3-7% / 9-11%."""
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    k = int(round(fraction * len(ytr)))
    idx = np.random.default_rng(3).choice(len(ytr), k, replace=False)
    out = inf.unlearn(idx, xte, yte)
    refit = _refit(LOGREG, np.delete(xtr, idx, 0), np.delete(ytr, idx))
    actual = _params(refit) - _params(est)
    cosine = out.delta @ actual / np.linalg.norm(out.delta) / np.linalg.norm(actual)
    assert cosine > 0.999
    assert np.linalg.norm(out.delta - actual) <= tol * np.linalg.norm(actual)
    print(f"unlearn {fraction:.0%}: cosine {cosine:.6f}, parameter error "
          f"{np.linalg.norm(out.delta - actual) / np.linalg.norm(actual):.4f}")
    first_order = inf.params_influence(idx)
    assert np.linalg.norm(out.delta - actual) < np.linalg.norm(first_order - actual)
    actual_loss = inf.losses(xte, yte, _params(refit)) - out.base_test_loss
    predicted_loss = out.test_loss - out.base_test_loss
    assert np.linalg.norm(predicted_loss - actual_loss) <= tol * np.linalg.norm(actual_loss)
    np.testing.assert_allclose(out.model.coef_.ravel(), out.params[:-1])
    np.testing.assert_allclose(est.coef_.ravel(), inf.params_[:-1])  # the estimator untouched


def test_self_influence_flags_flipped_labels(shared_data):
    """10% of digits labels flipped to another class: high self-influence = suspicious, so
    -self_influence as a value (low = bad) detects them."""
    with np.load(shared_data / "digits.npz") as f:
        x, y = f["X"].astype(np.float64) / 16.0, f["y"]
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))[:800]
    x, y = x[rows], y[rows].copy()
    noisy = rng.choice(len(y), 80, replace=False)
    y[noisy] = (y[noisy] + rng.integers(1, 10, 80)) % 10
    est = _refit(LogisticRegression(C=1.0, max_iter=5000, tol=1e-8), x, y)
    inf = InfluenceFunction(est, solver="exact").fit(x, y)
    si = inf.self_influence()
    assert (si > 0).all()
    report = dv.evaluate.noisy_detection(-si, noisy)
    print(f"self-influence flipped-label AUC: {report['auc']:.4f}")
    assert report["auc"] >= 0.9, report


# ---------------------------------------------------------------------------- consistency
def test_views_of_the_same_scores(digits17, logreg17):
    xtr, ytr, xte, yte = digits17
    _, inf = logreg17
    sub = np.arange(0, 252, 9)
    np.testing.assert_allclose(np.diag(inf.influence(xtr[sub], ytr[sub])[:, sub]),
                               inf.self_influence()[sub], rtol=1e-10)
    scores = inf.influence(xte[:7], yte[:7])
    np.testing.assert_allclose(inf.summed_influence(xte[:7], yte[:7]), scores.sum(0),
                               rtol=1e-9, atol=1e-15)
    top = inf.top_k(xte[:7], yte[:7], k=5)
    assert top.helpful.shape == top.harmful_scores.shape == (7, 5)
    np.testing.assert_array_equal(top.helpful, np.argsort(-scores, axis=1)[:, :5])
    np.testing.assert_array_equal(top.harmful, np.argsort(scores, axis=1)[:, :5])
    np.testing.assert_allclose(top.helpful_scores, -np.sort(-scores, axis=1)[:, :5])
    assert inf.top_k(xte[:1], yte[:1], k=10_000).helpful.shape == (1, 252)
    # params_influence of one point predicts the influence on any test loss, to first order.
    g_test = inf.influence(xte[:1], yte[:1])[0, 17]
    with torch.no_grad():
        delta = inf.params_influence([17])
    eps = 1e-6
    lo = inf.losses(xte[:1], yte[:1], inf.params_ - eps * delta)[0]
    hi = inf.losses(xte[:1], yte[:1], inf.params_ + eps * delta)[0]
    np.testing.assert_allclose((hi - lo) / (2 * eps), g_test, rtol=1e-5)


def test_scores_identical_for_block_sizes_and_memmap(digits17, logreg17, tmp_path):
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    ref = inf.influence(xte[:30], yte[:30])
    for bs, memory in ((7, 2**30), (64, 0)):
        other = InfluenceFunction(est, solver="exact", batch_size=bs, max_memory=memory)
        other.fit(xtr, ytr)
        np.testing.assert_allclose(other.influence(xte[:30], yte[:30]), ref, rtol=1e-10,
                                   atol=1e-16)
        np.testing.assert_allclose(other.self_influence(), inf.self_influence(), rtol=1e-10)
    # Training gradients not cached, test rows grouped by memory: same scores, same top-k.
    grouped = InfluenceFunction(est, solver="exact", batch_size=8, max_memory=8 * 65 * 20)
    grouped.fit(xtr, ytr)
    assert not grouped._train_grads.cacheable
    np.testing.assert_allclose(grouped.influence(xte[:30], yte[:30]), ref, rtol=1e-10,
                               atol=1e-16)
    np.testing.assert_array_equal(grouped.top_k(xte[:30], yte[:30], 4).helpful,
                                  inf.top_k(xte[:30], yte[:30], 4).helpful)
    mm = inf.influence(xte[:30], yte[:30], out=tmp_path / "inf.npy")
    assert isinstance(mm, np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "inf.npy", mmap_mode="r"), ref)


# ---------------------------------------------------------------------------- torch MLP
@pytest.fixture(scope="module")
def mlp():
    gen = torch.Generator().manual_seed(0)
    n, d = 60, 4
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] ** 2 > 1).long() + (x[:, 2] > 0.8).long()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net = net.double()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):  # trained, not converged: the Hessian need not be PD
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.float(), x, y  # a float32 user model; influence runs in float64


def _mlp_reference(net, x, y, xt, yt, damping, names=None, gauss_newton=False):
    net = copy.deepcopy(net).double()  # never touch the fixture's (float32) module
    named = {k: v.detach() for k, v in net.named_parameters()}
    names = list(named) if names is None else names
    shapes = [named[k].shape for k in names]
    flat0 = torch.cat([named[k].reshape(-1) for k in names])

    def out(flat, xs):
        params, i = dict(named), 0
        for k, s in zip(names, shapes, strict=True):
            params[k] = flat[i : i + s.numel()].reshape(s)
            i += s.numel()
        return torch.func.functional_call(net, params, (xs,))

    def objective(flat):
        return torch.nn.functional.cross_entropy(out(flat, x), y)

    if gauss_newton:
        jac = torch.autograd.functional.jacobian(lambda f: out(f, x), flat0)
        p = torch.softmax(out(flat0, x), 1)
        h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        hess = torch.einsum("nkp,nkl,nlq->pq", jac, h_out, jac) / len(x)
    else:
        hess = torch.autograd.functional.hessian(objective, flat0)

    def grads(xs, ys):
        rows = []
        for i in range(len(xs)):
            f = flat0.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(out(f, xs[i : i + 1]), ys[i : i + 1])
            rows.append(torch.autograd.grad(loss, f)[0])
        return torch.stack(rows)

    g_train, g_test = grads(x, y), grads(xt, yt)
    h = hess + damping * torch.eye(len(flat0), dtype=torch.float64)
    return (g_test @ torch.linalg.solve(h, g_train.T)).numpy() / len(x), hess


def test_torch_mlp_with_damping(mlp):
    net, x, y = mlp
    xt, yt = x[:6] + 0.1, y[:6]
    damping = 0.01
    ref, hess = _mlp_reference(net, x, y, xt, yt, damping)
    # the reference inverts the Hessian itself: ask for it (a torch module's default, "auto",
    # is the Gauss-Newton matrix)
    exact = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact", damping=damping,
                              hessian="exact")
    got = exact.fit(x, y).influence(xt, yt)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)
    cg = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="cg", damping=damping,
                           hessian="exact", solver_options={"rtol": 1e-10}).fit(x, y)
    np.testing.assert_allclose(cg.influence(xt, yt), ref, rtol=1e-6, atol=1e-10)
    # the user's float32 module is unchanged and unlearn gives back a module of its kind
    assert next(net.parameters()).dtype == torch.float32
    new = exact.unlearn([0, 1, 2]).model
    assert isinstance(new, torch.nn.Sequential) and next(new.parameters()).dtype == torch.float32


def test_low_rank_scores_equal_the_generic_path(mlp, tmp_path):
    """Arnoldi (complement "drop") scores go through the rank-r space with cached projected
    training gradients; they must equal <solve(test gradient), training gradient> / n computed
    the generic way, on the first call, on a repeated call and into a memory map."""
    net, x, y = mlp
    xt, yt = x[:9] + 0.1, y[:9]
    inf = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="arnoldi", damping=0.01,
                            solver_options={"rank": 12}, batch_size=7).fit(x, y)
    assert inf.solver_.factor() is not None
    m = inf.model_
    xq, yq = m.prepare(xt, yt, "x", "y")
    from datavalue.attribution.gradients import per_example_gradients

    ref = (inf.solver_.solve(per_example_gradients(m, xq, yq))
           @ per_example_gradients(m, inf._data).T).numpy() / len(x)
    first = inf.influence(xt, yt)
    np.testing.assert_allclose(first, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(inf.influence(xt, yt), first)
    mm = inf.influence(xt, yt, out=tmp_path / "low.npy")
    np.testing.assert_array_equal(np.asarray(mm), first)
    # A complement that is not zero has no low-rank form: the generic path.
    tail = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="arnoldi", damping=0.01,
                             solver_options={"rank": 12, "complement": "damping"}).fit(x, y)
    assert tail.solver_.factor() is None
    assert np.isfinite(tail.influence(xt, yt)).all()


def test_torch_mlp_last_layer_and_gauss_newton(mlp):
    net, x, y = mlp
    xt, yt = x[:5] - 0.2, y[:5]
    ref, _ = _mlp_reference(net, x, y, xt, yt, 1e-3, names=["2.weight", "2.bias"])
    inf = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact", damping=1e-3,
                            params=[net[2]]).fit(x, y)
    assert inf.n_params_ == 27 and inf.param_names_ == ("2.weight", "2.bias")
    np.testing.assert_allclose(inf.influence(xt, yt), ref, rtol=1e-8, atol=1e-12)
    ref_gn, _ = _mlp_reference(net, x, y, xt, yt, 1e-3, gauss_newton=True)
    gn = InfluenceFunction(net, torch.nn.functional.cross_entropy, solver="cg", damping=1e-3,
                           hessian="gauss-newton", solver_options={"rtol": 1e-10}).fit(x, y)
    np.testing.assert_allclose(gn.influence(xt, yt), ref_gn, rtol=1e-6, atol=1e-10)
    a = gn.influence(xt, yt)
    b = InfluenceFunction(net, torch.nn.functional.cross_entropy, solver="cg", damping=1e-3,
                          hessian="gauss-newton", batch_size=7,
                          solver_options={"rtol": 1e-10}).fit(x, y).influence(xt, yt)
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------------------- valuation, errors
def test_influence_valuation_is_summed_influence(lsq):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=80) > 0).astype(int)
    xv = rng.normal(size=(30, 4))
    yv = (xv[:, 0] - xv[:, 1] > 0).astype(int)
    flipped = np.arange(8)
    y_noisy = y.copy()
    y_noisy[flipped] = 1 - y_noisy[flipped]
    val = InfluenceValuation().fit(x, y_noisy, xv, yv)
    assert val.values_.shape == (80,) and val.values_.dtype == np.float64
    assert val.result_.method == "influence"
    est = LogisticRegression(max_iter=1000).fit(x, y_noisy)
    direct = InfluenceFunction(est, solver="exact").fit(x, y_noisy).influence(xv, yv).sum(0)
    np.testing.assert_allclose(val.values_, direct, rtol=1e-9, atol=1e-15)
    report = dv.evaluate.noisy_detection(val.values_, flipped)
    assert report["auc"] > 0.8, report
    reg = InfluenceValuation().fit(*lsq)  # regression: Ridge by default
    assert reg.values_.shape == (40,)
    own = SelfInfluenceValuation().fit(x, y_noisy)  # no validation data needed
    np.testing.assert_allclose(own.values_, -val.influence_.self_influence(), rtol=1e-12)
    assert own.result_.method == "self-influence"
    assert dv.evaluate.noisy_detection(own.values_, flipped)["auc"] > 0.8
    yv_new_class = yv.copy()
    yv_new_class[0] = 2
    with pytest.raises(InvalidDataError, match="y_valid.*absent"):
        InfluenceValuation().fit(x, y_noisy, xv, yv_new_class)


def test_errors(digits17, logreg17):
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    with pytest.raises(UnknownNameError, match="'solver'.*exact"):
        InfluenceFunction(est, solver="newton").fit(xtr, ytr)
    with pytest.raises(InvalidParameterError, match="'damping'"):
        InfluenceFunction(est, damping=-1.0).fit(xtr, ytr)
    with pytest.raises(InvalidParameterError, match="'hessian'"):
        InfluenceFunction(est, hessian="fisher").fit(xtr, ytr)
    with pytest.raises(InvalidParameterError, match="'dtype'"):
        InfluenceFunction(est, dtype="int8").fit(xtr, ytr)
    with pytest.raises(NotFittedError):
        InfluenceFunction(est).influence(xte, yte)
    with pytest.raises(InvalidDataError, match="indices"):
        inf.params_influence([0, 252])
    with pytest.raises(InvalidDataError, match="duplicate"):
        inf.unlearn([3, 3])
    with pytest.raises(InvalidDataError, match="y_test"):
        inf.influence(xte[:3], yte[:2])
    with pytest.raises(InvalidDataError, match="x_train.*NaN"):
        bad = xtr.copy()
        bad[0, 0] = np.nan
        InfluenceFunction(est).fit(bad, ytr)
    with pytest.raises(InvalidParameterError, match="'k'"):
        inf.top_k(xte[:1], yte[:1], k=0)
    with pytest.raises(InvalidModelError, match="not fitted"):
        InfluenceFunction(LogisticRegression()).fit(xtr, ytr)
    with pytest.raises(InvalidParameterError, match="solver_options"):
        InfluenceFunction(est, solver=make_solver("cg"), solver_options={"rtol": 1e-3}).fit(
            xtr, ytr)


def test_solver_instances_diagnostics_and_empty_removal(digits17, logreg17):
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    given = make_solver("cg", rtol=1e-12)
    other = InfluenceFunction(est, solver=given).fit(xtr, ytr)
    assert other.solver_ is not given and other.solver_.rtol == 1e-12  # the user's is not fitted
    np.testing.assert_allclose(other.influence(xte[:3], yte[:3]), inf.influence(xte[:3], yte[:3]),
                               rtol=1e-8, atol=1e-14)
    # A converged estimator is a stationary point of the objective we took over.
    assert inf.gradient_norm_ < 1e-8
    with pytest.warns(ConvergenceWarning):
        sloppy = LogisticRegression(C=1.0, max_iter=3).fit(xtr, ytr)
    assert InfluenceFunction(sloppy, solver="exact").fit(xtr, ytr).gradient_norm_ > 1e-4
    out = inf.unlearn([])
    np.testing.assert_array_equal(out.params, inf.params_)
    assert out.test_loss is None and out.delta.shape == (inf.n_params_,)
    np.testing.assert_array_equal(inf.params_influence(np.zeros(252, dtype=bool)), 0.0)


def test_float32_is_close_to_float64(digits17, logreg17):
    xtr, ytr, xte, yte = digits17
    est, inf = logreg17
    f32 = InfluenceFunction(est, solver="exact", dtype="float32").fit(xtr, ytr)
    a, b = f32.influence(xte[:5], yte[:5]), inf.influence(xte[:5], yte[:5])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_score_dtype(mlp):
    """EK-FAC's score products run in float32 by default ("auto"): the scores differ from
    float64 products by float32 rounding only (relative 1e-5 here, against EK-FAC's own
    approximation error of order 10%); an explicit score_dtype wins, and exact stays float64."""
    net, x, y = mlp
    xt, yt = x[:8] + 0.1, y[:8]

    def run(solver, score_dtype):
        inf = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=solver, damping=0.01,
                                score_dtype=score_dtype).fit(x, y)
        return inf, inf.influence(xt, yt)

    auto, s_auto = run("ekfac", "auto")
    full, s_full = run("ekfac", "float64")
    assert auto._score_dtype == torch.float32 and full._score_dtype == torch.float64
    assert s_auto.dtype == np.float64 and not np.array_equal(s_auto, s_full)
    np.testing.assert_allclose(s_auto, s_full, rtol=1e-4, atol=1e-5 * np.abs(s_full).max())
    np.testing.assert_array_equal(auto.top_k(xt, yt, 3).helpful[:, :1],
                                  full.top_k(xt, yt, 3).helpful[:, :1])
    exact, _ = run("exact", "auto")
    assert exact._score_dtype == torch.float64
    with pytest.raises(InvalidParameterError, match="score_dtype"):
        run("exact", "float16")


def test_cache_train_solves_gives_the_same_answers(digits17, logreg17):
    """Solving for the training gradients once (cache_train_solves) and for the test gradients
    per query are the same bilinear form (the inverse is symmetric): every view agrees to the
    CG tolerance (rtol 1e-10, condition number ~1e3 here: 1e-6 relative is a safe bound)."""
    xtr, ytr, xte, yte = digits17
    est, _ = logreg17
    opts = {"rtol": 1e-10}
    plain = InfluenceFunction(est, solver="cg", solver_options=opts).fit(xtr, ytr)
    cached = InfluenceFunction(est, solver="cg", solver_options=opts,
                               cache_train_solves=True).fit(xtr, ytr)
    xq, yq = xte[:12], yte[:12]
    ref = plain.influence(xq, yq)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(cached.influence(xq, yq), ref, rtol=1e-6, atol=1e-9 * scale)
    assert cached._train_solved is not None and cached._train_solved.shape == (
        len(xtr), cached.n_params_)
    np.testing.assert_array_equal(cached.top_k(xq, yq, 5).helpful, plain.top_k(xq, yq, 5).helpful)
    np.testing.assert_allclose(cached.self_influence(), plain.self_influence(), rtol=1e-6)
    np.testing.assert_allclose(cached.summed_influence(xq, yq), plain.summed_influence(xq, yq),
                               rtol=1e-6, atol=1e-9 * scale)
    np.testing.assert_allclose(cached.params_influence([0, 5, 9]),
                               plain.params_influence([0, 5, 9]), rtol=1e-6, atol=1e-12)
    with pytest.raises(InvalidParameterError, match="max_memory"):
        InfluenceFunction(est, solver="cg", cache_train_solves=True, max_memory=1000).fit(xtr, ytr)


def test_cache_train_solves_auto(mlp):
    """"auto" may cache the solved training gradients for (E)K-FAC when they fit max_memory
    (twice n x p: with the plain gradients), never for CG, and does so by ski rental: once the
    queries add up to n_train solves (a small query solves only its own points); the scores
    do not change."""
    net, x, y = mlp
    xt, yt = x[:5] + 0.1, y[:5]

    def fit(solver, **kw):
        return InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=solver, damping=0.01,
                                 score_dtype="float64", **kw).fit(x, y)

    auto = fit("ekfac")
    assert auto._cache_solves == "auto"
    n_bytes = len(x) * auto.n_params_ * 8
    small = fit("ekfac", max_memory=float(2 * n_bytes - 1))
    off = fit("ekfac", cache_train_solves=False)
    assert not small._cache_solves and not off._cache_solves
    expected = off.influence(xt, yt)
    np.testing.assert_allclose(auto.influence(xt, yt), expected, rtol=1e-10, atol=1e-15)
    assert auto._train_solved is None  # 5 solves so far, fewer than n_train
    many = len(x) // len(xt)
    for _ in range(many):  # the queries now add up to n_train solves: the training is solved
        np.testing.assert_allclose(auto.influence(xt, yt), expected, rtol=1e-10, atol=1e-15)
    assert auto._train_solved is not None and off._train_solved is None
    fresh = fit("ekfac")
    fresh.self_influence()  # n_train solves at once
    assert fresh._train_solved is not None
    assert not fit("cg")._cache_solves


@pytest.mark.parametrize("device", ["cuda:7", "no-such-device"])
def test_an_unavailable_device_is_named(digits17, logreg17, device):
    x, y = digits17[0], digits17[1]
    with pytest.raises(InvalidParameterError, match="'device'"):
        dv.InfluenceFunction(logreg17, device=device).fit(x, y)
