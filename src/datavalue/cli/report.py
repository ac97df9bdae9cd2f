"""The 'report' command: one self-contained HTML report of a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidParameterError
from datavalue.cli._common import (
    _add_common,
    _add_model_options,
    _check_n_jobs,
    _check_name,
    _progress,
    _wrap,
)
from datavalue.data import Dataset
from datavalue.report import build_report
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.utility import METRICS


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'report' subcommand to ``sub``; returns its parser (without ``func``)."""
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
    return p


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
