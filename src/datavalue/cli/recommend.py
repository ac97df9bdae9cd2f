"""The 'recommend' and 'unlearn' commands: a recommender's top items for a user, explained by
the ratings behind them, and removing a user's (or an item's, or old) ratings without
retraining."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import RunWriter, check_output_folder
from datavalue.cli._common import _seed, _wrap

_DATA_HELP = ("'movielens' (the built-in MovieLens log, found in $DATAVALUE_DATA or "
              "../shared/data), a ratings .npz of the same format, or a .csv ratings log "
              "(columns named by --user-column etc.). Required.")


def _add_data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ratings")
    g.add_argument("--data", required=True, metavar="NAME|PATH", help=_DATA_HELP)
    g.add_argument("--user-column", default="user", metavar="COL",
                   help="CSV column of user ids. Default: user.")
    g.add_argument("--item-column", default="item", metavar="COL",
                   help="CSV column of item ids. Default: item.")
    g.add_argument("--rating-column", default="rating", metavar="COL",
                   help="CSV column of ratings. Default: rating.")
    g.add_argument("--timestamp-column", metavar="COL",
                   help="CSV column of timestamps (for --before).")
    g.add_argument("--title-column", metavar="COL", help="CSV column of item titles.")
    g.add_argument("--id-column", metavar="COL",
                   help="CSV column of rating ids, reported with every rating (default: the "
                   "row number in the file, counted from 0).")
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="FILE",
                   help="a model.npz written by an earlier 'recommend --out' or 'unlearn' on the "
                   "same --data: reused instead of fitting (fitting MovieLens takes ~20 s).")
    g.add_argument("--factors", type=int, default=10, metavar="K",
                   help="latent factors of the matrix factorization. Default: 10.")
    g.add_argument("--reg", type=float, default=10.0, metavar="L",
                   help="L2 penalty of the factors and biases. Default: 10.")
    g.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seed of the factors' initialisation. Default: 0.")


def add_recommend_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "recommend", formatter_class=fmt,
        help="a recommender's top items for a user, explained by the ratings behind them",
        description=_wrap(
            "Fit a biased matrix factorization on every rating (or load one with --model), "
            "print the user's top items they have not rated and, with --explain, for each the "
            "ratings that raised its predicted rating most (influence functions restricted to "
            "the user's and the item's parameters, Cheng et al. KDD 2019): 'because you rated "
            "...'. With --out, writes recommendations.json/.csv and model.npz for "
            "'datavalue report' and later runs."),
        epilog="examples:\n  datavalue recommend --data movielens --user 15 --k 5 --explain\n"
        "  datavalue recommend --data ratings.csv --user-column customer --item-column "
        "product --user C-1042",
    )
    _add_data(p)
    g = p.add_argument_group("recommendations")
    g.add_argument("--user", required=True, metavar="ID", help="the user's id. Required.")
    g.add_argument("--k", type=int, default=10, metavar="K",
                   help="how many items. Default: 10.")
    g.add_argument("--explain", action="store_true",
                   help="explain each recommendation by the ratings behind it.")
    g.add_argument("--top", type=int, default=3, metavar="N",
                   help="ratings shown per explanation. Default: 3.")
    g.add_argument("--scope", default="restricted", choices=("restricted", "full"),
                   help="parameters of the influence: the user's and item's (restricted, fast) "
                   "or all (full, a conjugate-gradient solve per item). Default: restricted.")
    g.add_argument("--out", metavar="DIR", help="also write the results into DIR.")
    return p


def add_unlearn_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "unlearn", formatter_class=fmt,
        help="remove a user's, an item's or old ratings from a recommender without retraining",
        description=_wrap(
            "Remove ratings from a fitted matrix factorization by one Newton step on the "
            "parameters they touch (Zhang et al. 2023), write the updated model and how "
            "predictions moved: the removed user's (or item's) and everyone else's. --verify "
            "also retrains from scratch and reports how close the step came."),
        epilog="examples:\n  datavalue unlearn --data movielens --user 15 --out unlearned\n"
        "  datavalue unlearn --data movielens --item 356 --verify --out no-forrest-gump",
    )
    _add_data(p)
    g = p.add_argument_group("what to remove (one of)")
    g.add_argument("--user", metavar="ID", help="every rating of this user.")
    g.add_argument("--item", metavar="ID", help="every rating of this item.")
    g.add_argument("--before", type=int, metavar="TIMESTAMP",
                   help="every rating older than this (seconds since 1970).")
    g = p.add_argument_group("output")
    g.add_argument("--verify", action="store_true",
                   help="also retrain without the ratings and compare (slow: a full fit).")
    g.add_argument("--out", required=True, metavar="DIR",
                   help="folder for model.npz, unlearning.json and prediction_changes.csv. "
                   "Required.")
    return p


# ---------------------------------------------------------------------- shared
def _load(args: argparse.Namespace) -> Any:
    from datavalue.recommend import Ratings, load_ratings

    data = str(args.data)
    if data.lower().endswith(".csv"):
        return Ratings.from_csv(data, user=args.user_column, item=args.item_column,
                                rating=args.rating_column, timestamp=args.timestamp_column,
                                title=args.title_column, row_id=args.id_column)
    return load_ratings(data)


def _model(args: argparse.Namespace, ratings: Any) -> Any:
    from datavalue.recommend import MatrixFactorization
    from datavalue.recommend.mf import load_model

    if args.model:
        return load_model(args.model, ratings)
    if args.factors < 1:
        raise InvalidParameterError(f"--factors must be >= 1; got {args.factors}.")
    if not args.reg > 0:
        raise InvalidParameterError(f"--reg must be > 0; got {args.reg}.")
    start = time.perf_counter()
    m = MatrixFactorization(args.factors, args.reg, random_state=args.seed).fit(ratings)
    print(f"Fitted a {args.factors}-factor matrix factorization in "
          f"{time.perf_counter() - start:.1f} s (gradient {m.fit_info_['gradient_max']:.1e}).")
    return m


# ---------------------------------------------------------------------- recommend
def _cmd_recommend(args: argparse.Namespace) -> int:
    from datavalue.recommend import RecommenderInfluence
    from datavalue.recommend.mf import model_bytes

    if args.k < 1 or args.top < 1:
        raise InvalidParameterError("--k and --top must be positive numbers.")
    if args.out is not None:
        check_output_folder(args.out, what="--out", protect=[args.model] if args.model else [])
    ratings = _load(args)
    print(f"Data:  {ratings.describe()}")
    model = _model(args, ratings)
    train = model.ratings_
    u = train.user_code(args.user, "--user")
    n_rated = int((train.user == u).sum())
    if n_rated == 0:
        raise InvalidParameterError(f"--user {args.user} has no ratings in the model's "
                                    "training data: nothing to recommend from.")
    recs = model.recommend(train.user_ids[u], k=args.k)
    print(f"\nTop {len(recs)} for user {train.user_ids[u]} ({n_rated} ratings), unrated items "
          "by predicted rating:")
    inf = RecommenderInfluence(model, train) if args.explain else None
    out_recs = []
    for rank, row in enumerate(recs.itertuples(index=False), 1):
        print(f"{rank:3d}. {row.title}  (predicted {row.predicted:.2f})")
        entry: dict[str, Any] = {"rank": rank, "item_id": _plain(row.item_id),
                                 "title": row.title, "predicted": float(row.predicted),
                                 "score": float(row.score)}
        if inf is not None:
            expl = inf.explain(train.user_ids[u], row.item_id, k=args.top, scope=args.scope)
            for r in expl.because.itertuples(index=False):
                print(f"       because you rated {r.title!r} {r.rating:g} ({r.score:+.3f})")
            if len(expl.despite):
                r = expl.despite.iloc[0]
                print(f"       despite your {r.rating:g} for {r.title!r} ({r.score:+.3f})")
            others = expl.helpful[expl.helpful["why"] != "you rated"]
            if len(others):
                r = others.iloc[0]
                print(f"       among others' ratings of it, user {r.user_id}'s {r.rating:g} raised "
                      f"it most ({r.score:+.3f})")
            for key in ("because", "despite", "helpful", "harmful"):
                entry[key] = _records(getattr(expl, key))
            entry["explain_seconds"] = expl.seconds
        out_recs.append(entry)
    if args.explain:
        print("\n(score: the change of the predicted rating due to that rating.)")
    if args.out is not None:
        summary = {"kind": "recommendations", "user_id": _plain(train.user_ids[u]),
                   "n_user_ratings": n_rated, "data": ratings.describe(),
                   "scope": args.scope if args.explain else None,
                   "model": {"n_factors": model.n_factors, "reg": model.reg},
                   "recommendations": out_recs}
        with RunWriter(Path(args.out), kind="recommend", replace=True, what="--out",
                       protect=[args.model] if args.model else []) as w:
            w.write_text("recommendations.json", json.dumps(summary, indent=2) + "\n")
            w.write_text("recommendations.csv", recs.to_csv(index=False))
            w.write_bytes("model.npz", model_bytes(model))
        print(f"\nSaved to {args.out}/ (recommendations.json, recommendations.csv, model.npz); "
              f"'datavalue report {args.out}' draws it.")
    return 0


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _records(frame: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


# ---------------------------------------------------------------------- unlearn
def _cmd_unlearn(args: argparse.Namespace) -> int:
    from datavalue.recommend import unlearn_ratings, unlearning_report

    chosen = [o for o, v in (("--user", args.user), ("--item", args.item),
                             ("--before", args.before)) if v is not None]
    if len(chosen) != 1:
        raise InvalidParameterError("Give exactly one of --user, --item or --before.")
    check_output_folder(args.out, what="--out", protect=[args.model] if args.model else [])
    ratings = _load(args)
    print(f"Data:  {ratings.describe()}")
    model = _model(args, ratings)
    train = model.ratings_
    kw: dict[str, Any] = {}
    if args.user is not None:
        kw["user"] = train.user_ids[train.user_code(args.user, "--user")]
    elif args.item is not None:
        kw["item"] = train.item_ids[train.item_code(args.item, "--item")]
    else:
        kw["before"] = args.before
    res = unlearn_ratings(model, train, **kw)
    what = chosen[0][2:]
    report = unlearning_report(model, res, what=what, value=getattr(args, what),
                               verify=args.verify)
    s = report.summary
    print(f"Removed {res.removed.n_ratings:,} ratings ({what} {getattr(args, what)}) by one "
          f"Newton step on {res.n_parameters_updated:,} parameters in {res.seconds * 1000:.0f} "
          "ms.")
    print(f"  removed ratings: prediction error (RMSE) {s['removed_ratings']['rmse_before']:.3f} "
          f"-> {s['removed_ratings']['rmse_after']:.3f} (the model no longer fits them)")
    other = s["other_ratings"]
    print(f"  other ratings:   mean |change| {other['mean_abs_change']:.4f}, max "
          f"{other['max_abs_change']:.3f}; RMSE {other['rmse_before']:.4f} -> "
          f"{other['rmse_after']:.4f}")
    if args.verify:
        v = s["verify"]
        print(f"  verify: retraining took {v['retrain_seconds']:.1f} s ({v['speedup']:.0f}x the "
              f"step); prediction gap to the retrained model {v['gap_original_vs_retrained']:.4f}"
              f" (original) -> {v['gap_unlearned_vs_retrained']:.4f} (unlearned)")
    report.save(args.out, protect=[args.model] if args.model else [])
    print(f"\nSaved to {args.out}/ (model.npz: the updated model, for 'recommend --model'; "
          "unlearning.json; prediction_changes.csv, largest changes first).")
    return 0
