"""Run datavalue's influence functions on one benchmark case (our ``.venv``).

    python benchmarks/impl_influence_ours.py --data CASE.npz --method SOLVER \
        --params '{"threads": 1, "damping": 0.01, "options": {...}}' --out OUT.json

The timed calls are the public API a user would write::

    inf = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=SOLVER, damping=damping,
                            weight_decay=weight_decay, hessian="exact",
                            solver_options=options).fit(x_tr, y_tr)
    scores = inf.influence(x_te, y_te)           # (n_test, n_train)

(for the logistic-regression case the fitted scikit-learn estimator instead of ``net``).
``time_s`` = fit + influence. The JSON also has each part (``fit_s``, ``scores_s``), the
solver's ``info_`` (iterations, residuals, ...) and, with ``"floor": true``, the time of one pass
of per-example gradients over train + test (``grad_pass_s``), measured in the same process
before the solver runs (the unavoidable work of a score matrix).

Before the timed run, the same pipeline runs once on a tiny case of the same kind (untimed,
``warmup_s``), so that one-time costs of a fresh process are not counted (see
``_influence_common.warmup_case``).

Params: ``threads`` (torch intra-op threads), ``damping``, ``options`` (solver options),
``n_test`` (first rows of the test set), ``batch_size``, ``max_memory``, ``dtype``,
``floor`` (bool), ``floor_repeats`` (gradient passes timed, median; default 3, after one
untimed), ``warm_scores`` (bool: time ``influence`` twice more after the timed run, with the
solver's factors cached but the training gradients recomputed: ``scores_warm_s``),
``save_scores`` (bool, default true; the scale case keeps only summaries).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import _influence_common as common  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    """Fit and score one case; returns ``(InfluenceFunction, scores, grad pass seconds)``."""
    import torch

    from datavalue.attribution import InfluenceFunction
    from datavalue.attribution.gradients import iter_gradient_blocks
    from datavalue.attribution.wrap import wrap_model

    n_test = p.get("n_test")
    xtr, ytr = case["x_train"], case["y_train"]
    xte, yte = case["x_test"][:n_test], case["y_test"][:n_test]
    dtype = p.get("dtype", "float64")
    batch_size = int(p.get("batch_size", 256))
    logreg = case["kind"] == "logreg"
    if logreg:
        from sklearn.linear_model import LogisticRegression

        # The constant feature is the last input column (the intercept, penalised like every
        # weight; see bench_influence.make_logreg_case).
        model = LogisticRegression(C=float(case["C"]), fit_intercept=case["bias"],
                                   solver="newton-cg", tol=1e-12, max_iter=1000).fit(xtr, ytr)
        kwargs = {}
    else:
        model = common.build_module(case, getattr(torch, dtype))
        # The true Hessian, as the peers' exact/CG/LiSSA/Arnoldi invert (a torch module's
        # default, hessian="auto", is the Gauss-Newton matrix); "hessian" in --params overrides.
        kwargs = {"loss": torch.nn.CrossEntropyLoss(), "weight_decay": case["weight_decay"],
                  "hessian": p.get("hessian", "exact")}

    if p.get("cache_train_solves"):
        kwargs["cache_train_solves"] = True

    floor = None
    if p.get("floor"):
        # One pass of per-example gradients over train + test, blocks discarded at once.
        wrapped = wrap_model(model, kwargs.get("loss"), x_train=xtr if logreg else None,
                             y_train=ytr if logreg else None,
                             n_train=len(xtr) if logreg else None, dtype=getattr(torch, dtype))
        xs = [wrapped.prepare(a, b, "x", "y") for a, b in ((xtr, ytr), (xte, yte))]
        passes = []
        for _ in range(1 + int(p.get("floor_repeats", 3))):  # the first pass is a warm-up
            start = time.perf_counter()
            for x, y in xs:
                for _ in iter_gradient_blocks(wrapped, x, y, batch_size=batch_size):
                    pass
            passes.append(time.perf_counter() - start)
        floor = float(np.median(passes[1:])) if len(passes) > 1 else passes[0]

    inf = InfluenceFunction(
        model,
        solver=method,
        damping=float(p.get("damping", 0.0)),
        solver_options=dict(p.get("options") or {}) or None,
        batch_size=batch_size,
        max_memory=float(p.get("max_memory", 2**30)),
        dtype=dtype,
        progress=False,
        **kwargs,
    )
    with timer("fit"):
        inf.fit(xtr, ytr)
    with timer("scores"):
        scores = inf.influence(xte, yte)
    if p.get("warm_scores"):
        # The cost model: the same score matrix again, with the solver's factors cached and
        # the process warm, but the training gradients recomputed (they are part of the
        # unavoidable work): median of two calls.
        times = []
        if inf._cache_solves == "auto":
            # Benchmark only: the steady state of cache_train_solves="auto" (a ski rental that
            # solves the training points once the queries add up to n_train solves), which a
            # few more queries would reach; "factors cached" includes them.
            inf._solved_train()
        for _ in range(2):
            inf._train_grads._cache = None  # benchmark only: forget the cached train gradients
            start = time.perf_counter()
            inf.influence(xte, yte)
            times.append(time.perf_counter() - start)
        timer.extra["scores_warm"] = float(np.median(times))
    return inf, scores, floor


def main() -> None:
    args = common.parse_args()
    p = args.params
    import torch

    import datavalue

    common.set_threads(p.get("threads", 1))
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    case = common.load_case(args.data)
    warm = common.Timer()
    with warm("warmup"):
        tiny = common.warmup_case(case)
        try:
            compute(tiny, args.method, {**p, "floor": False, "n_test": None,
                                        "options": _tiny_options(p.get("options"))},
                    common.Timer())
        except Exception as exc:  # a warm-up that fails (e.g. LiSSA's scale) changes nothing
            print(f"warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
    timer = common.Timer()
    inf, scores, floor = compute(case, args.method, p, timer)
    info = common.solver_summary(inf.solver_.info_)
    save = p.get("save_scores", True)
    common.write_result(
        args.out,
        seconds=timer.total,
        scores=scores if save else None,
        library="datavalue",
        version=datavalue.__version__,
        threads=torch.get_num_threads(),
        warmup_s=warm.sections["warmup"],
        fit_s=timer.sections["fit"],
        scores_s=timer.sections["scores"],
        grad_pass_s=floor,
        scores_warm_s=timer.extra.get("scores_warm"),
        n_params=inf.n_params_,
        gradient_norm=inf.gradient_norm_,
        shape=list(scores.shape),
        score_summary={"mean": float(np.mean(scores)), "std": float(np.std(scores)),
                       "finite": bool(np.isfinite(scores).all())},
        solver_info=info,
    )


def _tiny_options(options: dict | None) -> dict:
    """The solver options for the warm-up case (a rank or depth it can hold)."""
    out = dict(options or {})
    for key, small in (("rank", 2), ("depth", 5), ("n_iter", 4), ("batch_size", 4)):
        if key in out and out[key] is not None:
            out[key] = min(out[key], small)
    return out


if __name__ == "__main__":
    main()
