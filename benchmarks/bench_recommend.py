"""Recommenders on the full MovieLens log (100,004 ratings): fit, explanation and unlearning
times against what they replace, and their accuracy against actual retraining.

    .venv/bin/python benchmarks/bench_recommend.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_recommend.py --quick    # smoke test, 60 users

Rows (medians over repeats; peak memory = this process's high-water mark, ``ru_maxrss``):

- fit: ALS + Newton to a gradient below 1e-6 (10 factors, reg 10), held-out RMSE on each
  user's 5 latest ratings.
- explanation of one (user, item): restricted (FIA) vs full (conjugate gradients over all
  107k parameters), over held-out pairs.
- unlearning a median user, the heaviest user and the most rated movie: one Newton step vs
  retraining from scratch and from the optimum; time ratio, prediction gap to the retrained
  model on the held-out ratings (original vs unlearned) and held-out RMSE.
- influence vs actual retraining: for 30 held-out (user, item) pairs, remove the training
  rating with the largest predicted influence, retrain from the optimum to a gradient below
  1e-9, compare actual and predicted changes (Pearson), full and restricted.

No peer library does any of this (pyDVL, OpenDataVal, dattri, Kronfluence, TRAK, Captum have
no recommender model); the baselines are the computations the methods replace, measured in
the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import datavalue as dv  # noqa: E402
from datavalue.recommend import RecommenderInfluence, retrain, unlearn_ratings  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=30)
    args = ap.parse_args()
    data = Path(os.environ.get("DATAVALUE_DATA", HERE.parent.parent / "shared" / "data"))
    ratings = dv.load_ratings(data / "movielens.npz", n_users=60 if args.quick else None)
    train, test = ratings.split("latest", n_per_user=5)
    load = os.getloadavg()
    lines = [f"# Recommender benchmark ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, torch {__import__('torch').__version__}; "
             f"{train.n_ratings:,} training ratings, {test.n_ratings:,} held out (each user's 5 "
             f"latest). Load average at the start: {load[0]:.2f}.", ""]
    print(lines[-2], flush=True)

    # -- fit
    model, fit_s = _timed(lambda: dv.MatrixFactorization(10, 10.0).fit(train), args.repeats)
    rows = [("fit (ALS + Newton, gradient < 1e-6)", f"{fit_s:.1f} s",
             f"held-out RMSE {model.rmse(test):.4f}; gradient {model.fit_info_['gradient_max']:.1e}"
             f"; {model.fit_info_['als_sweeps']} ALS sweeps + "
             f"{model.fit_info_['newton_steps']} Newton steps")]
    print(rows[-1], flush=True)

    # -- explanations
    inf = RecommenderInfluence(model, train)
    rng = np.random.default_rng(0)
    picks = rng.choice(test.n_ratings, args.pairs, replace=False)
    pairs = [(train.user_ids[test.user[j]], train.item_ids[test.item[j]]) for j in picks]
    restricted = []
    for uid, iid in pairs:
        t = time.perf_counter()
        inf.explain(uid, iid, k=5)
        restricted.append(time.perf_counter() - t)
    full = []
    for uid, iid in pairs[:5]:
        t = time.perf_counter()
        inf.explain(uid, iid, k=5, scope="full")
        full.append(time.perf_counter() - t)
    r_ms, f_s = statistics.median(restricted) * 1000, statistics.median(full)
    rows.append(("explain one (user, item), top 5", f"{r_ms:.1f} ms restricted (FIA)",
                 f"full CG over all parameters: {f_s:.2f} s ({f_s * 1000 / r_ms:.0f}x); median "
                 f"of {len(restricted)} and {len(full)} pairs"))
    print(rows[-1], flush=True)

    # -- unlearning
    counts_u = np.bincount(train.user, minlength=train.n_users)
    users = np.flatnonzero(counts_u)
    median_user = users[np.argsort(counts_u[users])[len(users) // 2]]
    cases = [("median user", {"user": train.user_ids[median_user]}),
             ("heaviest user", {"user": train.user_ids[np.argmax(counts_u)]}),
             ("most rated movie", {"item": train.item_ids[np.argmax(np.bincount(train.item))]})]
    for label, kw in cases:
        res, step_s = _timed(lambda kw=kw: unlearn_ratings(model, train, **kw), args.repeats)
        scratch, scratch_s = _timed(lambda r=res: retrain(model, r.remaining, warm=False), 1)
        warm, warm_s = _timed(lambda r=res: retrain(model, r.remaining, warm=True), 1)
        gone = np.isin(test.user, res.removed.user) if "user" in kw \
            else np.isin(test.item, res.removed.item)
        held = test.subset(~gone)
        p0 = model.predict_codes(held.user, held.item)
        p1 = res.model.predict_codes(held.user, held.item)
        parts = []
        for name, ref in (("scratch", scratch), ("warm", warm)):
            pr = ref.predict_codes(held.user, held.item)
            gap0 = float(np.sqrt(np.mean((p0 - pr) ** 2)))
            gap1 = float(np.sqrt(np.mean((p1 - pr) ** 2)))
            parts.append(f"gap to {name} retrain {gap0:.4f} -> {gap1:.4f}")
        rmse_ratio = res.model.rmse(held) / scratch.rmse(held)
        rows.append((f"unlearn {label} ({res.removed.n_ratings:,} ratings)",
                     f"{step_s * 1000:.0f} ms",
                     f"retrain from scratch {scratch_s:.1f} s ({scratch_s / step_s:.0f}x), warm "
                     f"{warm_s:.1f} s ({warm_s / step_s:.0f}x); {'; '.join(parts)} (original -> "
                     f"unlearned); held-out RMSE unlearned / retrained = {rmse_ratio:.4f}"))
        print(rows[-1], flush=True)

    # -- influence vs retraining
    actual, pred_full, pred_restr = [], [], []
    t0 = time.perf_counter()
    for uid, iid in pairs:
        s_full = inf.prediction_influence(uid, iid, scope="full")
        s_restr = inf.prediction_influence(uid, iid, scope="restricted")
        k = int(np.argmax(np.abs(s_full)))
        ref = retrain(model, train.subset(np.arange(train.n_ratings) != k), warm=True)
        u, i = train.user_code(uid), train.item_code(iid)
        actual.append(float(model.predict_codes([u], [i])[0] - ref.predict_codes([u], [i])[0]))
        pred_full.append(float(s_full[k]))
        pred_restr.append(float(s_restr[k]))
    pf = float(np.corrcoef(actual, pred_full)[0, 1])
    pr_ = float(np.corrcoef(actual, pred_restr)[0, 1])
    rows.append((f"influence vs retraining, {len(pairs)} triples", f"Pearson {pf:.4f} full",
                 f"{pr_:.4f} restricted; mean absolute actual change {np.mean(np.abs(actual)):.4f}; "
                 f"{time.perf_counter() - t0:.0f} s"))
    print(rows[-1], flush=True)

    lines += ["| case | datavalue | against the baseline / accuracy |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", f"Peak memory of the process: {_peak_mb():.0f} MB (includes torch, ~400 MB)."]
    text = "\n".join(lines)
    print("\n" + text)
    out = HERE / "results" / f"recommend-{time.strftime('%Y%m%d-%H%M%S')}"
    out.parent.mkdir(exist_ok=True)
    if not args.quick:
        out.with_suffix(".md").write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps({"rows": rows, "load": load}, indent=1))
        print(f"written: {out}.md")


if __name__ == "__main__":
    main()
