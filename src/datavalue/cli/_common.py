"""Shared by the commands: option definitions, checks, data loading and error messages."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue._core.result import ValuationResult
from datavalue.data import BUILTIN_DATASETS, Dataset, load_dataset
from datavalue.valuation.models import MODELS
from datavalue.valuation.utility import METRICS

PROG = "datavalue"


# ---------------------------------------------------------------------- argument parsing
def _plain(text: str) -> str:
    """reStructuredText markup of docstrings as plain text for --help: ``:class:`~a.B``` ->
    ``B``, ````x```` -> ``x``."""
    import re

    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`<]+?)(?:\s*<[^>]+>)?`", r"\1", text)
    return text.replace("``", "")


def _summary(obj: Any) -> str:
    """First paragraph of a docstring, on one line, without reStructuredText markup."""
    doc = inspect.getdoc(obj) or ""
    return _plain(" ".join(doc.strip().split("\n\n")[0].split()).rstrip("."))


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=79)


def _seed(text: str) -> int:
    """A seed: a non-negative int (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}")
    return value


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


def _parse_params(method: str, items: list[str]) -> dict[str, Any]:
    """``["n_neighbors=5", ...]`` -> ``{"n_neighbors": 5}``, only names the method accepts.

    VALUE is read as JSON (numbers, true/false, null); ``None`` also means None; anything else
    is a string."""
    from datavalue.valuation.registry import check_parameter_names

    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise InvalidParameterError(f"--param must look like NAME=VALUE. Got {item!r}.")
        check_parameter_names(method, [name], where="parameter (--param)")
        if text.strip() in ("None", "none", "null"):
            params[name] = None
            continue
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
    id_column: str | None = None,
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
    if id_column is not None and path.suffix.lower() != ".csv":
        raise InvalidParameterError("--id-column applies to CSV files only (--data FILE.csv).")
    return load_dataset(
        data,
        target=target,
        missing="impute" if impute else "error",
        id_column=id_column,
        noise_rate=noise,
        noise_kind=noise_kind,
        n_samples=n_samples,
        train_size=train_size,
        valid_size=valid_size,
        test_size=test_size,
        random_state=seed,
    )


def _load_args_data(args: argparse.Namespace, **extra: Any) -> Dataset:
    """The data set named by the options of :func:`_add_data_options` (and ``--seed``)."""
    return _load_data(
        args.data, target=args.target, noise=args.noise, noise_kind=args.noise_kind,
        n_samples=args.n_samples, valid_size=args.valid_size, test_size=args.test_size,
        seed=args.seed, impute=args.impute, train_size=args.train_size, **extra,
    )


def _check_test_index(index: int, ds: Dataset) -> None:
    if not 0 <= index < ds.n_test:
        raise InvalidParameterError(
            f"--test-index must be a row of the test split, in [0, {ds.n_test - 1}]. "
            f"Got {index}.")


def _needs_validation(valuator: Any) -> bool:
    """Whether the method (a class or an instance) needs validation data."""
    cls = valuator if isinstance(valuator, type) else type(valuator)
    return bool(getattr(cls, "needs_validation", True))


def _fit(valuator: Any, ds: Dataset) -> ValuationResult:
    """Fit on the training split (with the validation split when there is one)."""
    if not ds.n_valid and _needs_validation(valuator):
        raise InvalidParameterError(
            f"The method {valuator.method_name!r} scores training examples on validation data, "
            "but --valid-size is 0: give a validation split (e.g. --valid-size 0.2)."
        )
    if ds.n_valid:
        valuator.fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    else:
        valuator.fit(ds.x_train, ds.y_train)
    # Keyed by the user's row ids (CSV id column or line numbers), not split positions.
    return dataclasses.replace(valuator.result_, ids=ds.ids_train)


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


# ---------------------------------------------------------------------- error messages
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


#: Library parameters and the command-line options that set them. The library's errors name
#: its parameters ('epsilon'); a user of the command line typed options (--epsilon), so the
#: one error handler of :func:`datavalue.cli.main` renames them with this table.
OPTION_NAMES: dict[str, str] = {
    "epsilon": "--epsilon",
    "max_steps": "--max-steps",
    "n_train": "--n-train",
    "test_index": "--test-index",
    "random_state": "--seed",
    "n_jobs": "--n-jobs",
    "n_estimators": "--n-estimators",
    "n_neighbors": "--n-neighbors",
    "max_permutations": "--budget",
    "checkpoint": "--checkpoint",
    "noise_rate": "--noise",
    "id_column": "--id-column",
}


def _as_options(message: str) -> str:
    """``message`` with the library's quoted parameter names replaced by their options."""
    import re

    return re.sub(r"'([a-z_]+)'", lambda m: OPTION_NAMES.get(m.group(1), m.group(0)), message)
