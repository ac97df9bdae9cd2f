"""The 'evaluate' command: noisy-data detection, point removal and addition of saved values."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datavalue._core.folder import RunWriter, check_output_folder
from datavalue.cli._common import _add_common, _check_n_jobs, _check_name, _progress, _wrap
from datavalue.cli._output import _detection, _detection_lines, _json_text, _save_figure
from datavalue.runs import load_run
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.utility import METRICS


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
    from datavalue.evaluate import summarize_curve

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
    ds, result, options, base = load_run(d)
    check_output_folder(d, what="The run folder")  # writable, before the curves are computed
    model_name = args.model or options.get("model") or "logreg"
    metric = args.metric or options.get("metric")
    seed = int(options.get("seed") or 0)
    model = make_model(model_name, ds.task, seed)

    from datavalue import evaluate as ev

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

    noisy = ds.noisy_indices if len(ds.noisy_indices) else None
    with RunWriter(d, kind="evaluate", what="The run folder", based_on=base) as w:
        w.write_text("removal.csv", removal.to_csv(index=False))
        w.write_text("addition.csv", addition.to_csv(index=False))
        w.write_text("evaluation.json", _json_text({
            "method": result.method,
            "model": model_name,
            "metric": metric,
            "detection": det,
            "removal_mean": ev.summarize_curve(removal),
            "addition_mean": ev.summarize_curve(addition),
            "removal": removal.to_dict(orient="records"),
            "addition": addition.to_dict(orient="records"),
        }))
        _save_figure(ev.plot_values(result.values, noisy), w.path("values.png"))
        if det is not None:
            _save_figure(ev.plot_noisy_detection(result.values, ds.noisy_indices),
                         w.path("detection.png"))
        _save_figure(ev.plot_point_removal(removal), w.path("removal.png"))
        _save_figure(ev.plot_point_addition(addition), w.path("addition.png"))

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
    if "n_classes" in addition:
        single = addition[addition["n_classes"] == 1]
        for order, part in single.groupby("order", sort=False):
            top = part["fraction"].max()
            print(f"  ({order}: up to {top:.0%} the points added hold one class only, so the "
                  "model predicts that class for every test point; its score there is that "
                  "class's share of the test split, not a sign of a bad ranking.)")
    print(
        f"\nWritten to {d}/: evaluation.json, removal.csv, addition.csv, values.png, "
        f"{'detection.png, ' if det is not None else ''}removal.png, addition.png."
    )
    return 0
