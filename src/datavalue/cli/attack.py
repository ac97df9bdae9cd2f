"""The 'attack' command: a training-set attack (Koh & Liang 2017, Sec. 5.2) on one test
prediction, against random perturbations of the same size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import RunWriter, check_output_folder
from datavalue.cli._common import (
    _add_data_options,
    _check_test_index,
    _load_args_data,
    _seed,
    _wrap,
)

#: Models the command attacks: scikit-learn's logistic regression (exact re-fits) and a small
#: torch network (one tanh layer of 32 units, weight decay 1e-2, warm-started L-BFGS re-fits).
ATTACK_MODELS = {"logreg": "L2 logistic regression (exact re-fit after every step)",
                 "torch-mlp": "torch network 64-32-10 (tanh), warm-started L-BFGS re-fits"}
_WEIGHT_DECAY = 1e-2


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'attack' subcommand to ``sub``; returns its parser (without ``func``)."""
    p = sub.add_parser(
        "attack",
        formatter_class=fmt,
        help="flip one test prediction by moving a few training inputs (training-set attack)",
        description=_wrap(
            "Train on the training split, then for each count in --n-train move that many "
            "training inputs, by signed steps along the gradient of the test loss with respect "
            "to them (influence functions, I_pert,loss of Koh & Liang 2017) inside a box of "
            "--epsilon around each original value, re-fitting the model after every step, until "
            "the test prediction flips. The same number of random rows moved by random signs of "
            "the same size is the baseline. For image data the original and perturbed training "
            "images are drawn side by side; with --out, 'datavalue report' draws them too."
        ),
        epilog="examples:\n  datavalue attack --data digits --test-index 3 --n-train 1,2,5,10\n"
        "  datavalue attack --data digits --test-index 3 --model torch-mlp --out atk",
    )
    g = p.add_argument_group("data")
    _add_data_options(g, noise_default=0.0)
    g.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of the split, the network's initialisation and the random "
                   "baseline. Default: 0.")
    g.add_argument("--id-column", metavar="NAME",
                   help="column of a CSV file holding the row ids the output names rows by "
                   "(default: line numbers).")
    g = p.add_argument_group("attack")
    g.add_argument("--test-index", type=int, required=True, metavar="I",
                   help="row of the test split whose prediction to flip (it must be classified "
                   "correctly). Required.")
    g.add_argument("--n-train", default="1,2,5,10", metavar="N,N,...",
                   help="how many training examples to move, one attack per count. "
                   "Default: 1,2,5,10.")
    g.add_argument("--epsilon", type=float, default=0.125, metavar="F",
                   help="largest change of any input value, as a fraction of its range in the "
                   "training data (for images, of the pixel range: 0.125 = 2 of digits' 16 grey "
                   "levels). Default: 0.125.")
    g.add_argument("--max-steps", type=int, default=30, metavar="N",
                   help="signed-gradient steps (each epsilon/10, each followed by a re-fit) "
                   "before giving up. Default: 30.")
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help=f"one of {', '.join(ATTACK_MODELS)}. Default: logreg.")
    g.add_argument("--show", type=int, default=4, metavar="K",
                   help="attacked examples drawn per count (0 = none). Default: 4.")
    g.add_argument("--out", metavar="DIR",
                   help="also write attack.json and dataset.npz into DIR.")
    g.add_argument("--quiet", action="store_true", help="no progress lines.")
    return p


def _counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise InvalidParameterError(
            f"--n-train must be a comma-separated list of positive counts, e.g. 1,2,5,10. Got "
            f"{text!r}.")
    return counts


def _train_model(name: str, ds: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    """The fitted model and the extra arguments the attack needs for it."""
    if name == "logreg":
        from datavalue.valuation.models import make_model

        # A tight optimum: influence describes the minimizer, and every step re-fits to it.
        model = make_model("logreg").set_params(tol=1e-8, max_iter=5000)
        return model.fit(ds.x_train, ds.y_train), {}
    import torch
    from torch import nn

    from datavalue.attribution.applications.attack import warm_refit

    loss = nn.CrossEntropyLoss(reduction="none")
    torch.manual_seed(seed)
    n_classes = int(np.max(ds.y_train)) + 1
    net = nn.Sequential(nn.Linear(ds.n_features, 32), nn.Tanh(),
                        nn.Linear(32, n_classes)).double()
    net = warm_refit(loss, weight_decay=_WEIGHT_DECAY, max_iter=1000)(net, ds.x_train,
                                                                     ds.y_train)
    # One test point: conjugate gradients need one solve per step (a dense solve of the
    # 2,410-parameter network costs 4 s per step, measured on digits). The Gauss-Newton
    # curvature: at a network's optimum the exact Hessian plus the weight decay was indefinite
    # (CG met negative curvature, -2e-7), which Gauss-Newton cannot be.
    return net, {"loss": loss, "refit": warm_refit(loss, weight_decay=_WEIGHT_DECAY,
                                                   max_iter=200),
                 "damping": _WEIGHT_DECAY, "solver": "cg", "hessian": "gauss-newton"}


def _box(ds: Any, fraction: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Epsilon and the valid range in the model's (standardized) units: images share one pixel
    range, other features have their own training range."""
    from datavalue.report.text import is_image

    raw = ds.raw_features(ds.x_train)
    image = is_image(ds)
    low = np.full(ds.n_features, raw.min()) if image else raw.min(axis=0)
    high = np.full(ds.n_features, raw.max()) if image else raw.max(axis=0)
    scale = np.ones(ds.n_features) if ds.feature_scale is None else ds.feature_scale
    mean = np.zeros(ds.n_features) if ds.feature_mean is None else ds.feature_mean
    span = np.where(high > low, high - low, 1.0)
    eps = fraction * span / scale
    # One-hot columns of a category ("contract=Two year") stay 0 or 1: a category cannot move
    # by a fraction.
    eps[[("=" in str(name)) for name in ds.feature_names]] = 0.0
    return eps, ((low - mean) / scale, (high - mean) / scale)


def _record(res: Any, ds: Any) -> dict[str, Any]:
    ids = ds.ids_train[res.train_indices]
    return {
        "train_indices": res.train_indices.tolist(),
        "row_ids": [v.item() if hasattr(v, "item") else v for v in ids],
        "labels": [int(v) for v in ds.y_train[res.train_indices]],
        "flipped": bool(res.flipped), "steps": int(res.steps),
        "seconds": round(float(res.seconds), 3),
        "test_loss": [float(v) for v in res.test_loss],
        "predictions": [int(v) for v in res.predictions],
        "x_original": res.x_original.tolist(), "x_perturbed": res.x_perturbed.tolist(),
    }


def _draw_pairs(ds: Any, rec: dict[str, Any], show: int) -> list[str]:
    from datavalue.report.text import ascii_image

    raw_train = ds.raw_features(ds.x_train)
    rng = (float(raw_train.min()), float(raw_train.max()))
    blocks = []
    for j in range(min(show, len(rec["train_indices"]))):
        before = ds.raw_features(np.asarray(rec["x_original"][j])[None, :])[0]
        after = ds.raw_features(np.asarray(rec["x_perturbed"][j])[None, :])[0]
        head = (f"train #{rec['row_ids'][j]} ({ds.label_name(rec['labels'][j])}): "
                "original | perturbed")
        rows = [f"{a}  | {b}" for a, b in zip(ascii_image(before, ds.image_shape, rng),
                                             ascii_image(after, ds.image_shape, rng),
                                             strict=True)]
        blocks.append([head] + rows)
    lines = []
    for k in range(0, len(blocks), 2):  # two pairs per line: 2 x 37 characters
        pair = blocks[k:k + 2]
        width = max(len(r) for r in pair[0]) + 4
        for i in range(len(pair[0])):
            lines.append("    " + "".join(b[i].ljust(width) for b in pair).rstrip())
        lines.append("")
    return lines


def _cmd_attack(args: argparse.Namespace) -> int:
    from datavalue.attribution.applications.attack import random_perturbation, training_set_attack
    from datavalue.report.text import is_image

    counts = _counts(args.n_train)
    if args.model not in ATTACK_MODELS:
        from datavalue._core.exceptions import UnknownNameError

        raise UnknownNameError(f"Unknown model {args.model!r} given as --model: use one of "
                               f"{', '.join(ATTACK_MODELS)}.")
    if not 0 < args.epsilon <= 1:
        raise InvalidParameterError(
            f"--epsilon must be a fraction of the value range in (0, 1]. Got {args.epsilon:g}.")
    if args.max_steps < 1:
        raise InvalidParameterError(f"--max-steps must be a positive number. Got "
                                    f"{args.max_steps}.")
    if args.show < 0:
        raise InvalidParameterError(f"--show must be 0 or more. Got {args.show}.")
    if args.out is not None:
        check_output_folder(args.out, what="--out")
    ds = _load_args_data(args, id_column=args.id_column)
    if ds.task != "classification":
        raise InvalidParameterError(
            f"'attack' flips a classification; {args.data!r} is a {ds.task} data set.")
    _check_test_index(args.test_index, ds)
    if max(counts) > ds.n_train:
        raise InvalidParameterError(
            f"--n-train asks for {max(counts)} examples; the training split has {ds.n_train}.")
    model, extra = _train_model(args.model, ds, args.seed)
    eps, bounds = _box(ds, args.epsilon)
    xt, yt = ds.x_test[args.test_index], ds.y_test[args.test_index]
    print(f"Data:  {ds.describe()}")
    print(f"Model: {ATTACK_MODELS[args.model]}")
    image = is_image(ds)
    runs = []
    for n in counts:
        if not args.quiet:
            print(f"  attacking with {n} training example(s) ...", flush=True)
        res = training_set_attack(model, ds.x_train, ds.y_train, xt, yt, n_train=n,
                                  epsilon=eps, max_steps=args.max_steps, bounds=bounds,
                                  **extra)
        base_kw = {k: v for k, v in extra.items() if k in ("loss", "refit")}
        base = random_perturbation(model, ds.x_train, ds.y_train, xt, yt, n_train=n,
                                   epsilon=eps, bounds=bounds, random_state=args.seed, **base_kw)
        runs.append({"n_train": n, "attack": _record(res, ds), "random": _record(base, ds)})
    print(_render(ds, args, runs, image))
    if args.out is not None:
        out = Path(args.out)
        doc = {"test_index": args.test_index, "test_id": _plain(ds.ids_test[args.test_index]),
               "test_label": int(yt), "model": args.model, "epsilon_fraction": args.epsilon,
               "max_steps": args.max_steps, "seed": args.seed, "data": args.data, "runs": runs}
        with RunWriter(out, kind="attack", replace=True, what="--out") as w:
            w.write_text("attack.json", json.dumps(doc, indent=1) + "\n")
            ds.save(w.path("dataset.npz"))
        print(f"Saved to {out}/ (attack.json, dataset.npz); 'datavalue report {out}' draws it.")
    return 0


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _render(ds: Any, args: argparse.Namespace, runs: list[dict[str, Any]], image: bool) -> str:
    from datavalue.report.text import ascii_image, largest_changes, number

    label = ds.label_name(ds.y_test[args.test_index])
    first = runs[0]["attack"]
    lines = [f"Target: test #{_plain(ds.ids_test[args.test_index])}, label {label}, predicted "
             f"{label} (loss {first['test_loss'][0]:.3g}); every input may move by "
             f"{args.epsilon:g} of its range."]
    if image:
        raw = ds.raw_features(ds.x_train)
        rng = (float(raw.min()), float(raw.max()))
        lines += ["    " + r for r in ascii_image(ds.raw_features(
            ds.x_test[[args.test_index]])[0], ds.image_shape, rng)]
    lines += ["", f"{'moved':>5}  {'attack (influence)':<44}  random rows, random signs"]
    for run in runs:
        a, b = run["attack"], run["random"]
        verdict = (f"FLIPPED to {ds.label_name(a['predictions'][-1])} in {a['steps']} step(s)"
                   if a["flipped"] else f"not flipped in {a['steps']} steps")
        base = (f"flipped to {ds.label_name(b['predictions'][-1])}" if b["flipped"]
                else "not flipped")
        lines.append(f"{run['n_train']:>5}  {verdict + ',':<29} loss {a['test_loss'][0]:.3g} -> "
                     f"{a['test_loss'][-1]:<6.3g}  {base}, loss -> {b['test_loss'][-1]:.3g}")
        lines.append(f"{'':>5}  rows {a['row_ids']}, {a['seconds']:.1f} s")
    for run in runs if args.show else ():
        lines += ["", f"{run['n_train']} moved:"]
        if image:
            lines += _draw_pairs(ds, run["attack"], args.show)
            continue
        a = run["attack"]
        for j in range(min(args.show, len(a["train_indices"]))):
            moved = largest_changes(ds, np.asarray(a["x_original"][j]),
                                    np.asarray(a["x_perturbed"][j]))
            lines.append(f"    row {a['row_ids'][j]} ({ds.label_name(a['labels'][j])}): "
                         + ", ".join(f"{n} {number(o)} -> {number(v)}" for n, o, v in moved))
    return "\n".join(lines).rstrip()
