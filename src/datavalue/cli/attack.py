"""The 'attack' command: a training-set attack (Koh & Liang 2017, Sec. 5.2) on one test
prediction, against random perturbations of the same size."""

from __future__ import annotations

import argparse
from typing import Any

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import check_output_folder
from datavalue.cli._common import (
    _add_data_options,
    _load_args_data,
    _seed,
    _wrap,
)


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
                   help="one of logreg (L2 logistic regression, exact re-fits) or torch-mlp "
                   "(a tanh network, warm-started L-BFGS re-fits). Default: logreg.")
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


def _cmd_attack(args: argparse.Namespace) -> int:
    from datavalue.actions.attack import ATTACK_MODELS, attack_dataset
    from datavalue.report.text import render_attack

    counts = _counts(args.n_train)
    if args.show < 0:
        raise InvalidParameterError(f"--show must be 0 or more. Got {args.show}.")
    if args.out is not None:
        check_output_folder(args.out, what="--out")
    ds = _load_args_data(args, id_column=args.id_column)
    print(f"Data:  {ds.describe()}")
    if args.model in ATTACK_MODELS:  # an unknown one is refused by attack_dataset, by name
        print(f"Model: {ATTACK_MODELS[args.model]}")
    attack = attack_dataset(ds, args.test_index, counts, epsilon=args.epsilon,
                            max_steps=args.max_steps, model=args.model, random_state=args.seed,
                            data_name=args.data,
                            progress=None if args.quiet else lambda s: print(s, flush=True))
    print(render_attack(attack, show=args.show))
    if args.out is not None:
        out = attack.save(args.out)
        print(f"Saved to {out}/ (attack.json, dataset.npz); 'datavalue report {out}' draws it.")
    return 0
