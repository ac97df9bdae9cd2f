"""The ``datavalue`` command: value a data set, evaluate the values, act on them, or run a
guided demo.

::

    datavalue demo                                   # 10% flipped labels, found by Data-OOB
    datavalue value --data breast_cancer --noise 0.1 --method knn-shapley --out results/bc
    datavalue evaluate results/bc                    # detection, removal/addition curves, figures
    datavalue clean results/bc                       # drop the lowest 10%, retrain, compare
    datavalue fix results/bc                         # review labels in ranked order (Koh & Liang)
    datavalue report results/bc                      # one self-contained report.html
    datavalue compare --data breast_cancer --methods data-oob,knn-shapley,loo --out results/cmp

Methods and models come from the registries :data:`datavalue.METHODS` and
:data:`datavalue.MODELS`, so a new method is on the command line as soon as it is registered.
Every error we raise on purpose (:class:`datavalue.DatavalueError`) and every file error is
printed as one line, ``datavalue: error: <message>``, with exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._io import atomic_write_text
from ._validation import validate_params
from .actions import CLEAN_MODES, FIX_RANKINGS, clean, fix
from .compare import COMPARE_BUDGETS, compare, default_methods
from .data import BUILTIN_DATASETS, Dataset, corrupt_features, corrupt_labels, load_dataset
from .exceptions import DatavalueError, InvalidDataError, InvalidParameterError, UnknownNameError
from .models import MODELS, make_model
from .report import build_report
from .result import ValuationResult, jsonable
from .utility import METRICS, resolve_metric
from .valuation import METHODS, make_valuator

__all__ = ["main", "build_parser"]

PROG = "datavalue"
#: Files ``evaluate`` writes; ``value`` removes them from its folder, so they never describe an
#: older result.
_EVALUATION_FILES = (
    "evaluation.json",
    "removal.csv",
    "addition.csv",
    "removal.png",
    "addition.png",
    "detection.png",
    "values.png",
    # 'clean', 'fix' and 'report' outputs describe the values too
    "clean.json",
    "clean_curve.csv",
    "clean.png",
    "cleaned_dataset.npz",
    "cleaned_train.csv",
    "sample_weight.npy",
    "fix.json",
    "fix_curve.csv",
    "fix.png",
    "review.csv",
    "report.html",
)
_N_SHOWN = 10


# ---------------------------------------------------------------------- argument parsing
def _summary(obj: Any) -> str:
    """First paragraph of a docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.strip().split("\n\n")[0].split()).rstrip(".")


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=79)


def _size(text: str) -> float | int:
    """A split size: an int count ("100") or a fraction ("0.2")."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _listing(title: str, rows: dict[str, str]) -> str:
    width = max(map(len, rows), default=0)
    lines = [title]
    for name, text in rows.items():
        lead = f"  {name:<{width}}  "
        lines.append(
            textwrap.fill(text, 79, initial_indent=lead, subsequent_indent=" " * len(lead),
                          break_on_hyphens=False)
        )
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser, *, n_jobs_default: str = "1") -> None:
    p.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"parallel workers (joblib; -1 = all cores). Results do not depend on it. "
        f"Default: {n_jobs_default}.",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (they go to stderr on a terminal)."
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``datavalue`` command (built from the registries)."""
    fmt = argparse.RawDescriptionHelpFormatter
    methods = _listing("methods (--method):", {k: _summary(v) for k, v in METHODS.items()})
    models = _listing("models (--model):", dict(MODELS))
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=fmt,
        description=_wrap(
            "Which training examples made this model what it is? Give every training "
        "example a value (higher = more helpful); low values point at mislabeled or harmful data."
        ),
        epilog="examples:\n"
        "  datavalue demo\n"
        "  datavalue value --data breast_cancer --noise 0.1 --out results/bc\n"
        "  datavalue evaluate results/bc\n"
        "  datavalue clean results/bc\n"
        "  datavalue report results/bc\n"
        "  datavalue compare --data breast_cancer --methods data-oob,knn-shapley --out cmp\n\n"
        "Run 'datavalue COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -- value
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
        default=0.2,
        metavar="F",
        help="validation split: a fraction of all rows or a count. Default: 0.2.",
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
        "that retrain models and for 'evaluate' (knn-shapley's distance is --param metric=...). "
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
        type=int,
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
        "run.json. Created if needed; files of an earlier run are replaced. Required.",
    )
    p.set_defaults(func=_cmd_value)

    # -- demo
    p = sub.add_parser(
        "demo",
        formatter_class=fmt,
        help="a guided example: Data-OOB finds 10%% flipped labels",
        description=_wrap(
            "Flip the labels of 10% of the training examples of a built-in data set "
        "(seed 0), value every training example with Data-OOB, and show how well the lowest "
        "values point at the flipped ones. Takes under half a minute."
        ),
        epilog="examples:\n  datavalue demo\n  datavalue demo --out /tmp/demo --n-estimators 200",
    )
    p.add_argument(
        "--out",
        default="results/demo",
        metavar="DIR",
        help="folder for the results and figures. Default: results/demo.",
    )
    p.add_argument(
        "--data",
        default="breast_cancer",
        metavar="NAME",
        help=f"built-in data set ({', '.join(BUILTIN_DATASETS)}) or a .npz file. "
        "Default: breast_cancer.",
    )
    p.add_argument(
        "--n-estimators",
        type=int,
        default=1000,
        metavar="N",
        help="number of bootstrap models of Data-OOB. Default: 1000.",
    )
    _add_common(p, n_jobs_default="-1 (all cores)")
    p.set_defaults(func=_cmd_demo)

    # -- evaluate
    p = sub.add_parser(
        "evaluate",
        formatter_class=fmt,
        help="check saved values: noisy-data detection, point removal and addition",
        description=_wrap(
            "Read a folder written by 'datavalue value' (or 'demo') and measure how good "
        "the values are: how well low values find the corrupted rows (if any were corrupted), "
        "and how the test score of a retrained model changes when training points are removed "
        "(or added) in order of value, against a random order. Writes evaluation.json, "
        "removal.csv, addition.csv and PNG figures into the folder."
        ),
        epilog="examples:\n"
        "  datavalue evaluate results/bc\n"
        "  datavalue evaluate results/bc --model forest --fractions 0.05 0.1 0.2 0.3",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'datavalue value'.")
    p.add_argument(
        "--model",
        metavar="NAME",
        help=f"model to retrain, one of {', '.join(MODELS)}. Default: the --model of the run "
        "(run.json), else logreg.",
    )
    p.add_argument(
        "--metric",
        metavar="NAME",
        help=f"test score, one of {', '.join(METRICS)}. Default: the --metric of the run, else "
        "accuracy / r2.",
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        metavar="F",
        help="fractions of the training set to remove / add, each in [0, 1). "
        "Default: evaluate's own grid (0 to 0.5).",
    )
    _add_common(p)
    p.set_defaults(func=_cmd_evaluate)
    _add_action_commands(sub, fmt)
    _add_explain_command(sub, fmt)
    return parser


# ---------------------------------------------------------------------- checks and loading
def _check_name(name: str | None, registry: Any, what: str, option: str) -> None:
    if name is not None and name not in registry:
        raise UnknownNameError(
            f"Unknown {what} {name!r} given as {option}: use one of {', '.join(registry)}."
        )


def _check_n_jobs(n_jobs: int | None) -> None:
    if n_jobs == 0:
        raise InvalidParameterError(
            "--n-jobs must be a positive number of workers or negative (-1 = all cores). Got 0."
        )


def _accepts_param(method: str, name: str, value: Any) -> bool:
    """Whether the method's declared constraints on parameter ``name`` allow ``value``."""
    cls = METHODS[method]
    constraints = getattr(cls, "_parameter_constraints", {})
    try:
        validate_params(cls.__name__, {name: value}, constraints)
    except InvalidParameterError:
        return False
    return True


def _parse_params(method: str, items: list[str]) -> dict[str, Any]:
    """``["n_neighbors=5", ...]`` -> ``{"n_neighbors": 5}``, only names the method accepts."""
    accepted = set(inspect.signature(METHODS[method].__init__).parameters) - {"self"}
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise InvalidParameterError(f"--param must look like NAME=VALUE. Got {item!r}.")
        if name not in accepted:
            raise UnknownNameError(
                f"The method {method!r} has no parameter {name!r} (--param): its parameters are "
                f"{', '.join(sorted(accepted))}."
            )
        try:
            params[name] = json.loads(text)
        except json.JSONDecodeError:
            params[name] = text
    return params


def _load_data(
    data: str,
    *,
    target: str | None = None,
    noise: float = 0.0,
    noise_kind: str = "labels",
    n_samples: int | None = None,
    valid_size: float | int = 0.2,
    test_size: float | int = 0.2,
    seed: int = 0,
    impute: bool = False,
    train_size: float | int | None = None,
) -> Dataset:
    if not 0.0 <= noise < 1.0:
        raise InvalidParameterError(
            f"--noise must be a fraction of the training rows in [0, 1), e.g. 0.1. Got {noise:g}."
        )
    if seed < 0:
        raise InvalidParameterError(f"--seed must be a non-negative int. Got {seed}.")
    path = Path(data)
    if data not in BUILTIN_DATASETS and path.suffix and not path.is_file():
        raise InvalidParameterError(f"The data file {data!r} (--data) does not exist.")
    if path.suffix.lower() == ".npz" and path.is_file() and not zipfile.is_zipfile(path):
        raise InvalidDataError(f"{data!r} (--data) is not an .npz archive (numpy.savez).")
    if impute and path.suffix.lower() == ".csv" and target is not None:
        # load_dataset has no 'missing' option yet: read the CSV here and corrupt it the same way.
        if n_samples is not None:
            raise InvalidParameterError("--n-samples is not supported for CSV files yet.")
        ds = Dataset.from_csv(
            path,
            target,
            missing="impute",
            train_size=train_size,
            valid_size=valid_size,
            test_size=test_size,
            random_state=seed,
            standardize=True,
        )
        if noise > 0:
            corrupt = corrupt_labels if noise_kind == "labels" else corrupt_features
            ds = corrupt(ds, noise, random_state=seed)
        return ds
    return load_dataset(
        data,
        target=target,
        noise_rate=noise,
        noise_kind=noise_kind,
        n_samples=n_samples,
        train_size=train_size,
        valid_size=valid_size,
        test_size=test_size,
        random_state=seed,
    )


def _fit(valuator: Any, ds: Dataset) -> ValuationResult:
    """Fit on the training split (with the validation split when there is one)."""
    if ds.n_valid:
        valuator.fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    else:
        valuator.fit(ds.x_train, ds.y_train)
    return valuator.result_


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


# ---------------------------------------------------------------------- printing
def _lowest_table(
    ds: Dataset, result: ValuationResult, word: str, *, k: int = _N_SHOWN, indent: str = "  "
) -> str:
    """The ``k`` lowest-valued training examples as an aligned text table."""
    known = len(ds.noisy_indices) > 0
    mask = ds.noise_mask
    rows = [("rank", "index", "value", "label") + ((word,) if known else ())]
    shown = result.ranking(ascending=True)[:k]
    for r, i in enumerate(shown, 1):
        row = (str(r), str(i), f"{result.values[i]:.4g}", ds.label_name(ds.y_train[i].item()))
        rows.append(row + (("yes" if mask[i] else "no",) if known else ()))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        indent
        + "  ".join(
            cell.rjust(w) if c < 3 else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    if known:
        lines.append(f"{indent}{int(mask[shown].sum())} of these {len(shown)} were {word} on purpose.")
    return "\n".join(lines)


def _detection(values: np.ndarray, ds: Dataset) -> dict[str, Any] | None:
    if not len(ds.noisy_indices):
        return None
    from .evaluate import noisy_detection

    return noisy_detection(values, ds.noisy_indices)


def _detection_lines(det: dict[str, Any], word: str = "corrupted", indent: str = "  ") -> str:
    k = det["k"]
    return "\n".join(
        [
            f"{indent}AUC              {det['auc']:.3f}  (0.5 = guessing, 1 = every {word} example "
            "below every clean one)",
            f"{indent}F1 (k-means)     {det['f1_kmeans']:.3f}  (values split into a low and a "
            "high group, the low one flagged)",
            f"{indent}precision at {k:<3} {det['precision_at_k']:.3f}  (share of the {k} "
            f"lowest-valued examples that were {word})",
        ]
    )


def _method_line(result: ValuationResult) -> str:
    shown = {k: v for k, v in result.params.items() if v is not None and k not in ("progress",)}
    params = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"{result.method} ({params}), {result.wall_time:.1f} s, status {result.status}"


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def _save_figure(fig: Any, path: Path) -> None:
    # evaluate's figures are built without pyplot: nothing opens a window or stays in memory.
    fig.savefig(path, dpi=120)


def _save_run(out: Path, ds: Dataset, result: ValuationResult, run: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in _EVALUATION_FILES:
        (out / name).unlink(missing_ok=True)
    ds.save(out / "dataset.npz")
    _write_json(out / "run.json", run)
    result.save(out)  # result.json last: a folder with one holds a complete run


def _run_info(
    command: str, options: dict[str, Any], ds: Dataset, argv: list[str]
) -> dict[str, Any]:
    return {
        "command": command,
        "options": options,
        "argv": argv,
        "data": ds.describe(),
        "task": ds.task,
        "data_fingerprint": ds.fingerprint(),
        "library_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------------- commands
def _cmd_value(args: argparse.Namespace) -> int:
    _check_name(args.method, METHODS, "method", "--method")
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    extra = _parse_params(args.method, args.param)
    ds = _load_data(
        args.data,
        target=args.target,
        noise=args.noise,
        noise_kind=args.noise_kind,
        n_samples=args.n_samples,
        valid_size=args.valid_size,
        test_size=args.test_size,
        seed=args.seed,
        impute=args.impute,
    )
    if args.metric is not None:
        resolve_metric(args.metric, ds.task)  # a regression metric on labels fails here, early
    params: dict[str, Any] = {
        "n_estimators": args.n_estimators,
        "n_jobs": args.n_jobs,
        "random_state": args.seed,
        "progress": _progress(args.quiet),
        "task": ds.task,
    }
    if args.resume and args.checkpoint is None:
        raise InvalidParameterError("--resume needs --checkpoint PATH (the run to continue).")
    if args.ray_address is not None and args.backend != "ray":
        raise InvalidParameterError("--ray-address needs --backend ray.")
    if args.budget is not None and args.budget < 1:
        raise InvalidParameterError(f"--budget must be a positive number of samples. Got {args.budget}.")
    params.update(
        checkpoint=args.checkpoint,
        resume=args.resume or None,
        checkpoint_every=args.checkpoint_every,
        backend=args.backend,
        ray_address=args.ray_address,
        max_permutations=args.budget,
        max_subsets=args.budget,
    )
    if args.model is not None:
        # One name configures the model of every family: retraining methods call it 'model',
        # bagging methods (Data-OOB) 'estimator'.
        params["model"] = make_model(args.model, ds.task, args.seed)
        params["estimator"] = make_model(args.model, ds.task, args.seed)
    if args.metric is not None and _accepts_param(args.method, "metric", args.metric):
        # Skipped where 'metric' means something else (KNN-Shapley's distance): the score
        # metric is then used by 'evaluate' only.
        params["metric"] = args.metric
    params.update(extra)
    valuator = make_valuator(args.method, **params)
    result = _fit(valuator, ds)

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    out = Path(args.out)
    _save_run(out, ds, result, _run_info("value", options, ds, args.argv))

    word = "flipped" if args.noise_kind == "labels" and ds.task == "classification" else "corrupted"
    print(f"Data:    {ds.describe()}")
    print(f"Method:  {_method_line(result)}")
    print(f"\nThe {_N_SHOWN} lowest-valued training examples (most likely harmful):")
    print(_lowest_table(ds, result, word))
    det = _detection(result.values, ds)
    if det is not None:
        print(f"\nDetection of the {len(ds.noisy_indices)} corrupted training rows:")
        print(_detection_lines(det, word))
    print(f"\nSaved to {out}/ (values.csv, values.npz, result.json, dataset.npz, run.json).")
    print(f"Next: datavalue evaluate {out}")
    return 0


def _say(text: str, indent: str = "   ") -> None:
    print(textwrap.fill(text, 88, initial_indent=indent, subsequent_indent=indent))


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_n_jobs(args.n_jobs)
    rate = 0.1
    ds = _load_data(args.data, noise=rate, seed=0)
    n_noisy = len(ds.noisy_indices)
    classification = ds.task == "classification"
    word = "flipped" if classification else "corrupted"
    print("datavalue demo: can data values find the mislabeled training examples?\n")
    classes = f", classes {' / '.join(ds.class_names)}" if ds.class_names else ""
    print(f"1. Data: {ds.name} ({ds.task}, {ds.n_features} features{classes}).")
    _say(
        f"Split into {ds.n_train} training, {ds.n_valid} validation and {ds.n_test} test "
        f"examples. We {'flipped the labels' if classification else 'added noise to the targets'}"
        f" of {n_noisy} training examples ({rate:.0%}, seed 0): we know which ones, the method "
        "does not."
    )
    print(f"\n2. Valuation: Data-OOB (Kwon & Zou, ICML 2023) with {args.n_estimators} models.")
    _say(
        "Each model is a decision tree trained on a bootstrap sample of the training set. An "
        "example's value is how well the models that did NOT see it predict its label. An "
        "example whose label disagrees with the rest of the data gets a low value."
    )
    valuator = make_valuator(
        "data-oob",
        n_estimators=args.n_estimators,
        random_state=0,
        n_jobs=-1 if args.n_jobs is None else args.n_jobs,
        progress=_progress(args.quiet),
        task=ds.task,
    )
    result = _fit(valuator, ds)
    _say(f"Done in {result.wall_time:.1f} s.")
    print(f"\n3. The {_N_SHOWN} most suspicious training examples (lowest values first):")
    print(_lowest_table(ds, result, word, indent="   "))
    det = _detection(result.values, ds)
    if det is not None:
        print(f"\n4. How well do low values find the {n_noisy} {word} examples?")
        print(_detection_lines(det, word, indent="   "))

    out = Path(args.out)
    options = {
        "data": args.data,
        "noise": rate,
        "noise_kind": "labels",
        "method": "data-oob",
        "model": None,
        "metric": None,
        "n_estimators": args.n_estimators,
        "n_jobs": args.n_jobs,
        "seed": 0,
    }
    _save_run(out, ds, result, _run_info("demo", options, ds, args.argv))
    from .evaluate import plot_noisy_detection, plot_values

    _save_figure(plot_values(result.values, ds.noisy_indices), out / "values.png")
    if det is not None:
        _save_figure(plot_noisy_detection(result.values, ds.noisy_indices), out / "detection.png")
    print(f"\n5. Results are in {out}/")
    print("   values.csv     one value per training example (higher = more helpful)")
    print(f"   values.png     histogram of the values, {word} vs clean examples")
    if det is not None:
        print(f"   detection.png  share of the {word} examples found when inspecting the lowest "
              "values first")
    print("   dataset.npz, values.npz, result.json, run.json: the data, exact values, provenance")
    print(
        f"\nNext: 'datavalue evaluate {out}' retrains a model without the lowest-valued "
        "examples\nand shows what happens to its test accuracy."
    )
    return 0


def _curve_table(frame: Any) -> str:
    """Scores as a fraction x order table, with the mean over fractions (the area) below."""
    from .evaluate import summarize_curve

    table = frame.pivot_table(index="fraction", columns="order", values="score", aggfunc="mean")
    table.columns.name = None
    table.index = [f"{f:.2f}" for f in table.index]
    mean = summarize_curve(frame)
    table.loc["mean"] = [mean[c] for c in table.columns]
    table = table.rename_axis("fraction").reset_index()
    text = table.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    return "\n".join("  " + line for line in text.splitlines())


def _cmd_evaluate(args: argparse.Namespace) -> int:
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    d = Path(args.dir)
    if not d.is_dir():
        raise InvalidParameterError(f"The folder {str(d)!r} does not exist.")
    if not (d / "dataset.npz").is_file():
        raise InvalidParameterError(
            f"{str(d)!r} has no dataset.npz: give a folder written by 'datavalue value'."
        )
    result = ValuationResult.load(d)
    ds = Dataset.load(d / "dataset.npz")
    if len(result) != ds.n_train or (
        result.data_fingerprint and result.data_fingerprint != ds.fingerprint()
    ):
        raise InvalidDataError(
            f"The result in {str(d)!r} does not belong to its dataset.npz ({len(result)} values, "
            f"{ds.n_train} training rows, fingerprints {result.data_fingerprint} and "
            f"{ds.fingerprint()})."
        )
    run_path = d / "run.json"
    options: dict[str, Any] = {}
    if run_path.is_file():
        try:
            options = json.loads(run_path.read_text()).get("options", {})
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InvalidDataError(f"{str(run_path)!r} is not a run.json written by datavalue.") from exc
    model_name = args.model or options.get("model") or "logreg"
    metric = args.metric or options.get("metric")
    seed = int(options.get("seed") or 0)
    model = make_model(model_name, ds.task, seed)

    from . import evaluate as ev

    det = _detection(result.values, ds)
    curve_kw: dict[str, Any] = dict(
        metric=metric,
        fractions=args.fractions,
        random_state=seed,
        n_jobs=args.n_jobs,
        progress=_progress(args.quiet),
    )
    removal = ev.point_removal(result.values, ds, model, **curve_kw)
    addition = ev.point_addition(result.values, ds, model, **curve_kw)

    removal.to_csv(d / "removal.csv", index=False)
    addition.to_csv(d / "addition.csv", index=False)
    _write_json(
        d / "evaluation.json",
        {
            "method": result.method,
            "model": model_name,
            "metric": metric,
            "detection": det,
            "removal_mean": ev.summarize_curve(removal),
            "addition_mean": ev.summarize_curve(addition),
            "removal": removal.to_dict(orient="records"),
            "addition": addition.to_dict(orient="records"),
        },
    )
    noisy = ds.noisy_indices if len(ds.noisy_indices) else None
    _save_figure(ev.plot_values(result.values, noisy), d / "values.png")
    if det is not None:
        _save_figure(ev.plot_noisy_detection(result.values, ds.noisy_indices), d / "detection.png")
    _save_figure(ev.plot_point_removal(removal), d / "removal.png")
    _save_figure(ev.plot_point_addition(addition), d / "addition.png")

    score = metric or ("accuracy" if ds.task == "classification" else "r2")
    print(f"Data:    {ds.describe()}")
    print(f"Values:  {result.method}, {len(result)} training examples")
    print(f"Model:   {model_name} ({type(model).__name__}), test {score} on {ds.n_test} examples")
    if det is not None:
        print(f"\nDetection of the {len(ds.noisy_indices)} corrupted training rows:")
        print(_detection_lines(det))
    print(f"\nPoint removal: test {score} after removing a fraction of the training set")
    print(_curve_table(removal))
    print(f"\nPoint addition: test {score} when training on a growing fraction, in order")
    print(_curve_table(addition))
    print(
        f"\nWritten to {d}/: evaluation.json, removal.csv, addition.csv, values.png, "
        f"{'detection.png, ' if det is not None else ''}removal.png, addition.png."
    )
    return 0


# ---------------------------------------------------------------------- compare, clean, fix, report
_DATA_HELP = (f"a built-in data set ({', '.join(BUILTIN_DATASETS)}), a .csv file (with --target) "
              "or an .npz file with arrays X and y.")


def _add_data_options(g: argparse._ArgumentGroup, *, noise_default: float) -> None:
    """--data and the split/corruption options of 'compare' (as for 'value', plus
    --train-size)."""
    g.add_argument("--data", required=True, metavar="NAME|PATH", help=f"{_DATA_HELP} Required.")
    g.add_argument("--target", metavar="COL", help="name of the target column of a CSV file.")
    g.add_argument(
        "--noise",
        type=float,
        default=noise_default,
        metavar="RATE",
        help=f"fraction of training rows to corrupt, in [0, 1) (seeded by each seed). "
        f"Default: {noise_default:g}.",
    )
    g.add_argument(
        "--noise-kind",
        choices=("labels", "features"),
        default="labels",
        help="'labels' flips labels (noise on the target for regression), 'features' adds "
        "Gaussian noise to the features. Default: labels.",
    )
    g.add_argument("--n-samples", type=int, metavar="N",
                   help="keep a seeded random subsample of N rows. Default: all rows.")
    g.add_argument("--train-size", type=_size, metavar="F",
                   help="training split: a fraction of all rows or a count; rows in no split "
                   "are dropped. Default: every row not in valid or test.")
    g.add_argument("--valid-size", type=_size, default=0.2, metavar="F",
                   help="validation split: a fraction of all rows or a count. Default: 0.2.")
    g.add_argument("--test-size", type=_size, default=0.2, metavar="F",
                   help="test split (for the removal/addition curves): a fraction or a count. "
                   "Default: 0.2.")
    g.add_argument("--impute", action="store_true",
                   help="fill missing values of a CSV file instead of stopping with an error.")


def _add_action_commands(sub: Any, fmt: Any) -> None:
    methods = _listing("methods (--methods):", {k: _summary(v) for k, v in METHODS.items()})
    budgets = "\n".join(f"  {m}: " + ", ".join(f"{k}={v}" for k, v in p.items())
                        for m, p in COMPARE_BUDGETS.items())
    # -- compare
    p = sub.add_parser(
        "compare",
        formatter_class=fmt,
        help="run several methods on the same splits and evaluate them all (benchmark)",
        description=_wrap(
            "For each seed: load and split the data, corrupt a fraction of the training rows, "
            "run every method, then measure how well each finds the corrupted rows (AUC, "
            "two-cluster F1) and how removing or adding training points in order of value "
            "changes the test score of a retrained model; record the wall time. Writes a tidy "
            "table per (method, seed) (compare.csv, compare.parquet), the mean ± sd over seeds "
            "(summary.csv, summary.md), the curves, every value vector and a run log into "
            "--out. The protocol of OpenDataVal (Jiang et al., 2023)."
        ),
        epilog=f"{methods}\n\n"
        f"budgets compare gives by default (override with --param):\n{budgets}\n\n"
        "examples:\n"
        "  datavalue compare --data breast_cancer --methods data-oob,knn-shapley,loo --out cmp\n"
        "  datavalue compare --data adult.npz --train-size 1000 --valid-size 100 \\\n"
        "      --test-size 500 --noise 0.2 --model logreg --seeds 0,1,2 \\\n"
        "      --methods data-oob,knn-shapley,tmc-shapley,loo,random \\\n"
        "      --param tmc-shapley.max_permutations=100 --out results/adult",
    )
    g = p.add_argument_group("data")
    _add_data_options(g, noise_default=0.2)
    g = p.add_argument_group("methods")
    g.add_argument(
        "--methods",
        metavar="A,B,...",
        help="comma-separated methods to compare. Default: every registered method except "
        "the exact enumerations (exact-*).",
    )
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help=f"model, one of {', '.join(MODELS)}: retrained by the retraining "
                   "methods and the curves, bagged by Data-OOB. Default: logreg.")
    g.add_argument("--metric", metavar="NAME",
                   help=f"test score, one of {', '.join(METRICS)}. Default: accuracy / r2.")
    g.add_argument("--seeds", default="0,1,2", metavar="S,S,...",
                   help="comma-separated seeds: one split, corruption and run of every method "
                   "per seed. Default: 0,1,2.")
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[METHOD.]NAME=VALUE",
        help="a parameter of one method (tmc-shapley.max_permutations=100) or of every "
        "compared method that has it (n_neighbors=5); VALUE is read as JSON. Repeatable.",
    )
    g.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="fractions of the training set for the removal/addition curves. "
                   "Default: evaluate's grid (0 to 0.5).")
    g.add_argument("--keep-going", action="store_true",
                   help="record a listed method that rejects the data (e.g. KNN-Shapley on a "
                   "regression target) as 'failed' and go on, instead of stopping (always so "
                   "without --methods).")
    _add_common(p)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the tables, values, data sets and run.log. Required.")
    p.set_defaults(func=_cmd_compare)

    # -- clean
    p = sub.add_parser(
        "clean",
        formatter_class=fmt,
        help="drop (or down-weight) the lowest-valued training rows and retrain",
        description=_wrap(
            "Read a folder written by 'datavalue value', drop (or down-weight) the "
            "lowest-valued fraction of the training rows, retrain the model and report its "
            "test score before and after, with the score over a grid of fractions next to "
            "dropping as many rows at random. Writes the cleaned data set (cleaned_dataset.npz "
            "and cleaned_train.csv in the original units), clean_curve.csv, clean.json and "
            "clean.png."
        ),
        epilog="examples:\n"
        "  datavalue clean results/bc\n"
        "  datavalue clean results/bc --fraction 0.05 --mode weight --weight 0.2 --model forest",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'datavalue value'.")
    p.add_argument("--fraction", type=float, default=0.1, metavar="F",
                   help="fraction of the training rows to clean, lowest values first, in "
                   "[0, 1). Default: 0.1.")
    p.add_argument("--mode", choices=CLEAN_MODES, default="drop",
                   help="'drop' removes the rows; 'weight' keeps them with a small "
                   "sample_weight (the model must accept it). Default: drop.")
    p.add_argument("--weight", type=float, default=0.1, metavar="W",
                   help="sample weight of the flagged rows with --mode weight, in [0, 1]. "
                   "Default: 0.1.")
    _add_model_options(p)
    p.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="grid of fractions for the curve. Default: 0, 0.05, ..., 0.3.")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the cleaned data and the figures. Default: DIR.")
    _add_common(p)
    p.set_defaults(func=_cmd_clean)

    # -- fix
    p = sub.add_parser(
        "fix",
        formatter_class=fmt,
        help="review training labels in ranked order and fix the flipped ones",
        description=_wrap(
            "Koh & Liang (2017), Sec. 5.4. Read a folder written by 'datavalue value' with "
            "flipped labels (--noise), rank the training rows for review — by the saved values "
            "(lowest first), by self-influence and by training loss of the model trained on "
            "the noisy labels (largest first), and at random — and for each order plot the "
            "fraction of flipped labels found against the fraction checked, and the test score "
            "after restoring the true labels of the ones found. The true labels come from "
            "loading the same data without corruption (same options and seed). Writes "
            "fix_curve.csv, review.csv (every order), fix.json and fix.png."
        ),
        epilog="examples:\n"
        "  datavalue fix results/bc\n"
        "  datavalue fix results/bc --rankings loss,random --fractions 0.05 0.1 0.2",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'datavalue value' with --noise.")
    p.add_argument("--rankings", default=",".join(FIX_RANKINGS), metavar="A,B,...",
                   help=f"review orders besides the saved values: any of "
                   f"{', '.join(FIX_RANKINGS)}. Default: all.")
    _add_model_options(p)
    p.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="fractions of the training set checked, in [0, 1]. Default: 0 to 0.5 "
                   "in steps of 0.025.")
    p.add_argument("--out", metavar="DIR", help="folder for the results. Default: DIR.")
    _add_common(p)
    p.set_defaults(func=_cmd_fix)

    # -- report
    p = sub.add_parser(
        "report",
        formatter_class=fmt,
        help="write one self-contained HTML report of a results folder",
        description=_wrap(
            "Read a folder written by 'value' (with 'evaluate', 'clean' and 'fix' results if "
            "present), 'compare' or 'explain' and write report.html: a summary, the value "
            "distribution of corrupted and clean examples, detection and removal curves, the "
            "comparison table, the most harmful and most helpful training examples (as images "
            "for image data, as feature rows otherwise) and explanations. Figures are "
            "embedded: the file works offline and can be sent on its own."
        ),
        epilog="examples:\n  datavalue report results/bc\n"
        "  datavalue report results/adult --out adult-report.html",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'value', 'compare' or 'explain'.")
    p.add_argument("--out", metavar="FILE", help="where to write the report. Default: "
                   "DIR/report.html.")
    _add_model_options(p, what="the removal curve of a run without 'evaluate' results "
                       "(given, it is recomputed)")
    p.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="fractions of the removal curve computed when 'evaluate' was not run. "
                   "Default: evaluate's grid.")
    p.add_argument("--k", type=int, default=8, metavar="K",
                   help="most harmful and most helpful examples shown. Default: 8.")
    _add_common(p)
    p.set_defaults(func=_cmd_report)


def _add_explain_command(sub: Any, fmt: Any) -> None:
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
    g.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the split and the corruption. Default: 0.")
    g = p.add_argument_group("explanation")
    g.add_argument("--test-index", type=int, required=True, metavar="I",
                   help="row of the test split to explain. Required.")
    g.add_argument("--top", type=int, default=5, metavar="K",
                   help="how many helpful and harmful examples to show. Default: 5.")
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help="model whose prediction is explained: logreg, linear or svm (linear "
                   "models, whose influence is exact for their own objective). Default: logreg.")
    g.add_argument("--solver", default="exact", metavar="NAME",
                   help="inverse-Hessian solver: exact, cg, lissa, arnoldi, ekfac, kfac. "
                   "Default: exact.")
    g.add_argument("--damping", type=float, default=0.0, metavar="L",
                   help="damping added to the Hessian (H + L I). Default: 0.")
    g.add_argument("--out", metavar="DIR",
                   help="also write explanation.json and dataset.npz into DIR.")
    _add_common(g)
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain, render_text

    _check_name(args.model, MODELS, "model", "--model")
    if args.top < 1:
        raise InvalidParameterError(f"--top must be a positive number. Got {args.top}.")
    ds = _load_data(
        args.data, target=args.target, noise=args.noise, noise_kind=args.noise_kind,
        n_samples=args.n_samples, valid_size=args.valid_size, test_size=args.test_size,
        seed=args.seed, impute=args.impute, train_size=args.train_size,
    )
    if not 0 <= args.test_index < ds.n_test:
        raise InvalidParameterError(
            f"--test-index must be a row of the test split, in [0, {ds.n_test - 1}]. "
            f"Got {args.test_index}."
        )
    expl = explain(ds, args.test_index, model=args.model, k=min(args.top, ds.n_train),
                   solver=args.solver, damping=args.damping, random_state=args.seed)
    print(f"Data:  {ds.describe()}")
    print(render_text(expl, ds))
    if args.out is not None:
        out = Path(args.out)
        expl.save(out)
        ds.save(out / "dataset.npz")
        print(f"\nSaved to {out}/ (explanation.json, dataset.npz); "
              f"'datavalue report {out}' draws it.")
    return 0


def _add_model_options(p: argparse.ArgumentParser, what: str = "retraining") -> None:
    p.add_argument("--model", metavar="NAME",
                   help=f"model for {what}, one of {', '.join(MODELS)}. Default: the --model "
                   "of the run (run.json), else logreg.")
    p.add_argument("--metric", metavar="NAME",
                   help=f"test score, one of {', '.join(METRICS)}. Default: the --metric of the "
                   "run, else accuracy / r2.")


def _split_list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InvalidParameterError(f"{option} must be a comma-separated list. Got {text!r}.")
    return items


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _split_list(text, "--seeds") or []]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InvalidParameterError(
            f"--seeds must be distinct non-negative ints separated by commas, e.g. 0,1,2. "
            f"Got {text!r}."
        )
    return seeds


def _parse_compare_params(methods: list[str], items: list[str]) -> dict[str, dict[str, Any]]:
    """``["tmc-shapley.max_permutations=50", "n_neighbors=5"]`` -> per-method dicts."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, _ = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not sep or not name.strip():
            raise InvalidParameterError(
                f"--param must look like METHOD.NAME=VALUE or NAME=VALUE. Got {item!r}."
            )
        targets = [method] if dot else methods
        if dot and method not in methods:
            raise UnknownNameError(
                f"--param {item!r} is for {method!r}, which is not among the compared methods "
                f"({', '.join(methods)})."
            )
        parsed = 0
        for m in targets:
            try:
                params = _parse_params(m, [f"{name}={item.partition('=')[2]}"])
            except UnknownNameError:
                if dot:
                    raise
                continue
            out.setdefault(m, {}).update(params)
            parsed += 1
        if not parsed:
            raise UnknownNameError(
                f"No compared method has the parameter {name.strip()!r} (--param {item!r})."
            )
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    listed = _split_list(args.methods, "--methods")
    methods = listed or default_methods()
    for m in methods:
        _check_name(m, METHODS, "method", "--methods")
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    seeds = _parse_seeds(args.seeds)
    params = _parse_compare_params(methods, args.param)
    if not 0.0 <= args.noise < 1.0:
        raise InvalidParameterError(
            f"--noise must be a fraction of the training rows in [0, 1). Got {args.noise:g}."
        )
    path = Path(args.data)
    if args.data not in BUILTIN_DATASETS and path.suffix and not path.is_file():
        raise InvalidParameterError(f"The data file {args.data!r} (--data) does not exist.")
    load_options: dict[str, Any] = {
        "valid_size": args.valid_size, "test_size": args.test_size,
        "train_size": args.train_size, "n_samples": args.n_samples, "target": args.target,
    }
    if args.impute:
        load_options["missing"] = "impute"
    load_options = {k: v for k, v in load_options.items() if v is not None}
    comparison = compare(
        args.data,
        methods=methods,
        seeds=seeds,
        noise_rate=args.noise,
        noise_kind=args.noise_kind,
        model=args.model,
        metric=args.metric,
        params=params,
        fractions=args.fractions,
        load_options=load_options,
        # The default list goes on past a method that does not apply (KNN-Shapley on a
        # regression target); methods the user listed stop the run unless --keep-going.
        on_error="record" if args.keep_going or listed is None else "raise",
        n_jobs=args.n_jobs,
        progress=_progress(args.quiet),
        out=args.out,
    )
    first = comparison.datasets[seeds[0]]
    print(f"Data:    {first.describe()} (seed {seeds[0]})")
    print(f"Methods: {', '.join(methods)}; model {args.model}; seeds {', '.join(map(str, seeds))}")
    print("\nMean ± sd over seeds:")
    text = comparison.format_summary().to_string(index=False)
    print("\n".join("  " + line for line in text.splitlines()))
    failed = comparison.table[comparison.table["status"] == "failed"]
    for row in failed.itertuples():
        print(f"\n{row.method} failed on seed {row.seed}: {row.error}")
    parquet = "compare.parquet, " if comparison.config.get("parquet") else ""
    print(f"\nWritten to {args.out}/: compare.csv, {parquet}summary.csv, summary.md, curves.csv, "
          "run.log, values/, datasets/.")
    print(f"Next: datavalue report {args.out}")
    return 0


def _load_run(d: Path) -> tuple[Dataset, ValuationResult, dict[str, Any]]:
    """The data set, values and options of a folder written by 'value' (or 'demo')."""
    if not d.is_dir():
        raise InvalidParameterError(f"The folder {str(d)!r} does not exist.")
    if not (d / "dataset.npz").is_file() or not (d / "result.json").is_file():
        raise InvalidParameterError(
            f"{str(d)!r} has no dataset.npz and result.json: give a folder written by "
            "'datavalue value'."
        )
    result = ValuationResult.load(d)
    ds = Dataset.load(d / "dataset.npz")
    if len(result) != ds.n_train:
        raise InvalidDataError(
            f"The result in {str(d)!r} has {len(result)} values but dataset.npz has "
            f"{ds.n_train} training rows."
        )
    options: dict[str, Any] = {}
    if (d / "run.json").is_file():
        try:
            options = json.loads((d / "run.json").read_text()).get("options", {})
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InvalidDataError(f"{str(d / 'run.json')!r} is not a run.json written by "
                                   "datavalue.") from exc
    return ds, result, options


def _run_model(args: argparse.Namespace, ds: Dataset, options: dict[str, Any]) -> tuple[Any, str]:
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    name = args.model or options.get("model") or "logreg"
    metric = args.metric or options.get("metric") or ("accuracy" if ds.task == "classification"
                                                      else "r2")
    resolve_metric(metric, ds.task)
    return make_model(name, ds.task, int(options.get("seed") or 0)), metric


def _cmd_clean(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    ds, result, options = _load_run(d)
    model, metric = _run_model(args, ds, options)
    res = clean(ds, result, fraction=args.fraction, mode=args.mode, weight=args.weight,
                model=model, metric=metric, fractions=args.fractions,
                random_state=int(options.get("seed") or 0), n_jobs=args.n_jobs,
                progress=_progress(args.quiet))
    out = Path(args.out) if args.out else d
    res.save(out)
    verb = "Dropped" if args.mode == "drop" else f"Down-weighted (to {args.weight:g})"
    print(f"Data:    {ds.describe()}")
    print(f"Values:  {result.method}; model {type(model).__name__}, test {metric} on "
          f"{ds.n_test} examples")
    noisy = (f", {res.n_noisy_flagged} of them corrupted on purpose"
             if res.n_noisy_flagged is not None else "")
    print(f"\n{verb} the {res.flagged.size} lowest-valued training rows ({res.fraction:.0%})"
          f"{noisy}.")
    print(f"  test {metric} before  {res.score_before:.4f}")
    change = res.score_after - res.score_before
    print(f"  test {metric} after   {res.score_after:.4f}  ({change:+.4f})")
    table = res.curve.pivot_table(index="fraction", columns="order", values="score")
    table = table.rename(columns={"least_valuable_first": "lowest values first",
                                  "random": "random rows"})
    table.columns.name = None
    text = table.rename_axis("fraction").reset_index().to_string(
        index=False, float_format=lambda v: f"{v:.4f}")
    print(f"\nTest {metric} by fraction cleaned (lowest values first vs random rows):")
    print("\n".join("  " + line for line in text.splitlines()))
    print(f"\nWritten to {out}/: cleaned_dataset.npz, cleaned_train.csv, clean_curve.csv, "
          "clean.json, clean.png.")
    return 0


def _cmd_fix(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    ds, result, options = _load_run(d)
    rankings = _split_list(args.rankings, "--rankings") or []
    for r in rankings:
        _check_name(r, FIX_RANKINGS, "ranking", "--rankings")
    model, metric = _run_model(args, ds, options)
    if not len(ds.noisy_indices):
        raise InvalidParameterError(
            f"{str(d)!r} has no corrupted training rows to find: run 'datavalue value' with "
            "--noise (e.g. --noise 0.1) first."
        )
    if options.get("noise_kind", "labels") != "labels" or "data" not in options:
        raise InvalidParameterError(
            f"'fix' restores flipped labels, but the run in {str(d)!r} "
            + ("corrupted features (--noise-kind features)." if "data" in options else
               "has no run.json saying how its data were loaded.")
        )
    clean_ds = _load_data(
        options["data"], target=options.get("target"), noise=0.0,
        n_samples=options.get("n_samples"), valid_size=options.get("valid_size", 0.2),
        test_size=options.get("test_size", 0.2), seed=int(options.get("seed") or 0),
        impute=bool(options.get("impute")),
    )
    res = fix(ds, clean_ds, values=result, rankings=rankings, model=model, metric=metric,
              fractions=args.fractions, random_state=int(options.get("seed") or 0),
              n_jobs=args.n_jobs, progress=_progress(args.quiet))
    out = Path(args.out) if args.out else d
    res.save(out, ds)
    summary = res.summary(0.1)
    f = summary["fraction_checked"]
    print(f"Data:    {ds.describe()}")
    print(f"Model:   {type(model).__name__}, test {metric} on {ds.n_test} examples")
    print(f"\n{res.flipped.size} flipped labels. Test {metric} with them "
          f"{res.score_noisy:.4f}, with every label fixed {res.score_clean:.4f}.")
    print(f"\nChecking the first {f:.0%} of the training set in each order:")
    width = max(len(r) for r in res.orders)
    print(f"  {'order':<{width}}  flips found  test {metric} after fixing them")
    for name, r in summary["rankings"].items():
        print(f"  {name:<{width}}  {r['fraction_found']:>11.1%}  {r['score']:.4f}")
    first = next(iter(res.orders))
    shown = ", ".join(map(str, res.orders[first][:10]))
    print(f"\nReview first (by {first}): training rows {shown}, ...")
    print(f"\nWritten to {out}/: fix_curve.csv, review.csv, fix.json, fix.png.")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    if args.k < 1:
        raise InvalidParameterError(f"--k must be a positive number of examples. Got {args.k}.")
    model = None
    if args.model is not None:
        ds_path = Path(args.dir) / "dataset.npz"
        task = Dataset.load(ds_path).task if ds_path.is_file() else "classification"
        model = make_model(args.model, task, 0)
    path = build_report(args.dir, args.out, model=model, metric=args.metric,
                        fractions=args.fractions, k=args.k, n_jobs=args.n_jobs,
                        progress=_progress(args.quiet))
    print(f"Report written to {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained).")
    return 0


# ---------------------------------------------------------------------- entry point
def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _file_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"cannot read the file ({type(exc).__name__}: {exc})"


def _is_file_error(exc: BaseException) -> bool:
    """OS errors and unreadable files (a broken .npz, a CSV pandas cannot parse)."""
    if isinstance(exc, OSError | zipfile.BadZipFile | UnicodeDecodeError | json.JSONDecodeError):
        return True
    return type(exc).__module__.startswith("pandas") and type(exc).__name__ in (
        "ParserError",
        "EmptyDataError",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the ``datavalue`` command; returns the exit code (0, 2 on errors, 130 on Ctrl-C)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in run.json
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        checkpoint = getattr(args, "checkpoint", None)
        hint = (f"; the last complete round is saved in {checkpoint}: add --resume to continue"
                if checkpoint else "")
        print(f"{PROG}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``datavalue ... | head``): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except DatavalueError as exc:
        message = _one_line(str(exc))
    except Exception as exc:
        if not _is_file_error(exc):
            raise
        message = _one_line(_file_error(exc))
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2
