"""Ground truth by actual retraining, for judging attributions (LDS, leave-one-out).

:class:`Retrain` trains a model on a subset of the training rows with a seed and records one
output per test example (its loss or its margin: chosen explicitly, never by default).
:func:`subset_outputs` runs it on random subsets (the linear datamodeling score's ground truth,
Park et al. 2023, Sec. 2.2) and :func:`loo_outputs` without one training example at a time.

Both run the retrainings through joblib (``n_jobs``; ``backend="ray"`` on a Ray cluster), each
with its own seed derived from ``random_state`` and its index, so the outputs are the same on 1
or N workers. With ``cache="file.npz"`` every finished chunk of retrainings is saved atomically
(:mod:`datavalue._core.checkpoint`): an interrupted run (Ctrl-C, ``kill -9``) resumes where it stopped
and ends with exactly the outputs of an uninterrupted one, and a finished run is read back
instead of retrained. A cache made with other settings (model, data, output, subsets, seeds) is
refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datavalue._core.checkpoint import load_checkpoint, save_checkpoint
from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.fingerprint import describe_callable, digest_json, hash_array
from datavalue._core.modules import reinitialized
from datavalue._core.parallel import (
    effective_n_jobs,
    joblib_backend,
    parallel_map,
    progress_bar,
    spawn_seeds,
)
from datavalue._core.validation import check_xy, is_torch_module

__all__ = ["Retrain", "SubsetOutputs", "LOOOutputs", "subset_outputs", "loo_outputs", "OUTPUTS",
           "reinitialized"]

#: Outputs :class:`Retrain` records; ``goal`` says which direction is "better".
OUTPUTS = {"loss": "minimize", "margin": "maximize"}


class Retrain:
    """Train ``model`` on training rows ``indices`` with ``seed``; return one output per test
    example.

    Parameters
    ----------
    model : estimator or torch.nn.Module
        An unfitted scikit-learn estimator (cloned for every retraining; its ``random_state``,
        if it has one, is set to the seed), or a torch module: copied, its parameters
        re-initialised under ``torch.manual_seed(seed)`` (every submodule's
        ``reset_parameters``), then trained by ``train_fn``.
    x_train, y_train, x_test, y_test : array-like
    output : {"loss", "margin"} or callable
        What is recorded for each test example: its loss (cross-entropy of the predicted
        probabilities, or squared error for a regressor) or its classification margin
        (``log p_y - log(1 - p_y)``, which for a softmax is ``f_y - logsumexp_{k != y} f_k``),
        or ``output(fitted_model, x_test, y_test) -> (n_test,)`` with ``goal``.
    goal : {"minimize", "maximize"} or None
        Which direction of the output is better (given by ``output`` when it is a name).
    train_fn : callable or None
        For a torch module: ``train_fn(module, x, y) -> module`` (e.g. the SGD loop the model
        was trained with). Called with torch's seed set to ``seed``, so its shuffling follows
        it.
    loss : callable or None
        For a torch module with ``output="loss"``: ``(outputs, targets) -> (b,)`` per-example
        losses (e.g. ``nn.CrossEntropyLoss(reduction="none")``).
    """

    def __init__(self, model: Any, x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
                 output: Any, goal: str | None = None, train_fn: Callable | None = None,
                 loss: Callable | None = None) -> None:
        torch_model = is_torch_module(model)
        if torch_model:
            if train_fn is None:
                raise InvalidParameterError(
                    "A torch module needs 'train_fn(module, x, y) -> module' to be retrained.")
            # Writable copies: torch refuses to wrap read-only arrays (a frozen Dataset's).
            self.x_train, self.y_train = np.array(x_train), np.array(y_train)
            self.x_test, self.y_test = np.array(x_test), np.array(y_test)
            for name, a, b in (("x_train", self.x_train, self.y_train),
                               ("x_test", self.x_test, self.y_test)):
                if len(a) != len(b):
                    raise InvalidDataError(
                        f"'{name}' has {len(a)} rows but its targets have {len(b)}.")
        else:
            if not hasattr(model, "fit"):
                raise InvalidParameterError(
                    f"'model' must be an unfitted scikit-learn estimator or a torch module; got "
                    f"{type(model).__name__}.")
            if train_fn is not None or loss is not None:
                raise InvalidParameterError(
                    "'train_fn' and 'loss' apply to a torch module; a scikit-learn estimator "
                    "uses its own fit and predict_proba.")
            self.x_train, self.y_train = check_xy(x_train, y_train)
            self.x_test, self.y_test = check_xy(x_test, y_test, x_name="x_test",
                                                y_name="y_test")
            if self.x_test.shape[1] != self.x_train.shape[1]:
                raise InvalidDataError(
                    f"'x_test' has {self.x_test.shape[1]} features, 'x_train' "
                    f"{self.x_train.shape[1]}.")
        if callable(output):
            if goal not in OUTPUTS.values():
                raise InvalidParameterError(
                    "A callable 'output' needs goal='minimize' (a loss) or 'maximize' (a "
                    f"margin or score); got goal={goal!r}.")
        elif output not in OUTPUTS:
            raise InvalidParameterError(
                f"'output' must be one of {', '.join(OUTPUTS)} or a callable "
                f"(fitted_model, x_test, y_test) -> (n_test,); got {output!r}.")
        else:
            if goal is not None and goal != OUTPUTS[output]:
                raise InvalidParameterError(
                    f"output={output!r} is to be {OUTPUTS[output]}d; leave 'goal' out.")
            goal = OUTPUTS[output]
            if torch_model and output == "loss" and loss is None:
                raise InvalidParameterError(
                    "output='loss' for a torch module needs 'loss', per-example losses "
                    "(outputs, targets) -> (b,).")
        self.model, self.output, self.goal = model, output, goal
        self.train_fn, self.loss = train_fn, loss
        self.n_train, self.n_test = len(self.x_train), len(self.x_test)

    # -- identity, for caches -----------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 of what the outputs depend on: the model (its class and parameters, or the
        module's architecture and initial state), the data, the output and the training
        function's code."""

        h = hashlib.sha256()
        if is_torch_module(self.model):
            h.update(repr(self.model).encode())
            for name, t in sorted(self.model.state_dict().items()):
                h.update(name.encode())
                hash_array(h, t.detach().cpu().numpy())
            h.update(describe_callable(self.train_fn).encode())
            if self.loss is not None:
                h.update(describe_callable(self.loss).encode())
        else:
            h.update(type(self.model).__qualname__.encode())
            h.update(json.dumps(self.model.get_params(deep=True), default=repr,
                                sort_keys=True).encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            hash_array(h, a)
        h.update((self.output if isinstance(self.output, str)
                  else describe_callable(self.output)).encode())
        return h.hexdigest()

    # -- one retraining -----------------------------------------------------------------------
    def __call__(self, indices: np.ndarray, seed: int) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if is_torch_module(self.model):
            fitted = self._fit_torch(idx, int(seed))
        else:
            from sklearn.base import clone

            fitted = clone(self.model)
            if "random_state" in fitted.get_params():
                fitted.set_params(random_state=int(seed))
            fitted.fit(self.x_train[idx], self.y_train[idx])
        out = np.asarray(self._outputs(fitted), dtype=np.float64).reshape(-1)
        if out.shape != (self.n_test,):
            raise InvalidParameterError(
                f"'output' gave shape {out.shape}; it must give one value per test example "
                f"({self.n_test},).")
        if not np.all(np.isfinite(out)):
            raise InvalidDataError(
                f"The retrained model's outputs are not finite ({int((~np.isfinite(out)).sum())}"
                f" of {out.size}) on a subset of {idx.size} rows, seed {seed}: the training "
                "diverged.")
        return out

    def _fit_torch(self, idx: np.ndarray, seed: int) -> Any:
        fitted = self.train_fn(reinitialized(self.model, seed), self.x_train[idx],
                               self.y_train[idx])
        if not is_torch_module(fitted):
            raise InvalidParameterError(
                f"'train_fn' must return the trained module; it returned "
                f"{type(fitted).__name__}.")
        return fitted.eval()

    def _outputs(self, fitted: Any) -> np.ndarray:
        if callable(self.output):
            return self.output(fitted, self.x_test, self.y_test)
        if is_torch_module(fitted):
            import torch

            from datavalue.attribution.measure import margin

            with torch.no_grad():
                dtype = next(fitted.parameters()).dtype
                x = torch.as_tensor(self.x_test)
                x = x.to(dtype) if x.is_floating_point() else x
                y = torch.as_tensor(self.y_test)
                out = fitted(x)
                if self.output == "margin":
                    return margin(out, y).double().numpy()
                return self.loss(out, y).reshape(-1).double().numpy()
        if self.output == "loss" and not hasattr(fitted, "predict_proba"):
            return (np.asarray(fitted.predict(self.x_test), dtype=np.float64) - self.y_test) ** 2
        if not hasattr(fitted, "predict_proba"):
            raise InvalidParameterError(
                f"output={self.output!r} needs a classifier with predict_proba; "
                f"{type(fitted).__name__} has none.")
        proba = fitted.predict_proba(self.x_test)
        col = np.searchsorted(fitted.classes_, self.y_test)
        col = np.clip(col, 0, len(fitted.classes_) - 1)
        present = fitted.classes_[col] == self.y_test  # a class the subset lacked: p = 0
        p = np.where(present, proba[np.arange(len(col)), col], 0.0)
        p = np.clip(p, 1e-15, 1 - 1e-15)
        if self.output == "loss":
            return -np.log(p)
        return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class SubsetOutputs:
    """Outputs of models retrained on random subsets: ``masks[j]`` marks the training rows of
    subset ``j``, ``outputs[j]`` the test outputs (mean over ``n_seeds`` retrainings)."""

    masks: np.ndarray
    outputs: np.ndarray
    goal: str
    alpha: float
    n_seeds: int


@dataclass(frozen=True)
class LOOOutputs:
    """Outputs of models retrained without one training row: ``removed[j]`` is the row,
    ``outputs[j]`` the test outputs without it, ``full`` those with every row (means over
    ``n_seeds`` retrainings with the same seeds)."""

    removed: np.ndarray
    outputs: np.ndarray
    full: np.ndarray
    goal: str
    n_seeds: int
    #: Training rows of the retrained models (None for ground truth built by hand).
    n_train: int | None = None


def _check_retrain(retrain: Any) -> Any:
    if not callable(retrain):
        raise InvalidParameterError(
            "'retrain' must be a Retrain or a callable (train_indices, seed) -> (n_test,) "
            f"outputs; got {type(retrain).__name__}.")
    return retrain


def _goal(retrain: Any, goal: str | None) -> str:
    own = getattr(retrain, "goal", None)
    goal = goal or own
    if goal not in ("minimize", "maximize"):
        raise InvalidParameterError(
            "Say whether the retrained output is a loss or a score: goal='minimize' or "
            "'maximize' (a Retrain knows it from its 'output').")
    if own is not None and goal != own:
        raise InvalidParameterError(f"'goal' is {goal!r} but the retraining's output is to "
                                    f"be {own}d.")
    return goal


def _identity(retrain: Any) -> str:
    if hasattr(retrain, "fingerprint"):
        return str(retrain.fingerprint())

    return describe_callable(retrain)


def _run_tasks(retrain: Any, tasks: list[tuple[np.ndarray, int]], config: dict[str, Any],
               cache: Any, n_jobs: int | None, backend: str | None, ray_address: str | None,
               progress: bool | None, desc: str) -> np.ndarray:
    """Outputs of every task ``(indices, seed)``, ``(n_tasks, n_test)``, resumable through
    ``cache``."""
    key = digest_json(config)
    done = np.zeros(len(tasks), dtype=bool)
    outputs: np.ndarray | None = None
    if cache is not None:
        if str(cache).strip() == "" or os.path.isdir(cache):
            raise InvalidParameterError(f"'cache' must be a file name; got {str(cache)!r}.")
        loaded = load_checkpoint(cache, expected_config=key, what="'cache' file")
        if loaded is not None:
            done, outputs = loaded[1]["done"].astype(bool), loaded[1]["outputs"]
            if done.shape != (len(tasks),):
                raise InvalidParameterError(
                    f"The 'cache' file {str(cache)!r} holds {done.size} retrainings; this run "
                    f"has {len(tasks)}.")
    todo = np.flatnonzero(~done)
    # Chunks of a few tasks per worker: each chunk is saved before the next starts, so an
    # interruption loses at most one chunk.
    chunk = max(1, 2 * effective_n_jobs(n_jobs))
    bar = progress_bar(len(tasks), f"retraining ({desc})", progress, unit="model")
    bar.update(len(tasks) - todo.size)
    with bar, joblib_backend(backend, ray_address):
        for start in range(0, todo.size, chunk):
            part = todo[start:start + chunk]
            results = parallel_map(retrain, [tasks[i] for i in part], n_jobs=n_jobs,
                                   progress=False)
            bar.update(len(part))
            for i, out in zip(part, results, strict=True):
                out = np.asarray(out, dtype=np.float64).reshape(-1)
                if outputs is None:
                    outputs = np.full((len(tasks), out.size), np.nan)
                if out.size != outputs.shape[1] or not np.all(np.isfinite(out)):
                    raise InvalidDataError(
                        f"'retrain' returned {out.size} outputs ({int((~np.isfinite(out)).sum())}"
                        f" not finite) for task {int(i)}; it must return "
                        f"{outputs.shape[1]} finite values every time.")
                outputs[i] = out
                done[i] = True
            if cache is not None:
                save_checkpoint(cache, {"config": key, "what": desc},
                                {"done": done, "outputs": outputs})
    assert outputs is not None
    return outputs


def _n_train(retrain: Any, n_train: Any) -> int:
    """The number of training rows: ``n_train`` (the columns of the scores) must be the
    retraining's own when it knows it, or the subsets would index other rows than the scores
    name (fewer columns: a silently wrong LDS; more: an IndexError deep in the retraining)."""
    own = getattr(retrain, "n_train", None)
    if n_train is None:
        n_train = own
    n_train = _check_int(n_train, "n_train", 2)
    if own is not None and n_train != own:
        raise InvalidDataError(
            f"'scores' has {n_train} columns (training examples) but the retraining has "
            f"{own} training rows: give one score per training row, in the retraining's "
            "order.")
    return n_train


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidParameterError(f"'{name}' must be an int >= {low}; got {value!r}.")
    return int(value)


def subset_outputs(retrain: Any, n_train: int | None = None, *, alpha: float = 0.5,
                   n_subsets: int = 100, n_seeds: int = 1, random_state: int = 0,
                   goal: str | None = None, cache: str | os.PathLike | None = None,
                   n_jobs: int | None = None, backend: str | None = None,
                   ray_address: str | None = None,
                   progress: bool | None = None) -> SubsetOutputs:
    """Retrain on ``n_subsets`` random subsets of ``round(alpha n_train)`` training rows
    (``n_seeds`` retrainings each, outputs averaged) and record the test outputs: the ground
    truth of :func:`datavalue.evaluate.lds`.

    Subset ``j`` and its seeds depend only on ``(random_state, j)``.
    """
    retrain = _check_retrain(retrain)
    goal = _goal(retrain, goal)
    n_train = _n_train(retrain, n_train)
    if not isinstance(alpha, float | int) or not 0 < alpha < 1:
        raise InvalidParameterError(f"'alpha' must be in (0, 1); got {alpha!r}.")
    n_subsets = _check_int(n_subsets, "n_subsets", 2)
    n_seeds = _check_int(n_seeds, "n_seeds", 1)
    size = max(1, int(round(alpha * n_train)))
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    tasks = []
    for j, s in enumerate(spawn_seeds(random_state, n_subsets)):
        rng = np.random.default_rng(s)
        masks[j, rng.choice(n_train, size, replace=False)] = True
        seeds = spawn_seeds(s, n_seeds)
        tasks.extend((np.flatnonzero(masks[j]), seed) for seed in seeds)
    config = {"kind": "subsets", "retrain": _identity(retrain), "n_train": n_train,
              "alpha": float(alpha), "n_subsets": n_subsets, "n_seeds": n_seeds,
              "random_state": random_state}
    out = _run_tasks(retrain, tasks, config, cache, n_jobs, backend, ray_address,
                     progress, "subsets")
    out = out.reshape(n_subsets, n_seeds, -1).mean(1)
    return SubsetOutputs(masks=masks, outputs=out, goal=goal, alpha=float(alpha),
                         n_seeds=n_seeds)


def loo_outputs(retrain: Any, train_indices: Sequence[int] | np.ndarray, n_train: int | None = None,
                *, n_seeds: int = 1, random_state: int = 0, goal: str | None = None,
                cache: str | os.PathLike | None = None, n_jobs: int | None = None,
                backend: str | None = None, ray_address: str | None = None,
                progress: bool | None = None) -> LOOOutputs:
    """Retrain on all training rows, and without each of ``train_indices`` (``n_seeds``
    retrainings each, the same seeds for every removal, so the seeds' noise cancels in the
    differences): the ground truth of :func:`datavalue.evaluate.loo_correlation`."""
    retrain = _check_retrain(retrain)
    goal = _goal(retrain, goal)
    n_train = _n_train(retrain, n_train)
    n_seeds = _check_int(n_seeds, "n_seeds", 1)
    removed = np.asarray(train_indices)
    if removed.ndim != 1 or removed.size == 0 or removed.dtype.kind not in "iu" or np.any(
            (removed < 0) | (removed >= n_train)) or np.unique(removed).size != removed.size:
        raise InvalidParameterError(
            f"'train_indices' must be distinct training row indices in 0..{n_train - 1}.")
    seeds = spawn_seeds(random_state, n_seeds)
    everything = np.arange(n_train)
    tasks = [(everything, s) for s in seeds]
    for i in removed:
        keep = np.delete(everything, int(i))
        tasks.extend((keep, s) for s in seeds)
    config = {"kind": "loo", "retrain": _identity(retrain), "n_train": n_train,
              "removed": removed.tolist(), "n_seeds": n_seeds, "random_state": random_state}
    out = _run_tasks(retrain, tasks, config, cache, n_jobs, backend, ray_address, progress,
                     "leave-one-out").reshape(removed.size + 1, n_seeds, -1).mean(1)
    return LOOOutputs(removed=removed.astype(np.int64), outputs=out[1:], full=out[0],
                      goal=goal, n_seeds=n_seeds, n_train=n_train)
