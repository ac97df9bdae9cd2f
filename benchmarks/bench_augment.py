"""Valuing candidate data before adding it: ranking time for 10,000 candidates, and addition
curves (the figure in the README).

    .venv/bin/python benchmarks/bench_augment.py             # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_augment.py --quick     # 2,000 candidates, 1 repeat

**Ranking time.** ``shared/data/digits.npz`` split as the command line splits it (seed 0: 1,079
training and 359 validation digits; pixels / 16). 10,000 candidates made from the training
digits: half with one grey level of noise and their labels (useful augmentations), a quarter
mirrored left-right and a quarter drowned in noise, each with a label it no longer shows
(harmful).
Every method runs in a fresh process (``--worker``), three times; the table has the median
time, the process's peak resident memory, and the AUC of ranking the harmful candidates last.
Each method is set against its floor, the work it cannot avoid, written plainly with numpy /
scikit-learn in the same worker:

* influence (first order; the Newton step needs one output score, and digits have ten):
  fit the logistic regression, build its Hessian in
  closed form (``sum_i kron(diag p_i - p_i p_i^T, x_i x_i^T)``), one solve for the validation
  gradient, every candidate's gradient dotted with it;
* KNN-Shapley (K = 10): the distances from every validation digit to every training digit and
  candidate, each validation digit's training digits sorted by distance, and every candidate's
  rank among them (its value depends on it);
* Data-OOB (200 trees): fit 200 bootstrap trees and predict every candidate with each.

No peer library values a candidate pool against a fixed training set (pyDVL and OpenDataVal
value training points; their KNN-Shapley would have to be re-run on train + each candidate).

**Addition curves.** The pools of ``tests/actions/test_augment.py`` (200 training digits; 300 new
digits with their labels and 300 mirrored or noisy ones with labels they no longer show; 3
seeds): the test accuracy of a logistic regression retrained with the top, the bottom and a
random share of the pool, for each ranking; saved as ``docs/figures/addition-curves.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
FIGURE = ROOT / "docs" / "figures" / "addition-curves.png"
METHODS = ("influence", "knn-shapley", "data-oob")  # Newton: one output score only


# --------------------------------------------------------------------------- the 10,000 pool
def pool(n_candidates: int):
    """(train, valid, candidates in the model's units, harmful mask)."""
    import datavalue as dv

    ds = dv.load_dataset("digits", random_state=0)
    raw = ds.raw_features(ds.x_train).reshape(-1, 8, 8)
    rng = np.random.default_rng(0)
    src = rng.integers(0, ds.n_train, n_candidates)
    kind = np.arange(n_candidates) % 4  # 0, 1: jittered; 2: mirrored; 3: noisy
    imgs = raw[src].copy()
    # Useful: one grey level of noise (a shift is no augmentation for a linear model on 8 x 8
    # pixels: a logistic regression classifies 7.5% of diagonally shifted training digits).
    jittered = np.clip(imgs + rng.normal(scale=1.0, size=imgs.shape), 0, 16)
    mirrored = imgs[:, :, ::-1]
    noisy = np.clip(imgs + rng.normal(scale=8.0, size=imgs.shape), 0, 16)
    cand = np.where((kind < 2)[:, None, None], jittered, np.where((kind == 2)[:, None, None],
                                                                  mirrored, noisy))
    labels = ds.y_train[src].copy()
    harmful = kind >= 2
    labels[harmful] = (labels[harmful] + rng.integers(1, 10, harmful.sum())) % 10
    # Pixels / 16, not the data set's standardized features: a pixel that is almost always
    # blank has a tiny scale, and a noisy digit's ink there became values of ~500.
    return (ds.raw_features(ds.x_train) / 16, ds.y_train, ds.raw_features(ds.x_valid) / 16,
            ds.y_valid, cand.reshape(n_candidates, 64) / 16, labels, harmful)


# --------------------------------------------------------------------------- floors
def _onehot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1
    return out


def floor(method: str, xt, yt, xv, yv, xc, yc) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    if method.startswith("influence"):
        m = LogisticRegression(max_iter=1000).fit(xt, yt)
        n, k = len(xt), len(m.classes_)
        x1 = np.hstack([xt, np.ones((n, 1))])
        p = m.predict_proba(xt)
        s = p[:, :, None] * (np.eye(k)[None] - p[:, None, :])  # (n, k, k)
        z = (s.reshape(n, k * k)[:, :, None] * x1[:, None, :]).reshape(n, -1)
        d = x1.shape[1]
        h = (z.T @ x1).reshape(k, k, d, d).transpose(0, 2, 1, 3).reshape(k * d, k * d) / n
        h += np.eye(k * d) / (m.C * n)  # the L2 term (the intercept's is tiny here)
        xv1 = np.hstack([xv, np.ones((len(xv), 1))])
        gv = ((m.predict_proba(xv) - _onehot(yv, k)).T @ xv1).reshape(-1)
        u = np.linalg.solve(h, gv)
        xc1 = np.hstack([xc, np.ones((len(xc), 1))])
        rc = m.predict_proba(xc) - _onehot(yc, k)  # (m, k)
        return -np.einsum("mk,kd,md->m", rc, u.reshape(k, -1), xc1) / n
    if method == "knn-shapley":
        from sklearn.metrics import pairwise_distances

        dist = pairwise_distances(xv, np.vstack([xt, xc]))
        sorted_d = np.sort(dist[:, :len(xt)], axis=1)  # each validation row's training order
        rank = np.zeros(len(xc))
        for i in range(len(xv)):  # every candidate's rank in it: any exact value needs it
            rank += np.searchsorted(sorted_d[i], dist[i, len(xt):])
        return rank
    from sklearn.ensemble import BaggingClassifier
    from sklearn.tree import DecisionTreeClassifier

    bag = BaggingClassifier(DecisionTreeClassifier(), n_estimators=200, random_state=0,
                            n_jobs=2).fit(xt, yt)
    return np.mean([est.predict(xc) == yc for est in bag.estimators_], axis=0)


def ours(method: str, xt, yt, xv, yv, xc, yc) -> np.ndarray:
    import datavalue as dv

    return dv.value_candidates(xt, yt, xc, yc, xv, yv, method=method, n_neighbors=10,
                               n_estimators=200, n_jobs=2).values


def worker(method: str, impl: str, repeats: int, n_candidates: int) -> None:
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(2)
    xt, yt, xv, yv, xc, yc, harmful = pool(n_candidates)
    fn = ours if impl == "datavalue" else floor
    fn(method, xt[:50], yt[:50], xv[:20], yv[:20], xc[:20], yc[:20])  # warm-up: imports
    times, values = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        values = fn(method, xt, yt, xv, yv, xc, yc)
        times.append(time.perf_counter() - t)
    auc = roc_auc_score(harmful, -values) if impl == "datavalue" else None
    print(json.dumps({"method": method, "impl": impl, "times": times, "auc": auc,
                      "peak_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def ranking_table(repeats: int, n_candidates: int) -> tuple[str, list[dict]]:
    rows = []
    for method in METHODS:
        for impl in ("datavalue", "floor"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", method, "--impl", impl, "--repeats",
                 str(repeats), "--candidates", str(n_candidates)],
                capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {method} / {impl}: {statistics.median(rows[-1]['times']):.2f} s",
                  flush=True)
    lines = ["| method | datavalue (s) | peak MB | floor (s) | floor peak MB | datavalue / floor "
             "| AUC, harmful last |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method in METHODS:
        a = next(r for r in rows if r["method"] == method and r["impl"] == "datavalue")
        b = next(r for r in rows if r["method"] == method and r["impl"] == "floor")
        ta, tb = statistics.median(a["times"]), statistics.median(b["times"])
        lines.append(f"| {method} | {ta:.2f} | {a['peak_MB']:.0f} | {tb:.2f} | "
                     f"{b['peak_MB']:.0f} | {ta / tb:.2f}x | {a['auc']:.3f} |")
    return "\n".join(lines), rows


# --------------------------------------------------------------------------- addition curves
def curves(seeds: int) -> tuple[str, list[dict]]:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    sys.path.insert(0, str(ROOT / "tests" / "actions"))
    from test_augment import _digits_pool

    import datavalue as dv

    fractions = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    frames = []
    for seed in range(seeds):
        xt, yt, xc, yc, xv, yv, xs, ys, harmful = _digits_pool(seed)
        for method in ("influence", "knn-shapley", "data-oob"):
            res = dv.value_candidates(
                xt, yt, xc, yc, xv, yv, method=method, n_estimators=200,
                model=LogisticRegression(C=0.1, max_iter=3000) if method == "influence"
                else None)
            c = dv.addition_curve(res.values, xt, yt, xc, yc, xs, ys,
                                  model=LogisticRegression(C=1.0, max_iter=3000),
                                  fractions=fractions, n_random=3, random_state=seed)
            c["method"], c["seed"] = method, seed
            frames.append(c)
    df = pd.concat(frames)
    mean = df.groupby(["method", "order", "fraction"], as_index=False)["score"].mean()
    _plot(mean)
    half = mean[mean["fraction"] == 0.5].pivot(index="method", columns="order", values="score")
    full = float(mean[mean["fraction"] == 1.0]["score"].mean())
    none = float(mean[mean["fraction"] == 0.0]["score"].mean())
    lines = ["| ranking | top half | random half | bottom half | whole pool | no candidates |",
             "|---|---:|---:|---:|---:|---:|"]
    for method, r in half.iterrows():
        lines.append(f"| {method} | {r['most_valuable_first']:.3f} | {r['random']:.3f} | "
                     f"{r['least_valuable_first']:.3f} | {full:.3f} | {none:.3f} |")
    return "\n".join(lines), mean.to_dict("records")


def _plot(mean) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"influence": "influence (+1/n)", "knn-shapley": "KNN-Shapley",
             "data-oob": "Data-OOB"}
    styles = {"most_valuable_first": ("top first", "-", "C0"),
              "random": ("random", "--", "0.5"),
              "least_valuable_first": ("bottom first", ":", "C3")}
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
    for ax, method in zip(axes, names, strict=True):
        part = mean[mean["method"] == method]
        for order, (label, ls, color) in styles.items():
            s = part[part["order"] == order].sort_values("fraction")
            ax.plot(100 * s["fraction"], s["score"], ls, color=color, marker="o", ms=3,
                    label=label)
        ax.set_title(names[method], fontsize=10)
        ax.set_xlabel("share of the 600 candidates added (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (mean of 3 pools)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Adding augmented digits (half of them harmful) to 200 training digits",
                 fontsize=10)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=("datavalue", "floor"), help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--candidates", type=int, default=10_000)
    p.add_argument("--no-curves", action="store_true")
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.impl, args.repeats, args.candidates)
        return 0
    repeats, n = (1, 2000) if args.quick else (args.repeats, args.candidates)
    ranking, rows = ranking_table(repeats, n)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = (f"# Valuing candidates ({stamp}{', quick' if args.quick else ''})\n\n"
          f"## Ranking {n:,} candidates against 1,079 training digits (median of {repeats})\n\n"
          + ranking + "\n")
    record = {"ranking": rows}
    if not args.no_curves:
        table, points = curves(1 if args.quick else 3)
        md += ("\n## Addition curves (test accuracy; figure: docs/figures/addition-curves.png)"
               "\n\n" + table + "\n")
        record["curves"] = points
    print()
    print(md)
    out = BENCH_DIR / "results" / f"augment-{stamp}{'-quick' if args.quick else ''}"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"written: {out}.md / .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
