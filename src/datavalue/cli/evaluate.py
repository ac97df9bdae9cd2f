"""The 'evaluate' command: noisy-data detection, point removal and addition of saved values."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data import Dataset
from ..exceptions import InvalidDataError, InvalidParameterError
from ..models import MODELS, make_model
from ..result import ValuationResult
from ..utility import METRICS
from ._common import _add_common, _check_n_jobs, _check_name, _progress, _wrap
from ._output import _detection, _detection_lines, _save_figure, _write_json


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'evaluate' subcommand to ``sub``; returns its parser (without ``func``)."""
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
    return p


def _curve_table(frame: Any) -> str:
    """Scores as a fraction x order table, with the mean over fractions (the area) below."""
    from ..evaluate import summarize_curve

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

    from .. import evaluate as ev

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
