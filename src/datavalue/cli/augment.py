"""The 'augment' command: rank candidate rows (augmentations, synthetic or new data) by how much
adding each would help, before adding any."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.folder import RunWriter, check_output_folder
from datavalue.cli._common import (
    _add_common,
    _add_data_options,
    _check_name,
    _load_args_data,
    _seed,
    _wrap,
)
from datavalue.valuation.models import MODELS


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    from datavalue.actions.augment import CANDIDATE_METHODS

    p = sub.add_parser(
        "augment",
        formatter_class=fmt,
        help="rank candidate rows (augmentations, new data) by their value if added",
        description=_wrap(
            "Load the data set, train on its training split, and value every row of the "
            "candidates file as if it alone were added: influence (the predicted drop of the "
            "validation loss, Koh & Liang 2017 with epsilon = +1/n), its Newton-step variant, "
            "Data-OOB (the bootstrap models' agreement with the candidate's label) or exact "
            "KNN-Shapley. Prints the most and least useful candidates and, with --curve, the "
            "test score after adding the top, the bottom and random shares of the pool."
        ),
        epilog="examples:\n"
        "  datavalue augment --data digits --candidates pool.npz --top 5 --curve\n"
        "  datavalue augment --data table.csv --target churn --candidates new_rows.csv "
        "--method knn-shapley --out aug",
    )
    g = p.add_argument_group("data")
    _add_data_options(g, noise_default=0.0)
    g.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of the split. Default: 0.")
    g = p.add_argument_group("candidates")
    g.add_argument("--candidates", required=True, metavar="FILE",
                   help="the candidate rows: an .npz with X and y (optional ids), or a .csv with "
                   "the data set's columns and its target column (raw values: they are encoded "
                   "and scaled like the data). Required.")
    g.add_argument("--id-column", metavar="NAME",
                   help="column holding the row ids, in the candidates CSV and in a --data "
                   "CSV (never a feature; default: row numbers).")
    g.add_argument("--method", default="influence", metavar="NAME",
                   help=f"one of {', '.join(CANDIDATE_METHODS)}. Default: influence.")
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help="model retrained with the candidates: logreg or linear (influence "
                   "needs a linear model). Default: logreg.")
    g.add_argument("--top", type=int, default=5, metavar="K",
                   help="how many of the most and least useful candidates to show. Default: 5.")
    g.add_argument("--curve", action="store_true",
                   help="also retrain with the top, bottom and random 10-100%% of the pool and "
                   "print the test scores.")
    g.add_argument("--out", metavar="DIR",
                   help="write candidates.csv (id, value, rank) and augment.json into DIR.")
    _add_common(g)
    return p


def _read_candidates(path: str, ds: Any, target: str | None, id_column: str | None):
    p = Path(path)
    if not p.is_file():
        raise InvalidParameterError(f"The candidates file {path!r} (--candidates) does not exist.")
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as f:
            if "X" not in f.files or "y" not in f.files:
                raise InvalidDataError(
                    f"{path!r} (--candidates) must hold arrays 'X' and 'y'; it has "
                    f"{sorted(f.files)}.")
            x, y = f["X"], f["y"]
            ids = f["ids"] if "ids" in f.files else np.arange(len(y))
        if len(x) != len(y):
            raise InvalidDataError(f"{path!r}: 'X' has {len(x)} rows, 'y' {len(y)}.")
        return ds.transform(x), _labels(ds, y, path), ids
    if p.suffix.lower() != ".csv":
        raise InvalidParameterError(
            f"--candidates must be an .npz (X, y) or a .csv file; got {path!r}.")
    import pandas as pd

    frame = pd.read_csv(p)
    if frame.empty:
        raise InvalidDataError(f"The candidates file {path!r} (--candidates) has no rows (only a "
                               "header line?): give at least one candidate.")
    name = target
    if name is None:
        raise InvalidParameterError(
            "A CSV of candidates needs --target: the name of its label column.")
    if name not in frame.columns:
        raise InvalidDataError(
            f"{path!r} (--candidates) has no target column {name!r}; its columns: "
            f"{list(frame.columns)[:10]}.")
    ids = np.arange(len(frame))
    if id_column is not None:
        if id_column not in frame.columns:
            raise InvalidDataError(f"{path!r} has no id column {id_column!r}.")
        ids = frame.pop(id_column).to_numpy()
    y = frame.pop(name).to_numpy()
    return ds.transform(frame if ds.source_columns else frame.to_numpy()), _labels(ds, y, path), ids


def _labels(ds: Any, y: np.ndarray, path: str) -> np.ndarray:
    """Candidate labels as the data set's codes (class names or codes accepted)."""
    if ds.task != "classification":
        return np.asarray(y, dtype=np.float64)
    names = [str(c) for c in (ds.class_names if ds.class_names is not None else [])]
    out = np.empty(len(y), dtype=np.int64)
    for i, v in enumerate(y):
        if names and str(v) in names:
            out[i] = names.index(str(v))
        else:
            try:
                out[i] = int(v)
            except (TypeError, ValueError):
                raise InvalidDataError(
                    f"{path!r}: label {v!r} is not a class of the data set ({names[:10]})."
                ) from None
    if out.min() < 0 or out.max() >= (ds.n_classes or 0):
        raise InvalidDataError(f"{path!r}: labels must be classes of the data set.")
    return out


def _cmd_augment(args: argparse.Namespace) -> int:
    from datavalue.actions.augment import CANDIDATE_METHODS, addition_curve, value_candidates
    from datavalue.report.text import ascii_image
    from datavalue.valuation.models import make_model

    _check_name(args.method, dict.fromkeys(CANDIDATE_METHODS), "method", "--method")
    _check_name(args.model, MODELS, "model", "--model")
    if args.top < 1:
        raise InvalidParameterError(f"--top must be a positive number. Got {args.top}.")
    if args.out is not None:
        check_output_folder(args.out, what="--out")
    # The id column names rows of the data CSV too: left in, it would be one-hot encoded.
    data_csv = str(args.data).lower().endswith(".csv")
    ds = _load_args_data(args, id_column=args.id_column if data_csv else None)
    xc, yc, ids = _read_candidates(args.candidates, ds, args.target, args.id_column)
    model = make_model(args.model, ds.task, args.seed)
    res = value_candidates(ds.x_train, ds.y_train, xc, yc, ds.x_valid, ds.y_valid,
                           method=args.method, model=model if args.method != "data-oob"
                           else None, candidate_ids=ids, random_state=args.seed,
                           n_jobs=args.n_jobs)
    order = np.argsort(-res.values, kind="stable")
    print(f"Data:       {ds.describe()}")
    print(f"Candidates: {len(yc)} rows from {args.candidates}; method {args.method} "
          f"({res.wall_time:.1f} s)")
    image = ds.image_shape is not None
    for title, rows in (("most useful to add", order[:args.top]),
                        ("least useful (likely harmful)", order[::-1][:args.top])):
        print(f"\nThe {len(rows)} {title}:")
        for rank, i in enumerate(rows, start=1):
            print(f"  {rank}. candidate {res.ids[i]}  label {ds.label_name(yc[i])}  "
                  f"value {res.values[i]:+.4g}")
            if image:
                raw = ds.raw_features(xc[i])
                print("\n".join("       " + r for r in ascii_image(raw, ds.image_shape)))
    curve = None
    if args.curve:
        curve = addition_curve(res.values, ds.x_train, ds.y_train, xc, yc, ds.x_test, ds.y_test,
                               model=model, fractions=[0.0, 0.1, 0.25, 0.5, 0.75, 1.0],
                               random_state=args.seed)
        table = curve.pivot(index="fraction", columns="order", values="score")
        print(f"\nTest {'accuracy' if ds.task == 'classification' else 'R^2'} after adding a "
              "share of the candidates (1.0 = all):")
        print("\n".join("  " + line for line in table.round(4).to_string().splitlines()))
    if args.out is not None:
        import pandas as pd

        with RunWriter(Path(args.out), kind="augment", replace=True, what="--out") as w:
            frame = pd.DataFrame({"id": res.ids, "value": res.values,
                                  "rank": np.argsort(order) + 1, "label": yc})
            w.write_text("candidates.csv", frame.to_csv(index=False))
            if curve is not None:
                w.write_text("addition-curve.csv", curve.to_csv(index=False))
            w.write_text("augment.json", json.dumps({
                "data": args.data, "candidates": args.candidates, "method": args.method,
                "model": args.model, "seed": args.seed, "n_candidates": int(len(yc)),
                "wall_time": res.wall_time}, indent=1) + "\n")
        print(f"\nSaved to {args.out}/ (candidates.csv{', addition-curve.csv' if args.curve else ''}"
              ", augment.json).")
    return 0
