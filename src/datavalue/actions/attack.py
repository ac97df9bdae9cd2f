"""Training-set attacks on a data set (Koh & Liang 2017, Sec. 5.2), each against random
perturbations of the same size: the model is trained here, the perturbation box is set from
the data's ranges, and the result keeps every moved row by the user's row id.

:func:`attack_dataset` is what ``datavalue attack`` runs; the attack itself, on any fitted
model and arrays, is :func:`datavalue.attribution.applications.attack.training_set_attack`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError, UnknownNameError
from datavalue._core.folder import RunWriter
from datavalue._core.kinds import KINDS
from datavalue._core.validation import check_seed
from datavalue.data import Dataset

__all__ = ["ATTACK_MODELS", "DatasetAttack", "attack_dataset", "attack_box", "attack_model"]

#: Models an attack trains: scikit-learn's logistic regression (exact re-fits) and a small
#: torch network (one tanh layer of 32 units, weight decay 1e-2, warm-started L-BFGS re-fits).
ATTACK_MODELS = {"logreg": "L2 logistic regression (exact re-fit after every step)",
                 "torch-mlp": "torch network 64-32-10 (tanh), warm-started L-BFGS re-fits"}
_WEIGHT_DECAY = 1e-2


def attack_model(name: str, dataset: Dataset, random_state: int = 0) -> tuple[Any, dict]:
    """The model ``name`` (:data:`ATTACK_MODELS`) fitted on the training split, and the extra
    arguments :func:`~datavalue.attribution.applications.attack.training_set_attack` needs
    for it (loss, re-fit, curvature)."""
    if name not in ATTACK_MODELS:
        raise UnknownNameError(f"Unknown model {name!r} given as 'model': use one of "
                               f"{', '.join(ATTACK_MODELS)}.")
    if name == "logreg":
        from datavalue.valuation.models import make_model

        # A tight optimum: influence describes the minimizer, and every step re-fits to it.
        model = make_model("logreg").set_params(tol=1e-8, max_iter=5000)
        return model.fit(dataset.x_train, dataset.y_train), {}
    import torch
    from torch import nn

    from datavalue.attribution.applications.attack import warm_refit

    loss = nn.CrossEntropyLoss(reduction="none")
    torch.manual_seed(random_state)
    n_classes = int(np.max(dataset.y_train)) + 1
    net = nn.Sequential(nn.Linear(dataset.n_features, 32), nn.Tanh(),
                        nn.Linear(32, n_classes)).double()
    net = warm_refit(loss, weight_decay=_WEIGHT_DECAY, max_iter=1000)(
        net, dataset.x_train, dataset.y_train)
    # One test point: conjugate gradients need one solve per step (a dense solve of the
    # 2,410-parameter network costs 4 s per step, measured on digits). The Gauss-Newton
    # curvature: at a network's optimum the exact Hessian plus the weight decay was indefinite
    # (CG met negative curvature, -2e-7), which Gauss-Newton cannot be.
    return net, {"loss": loss, "refit": warm_refit(loss, weight_decay=_WEIGHT_DECAY,
                                                   max_iter=200),
                 "damping": _WEIGHT_DECAY, "solver": "cg", "hessian": "gauss-newton"}


def attack_box(dataset: Dataset, fraction: float) -> tuple[np.ndarray, tuple[np.ndarray,
                                                                             np.ndarray]]:
    """Epsilon (one radius per feature) and the valid range, in the model's (standardized)
    units, for moves of ``fraction`` of each feature's training range: images share one pixel
    range, other features have their own; one-hot columns of a category never move."""
    raw = dataset.raw_features(dataset.x_train)
    image = dataset.is_image
    low = np.full(dataset.n_features, raw.min()) if image else raw.min(axis=0)
    high = np.full(dataset.n_features, raw.max()) if image else raw.max(axis=0)
    scale = (np.ones(dataset.n_features) if dataset.feature_scale is None
             else dataset.feature_scale)
    mean = np.zeros(dataset.n_features) if dataset.feature_mean is None else dataset.feature_mean
    span = np.where(high > low, high - low, 1.0)
    eps = fraction * span / scale
    # One-hot columns of a category ("contract=Two year") stay 0 or 1: a category cannot move
    # by a fraction.
    eps[[("=" in str(name)) for name in dataset.feature_names]] = 0.0
    return eps, ((low - mean) / scale, (high - mean) / scale)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _record(res: Any, ds: Dataset) -> dict[str, Any]:
    ids = ds.ids_train[res.train_indices]
    return {
        "train_indices": res.train_indices.tolist(),
        "row_ids": [_plain(v) for v in ids],
        "labels": [int(v) for v in ds.y_train[res.train_indices]],
        "flipped": bool(res.flipped), "steps": int(res.steps),
        "seconds": round(float(res.seconds), 3),
        "test_loss": [float(v) for v in res.test_loss],
        "predictions": [int(v) for v in res.predictions],
        "x_original": res.x_original.tolist(), "x_perturbed": res.x_perturbed.tolist(),
    }


@dataclass
class DatasetAttack:
    """The attacks of :func:`attack_dataset`: per count of moved rows, the influence attack and
    its random baseline (``runs[i]["attack"]``, ``runs[i]["random"]``: rows by id and position,
    labels, originals and perturbed inputs, the test loss and prediction after every step)."""

    dataset: Dataset
    test_index: int
    model: str
    epsilon: float
    max_steps: int
    random_state: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    data_name: str | None = None

    @property
    def test_id(self) -> Any:
        return _plain(self.dataset.ids_test[self.test_index])

    def summary(self) -> dict[str, Any]:
        """Per count: flipped or not, steps, test loss before and after, for the attack and the
        random baseline."""
        return {"test_id": self.test_id, "model": self.model, "epsilon": self.epsilon,
                "runs": [{"n_train": r["n_train"],
                          **{f"{side}_{key}": r[side][key] for side in ("attack", "random")
                             for key in ("flipped", "steps")},
                          "loss_before": r["attack"]["test_loss"][0],
                          "attack_loss_after": r["attack"]["test_loss"][-1],
                          "random_loss_after": r["random"]["test_loss"][-1]}
                         for r in self.runs]}

    def to_json(self) -> dict[str, Any]:
        """The content of ``attack.json`` (kind ``attack``)."""
        return {"kind": "attack", "format": KINDS["attack"].version,
                "test_index": self.test_index, "test_id": self.test_id,
                "test_label": int(self.dataset.y_test[self.test_index]), "model": self.model,
                "epsilon_fraction": self.epsilon, "max_steps": self.max_steps,
                "seed": self.random_state, "data": self.data_name, "runs": self.runs}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``attack.json`` and ``dataset.npz`` into ``directory`` (a new run of kind
        ``attack``; ``datavalue report`` draws it)."""
        d = Path(directory)
        with RunWriter(d, kind="attack", replace=True, what="The attack's folder") as w:
            w.write_text("attack.json", json.dumps(self.to_json(), indent=1) + "\n")
            self.dataset.save(w.path("dataset.npz"))
        return d


def _check_counts(n_train: Any, n_rows: int) -> list[int]:
    counts = [n_train] if isinstance(n_train, int | np.integer) else list(n_train)
    if (not counts or any(isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1
                          for c in counts)):
        raise InvalidParameterError(
            "'n_train' must be a positive count or a list of them, e.g. [1, 2, 5, 10]. Got "
            f"{n_train!r}.")
    if max(counts) > n_rows:
        raise InvalidParameterError(
            f"'n_train' asks for {max(counts)} examples; the training split has {n_rows}.")
    return [int(c) for c in counts]


def attack_dataset(dataset: Dataset, test_index: int, n_train: int | Sequence[int] = (1, 2, 5, 10),
                   *, epsilon: float = 0.125, max_steps: int = 30, model: str = "logreg",
                   random_state: int = 0, data_name: str | None = None,
                   progress: Any = None) -> DatasetAttack:
    """Train ``model`` on the training split and, for each count in ``n_train``, attack the
    prediction of test row ``test_index`` by moving that many training inputs (influence
    steps inside a box of ``epsilon`` of each feature's range, re-fitting after every step),
    beside as many random rows moved by random signs of the same size.

    Parameters
    ----------
    dataset : Dataset
        A classification data set.
    test_index : int
        Row of the test split whose prediction to flip (it must be classified correctly).
    n_train : int or sequence of int
        How many training rows to move, one attack per count.
    epsilon : float
        Largest change of an input, as a fraction of its range in the training data, in (0, 1]
        (images: of the pixel range; 0.125 = 2 of digits' 16 grey levels).
    max_steps : int
        Signed-gradient steps (each ``epsilon / 10``, each followed by a re-fit).
    model : str
        One of :data:`ATTACK_MODELS`.
    random_state : int
        Seed of the network's initialisation and of the random baseline.
    progress : callable or None
        Called with a line of text before each count (e.g. ``print``).

    Returns
    -------
    DatasetAttack
    """
    from datavalue.attribution.applications.attack import random_perturbation, training_set_attack

    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            f"'dataset' must be a datavalue Dataset; got {type(dataset).__name__}.")
    if dataset.task != "classification":
        raise InvalidParameterError(
            f"An attack flips a classification; the data set is a {dataset.task} one.")
    if (isinstance(test_index, bool) or not isinstance(test_index, int | np.integer)
            or not 0 <= test_index < dataset.n_test):
        raise InvalidParameterError(
            f"'test_index' must be a row of the test split, in [0, {dataset.n_test - 1}]. "
            f"Got {test_index}.")
    counts = _check_counts(n_train, dataset.n_train)
    if isinstance(epsilon, bool) or not isinstance(epsilon, float | int) or not 0 < epsilon <= 1:
        raise InvalidParameterError(
            f"'epsilon' must be a fraction of the value range in (0, 1]. Got {epsilon!r}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise InvalidParameterError(f"'max_steps' must be a positive number. Got {max_steps!r}.")
    random_state = check_seed(random_state) or 0
    fitted, extra = attack_model(model, dataset, random_state)
    eps, bounds = attack_box(dataset, float(epsilon))
    xt, yt = dataset.x_test[test_index], dataset.y_test[test_index]
    out = DatasetAttack(dataset, int(test_index), model, float(epsilon), int(max_steps),
                        random_state, data_name=data_name)
    for n in counts:
        if progress is not None:
            progress(f"  attacking with {n} training example(s) ...")
        res = training_set_attack(fitted, dataset.x_train, dataset.y_train, xt, yt, n_train=n,
                                  epsilon=eps, max_steps=int(max_steps), bounds=bounds, **extra)
        base_kw = {k: v for k, v in extra.items() if k in ("loss", "refit")}
        base = random_perturbation(fitted, dataset.x_train, dataset.y_train, xt, yt, n_train=n,
                                   epsilon=eps, bounds=bounds, random_state=random_state,
                                   **base_kw)
        out.runs.append({"n_train": n, "attack": _record(res, dataset),
                         "random": _record(base, dataset)})
    return out
