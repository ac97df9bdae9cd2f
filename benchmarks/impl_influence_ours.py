"""Run datavalue's influence functions on one benchmark case (our ``.venv``).

    python benchmarks/impl_influence_ours.py --data CASE.npz --method SOLVER \
        --params '{"threads": 1, "damping": 0.01, "options": {...}}' --out OUT.json

The timed calls are the public API a user would write::

    inf = InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=SOLVER, damping=damping,
                            weight_decay=weight_decay, solver_options=options).fit(x_tr, y_tr)
    scores = inf.influence(x_te, y_te)           # (n_test, n_train)

(for the logistic-regression case the fitted scikit-learn estimator instead of ``net``).
``time_s`` = fit + influence. The JSON also has each part (``fit_s``, ``scores_s``), the
solver's ``info_`` (iterations, residuals, ...) and, with ``"floor": true``, the time of one pass
of per-example gradients over train + test (``grad_pass_s``), measured in the same process
before the solver runs (the unavoidable work of a score matrix).

Params: ``threads`` (torch intra-op threads), ``damping``, ``options`` (solver options),
``n_test`` (first rows of the test set), ``batch_size``, ``max_memory``, ``dtype``,
``floor`` (bool), ``save_scores`` (bool, default true; the scale case keeps only summaries).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import _influence_common as common  # noqa: E402


def main() -> None:
    args = common.parse_args()
    p = args.params
    import torch

    import datavalue
    from datavalue.influence import InfluenceFunction
    from datavalue.influence.gradients import iter_gradient_blocks
    from datavalue.influence.model import wrap_model

    common.set_threads(p.get("threads", 1))
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    case = common.load_case(args.data)
    n_test = p.get("n_test")
    xtr, ytr = case["x_train"], case["y_train"]
    xte, yte = case["x_test"][:n_test], case["y_test"][:n_test]
    dtype = p.get("dtype", "float64")
    batch_size = int(p.get("batch_size", 256))
    timer = common.Timer()

    if case["kind"] == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=float(case["C"]), solver="newton-cg", tol=1e-12,
                                   max_iter=1000).fit(xtr, ytr)
        kwargs = {}
    else:
        model = common.build_module(case, getattr(torch, dtype))
        kwargs = {"loss": torch.nn.CrossEntropyLoss(), "weight_decay": case["weight_decay"]}

    floor = None
    if p.get("floor"):
        # One pass of per-example gradients over train + test, blocks discarded at once.
        wrapped = wrap_model(model, kwargs.get("loss"), x_train=xtr if case["kind"] == "logreg"
                             else None, y_train=ytr if case["kind"] == "logreg" else None,
                             n_train=len(xtr) if case["kind"] == "logreg" else None,
                             dtype=getattr(torch, dtype))
        xs = [wrapped.prepare(a, b, "x", "y") for a, b in ((xtr, ytr), (xte, yte))]
        for _ in iter_gradient_blocks(wrapped, xs[0][0][:8], xs[0][1][:8]):
            pass  # warm-up (first vmap trace), not timed
        with timer("grad_pass"):
            for x, y in xs:
                for _ in iter_gradient_blocks(wrapped, x, y, batch_size=batch_size):
                    pass
        floor = timer.sections.pop("grad_pass")

    inf = InfluenceFunction(
        model,
        solver=args.method,
        damping=float(p.get("damping", 0.0)),
        solver_options=p.get("options") or None,
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
    info = {k: v for k, v in inf.solver_.info_.items() if k not in ("eigenvalues",)}
    for key in ("iterations", "residuals", "converged"):
        if key in info and isinstance(info[key], list) and info[key]:
            vals = np.asarray(info[key], dtype=float)
            info[key] = {"median": float(np.median(vals)), "max": float(vals.max()),
                         "min": float(vals.min())}
    for key in ("ritz_residuals",):
        info.pop(key, None)
    save = p.get("save_scores", True)
    common.write_result(
        args.out,
        seconds=timer.total,
        scores=scores if save else None,
        library="datavalue",
        version=datavalue.__version__,
        threads=torch.get_num_threads(),
        fit_s=timer.sections["fit"],
        scores_s=timer.sections["scores"],
        grad_pass_s=floor,
        n_params=inf.n_params_,
        gradient_norm=inf.gradient_norm_,
        shape=list(scores.shape),
        score_summary={"mean": float(np.mean(scores)), "std": float(np.std(scores)),
                       "finite": bool(np.isfinite(scores).all())},
        solver_info=info,
    )


if __name__ == "__main__":
    main()
