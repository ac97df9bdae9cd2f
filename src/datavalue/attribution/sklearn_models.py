"""Taking over fitted scikit-learn linear models (logistic, least squares, SVMs) exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit
from threadpoolctl import threadpool_limits
from torch import nn

from datavalue._core.exceptions import InvalidDataError, InvalidModelError
from datavalue.attribution.losses import (
    _L2,
    _BinaryLogLoss,
    _SmoothHingeLoss,
    _SoftmaxLoss,
    _SquaredError,
    _SquaredHinge,
)
from datavalue.attribution.model import SUPPORTED_ESTIMATORS, InfluenceModel


# ---------------------------------------------------------------------------- scikit-learn
def _estimator_kind(est: Any) -> str:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.svm import SVC, LinearSVC

    for cls in (LogisticRegression, LinearRegression, Ridge, LinearSVC, SVC):
        if type(est) is cls:
            return cls.__name__
    raise InvalidModelError(
        f"Influence functions support a trained torch.nn.Module or one of these fitted "
        f"scikit-learn estimators: {'; '.join(SUPPORTED_ESTIMATORS)}. Got {type(est).__name__}."
    )


def _logistic_penalty(est: Any) -> str | None:
    """The penalty a fitted LogisticRegression used (scikit-learn >= 1.8 derives it from
    ``l1_ratio`` and ``C``; older versions read ``penalty``)."""
    penalty = getattr(est, "penalty", "l2")
    if penalty == "deprecated":
        l1_ratio = getattr(est, "l1_ratio", 0.0)
        penalty = "l2" if l1_ratio in (0, None) else ("l1" if l1_ratio == 1 else "elasticnet")
        if est.C == np.inf:
            penalty = None
    if penalty in ("none",):
        penalty = None
    return penalty


def _no_weights(est: Any, kind: str) -> None:
    if getattr(est, "class_weight", None) is not None:
        raise InvalidModelError(
            f"{kind}(class_weight={est.class_weight!r}) is not supported: the weighted objective "
            "differs from the per-example loss influence is measured in. Refit with "
            "class_weight=None."
        )


def _linear_module(w: np.ndarray, b: np.ndarray | None, dtype, device) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype, device=device)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=dtype))
        if b is not None:
            layer.bias.copy_(torch.as_tensor(b, dtype=dtype))
    return layer.eval()


def _wrap_sklearn(
    est: Any,
    x_train: np.ndarray | None,
    y_train: np.ndarray | None,
    *,
    n_train: int,
    temperature: float,
    dtype,
    device,
) -> InfluenceModel:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    kind = _estimator_kind(est)
    try:
        check_is_fitted(est)
    except NotFittedError as exc:
        raise InvalidModelError(
            f"The {kind} passed as 'model' is not fitted: call model.fit(x_train, y_train) "
            "first (influence functions explain a trained model)."
        ) from exc
    device = torch.device("cpu") if device is None else torch.device(device)
    n = float(n_train)
    fit_intercept = bool(getattr(est, "fit_intercept", True))
    notes: list[str] = []
    classes = None
    gauges: dict[str, float] = {}
    strengths: dict[str, float] = {}

    if kind in ("LinearRegression", "Ridge"):
        if getattr(est, "positive", False):
            raise InvalidModelError(f"{kind}(positive=True) is a constrained fit; not supported.")
        coef = np.asarray(est.coef_, dtype=np.float64)
        if coef.ndim != 1:
            raise InvalidModelError(
                f"{kind} was fitted on a 2-D target ({coef.shape[0]} outputs); influence "
                "functions need one target. Fit one model per output."
            )
        w = coef[None, :]
        b = np.array([float(est.intercept_)]) if fit_intercept else None
        loss: Callable = _SquaredError()
        output_kind = "regression"
        if kind == "Ridge":
            alpha = np.asarray(est.alpha, dtype=np.float64)
            if alpha.size != 1:
                raise InvalidModelError("Ridge with one alpha per target is not supported.")
            # Ridge: ||y - Xw - b||^2 + alpha ||w||^2 (intercept not penalised) -> divide by n.
            strengths["weight"] = 2.0 * float(alpha) / n
    elif kind == "LogisticRegression":
        _no_weights(est, kind)
        penalty = _logistic_penalty(est)
        if penalty not in ("l2", None):
            raise InvalidModelError(
                f"LogisticRegression with a {penalty!r} penalty is not differentiable; influence "
                "functions need the 'l2' penalty (l1_ratio=0) or none (C=np.inf)."
            )
        classes = np.asarray(est.classes_)
        n_classes = len(classes)
        solver = getattr(est, "solver", "lbfgs")
        one_vs_rest = getattr(est, "multi_class", "auto") == "ovr" or solver == "liblinear"
        if n_classes > 2 and one_vs_rest:
            raise InvalidModelError(
                "A one-vs-rest LogisticRegression is K separate models; refit it as a "
                "multinomial model (solver='lbfgs') or explain one binary model at a time."
            )
        w = np.asarray(est.coef_, dtype=np.float64).copy()
        b = np.asarray(est.intercept_, dtype=np.float64).copy() if fit_intercept else None
        if penalty == "l2":
            lam = 1.0 / (est.C * n)
            strengths["weight"] = lam
            if fit_intercept and solver == "liblinear":
                # liblinear appends a constant feature `intercept_scaling` and penalises its
                # weight: b = s * w_{d+1}, so the penalty is b^2 / (2 s^2).
                strengths["bias"] = lam / float(est.intercept_scaling) ** 2
        if n_classes == 2:
            loss = _BinaryLogLoss()
        else:
            loss = _SoftmaxLoss()
            # Softmax is invariant to adding one vector to every class: centre (changes no
            # prediction) and fix that direction with a gauge term (see _L2).
            w -= w.mean(axis=0, keepdims=True)
            if b is not None:
                b -= b.mean()
            scale = strengths.get("weight", 1.0 / n)
            if "weight" not in strengths:
                gauges["weight"] = scale
            if b is not None and "bias" not in strengths:
                gauges["bias"] = scale
        output_kind = "classification"
    else:  # LinearSVC, SVC
        _no_weights(est, kind)
        classes = np.asarray(est.classes_)
        if len(classes) != 2:
            raise InvalidModelError(
                f"{kind} with {len(classes)} classes is several one-vs-rest/one-vs-one models; "
                "influence functions support binary SVMs only."
            )
        if kind == "SVC" and est.kernel != "linear":
            raise InvalidModelError(
                f"SVC(kernel={est.kernel!r}) has no finite parameter vector; only "
                "SVC(kernel='linear') is supported."
            )
        if kind == "LinearSVC":
            if est.penalty != "l2":
                raise InvalidModelError("LinearSVC(penalty='l1') is not differentiable; use 'l2'.")
            if getattr(est, "multi_class", "ovr") == "crammer_singer":
                raise InvalidModelError("LinearSVC(multi_class='crammer_singer') is not supported.")
        w = np.asarray(est.coef_, dtype=np.float64).copy()
        b = np.asarray(est.intercept_, dtype=np.float64).copy() if fit_intercept else None
        lam = 1.0 / (est.C * n)
        strengths["weight"] = lam
        # liblinear (LinearSVC) penalises the intercept like LogisticRegression(liblinear);
        # libsvm (SVC) does not.
        bias_penalty = 0.0
        if kind == "LinearSVC" and fit_intercept:
            bias_penalty = 1.0 / float(est.intercept_scaling) ** 2
            strengths["bias"] = lam * bias_penalty
        output_kind = "other"
        if kind == "LinearSVC" and est.loss == "squared_hinge":
            loss = _SquaredHinge()
            notes.append(
                "squared hinge taken over as is (differentiable once; its Hessian is used "
                "almost everywhere); 'temperature' is not used"
            )
        else:
            loss = _SmoothHingeLoss(temperature)
            if x_train is None or y_train is None:
                raise InvalidModelError(
                    f"A hinge-loss {kind} is explained through the smooth hinge, which needs the "
                    "training data to refit the smoothed objective."
                )
            xa, ya = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
            if xa.ndim != 2 or xa.shape[1] != w.shape[1]:
                raise InvalidDataError(
                    f"'x_train' has shape {xa.shape} but the model was fitted on {w.shape[1]} "
                    "features."
                )
            if not np.isin(ya, classes).all():
                raise InvalidDataError(
                    "'y_train' contains labels the model was not fitted on "
                    f"(model classes: {classes.tolist()})."
                )
            w1, b1 = fit_smooth_hinge_svm(
                xa,
                (ya == classes[1]).astype(np.float64),
                C=float(est.C),
                temperature=temperature,
                fit_intercept=fit_intercept,
                intercept_penalty=bias_penalty,
                init=(w[0], float(b[0]) if b is not None else 0.0),
            )
            w = w1[None, :]
            b = np.array([b1]) if fit_intercept else None
            notes.append(
                f"hinge replaced by the smooth hinge (temperature={temperature:g}, Koh & Liang "
                "2017 Sec. 4.1) and the smoothed objective refitted: theta_hat is its minimiser, "
                "not the estimator's coef_"
            )
    module = _linear_module(w, b, dtype, device)
    params = {n: p.detach() for n, p in module.named_parameters()}
    return InfluenceModel(
        module,
        params,
        {},
        loss,
        regularizer=_L2(strengths, gauges) or None,
        output_kind=output_kind,
        kind=kind,
        source=est,
        classes=classes,
        linear_in_params=True,
        l2=strengths.get("weight", 0.0),
        notes=notes,
    )


# ---------------------------------------------------------------------------- smooth-hinge SVM
def fit_smooth_hinge_svm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    C: float = 1.0,
    temperature: float = 0.1,
    fit_intercept: bool = True,
    intercept_penalty: float = 0.0,
    init: tuple[np.ndarray, float] | None = None,
    tol: float = 1e-11,
    max_iter: int = 500,
) -> tuple[np.ndarray, float]:
    """Minimise ``||w||^2 / 2 + intercept_penalty b^2 / 2 + C sum_i SmoothHinge(s_i, t)``.

    ``s_i = y_i (w.x_i + b)`` with labels ``y`` in {0, 1} mapped to {-1, +1} and
    ``SmoothHinge(s, t) = t log(1 + exp((1 - s) / t))`` (Koh & Liang 2017, Sec. 4.1); this is the
    LinearSVC/SVC objective with the hinge smoothed (``intercept_penalty=1/intercept_scaling^2``
    for LinearSVC, 0 for SVC). The objective is convex and smooth; from ``init`` (or an L-BFGS
    start) Newton's method with a backtracking line search runs to a gradient norm of ``tol``
    relative to ``C n`` or a Newton step below ``1e-13``, so that refits without a point (warm
    started from the full solution) are accurate to ~1e-10 and take a few milliseconds.

    Returns
    -------
    coef : ndarray of shape (d,)
    intercept : float (0.0 without intercept)
    """
    # Small dense problems: one BLAS thread (and no spin-wait contention with torch's OpenMP
    # pool, which made each solve ~30x slower on two cores).
    with threadpool_limits(1, user_api="blas"):
        return _fit_smooth_hinge(
            x, y, C, temperature, fit_intercept, intercept_penalty, init, tol, max_iter
        )


def _fit_smooth_hinge(x, y, C, temperature, fit_intercept, intercept_penalty, init, tol,
                      max_iter) -> tuple[np.ndarray, float]:
    x = np.asarray(x, dtype=np.float64)
    sign = np.where(np.asarray(y) > 0, 1.0, -1.0)
    n, d = x.shape
    z = sign[:, None] * (np.hstack([x, np.ones((n, 1))]) if fit_intercept else x)
    reg = np.ones(z.shape[1])
    if fit_intercept:
        reg[-1] = intercept_penalty
    t = float(temperature)

    def fun(theta):
        u = (1.0 - z @ theta) / t
        val = 0.5 * np.sum(reg * theta**2) + C * t * np.logaddexp(0.0, u).sum()
        grad = reg * theta - C * z.T @ expit(u)
        return val, grad

    def hess(theta):
        u = (1.0 - z @ theta) / t
        s = expit(u)
        return np.diag(reg) + (C / t) * (z.T * (s * (1.0 - s))) @ z

    if init is None:
        # A cheap start far from the optimum; Newton's method then converges quadratically.
        res = minimize(fun, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B",
                       options={"maxiter": 5000, "gtol": 1e-8})
        theta = res.x
    else:
        theta = np.concatenate([np.asarray(init[0], dtype=np.float64).ravel(), [init[1]]])
        theta = theta if fit_intercept else theta[:d]
    scale = C * n
    val, grad = fun(theta)
    for _ in range(max_iter):
        if np.linalg.norm(grad) <= tol * scale:
            break
        h = hess(theta)
        try:
            step = np.linalg.solve(h, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(h, grad, rcond=None)[0]
        decrease = float(grad @ step)
        alpha = 1.0
        for _halving in range(60):  # backtracking (Armijo)
            new_val, new_grad = fun(theta - alpha * step)
            if new_val <= val - 1e-4 * alpha * decrease:
                break
            alpha *= 0.5
        else:
            break  # no decrease left at machine precision
        theta = theta - alpha * step
        val, grad = new_val, new_grad
        if alpha == 1.0 and np.abs(step).max() <= 1e-13 * (1.0 + np.abs(theta).max()):
            break
    if fit_intercept:
        return theta[:d].copy(), float(theta[d])
    return theta.copy(), 0.0
