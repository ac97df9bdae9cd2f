"""Run one of datavalue's attribution methods on an attribution benchmark case (our ``.venv``).

    python benchmarks/impl_tracing_ours.py --data CASE.npz --method trak \
        --params '{"threads": 2, "n_models": 10, "proj_dim": 512}' --out OUT.json

Methods and the public calls timed (``fit`` then ``influence`` on the test set):

- ``exact``, ``cg``, ``lissa``, ``arnoldi``, ``ekfac``: ``InfluenceFunction(net, CE, solver=...,
  damping=reg)`` on the final model in float64 (Gauss-Newton curvature, our default for torch
  modules; the same as the Hessian for the linear model);
- ``tracin``: ``TracIn(checkpoints, CE, learning_rates=lrs)``; ``grad-dot`` / ``grad-cos``:
  ``GradDot`` / ``GradCos`` on the final model; optional ``proj_dim``;
- ``trak``: ``TRAK(ensemble[:n_models], proj_dim=...)`` (float32 features).

Params: ``threads``, ``options`` (solver options), ``proj_dim``, ``n_models``, ``n_test``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import _influence_common as common  # noqa: E402
import _tracing_common as tc  # noqa: E402

INFLUENCE = ("exact", "cg", "lissa", "arnoldi", "ekfac")


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch

    import datavalue as dv

    ce = torch.nn.CrossEntropyLoss()
    if method in INFLUENCE:
        dtype = torch.float64
        xtr, ytr, xte, yte = tc.tensors(case, dtype, n_test=p.get("n_test"))
        opts = dict(p.get("options") or {})
        if method == "lissa":
            opts.setdefault("scale", float(case["lissa_scale"]))
        est = dv.InfluenceFunction(tc.model(case, "final", dtype), ce, solver=method,
                                   damping=float(case["reg"]), solver_options=opts or None,
                                   progress=False)
    else:
        xtr, ytr, xte, yte = tc.tensors(case, torch.float32, n_test=p.get("n_test"))
        proj = p.get("proj_dim")
        if method == "tracin":
            ckpts = [tc.model(case, f"ckpt{c}") for c in range(tc.n_members(case, "ckpt"))]
            est = dv.TracIn(ckpts, ce, learning_rates=case["lrs"].tolist(), proj_dim=proj,
                            dtype="float32", progress=False)
        elif method in ("grad-dot", "grad-cos"):
            cls = dv.GradDot if method == "grad-dot" else dv.GradCos
            est = cls(tc.model(case), ce, proj_dim=proj, dtype="float32", progress=False)
        elif method == "trak":
            members = [tc.model(case, f"ens{s}") for s in range(min(int(p.get("n_models", 1)), tc.n_members(case, "ens")))]
            est = dv.TRAK(members, proj_dim=proj, progress=False)
        else:
            raise ValueError(method)
    with timer("fit"):
        est.fit(xtr, ytr)
    with timer("scores"):
        scores = est.influence(xte, yte)
    return est, scores


def main() -> None:
    args = common.parse_args()
    p = args.params
    import torch

    import datavalue

    common.set_threads(p.get("threads", 1))
    warnings.filterwarnings("ignore")
    case = tc.load_case(args.data)
    warm = common.Timer()
    with warm("warmup"):
        opts = {k: (min(v, 4) if k in ("rank", "maxiter", "depth") and v else v)
                for k, v in (p.get("options") or {}).items()}
        try:
            compute(tc.warmup_case(case), args.method,
                    {**p, "n_test": None, "options": opts, "n_models": 2}, common.Timer())
        except Exception as exc:  # a warm-up that fails changes nothing
            print(f"warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
    start_mb = common.own_peak_mb() or 0.0
    timer = common.Timer()
    est, scores = compute(case, args.method, p, timer)
    end_mb = common.own_peak_mb() or 0.0
    info = {}
    if hasattr(est, "solver_"):
        info = common.solver_summary(est.solver_.info_, drop=("layers",))
    common.write_result(
        args.out, seconds=timer.total, scores=scores, library="datavalue",
        version=datavalue.__version__, threads=torch.get_num_threads(),
        warmup_s=warm.sections["warmup"], fit_s=timer.sections["fit"],
        scores_s=timer.sections["scores"], n_params=int(est.n_params_),
        proj_dim=getattr(est, "proj_dim_", None), start_mb=start_mb,
        added_mb=end_mb - start_mb, solver_info=info)


if __name__ == "__main__":
    main()
