"""The 'explain' command: the training examples behind one test prediction."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import RunWriter, check_output_folder
from datavalue.cli._common import (
    _add_common,
    _add_data_options,
    _check_name,
    _check_test_index,
    _load_args_data,
    _seed,
    _wrap,
)
from datavalue.valuation.models import MODELS


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'explain' subcommand to ``sub``; returns its parser (without ``func``)."""
    p = sub.add_parser(
        "explain",
        formatter_class=fmt,
        help="the training examples behind one test prediction (influence functions)",
        description=_wrap(
            "Fit a model on the training split and rank every training example by its "
            "influence on the loss of one test example (Koh & Liang 2017): the predicted change "
            "of that loss if the example were removed and the model retrained. Prints the most "
            "helpful and most harmful examples with their labels and scores (8x8 images drawn "
            "in text for digits) and, with --out, writes explanation.json and dataset.npz for "
            "'datavalue report'."
        ),
        epilog="examples:\n  datavalue explain --data digits --noise 0.1 --test-index 3 --top 5\n"
        "  datavalue explain --data breast_cancer --model svm --test-index 0 --out expl",
    )
    g = p.add_argument_group("data")
    _add_data_options(g, noise_default=0.0)
    g.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of the split and the corruption. Default: 0.")
    g = p.add_argument_group("explanation")
    g.add_argument("--test-index", type=int, required=True, metavar="I",
                   help="row of the test split to explain. Required.")
    g.add_argument("--top", type=int, default=5, metavar="K",
                   help="how many helpful and harmful examples to show. Default: 5.")
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help="model whose prediction is explained: logreg, linear or svm (linear "
                   "models, whose influence is exact for their own objective). Default: logreg.")
    g.add_argument("--method", default="influence", metavar="NAME",
                   help="how training examples are scored: influence (influence functions), "
                   "tracin (the gradient inner product under the trained model: Grad-Dot), "
                   "grad-cos (its cosine) or trak (TRAK, on the test margin). Default: "
                   "influence.")
    g.add_argument("--solver", default="exact", metavar="NAME",
                   help="inverse-Hessian solver: exact, cg, lissa, arnoldi, ekfac, kfac. "
                   "Default: exact.")
    g.add_argument("--damping", type=float, default=0.0, metavar="L",
                   help="damping added to the Hessian (H + L I). Default: 0.")
    g.add_argument("--out", metavar="DIR",
                   help="also write explanation.json and dataset.npz into DIR.")
    _add_common(g)
    return p


def _cmd_explain(args: argparse.Namespace) -> int:
    from datavalue.actions.explain import EXPLAIN_METHODS, explain
    from datavalue.report.text import render_explanation

    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.method, dict.fromkeys(EXPLAIN_METHODS), "method", "--method")
    if args.top < 1:
        raise InvalidParameterError(f"--top must be a positive number. Got {args.top}.")
    if args.out is not None:
        check_output_folder(args.out, what="--out")
    ds = _load_args_data(args)
    _check_test_index(args.test_index, ds)
    expl = explain(ds, args.test_index, model=args.model, k=min(args.top, ds.n_train),
                   solver=args.solver, damping=args.damping, method=args.method,
                   random_state=args.seed)
    print(f"Data:  {ds.describe()}")
    print(render_explanation(expl, ds))
    if args.out is not None:
        out = Path(args.out)
        with RunWriter(out, kind="explain", replace=True, what="--out") as w:
            w.write_text("explanation.json", json.dumps(asdict(expl), indent=2) + "\n")
            ds.save(w.path("dataset.npz"))
        print(f"\nSaved to {out}/ (explanation.json, dataset.npz); "
              f"'datavalue report {out}' draws it.")
    return 0
