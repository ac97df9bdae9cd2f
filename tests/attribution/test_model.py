"""Taking over trained models: the wrapped objective must be the estimator's own.

Oracle: scikit-learn's fitted parameters minimise *its* objective, so the gradient of our mean
objective must vanish there (a wrong scaling of the regulariser, a penalised intercept that
should not be, or a sign flip all leave a clearly non-zero gradient); losses and predictions
must equal the estimator's.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge  # noqa: E402
from sklearn.svm import SVC, LinearSVC  # noqa: E402

from datavalue import (  # noqa: E402
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
)
from datavalue.attribution.gradients import objective_gradient  # noqa: E402
from datavalue.attribution.model import ParamLayout, smooth_hinge  # noqa: E402
from datavalue.attribution.sklearn_models import fit_smooth_hinge_svm  # noqa: E402
from datavalue.attribution.wrap import wrap_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)




@pytest.fixture(scope="module")
def binary():
    x, y = make_classification(120, 5, n_informative=4, n_redundant=0, random_state=0)
    return x, y


@pytest.fixture(scope="module")
def multiclass():
    x, y = make_classification(150, 6, n_informative=5, n_redundant=0, n_classes=3,
                               random_state=1)
    return x, y


@pytest.fixture(scope="module")
def regression():
    x, y = make_regression(80, 4, noise=5.0, random_state=2)
    return x, y + 3.0


def _grad_norm(est, x, y, **kw):
    m = wrap_model(est, x_train=x, y_train=y, **kw)
    xt, yt = m.prepare(x, y, "x", "y")
    g = objective_gradient(m, xt, yt, n_total=len(x), batch_size=64)
    return float(g.abs().max()), m


TIGHT = dict(tol=1e-12, max_iter=10_000)


@pytest.mark.parametrize(
    "est",
    [
        LogisticRegression(C=0.5, solver="newton-cg", **TIGHT),
        LogisticRegression(C=0.5, solver="lbfgs", fit_intercept=False, **TIGHT),
        LogisticRegression(C=0.5, solver="liblinear", intercept_scaling=3.0, **TIGHT),
        LogisticRegression(C=np.inf, solver="newton-cg", **TIGHT),
    ],
    ids=["l2", "no-intercept", "liblinear-penalised-intercept", "no-penalty"],
)
def test_logistic_objective_is_stationary_at_sklearn_optimum(est, binary):
    x, y = binary
    est.fit(x, y)
    g, m = _grad_norm(est, x, y)
    assert g < 1e-7
    # Same parameters, same per-example losses (log-loss) as the estimator.
    np.testing.assert_allclose(m.theta.numpy()[: x.shape[1]], est.coef_.ravel())
    xt, yt = m.prepare(x, y, "x", "y")
    p = est.predict_proba(x)[np.arange(len(y)), y]
    np.testing.assert_allclose(m.losses(m.params, xt, yt).numpy(), -np.log(p), rtol=1e-10)


def test_wrong_regulariser_scale_is_detected(binary):
    """The stationarity oracle has teeth: the same model under a halved C is not stationary."""
    x, y = binary
    est = LogisticRegression(C=0.5, solver="newton-cg", **TIGHT).fit(x, y)
    other = LogisticRegression(C=0.25).fit(x[:5], y[:5])
    other.coef_, other.intercept_ = est.coef_, est.intercept_
    g, _ = _grad_norm(other, x, y)
    assert g > 1e-3


def test_multinomial_logistic(multiclass):
    x, y = multiclass
    est = LogisticRegression(C=2.0, **TIGHT).fit(x, y)
    g, m = _grad_norm(est, x, y)
    assert g < 1e-7
    xt, yt = m.prepare(x, y, "x", "y")
    with torch.no_grad():
        proba = torch.softmax(m.forward(m.params, xt), dim=1).numpy()
    np.testing.assert_allclose(proba, est.predict_proba(x), atol=1e-12)
    # Centred (the softmax gauge) without changing a prediction.
    np.testing.assert_allclose(m.params["bias"].sum().item(), 0.0, atol=1e-12)
    # The Hessian is positive definite thanks to the gauge term (intercepts are unpenalised).
    from datavalue.attribution.gradients import hessian_operator

    h = hessian_operator(m, xt, yt).dense()
    assert torch.linalg.eigvalsh(h).min() > 0


def test_unpenalised_multinomial_gauge_makes_hessian_invertible(multiclass):
    from datavalue.attribution.gradients import hessian_operator

    x, y = multiclass
    est = LogisticRegression(C=np.inf, **TIGHT).fit(x, y)
    m = wrap_model(est, x_train=x, y_train=y)
    xt, yt = m.prepare(x, y, "x", "y")
    h = hessian_operator(m, xt, yt).dense()
    assert torch.linalg.eigvalsh(h).min() > 1e-6


@pytest.mark.parametrize("est", [LinearRegression(), Ridge(alpha=3.0),
                                 Ridge(alpha=3.0, fit_intercept=False)])
def test_least_squares_objective_is_stationary(est, regression):
    x, y = regression
    est.fit(x, y)
    g, m = _grad_norm(est, x, y)
    assert g < 1e-8 * np.abs(y).max() ** 2
    xt, yt = m.prepare(x, y, "x", "y")
    resid = (y - est.predict(x)) ** 2
    np.testing.assert_allclose(m.losses(m.params, xt, yt).numpy(), resid, rtol=1e-10)


def test_ridge_scaling_detected(regression):
    """Ridge's objective is ||r||^2 + alpha ||w||^2 (not 1/2 ||r||^2 or alpha/(2n))."""
    x, y = regression
    est = Ridge(alpha=30.0).fit(x, y)
    g, _ = _grad_norm(est, x, y)
    wrong = Ridge(alpha=15.0).fit(x, y)
    wrong.coef_, wrong.intercept_ = est.coef_, est.intercept_
    g_wrong, _ = _grad_norm(wrong, x, y)
    assert g < 1e-8 * np.abs(y).max() ** 2 < g_wrong


def test_linear_svc_squared_hinge_taken_over_as_is(binary):
    x, y = binary
    est = LinearSVC(C=0.3, tol=1e-12, max_iter=100_000, intercept_scaling=2.0).fit(x, y)
    g, m = _grad_norm(est, x, y)
    assert g < 1e-6
    np.testing.assert_allclose(m.theta.numpy()[:-1], est.coef_.ravel())
    assert m.notes and "squared hinge" in m.notes[0]


@pytest.mark.parametrize("kind", ["LinearSVC", "SVC"])
def test_hinge_svm_refit_on_smooth_hinge(kind, binary):
    x, y = binary
    est = (LinearSVC(loss="hinge", C=0.3, tol=1e-10, max_iter=100_000) if kind == "LinearSVC"
           else SVC(kernel="linear", C=0.3, tol=1e-8)).fit(x, y)
    g, m = _grad_norm(est, x, y, temperature=0.1)
    assert g < 1e-9  # theta_hat is the smooth-hinge optimum
    # ... close to the estimator's hinge solution, and predicts the same classes.
    xt, _ = m.prepare(x, y, "x", "y")
    with torch.no_grad():
        margin = m.forward(m.params, xt)[:, 0].numpy()
    assert np.mean((margin > 0) == (est.decision_function(x) > 0)) > 0.97
    g_small, m_small = _grad_norm(est, x, y, temperature=1e-3)
    assert g_small < 1e-8
    w_small = m_small.theta.numpy()[:-1]
    rel = np.linalg.norm(w_small - est.coef_.ravel()) / np.linalg.norm(est.coef_)
    assert rel < 0.05  # t -> 0 recovers the hinge solution


def test_fit_smooth_hinge_svm_matches_generic_optimizer(binary):
    from scipy.optimize import minimize

    x, y = binary
    s = np.where(y == 1, 1.0, -1.0)
    C, t = 0.7, 0.2

    def obj(theta):
        w, b = theta[:-1], theta[-1]
        m = s * (x @ w + b)
        return 0.5 * w @ w + 0.25 * b**2 + C * np.sum(t * np.logaddexp(0, (1 - m) / t))

    ref = minimize(obj, np.zeros(x.shape[1] + 1), method="BFGS", options={"gtol": 1e-10}).x
    w, b = fit_smooth_hinge_svm(x, y, C=C, temperature=t, intercept_penalty=0.5)
    np.testing.assert_allclose(np.r_[w, b], ref, atol=1e-6)


def test_smooth_hinge_limits():
    m = torch.linspace(-3, 3, 61, dtype=torch.float64)
    hinge = torch.clamp(1 - m, min=0)
    for t in (0.1, 0.01, 0.001):
        gap = (smooth_hinge(m, t) - hinge).abs().max().item()
        assert gap <= t * np.log(2) + 1e-15


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_problem(binary, multiclass):
    x, y = binary
    with pytest.raises(InvalidModelError, match="not fitted"):
        wrap_model(LogisticRegression(), x_train=x, y_train=y)
    with pytest.raises(InvalidModelError, match="RandomForestClassifier"):
        wrap_model(RandomForestClassifier(n_estimators=2).fit(x, y), x_train=x, y_train=y)
    with pytest.raises(InvalidModelError, match="class_weight"):
        wrap_model(LogisticRegression(class_weight="balanced").fit(x, y), x_train=x, y_train=y)
    with pytest.raises(InvalidModelError, match="l1"):
        wrap_model(LogisticRegression(l1_ratio=1.0, solver="liblinear").fit(x, y),
                   x_train=x, y_train=y)
    with pytest.raises(InvalidModelError, match="kernel"):
        wrap_model(SVC().fit(x, y), x_train=x, y_train=y)
    xm, ym = multiclass
    with pytest.raises(InvalidModelError, match="binary"):
        wrap_model(LinearSVC().fit(xm, ym), x_train=xm, y_train=ym)
    with pytest.raises(InvalidParameterError, match="'loss'"):
        wrap_model(LogisticRegression().fit(x, y), torch.nn.MSELoss(), x_train=x, y_train=y)
    with pytest.raises(InvalidParameterError, match="'loss'"):
        wrap_model(torch.nn.Linear(3, 1))
    m = wrap_model(LogisticRegression().fit(x, y), x_train=x, y_train=y)
    with pytest.raises(InvalidDataError, match="labels"):
        m.prepare(x, y + 5, "x_test", "y_test")
    with pytest.raises(InvalidDataError, match="features"):
        m.prepare(x[:, :3], y, "x_test", "y_test")
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidDataError, match="x_test.*NaN"):
        m.prepare(bad, y, "x_test", "y_test")


# ---------------------------------------------------------------------------- torch modules
def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    )


def test_torch_module_is_copied_and_params_selected():
    net = _mlp()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = wrap_model(net, torch.nn.CrossEntropyLoss())
    assert m.layout.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert m.dtype == torch.float64 and not m.module.training
    assert net.training and net[0].weight.dtype == torch.float32  # caller's module untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert wrap_model(net, torch.nn.CrossEntropyLoss(), params=[net[2]]).layout.names == (
        "2.weight", "2.bias")
    assert wrap_model(net, torch.nn.CrossEntropyLoss(), params=["2"]).layout.names == (
        "2.weight", "2.bias")
    assert wrap_model(net, torch.nn.CrossEntropyLoss(), params=["2.bias", "0.weight"]
                      ).layout.names == ("0.weight", "2.bias")
    with pytest.raises(InvalidParameterError, match="'params'.*nope"):
        wrap_model(net, torch.nn.CrossEntropyLoss(), params=["nope"])
    with pytest.raises(InvalidParameterError, match="not part of the model"):
        wrap_model(net, torch.nn.CrossEntropyLoss(), params=[torch.nn.Linear(2, 2)])


def test_frozen_parameters_are_constants():
    net = _mlp()
    m = wrap_model(net, torch.nn.CrossEntropyLoss(), params=["2"])
    assert set(m.frozen) == {"0.weight", "0.bias"}
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(m.forward(m.params, x).numpy(), net.double()(x).numpy())


def test_user_loss_reduction_does_not_matter():
    net = _mlp()
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    ref = torch.nn.functional.cross_entropy(net.double()(x), y, reduction="none")
    for reduction in ("mean", "sum", "none"):
        m = wrap_model(net, torch.nn.CrossEntropyLoss(reduction=reduction))
        np.testing.assert_allclose(m.losses(m.params, x, y).detach().numpy(),
                                   ref.detach().numpy(), rtol=1e-12)


def test_kfac_layers_and_export():
    net = _mlp()
    m = wrap_model(net, torch.nn.CrossEntropyLoss())
    layers, slices = m.kfac_layers()
    assert [n for n, _ in layers] == ["0", "2"]
    assert slices == [(slice(0, 24), slice(24, 30)), (slice(30, 48), slice(48, 51))]
    last = wrap_model(net, torch.nn.CrossEntropyLoss(), params=["2.weight"])
    assert last.kfac_layers()[1] == [(slice(0, 18), None)]
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert wrap_model(conv, torch.nn.CrossEntropyLoss()).kfac_layers() is None
    new = m.export(torch.zeros(m.n_params, dtype=torch.float64))
    assert new is not net and float(new[0].weight.detach().abs().sum()) == 0.0
    assert new[0].weight.dtype == torch.float32 and float(net[0].weight.detach().abs().sum()) > 0


def test_param_layout_round_trip():
    layout = ParamLayout(("a", "b"), (torch.Size([2, 3]), torch.Size([4])))
    flat = torch.arange(20.0).reshape(2, 10)
    parts = layout.unflatten(flat)
    assert parts["a"].shape == (2, 2, 3) and parts["b"].shape == (2, 4)
    assert torch.equal(layout.flatten(parts, batch_dims=1), flat)
    assert torch.equal(parts["a"][1].reshape(-1), flat[1, :6])  # row-major
