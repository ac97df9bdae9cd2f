"""The predictors DVRL trains on the samples its value estimator selects (a weighted linear model
fitted by Newton / L-BFGS, a small torch MLP, any scikit-learn estimator) and the fitted MLP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import clone

__all__ = ["MLPPredictor"]

_RIDGE = 1.0  # L2 strength of "linear": LogisticRegression(C=1) / Ridge(alpha=1)
_NEWTON_MAX_PARAMS = 256  # softmax regression with more parameters is solved by L-BFGS


# ------------------------------------------------------------------ MLPs on one flat vector
# Both networks (the estimator and the "mlp" predictor) are functions of one flat parameter
# vector: one backward pass fills one gradient, Adam is four in-place operations, a checkpoint
# is one tensor, and resetting the predictor to its initial weights is one copy.
def _layer_views(flat: Any, shapes: list[tuple[int, int]]) -> list[tuple[Any, Any]]:
    """(weight, bias) views of ``flat`` for layers of shape (out, in), weights first."""
    out, at = [], 0
    for o, i in shapes:
        out.append((flat[at : at + o * i].view(o, i), flat[at + o * i : at + o * i + o]))
        at += o * i + o
    return out


def _glorot(torch: Any, shapes: list[tuple[int, int]], generator: Any) -> Any:
    """Flat float32 parameters: Glorot-uniform weights and zero biases (TensorFlow's defaults,
    used by the reference code), drawn from ``generator``."""
    flat = torch.zeros(sum(o * i + o for o, i in shapes))
    for w, _ in _layer_views(flat, shapes):
        torch.nn.init.xavier_uniform_(w, generator=generator)
    return flat


class _Adam:
    """Adam (Kingma & Ba 2015) with the defaults of TensorFlow and torch (beta1 = 0.9,
    beta2 = 0.999, eps = 1e-8). Written out: it is four lines on a flat vector, and
    ``torch.optim`` imports the whole of ``torch._dynamo`` (seconds) on first use."""

    def __init__(self, torch: Any, params: Any, lr: float) -> None:
        self.torch, self.params, self.lr = torch, params, lr
        self.m = torch.zeros_like(params)
        self.v = torch.zeros_like(params)
        self.t = 0

    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9**self.t, 1 - 0.999**self.t
        g = self.params.grad
        with self.torch.no_grad():
            self.m.mul_(0.9).add_(g, alpha=0.1)
            self.v.mul_(0.999).addcmul_(g, g, value=0.001)
            self.params.addcdiv_(self.m, self.v.div(c2).sqrt_().add_(1e-8), value=-self.lr / c1)
        self.params.grad = None

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])
        self.t = int(state["t"])


# ------------------------------------------------------------------------------ predictors
# An engine trains the predictor on rows of one split ("train" or "valid") and predicts on a
# split: class probabilities (n, K) for classification, predictions (n,) for regression.
def _newton(beta: Any, objective: Callable, derivatives: Callable, torch: Any) -> Any:
    """Minimise a smooth strictly convex function by Newton's method: Armijo backtracking while
    the Newton decrement is large, full steps once it is small (Boyd & Vandenberghe, Sec. 9.5).
    Stops after a full step whose decrement (about twice the suboptimality before the step) is
    below 1e-6: in the quadratic phase that step leaves an error of the order of its square."""
    f = None
    for _ in range(100):
        g, h = derivatives(beta)
        step = torch.linalg.solve(h, g)
        decrement = float(g @ step)
        if decrement < 0.5:
            beta = beta - step
            if decrement < 1e-6:
                break
            f = None
            continue
        if f is None:
            f = objective(beta)
        t = 1.0
        for _ in range(50):
            f_new = objective(beta - t * step)
            if f_new <= f - 0.25 * t * decrement:
                break
            t *= 0.5
        beta = beta - t * step
        f = f_new
    return beta


class _LinearEngine:
    """L2-penalised logistic / softmax regression (the objective of scikit-learn's
    ``LogisticRegression(C=1)``) or ridge regression (``Ridge(alpha=1)``) on standardized
    features, solved to convergence in float64: Newton's method (binary, small softmax), L-BFGS
    (large softmax) or the normal equations (ridge). The problem is convex, so the solution
    does not depend on where the solver starts: every solve starts from the same point (the
    solution on the whole training set once it is known, which saves Newton iterations)."""

    def __init__(self, torch: Any, task: str, n_classes: int, splits: dict) -> None:
        self.torch, self.task, self.k = torch, task, n_classes
        self.x = {s: torch.from_numpy(np.hstack([x, np.ones((len(x), 1))]))
                  for s, (x, _) in splits.items()}
        self.y = {s: torch.from_numpy(np.array(y)) for s, (_, y) in splits.items()}
        d1 = self.x["train"].shape[1]
        self.penalty = torch.full((d1,), _RIDGE, dtype=torch.float64)
        self.penalty[-1] = 1e-8  # the intercept is (almost) unpenalised, as in scikit-learn
        self.start: Any = None
        if task == "classification":
            self.y_onehot = {s: torch.nn.functional.one_hot(y, n_classes).double()
                             for s, y in self.y.items()}

    def fit(self, split: str, rows: np.ndarray, weights: np.ndarray | None = None,
            rng: Any = None) -> Any:
        torch = self.torch
        x = self.x[split][rows]
        w = (torch.ones(len(rows), dtype=torch.float64) if weights is None
             else torch.from_numpy(np.asarray(weights, dtype=np.float64)))
        if self.task == "regression":
            h = x.T @ (x * w[:, None])
            h.diagonal().add_(self.penalty)
            return torch.linalg.solve(h, x.T @ (w * self.y[split][rows]))
        if self.k == 2:
            return self._fit_binary(x, self.y[split][rows].double(), w)
        y1h = self.y_onehot[split][rows]
        if x.shape[1] * self.k <= _NEWTON_MAX_PARAMS:
            return self._fit_softmax_newton(x, y1h, w)
        return self._fit_softmax_lbfgs(x, y1h, w)

    def predict(self, beta: Any, split: str) -> np.ndarray:
        torch = self.torch
        z = self.x[split] @ beta
        if self.task == "regression":
            return z.numpy()
        if self.k == 2:
            p1 = torch.sigmoid(z)
            return torch.stack([1 - p1, p1], dim=1).numpy()
        return torch.softmax(z, dim=1).numpy()

    def _fit_binary(self, x: Any, y: Any, w: Any) -> Any:
        torch, pen = self.torch, self.penalty

        def objective(b: Any) -> float:
            z = x @ b
            return float(w @ (torch.nn.functional.softplus(z) - y * z) + 0.5 * pen @ (b * b))

        def derivatives(b: Any) -> tuple[Any, Any]:
            p = torch.sigmoid(x @ b)
            h = x.T @ (x * (w * p * (1 - p))[:, None])
            h.diagonal().add_(pen)
            return x.T @ (w * (p - y)) + pen * b, h

        start = torch.zeros(x.shape[1], dtype=torch.float64) if self.start is None else self.start
        return _newton(start, objective, derivatives, torch)

    def _softmax_parts(self, x: Any, y1h: Any, w: Any, b: Any) -> tuple[Any, Any, Any]:
        """Objective, gradient (d1, K) and probabilities of weighted softmax regression."""
        torch = self.torch
        z = x @ b
        lse = torch.logsumexp(z, dim=1)
        f = w @ (lse - (z * y1h).sum(dim=1)) + 0.5 * (self.penalty[:, None] * b * b).sum()
        p = torch.exp(z - lse[:, None])
        return f, x.T @ (w[:, None] * (p - y1h)) + self.penalty[:, None] * b, p

    def _fit_softmax_newton(self, x: Any, y1h: Any, w: Any) -> Any:
        torch = self.torch
        m, d1 = x.shape
        k = self.k
        pen = self.penalty[:, None].expand(d1, k).reshape(-1)
        diag = torch.arange(k)

        def derivatives(b: Any) -> tuple[Any, Any]:
            _, g, p = self._softmax_parts(x, y1h, w, b.reshape(d1, k))
            # Hessian over the flattened (feature, class) parameters:
            # sum_i w_i (x_i x_i^T) kron (diag(p_i) - p_i p_i^T)
            a = (x[:, :, None] * p[:, None, :]).reshape(m, d1 * k)
            h = (-(a * w[:, None]).T @ a).reshape(d1, k, d1, k)
            h[:, diag, :, diag] += torch.einsum("ia,ib,ik->kab", x * w[:, None], x, p)
            h = h.reshape(d1 * k, d1 * k)
            h.diagonal().add_(pen)
            return g.reshape(-1), h

        def objective(b: Any) -> float:
            return float(self._softmax_parts(x, y1h, w, b.reshape(d1, k))[0])

        start = torch.zeros(d1, k, dtype=torch.float64) if self.start is None else self.start
        return _newton(start.reshape(-1), objective, derivatives, torch).reshape(d1, k)

    def _fit_softmax_lbfgs(self, x: Any, y1h: Any, w: Any) -> Any:
        from scipy.optimize import minimize

        torch = self.torch
        shape = (x.shape[1], self.k)

        def fun(b: np.ndarray) -> tuple[float, np.ndarray]:
            f, g, _ = self._softmax_parts(x, y1h, w, torch.from_numpy(b).view(shape))
            return float(f), g.reshape(-1).numpy()

        start = np.zeros(shape) if self.start is None else self.start.numpy()
        res = minimize(fun, start.reshape(-1), jac=True, method="L-BFGS-B",
                       options={"maxiter": 1000, "gtol": 1e-8})
        return torch.from_numpy(res.x).view(shape)

    def final_predictor(self, x: np.ndarray, y: np.ndarray, values: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        last = (LogisticRegression(C=1.0 / _RIDGE, max_iter=1000)
                if self.task == "classification" else Ridge(alpha=_RIDGE))
        pipe = make_pipeline(StandardScaler(), last)
        return pipe.fit(x, y, **{f"{pipe.steps[-1][0]}__sample_weight": values})


class _MLPEngine:
    """The reference code's neural predictor: two hidden ReLU layers of ``hidden_dim`` units,
    trained with Adam for ``steps`` mini-batch steps of ``batch`` selected examples (Algorithm
    1's N_I and B_p), from the same initial weights at every outer iteration."""

    def __init__(self, torch: Any, task: str, n_classes: int, splits: dict, *, hidden: int,
                 lr: float, steps: int, batch: int, generator: Any) -> None:
        self.torch, self.task = torch, task
        self.lr, self.steps, self.batch = lr, steps, batch
        self.x = {s: torch.from_numpy(x.astype(np.float32)) for s, (x, _) in splits.items()}
        # Regression targets are standardized for training (Adam's step size is absolute).
        y_train = splits["train"][1]
        self.shift = (0.0, 1.0) if task == "classification" else (
            float(y_train.mean()), float(y_train.std()) or 1.0)
        self.y = {s: torch.from_numpy(np.array(y) if task == "classification" else
                                      ((y - self.shift[0]) / self.shift[1]).astype(np.float32))
                  for s, (_, y) in splits.items()}
        sizes = [self.x["train"].shape[1], hidden, hidden,
                 n_classes if task == "classification" else 1]
        self.shapes = [(b, a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        self.init = _glorot(torch, self.shapes, generator)

    def forward(self, params: Any, x: Any) -> Any:
        torch = self.torch
        layers = _layer_views(params, self.shapes)
        h = x
        for w, b in layers[:-1]:
            h = torch.relu(torch.nn.functional.linear(h, w, b))
        return torch.nn.functional.linear(h, *layers[-1])

    def fit(self, split: str, rows: np.ndarray, weights: np.ndarray | None = None,
            rng: Any = None) -> Any:
        torch = self.torch
        params = self.init.clone().requires_grad_(True)
        adam = _Adam(torch, params, self.lr)
        x, y = self.x[split][rows], self.y[split][rows]
        w = None if weights is None else torch.from_numpy(np.asarray(weights, np.float32))
        m = len(rows)
        for _ in range(self.steps):
            idx = (torch.from_numpy(rng.choice(m, size=self.batch, replace=False))
                   if m > self.batch else slice(None))
            out = self.forward(params, x[idx])
            if self.task == "classification":
                loss = torch.nn.functional.cross_entropy(out, y[idx], reduction="none")
            else:
                loss = (out[:, 0] - y[idx]) ** 2
            loss = loss.mean() if w is None else (loss * w[idx]).mean()
            loss.backward()
            adam.step()
        return params.detach()

    def predict(self, params: Any, split: str) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            out = self.forward(params, self.x[split]).double()
        if self.task == "classification":
            return torch.softmax(out, dim=1).numpy()
        return out[:, 0].numpy() * self.shift[1] + self.shift[0]

    def final_predictor(self, values: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                        classes: np.ndarray | None, rng: Any) -> MLPPredictor:
        params = self.fit("train", np.arange(len(values)), values, rng)
        layers = [(w.double().numpy().copy(), b.double().numpy().copy())
                  for w, b in _layer_views(params, self.shapes)]
        return MLPPredictor(layers, mean, scale, classes, self.shift)


class _SklearnEngine:
    """Any scikit-learn estimator, cloned and fitted on the selected examples (raw features)."""

    def __init__(self, model: Any, task: str, n_classes: int, splits: dict) -> None:
        self.model, self.task, self.k, self.splits = model, task, n_classes, splits

    def fit(self, split: str, rows: np.ndarray, weights: np.ndarray | None = None,
            rng: Any = None) -> Any:
        x, y = self.splits[split]
        y = y[rows]
        if self.task == "classification" and len(np.unique(y)) < 2:
            # Most classifiers refuse a single class: predict add-one smoothed frequencies.
            counts = np.bincount(y, minlength=self.k) + 1.0
            return counts / counts.sum()
        kwargs = {} if weights is None else {"sample_weight": weights}
        return clone(self.model).fit(x[rows], y, **kwargs)

    def predict(self, model: Any, split: str) -> np.ndarray:
        x = self.splits[split][0]
        if isinstance(model, np.ndarray):
            return np.tile(model, (len(x), 1))
        if self.task == "regression":
            return np.asarray(model.predict(x), dtype=np.float64)
        out = np.zeros((len(x), self.k))
        if hasattr(model, "predict_proba"):
            out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
        else:
            out[np.arange(len(x)), np.asarray(model.predict(x), dtype=np.int64)] = 1.0
        return out


class MLPPredictor:
    """The trained ``"mlp"`` predictor of :class:`DVRL`, with the scikit-learn prediction
    interface (``predict``; ``predict_proba`` and ``classes_`` for classifiers). Plain numpy:
    features are standardized with the training statistics, then passed through the ReLU
    layers; regression outputs are mapped back with ``target_shift`` (mean, scale)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], mean: np.ndarray,
                 scale: np.ndarray, classes: np.ndarray | None,
                 target_shift: tuple[float, float] = (0.0, 1.0)) -> None:
        self.layers, self.mean, self.scale = layers, mean, scale
        self.target_shift = target_shift
        if classes is not None:
            self.classes_ = classes

    def _forward(self, x: Any) -> np.ndarray:
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, x: Any) -> np.ndarray:
        if not hasattr(self, "classes_"):
            raise AttributeError("predict_proba is only available for classification.")
        z = self._forward(x)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        out = self._forward(x)
        if hasattr(self, "classes_"):
            return self.classes_[np.argmax(out, axis=1)]
        return out[:, 0] * self.target_shift[1] + self.target_shift[0]
