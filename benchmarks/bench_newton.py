"""Leave-one-out accuracy of first-order and Newton-step influence against actual retraining.

    .venv/bin/python benchmarks/bench_newton.py           # ~3 min on 2 cores

For each case, every training point is removed in turn and the model refitted (scikit-learn,
tight tolerance); the actual change of every test loss is compared with
``InfluenceFunction.influence(order="first")`` (Koh & Liang's first order) and
``order="newton"`` (one Newton step without the point, the test losses evaluated at the new
parameters; :mod:`datavalue.attribution.newton`). Pearson over all (test, train) pairs and, as in
Koh & Liang's Fig. 2, over the 50 largest |actual| changes of each test point; time of each
score matrix (fit excluded; median of 3).

Cases (examples x parameters; leverage grows as parameters approach or pass the examples):
``digits 1-vs-7``      logistic regression on the 64 pixels, 252 train, 20 test, C = 1
``digits poly-2``      the same digits, degree-2 polynomial features (2,145 columns), 150 train
``wide synthetic``     logistic regression, 200 Gaussian features, 120 train, C = 1
``ridge, wide``        Ridge(alpha=1) with 200 features and 120 examples (Newton is exact)
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data"


def _digits_17():
    with np.load(SHARED_DATA / "digits.npz") as f:
        x, y = f["X"].astype(np.float64) / 16.0, f["y"]
    keep = (y == 1) | (y == 7)
    x, y = x[keep], (y[keep] == 7).astype(int)
    perm = np.random.default_rng(0).permutation(len(y))
    return x[perm], y[perm]


def cases():
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import PolynomialFeatures

    def logreg():
        return LogisticRegression(C=1.0, tol=1e-12, max_iter=20000)

    x, y = _digits_17()
    yield "digits 1-vs-7", logreg, x[:252], y[:252], x[252:272], y[252:272], "log-loss"
    xp = PolynomialFeatures(2).fit_transform(x)
    yield "digits poly-2", logreg, xp[:150], y[:150], xp[252:272], y[252:272], "log-loss"
    rng = np.random.default_rng(0)
    xw, w = rng.normal(size=(140, 200)), rng.normal(size=200) / 5
    yw = (xw @ w + 0.5 * rng.normal(size=140) > 0).astype(int)
    yield "wide synthetic", logreg, xw[:120], yw[:120], xw[120:], yw[120:], "log-loss"
    yr = xw @ w + 0.3 * rng.normal(size=140)
    yield ("ridge, wide", lambda: Ridge(alpha=1.0), xw[:120], yr[:120], xw[120:], yr[120:],
           "squared error")


def _losses(model, x, y, kind):
    if kind == "squared error":
        return 0.5 * (model.predict(x) - y) ** 2
    p = np.clip(model.predict_proba(x)[np.arange(len(y)), y], 1e-300, 1)
    return -np.log(p)


def pearson(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def top_pearson(pred, actual, k=50):
    idx = np.argsort(-np.abs(actual), axis=1)[:, :k]
    return pearson(np.take_along_axis(pred, idx, 1), np.take_along_axis(actual, idx, 1))


def main() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    import datavalue as dv

    torch.set_num_threads(2)
    lines = ["| case | train x parameters | first order: Pearson (top 50) | Newton step: "
             "Pearson (top 50) | time first / Newton (s) | LOO refits (s) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, make, xtr, ytr, xte, yte, kind in cases():
        model = make().fit(xtr, ytr)
        base = _losses(model, xte, yte, kind)
        start = time.perf_counter()
        with threadpool_limits(2):
            actual = np.array([
                _losses(make().fit(np.delete(xtr, i, 0), np.delete(ytr, i)), xte, yte, kind)
                - base for i in range(len(ytr))]).T
        refit_s = time.perf_counter() - start
        inf = dv.InfluenceFunction(model, solver="exact").fit(xtr, ytr)
        out, times = {}, {}
        for order in ("first", "newton"):
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                out[order] = inf.influence(xte, yte, order=order)
                runs.append(time.perf_counter() - t)
            times[order] = statistics.median(runs)
        p = inf.n_params_
        cells = [f"{pearson(out[o], actual):.4f} ({top_pearson(out[o], actual):.4f})"
                 for o in ("first", "newton")]
        lines.append(f"| {name} | {len(ytr)} x {p:,} | {cells[0]} | {cells[1]} | "
                     f"{times['first']:.3f} / {times['newton']:.3f} | {refit_s:.1f} |")
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
