"""The 'demo' command: a guided example in which Data-OOB finds flipped labels."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from datavalue._core.folder import check_output_folder
from datavalue.cli._common import _add_common, _check_n_jobs, _fit, _load_data, _progress, _wrap
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
from datavalue.valuation import make_valuator


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'demo' subcommand to ``sub``; returns its parser (without ``func``)."""
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
    return p


def _say(text: str, indent: str = "   ") -> None:
    print(textwrap.fill(text, 88, initial_indent=indent, subsequent_indent=indent))


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_n_jobs(args.n_jobs)
    check_output_folder(args.out, what="--out", protect=_data_inputs(args.data))
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
    from datavalue.evaluate import plot_noisy_detection, plot_values

    figures = {"values.png": plot_values(result.values, ds.noisy_indices)}
    if det is not None:
        figures["detection.png"] = plot_noisy_detection(result.values, ds.noisy_indices)
    _save_run(out, ds, result, _run_info("demo", options, ds, args.argv), figures,
              protect=_data_inputs(args.data))
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
