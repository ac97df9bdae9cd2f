"""The 'value' command: value the training examples of a data set and save the result."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import check_output_folder, check_writable_file
from datavalue._core.result import ValuationResult
from datavalue.cli._common import (
    _add_common,
    _check_n_jobs,
    _check_name,
    _fit,
    _listing,
    _load_data,
    _needs_validation,
    _parse_params,
    _progress,
    _seed,
    _size,
    _summary,
    _wrap,
)
from datavalue.cli._output import (
    _N_SHOWN,
    _data_inputs,
    _detection,
    _detection_lines,
    _lowest_table,
    _run_info,
    _save_run,
)
from datavalue.data import BUILTIN_DATASETS
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.registry import METHODS, make_valuator, method_parameters
from datavalue.valuation.utility import METRICS, resolve_metric


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'value' subcommand to ``sub``; returns its parser (without ``func``)."""
    methods = _listing("methods (--method):", {k: _summary(v) for k, v in METHODS.items()})
    models = _listing("models (--model):", dict(MODELS))
    p = sub.add_parser(
        "value",
        formatter_class=fmt,
        help="value the training examples of a data set and save the result",
        description=_wrap(
            "Load a data set, split it into train/valid/test, optionally corrupt a "
        "fraction of the training rows (so you can check that the method finds them), value every "
        "training example and save the result, the data set and the options into --out."
        ),
        epilog=f"{methods}\n\n{models}\n\n"
        f"metrics (--metric): {', '.join(METRICS)}\n"
        f"built-in data sets (--data): {', '.join(BUILTIN_DATASETS)}\n\n"
        "examples:\n"
        "  datavalue value --data breast_cancer --noise 0.1 --out results/bc\n"
        "  datavalue value --data digits --noise 0.2 --method knn-shapley --out results/digits\n"
        "  datavalue value --data loans.csv --target default --impute --method loo \\\n"
        "      --model logreg --metric neg_log_loss --out results/loans\n"
        "  datavalue value --data breast_cancer --method data-oob --param max_samples=0.5 "
        "--out r",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        required=True,
        metavar="NAME|PATH",
        help=f"a built-in data set ({', '.join(BUILTIN_DATASETS)}), a .csv file (with --target) "
        "or an .npz file with arrays X and y. Required.",
    )
    g.add_argument("--target", metavar="COL", help="name of the target column of a CSV file.")
    g.add_argument(
        "--id-column",
        metavar="COL",
        help="column of a CSV file with a unique id per row (customer number, ...): every "
        "output (values.csv, review.csv, cleaned_train.csv, the report) names rows by it. "
        "Default: the row's line number in the file (the header is line 1).",
    )
    g.add_argument(
        "--noise",
        type=float,
        default=0.0,
        metavar="RATE",
        help="fraction of training rows to corrupt on purpose, in [0, 1). Default: 0 (none).",
    )
    g.add_argument(
        "--noise-kind",
        choices=("labels", "features"),
        default="labels",
        help="'labels': give each chosen row a different class (Gaussian noise on the target "
        "for regression); 'features': add Gaussian noise to its features. Default: labels.",
    )
    g.add_argument(
        "--n-samples",
        type=int,
        metavar="N",
        help="keep a seeded random subsample of N rows (size of the synthetic sets). "
        "Default: all rows.",
    )
    g.add_argument(
        "--valid-size",
        type=_size,
        default=None,
        metavar="F",
        help="validation split: a fraction of all rows or a count. Its rows score the models "
        "of methods that need one (loo, the Shapley family, knn-shapley, dvrl, ...) and get no "
        "value. Default: 0.2 for those methods, 0 for the others (data-oob, random, "
        "self-influence), which then value every row outside the test split.",
    )
    g.add_argument(
        "--cross-fit",
        type=int,
        metavar="K",
        help="value every row outside the test split with a method that needs validation "
        "data: the rows are split into K folds and each fold is valued against the other K-1 "
        "(see datavalue.cross_fit). Incompatible with --valid-size and --checkpoint.",
    )
    g.add_argument(
        "--test-size",
        type=_size,
        default=0.2,
        metavar="F",
        help="test split (used by 'evaluate'): a fraction or a count. Default: 0.2.",
    )
    g.add_argument(
        "--impute",
        action="store_true",
        help="fill missing values of a CSV file (median / most frequent level) instead of "
        "stopping with an error.",
    )
    g = p.add_argument_group("method")
    g.add_argument(
        "--method",
        default="data-oob",
        metavar="NAME",
        help=f"valuation method, one of {', '.join(METHODS)}. Default: data-oob.",
    )
    g.add_argument(
        "--model",
        metavar="NAME",
        help=f"model, one of {', '.join(MODELS)}: the model a retraining method (LOO, Shapley) "
        "refits, the base model of Data-OOB's bagging, and the model 'evaluate' retrains. "
        "Default: the method's own (logreg for 'evaluate').",
    )
    g.add_argument(
        "--metric",
        metavar="NAME",
        help=f"score of a model on held-out data, one of {', '.join(METRICS)}, for the methods "
        "that retrain models and for 'evaluate' (knn-shapley's distance is --param distance=...). "
        "Default: accuracy (classification) / r2 (regression).",
    )
    g.add_argument(
        "--n-estimators",
        type=int,
        metavar="N",
        help="number of models of ensemble methods (data-oob). Default: the method's own (1000).",
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other parameter of the method, e.g. --param n_neighbors=5 (VALUE is read as "
        "JSON: numbers, true/false, or a string). Repeatable.",
    )
    g.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="seed of the split, the corruption, the method and the model. Default: 0.",
    )
    _add_common(g)
    g = p.add_argument_group("long runs (Monte Carlo methods: tmc-shapley, beta-shapley, ...)")
    g.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="stop after at most N Monte Carlo samples (permutations for the Shapley methods, "
        "subsets for data-banzhaf), whichever comes first with the method's convergence rule.",
    )
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="save the running state to PATH (atomically, every --checkpoint-every seconds and "
        "at the end), so a killed or interrupted run can be resumed with --resume.",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint; it ends with exactly the values of an "
        "uninterrupted run with the same options and seed. Without --resume an existing "
        "checkpoint file is an error, never overwritten.",
    )
    g.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between checkpoint saves. Default: 60.",
    )
    g.add_argument(
        "--backend",
        choices=["loky", "threading", "ray"],
        help="where parallel work runs: local processes (loky, the default), threads, or a Ray "
        "cluster (needs the 'ray' extra; see --ray-address). Values do not depend on it.",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="address of the Ray cluster for --backend ray, e.g. 127.0.0.1:6379 (as printed by "
        "'ray start --head'). Default: start or join a local one.",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for the result (values.csv, values.npz, result.json), dataset.npz and "
        "run.json: a new or empty folder, or the folder of an earlier run, whose files are then "
        "replaced (files datavalue did not write are never touched). Required.",
    )
    return p


def _method_params(args: argparse.Namespace, task: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The method's parameters from the options. Seed, progress and task go to the methods that
    have them; every option the user gave must apply to the method, or it is an error (never a
    silently ignored option)."""
    accepted = set(method_parameters(args.method))
    params: dict[str, Any] = {}
    ambient = {"random_state": args.seed, "progress": _progress(args.quiet), "task": task}
    params.update({k: v for k, v in ambient.items() if k in accepted})
    budget_name = next((k for k in ("max_permutations", "max_subsets") if k in accepted),
                       "max_permutations")
    given: dict[str, tuple[str, Any]] = {}  # option -> (parameter, value)
    if args.n_estimators is not None:
        given["--n-estimators"] = ("n_estimators", args.n_estimators)
    if args.n_jobs is not None:
        given["--n-jobs"] = ("n_jobs", args.n_jobs)
    if args.budget is not None:
        given["--budget"] = (budget_name, args.budget)
    if args.checkpoint is not None:
        given["--checkpoint"] = ("checkpoint", args.checkpoint)
        given["--checkpoint-every"] = ("checkpoint_every", args.checkpoint_every)
    if args.resume:
        given["--resume"] = ("resume", True)
    if args.backend is not None:
        given["--backend"] = ("backend", args.backend)
    if args.ray_address is not None:
        given["--ray-address"] = ("ray_address", args.ray_address)
    if args.model is not None:
        given["--model"] = ("model", make_model(args.model, task, args.seed))
    if args.metric is not None:
        given["--metric"] = ("metric", args.metric)
    for option, (name, value) in given.items():
        if name not in accepted:
            what = {
                "metric": "it has no score metric (K-NN-Shapley values are defined by the "
                          "K-NN classifier's own accuracy; its neighbour distance is "
                          "--param distance=...). --metric of 'evaluate' sets the score of the "
                          "removal curves",
                "model": "it trains no model of your choice",
            }.get(name, f"it has no parameter {name!r}")
            raise InvalidParameterError(
                f"{option} does not apply to the method {args.method!r}: {what}."
            )
        params[name] = value
    for name in extra:
        if name in params and name not in ambient:
            raise InvalidParameterError(
                f"--param {name}=... repeats an option given on its own; give it once."
            )
    params.update(extra)
    return params


def _valued_line(args: argparse.Namespace, ds: Any, needs_valid: bool) -> str:
    """Which rows got a value, and which were held out and why."""
    n_all = ds.n_train + ds.n_valid + ds.n_test
    parts = [f"{ds.n_train} of {n_all} rows"]
    if args.cross_fit is not None:
        parts.append(f"(cross-fitted: {args.cross_fit} folds, each valued against the others)")
    if ds.n_valid:
        why = ("the method scores its models on them" if needs_valid
               else f"{args.method} does not use them")
        parts.append(f"; held out: {ds.n_valid} validation rows ({why})")
    if ds.n_test:
        parts.append(f"{';' if not ds.n_valid else ','} {ds.n_test} test rows (for 'evaluate' "
                     "and 'clean'; --test-size 0 values them too)")
    if needs_valid and args.cross_fit is None:
        parts.append(". --cross-fit K values the validation rows as well")
    return (" ".join(parts) + ".").replace(" ;", ";").replace(" ,", ",").replace(" .", ".")


def _method_line(result: ValuationResult) -> str:
    shown = {k: v for k, v in result.params.items() if v is not None and k not in ("progress",)}
    params = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"{result.method} ({params}), {result.wall_time:.1f} s, status {result.status}"


def _cmd_value(args: argparse.Namespace) -> int:
    _check_name(args.method, METHODS, "method", "--method")
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    # Where the results go is checked before any work: a folder datavalue may not write into,
    # or an unwritable checkpoint, fails now instead of after a long run.
    check_output_folder(args.out, what="--out", protect=_data_inputs(args.data))
    if args.checkpoint is not None:
        check_writable_file(args.checkpoint, what="--checkpoint")
    extra = _parse_params(args.method, args.param)
    needs_valid = _needs_validation(METHODS[args.method])
    if args.cross_fit is not None:
        if args.cross_fit < 2:
            raise InvalidParameterError(f"--cross-fit must be a number of folds >= 2. Got "
                                        f"{args.cross_fit}.")
        if not needs_valid:
            raise InvalidParameterError(
                f"--cross-fit does not apply to {args.method!r}: it needs no validation data and "
                "already values every row outside the test split."
            )
        if args.valid_size not in (None, 0):
            raise InvalidParameterError("--cross-fit uses every non-test row; drop --valid-size.")
        if args.checkpoint is not None:
            raise InvalidParameterError("--cross-fit runs the method once per fold: it cannot "
                                        "share one --checkpoint.")
    valid_size = args.valid_size
    if valid_size is None:
        valid_size = 0.2 if needs_valid and args.cross_fit is None else 0
    args.valid_size = valid_size  # recorded in run.json as used
    ds = _load_data(
        args.data,
        target=args.target,
        noise=args.noise,
        noise_kind=args.noise_kind,
        n_samples=args.n_samples,
        valid_size=valid_size,
        test_size=args.test_size,
        seed=args.seed,
        impute=args.impute,
        id_column=args.id_column,
    )
    if args.metric is not None:
        resolve_metric(args.metric, ds.task)  # a regression metric on labels fails here, early
    if args.resume and args.checkpoint is None:
        raise InvalidParameterError("--resume needs --checkpoint PATH (the run to continue).")
    if args.ray_address is not None and args.backend != "ray":
        raise InvalidParameterError("--ray-address needs --backend ray.")
    if args.budget is not None and args.budget < 1:
        raise InvalidParameterError(f"--budget must be a positive number of samples. Got {args.budget}.")
    params = _method_params(args, ds.task, extra)
    valuator = make_valuator(args.method, **params)
    if args.cross_fit is not None:
        from datavalue.valuation import cross_fit

        result = dataclasses.replace(
            cross_fit(valuator, ds.x_train, ds.y_train, n_folds=args.cross_fit,
                      random_state=args.seed), ids=ds.ids_train)
    else:
        result = _fit(valuator, ds)

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    out = Path(args.out)
    _save_run(out, ds, result, _run_info("value", options, ds, args.argv),
              protect=_data_inputs(args.data))

    word = "flipped" if args.noise_kind == "labels" and ds.task == "classification" else "corrupted"
    print(f"Data:    {ds.describe()}")
    print(f"Method:  {_method_line(result)}")
    print(f"Valued:  {_valued_line(args, ds, needs_valid)}")
    print(f"\nThe {_N_SHOWN} lowest-valued training examples (most likely harmful):")
    print(_lowest_table(ds, result, word))
    det = _detection(result.values, ds)
    if det is not None:
        print(f"\nDetection of the {len(ds.noisy_indices)} corrupted training rows:")
        print(_detection_lines(det, word))
    print(f"\nSaved to {out}/ (values.csv, values.npz, result.json, dataset.npz, run.json).")
    print(f"Next: datavalue evaluate {out}")
    return 0
