"""G-Shapley: Data Shapley for models trained by gradient descent (Ghorbani & Zou 2019, Sec. 3.2).

Instead of refitting a model on every prefix of a permutation, G-Shapley trains *one epoch* of
stochastic gradient descent with batch size one along the permutation, starting from the same
initialisation; the marginal contribution of the point at step t is the change of the validation
score caused by its gradient step. One permutation costs one epoch of SGD plus n validation
evaluations, instead of n model fits.

Two models: multinomial logistic regression (numpy, with the validation logits updated by a
rank-one correction per step, O(n_valid · (d + K)) per step) and a one-hidden-layer MLP (torch,
the ``torch`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidModelError
from datavalue._core.validation import N_JOBS, PREPROCESSOR, Interval, Options, check_magnitude
from datavalue.data.fitdata import imputes as _imputes
from datavalue.valuation.base import FitData
from datavalue.valuation.sampling import Sampler, ShapleyWeight, Truncation
from datavalue.valuation.semivalue import _COMMON_CONSTRAINTS, SemivalueValuation
from datavalue.valuation.stopping import StoppingCriterion
from datavalue.valuation.utility import resolve_metric

__all__ = ["GShapley"]

_LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class _SGDGame:
    """The data of a G-Shapley run; ``n_players`` training points, one SGD epoch per walk."""

    def __init__(self, data: FitData, model: str, learning_rate: float, l2: float,
                 hidden_units: int, metric: str | Callable, init_seed: int) -> None:
        self.x, self.y = data.x_train, data.y_train
        self.xv, self.yv = data.x_valid, data.y_valid
        self.k = data.n_classes
        self.model, self.lr, self.l2 = model, float(learning_rate), float(l2)
        self.hidden = int(hidden_units)
        self.score_fn, self.kind = resolve_metric(metric, "classification")
        self.init_seed = init_seed
        self.n_players = int(self.x.shape[0])
        if model == "logreg":
            # Validation logits change by a rank-one term per step: precompute x_valid · x_iᵀ.
            self.gram = self.xv @ self.x.T  # (n_valid, n)

    def _score_logits(self, logits: np.ndarray) -> float:
        if self.kind == "label":
            return self.score_fn(self.yv, logits.argmax(axis=1))
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return self.score_fn(self.yv, p)

    def empty_score(self) -> float:
        return self._score_logits(np.zeros((len(self.yv), self.k)))

    def walk(self, perm: np.ndarray) -> np.ndarray:
        """Marginal score change of each point's SGD step along ``perm``."""
        return self._walk_logreg(perm) if self.model == "logreg" else self._walk_mlp(perm)

    def _walk_logreg(self, perm: np.ndarray) -> np.ndarray:
        n, k = self.n_players, self.k
        w = np.zeros((self.x.shape[1], k))
        b = np.zeros(k)
        logits = np.zeros((len(self.yv), k))  # x_valid @ w + b, kept in step with w
        prev = self._score_logits(logits)
        out = np.zeros(n)
        shrink = 1.0 - self.lr * self.l2
        for i in perm:
            z = self.x[i] @ w + b
            z = np.exp(z - z.max())
            g = z / z.sum()
            g[self.y[i]] -= 1.0  # softmax cross-entropy gradient wrt the logits
            # logits = x_valid w + b; after w <- shrink w - lr x_i g^T and b <- b - lr g:
            logits = shrink * (logits - b) - self.lr * np.outer(self.gram[:, i], g)
            w *= shrink
            w -= self.lr * np.outer(self.x[i], g)
            b = b - self.lr * g
            logits += b
            score = self._score_logits(logits)
            out[i] = score - prev
            prev = score
        return out

    def _walk_mlp(self, perm: np.ndarray) -> np.ndarray:
        import torch

        torch.manual_seed(self.init_seed)
        d = self.x.shape[1]
        net = torch.nn.Sequential(torch.nn.Linear(d, self.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(self.hidden, self.k)).double()
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, weight_decay=self.l2)
        # Copies: the arrays may be read-only views of a Dataset, which torch cannot wrap.
        x = torch.tensor(self.x)
        y = torch.tensor(self.y)
        xv = torch.tensor(self.xv)
        loss_fn = torch.nn.CrossEntropyLoss()
        out = np.zeros(self.n_players)
        with torch.no_grad():
            prev = self._score_logits(net(xv).numpy())
        for i in perm:
            opt.zero_grad()
            loss_fn(net(x[i : i + 1]), y[i : i + 1]).backward()
            opt.step()
            with torch.no_grad():
                score = self._score_logits(net(xv).numpy())
            out[i] = score - prev
            prev = score
        return out


class _SGDPermutationSampler(Sampler):
    """Permutation samples whose walk is one SGD epoch (see :class:`_SGDGame`)."""

    name = "sgd-permutation"

    def sample(self, game: Any, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        perm = np.random.default_rng(seed).permutation(game.n_players)
        return game.walk(perm), np.ones(game.n_players, dtype=bool), game.n_players, 0


class GShapley(SemivalueValuation):
    """Gradient Shapley (Ghorbani & Zou, "Data Shapley", ICML 2019, Sec. 3.2).

    Parameters
    ----------
    model : {"logreg", "mlp"} or estimator
        Multinomial logistic regression (numpy) or an MLP with one hidden layer of
        ``hidden_units`` ReLU units (torch extra). A scikit-learn ``LogisticRegression`` or
        ``MLPClassifier`` instance selects the matching kind (its width for the MLP); other
        estimators are rejected, since G-Shapley needs the SGD training loop.
    metric : {"accuracy", "neg_log_loss", "f1", "roc_auc"} or callable
    learning_rate : float or None
        SGD step size. None picks, from a grid of 0.001-1, the rate whose one-epoch model has the
        best validation score on a random permutation — the paper's recipe ("we search for the
        learning rate for which one epoch of training gives the best performance").
    l2 : float
        Weight decay.
    preprocessor : "auto", None or transformer
        G-Shapley takes gradient steps on the features, so they must be numbers: "auto" (the default) imputes, scales and one-hot
        encodes data that are not already a finite numeric array (a DataFrame with text
        columns, missing values, a sparse matrix) with a ``ColumnTransformer`` fitted on the
        training rows only (:func:`datavalue.data.fitdata.default_preprocessor`); numeric arrays are
        used as given. None: no preprocessing (non-numeric data is an error). Or any
        scikit-learn transformer, fitted on the training rows.
    hidden_units : int
        Width of the MLP's hidden layer.
    stopping, max_permutations, n_jobs, backend, ray_address, random_state, checkpoint, resume,
    checkpoint_every, round_size, progress :
        As for :class:`~datavalue.valuation.semivalue.TMCShapley`.

    Notes
    -----
    Classification only. The utility is the validation score of the partially trained
    SGD model, not of a model fitted to convergence, so values differ from TMC-Shapley's; the
    paper finds the rankings similar at a fraction of the cost.
    """

    method_name: ClassVar[str] = "g-shapley"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_COMMON_CONSTRAINTS,
        "model": [Options({"logreg", "mlp"}), "estimator"],
        "metric": [Options({"accuracy", "neg_log_loss", "f1", "roc_auc"}), "callable"],
        "learning_rate": [Interval(float, 0, None, closed="neither"), None],
        "l2": [Interval(float, 0, None)],
        "hidden_units": [Interval(int, 1, None)],
        "preprocessor": PREPROCESSOR,
        "n_jobs": N_JOBS,
    }

    def __init__(
        self, model: str = "logreg", metric: str | Callable = "accuracy", *,
        learning_rate: float | None = None, l2: float = 0.0, hidden_units: int = 32,
        stopping: StoppingCriterion | None = None, max_permutations: int | None = None,
        n_jobs: int | None = None, backend: str | None = None, ray_address: str | None = None,
        random_state: int | None = 0, checkpoint: str | None = None, resume: bool = False,
        checkpoint_every: float = 60.0, round_size: int | None = None,
        preprocessor: Any = "auto", progress: bool | None = None,
    ) -> None:
        self.model = model
        self.metric = metric
        self.preprocessor = preprocessor
        self.learning_rate = learning_rate
        self.l2 = l2
        self.hidden_units = hidden_units
        self.stopping = stopping
        self.max_permutations = max_permutations
        self.n_jobs = n_jobs
        self.backend = backend
        self.ray_address = ray_address
        self.random_state = random_state
        self.checkpoint = checkpoint
        self.resume = resume
        self.checkpoint_every = checkpoint_every
        self.round_size = round_size
        self.progress = progress

    def _model_kind(self) -> tuple[str, int]:
        if isinstance(self.model, str):
            return self.model, int(self.hidden_units)
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier

        if isinstance(self.model, LogisticRegression):
            return "logreg", int(self.hidden_units)
        if isinstance(self.model, MLPClassifier):
            sizes = self.model.hidden_layer_sizes
            width = sizes if isinstance(sizes, int) else sizes[0]
            return "mlp", int(width)
        raise InvalidModelError(
            f"The 'model' parameter of GShapley must be 'logreg', 'mlp', a LogisticRegression or "
            f"an MLPClassifier; got {type(self.model).__name__}, which G-Shapley cannot train "
            "by SGD. Use TMCShapley for other models."
        )

    def _choose_learning_rate(self, data: FitData, init_seed: int) -> float:
        perm = np.random.default_rng(np.random.SeedSequence(self.random_state).spawn(1)[0]
                                     ).permutation(data.n_train)
        best, best_score = _LR_GRID[0], -np.inf
        for lr in _LR_GRID:
            game = _SGDGame(data, self.model_kind_, lr, self.l2, self.hidden_units_,
                            self.metric, init_seed)
            final = game.empty_score() + game.walk(perm).sum()  # score after the epoch
            if final > best_score + 1e-12:
                best, best_score = lr, final
        return best

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None):
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid,
                                allow_missing=_imputes(self.preprocessor))
        data = data.numeric(self.preprocessor, owner="GShapley")
        check_magnitude(data.x_train, "x_train", "G-Shapley")
        if data.x_valid is not None:
            check_magnitude(data.x_valid, "x_valid", "G-Shapley")
        if data.task != "classification":
            raise InvalidDataError(
                "GShapley supports classification only; 'y_train' looks like regression "
                "targets. Use TMCShapley for regression."
            )
        self.model_kind_, self.hidden_units_ = self._model_kind()
        init_seed = int(np.random.SeedSequence(self.random_state).generate_state(1)[0])
        lr = self.learning_rate or self._choose_learning_rate(data, init_seed)
        self.learning_rate_ = lr
        game = _SGDGame(data, self.model_kind_, lr, self.l2, self.hidden_units_, self.metric,
                        init_seed)
        sampler = _SGDPermutationSampler().bind(ShapleyWeight(), None)
        # n_utility_calls counts SGD steps here: one per point and permutation.
        return self._run(game, sampler, data, start, extra={"learning_rate": lr})

    def _truncation(self, game: Any) -> Truncation | None:  # no truncation in G-Shapley
        return None
