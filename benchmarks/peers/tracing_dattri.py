"""Run dattri's attributors on an attribution benchmark case (``benchmarks/.venvs/dattri``).

    benchmarks/.venvs/dattri/bin/python benchmarks/peers/tracing_dattri.py \
        --data CASE.npz --method trak --params '{"threads": 2, "n_models": 10,
        "proj_dim": 512}' --out OUT.json

As dattri's own examples and benchmark scripts call them (``examples/pretrained_benchmark``,
``examples/noisy_label_detection``), on the case's models and data:

- influence (``exact``, ``cg``, ``lissa``, ``arnoldi``, ``ekfac``): ``influence_dattri.attribute``
  on the final model in float64, ``regularization = reg`` (the Hessian of the mean loss; dattri
  has no Gauss-Newton product);
- ``tracin``: ``TracInAttributor(task over the checkpoints, weight_list = lrs,
  normalized_grad=False)``; ``grad-dot`` / ``grad-cos``: one checkpoint, weight 1, normalized
  for Grad-Cos. dattri always projects (``proj_dim`` 512 by default);
- ``trak``: ``TRAKAttributor(task over the ensemble, correct_probability_func = p_y, loss_func =
  log(p / (1 - p)))`` with ``projector_kwargs={"proj_dim": ..., "device": "cpu"}``.

Scores come back (n_train, n_test) and are transposed; the influence scores are divided by n
(same sign and scale as ours).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _influence_common as common  # noqa: E402
import _tracing_common as tc  # noqa: E402
from influence_dattri import attribute  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    if method in ("exact", "cg", "lissa", "arnoldi", "ekfac"):
        dtype = torch.float64
        net = tc.model(case, "final", dtype)
        torch.set_default_dtype(dtype)
        data = tc.tensors(case, dtype, n_test=p.get("n_test"))

        def loss_func(params, batch):
            x, y = batch
            out = torch.func.functional_call(net, params, (x.to(dtype),))
            return nn.functional.cross_entropy(out, y.long())

        opts = dict(p.get("options") or {})
        if method == "lissa":
            opts.setdefault("scale", float(case["lissa_scale"]))
        scores, info = attribute(net, loss_func, data, method, opts, float(case["reg"]), timer)
        return scores, sum(q.numel() for q in net.parameters()), info
    from dattri.task import AttributionTask

    xtr, ytr, xte, yte = tc.tensors(case, torch.float32, n_test=p.get("n_test"))
    train = DataLoader(TensorDataset(xtr, ytr), batch_size=int(p.get("batch_size", 256)),
                       shuffle=False)
    test = DataLoader(TensorDataset(xte, yte), batch_size=int(p.get("batch_size", 256)),
                      shuffle=False)
    base = tc.model(case)
    proj = {"device": "cpu"}
    if p.get("proj_dim"):
        proj["proj_dim"] = int(p["proj_dim"])
    info: dict = {"projector_kwargs": proj}
    if method in ("tracin", "grad-dot", "grad-cos"):
        from dattri.algorithm.tracin import TracInAttributor

        def f(params, pair):
            x, y = pair
            out = torch.func.functional_call(base, params, x.unsqueeze(0))
            return nn.CrossEntropyLoss()(out, y.unsqueeze(0))

        if method == "tracin":
            n = tc.n_members(case, "ckpt")
            ckpts = [tc.state(case, f"ckpt{c}") for c in range(n)]
            weights = torch.as_tensor(case["lrs"], dtype=torch.float32)
        else:
            ckpts, weights = [tc.state(case, "final")], torch.ones(1)
        task = AttributionTask(loss_func=f, model=base, checkpoints=ckpts)
        attributor = TracInAttributor(task=task, weight_list=weights,
                                      normalized_grad=method == "grad-cos",
                                      projector_kwargs=proj, device="cpu")
        with timer("fit"):
            attributor.cache()
        with timer("scores"), torch.no_grad():
            scores = attributor.attribute(train, test)
    elif method == "trak":
        from dattri.algorithm.trak import TRAKAttributor

        def f(params, pair):
            x, y = pair
            out = torch.func.functional_call(base, params, x.unsqueeze(0))
            logp = -nn.CrossEntropyLoss()(out, y.unsqueeze(0))
            return logp - torch.log(1 - torch.exp(logp))

        def m(params, pair):
            x, y = pair
            out = torch.func.functional_call(base, params, x.unsqueeze(0))
            return torch.exp(-nn.CrossEntropyLoss()(out, y.unsqueeze(0)))

        members = [tc.state(case, f"ens{s}") for s in range(min(int(p.get("n_models", 1)), tc.n_members(case, "ens")))]
        task = AttributionTask(loss_func=f, model=base, checkpoints=members)
        attributor = TRAKAttributor(task=task, correct_probability_func=m, device="cpu",
                                    projector_kwargs=proj)
        with timer("fit"), torch.no_grad():
            attributor.cache(train)
        with timer("scores"), torch.no_grad():
            scores = attributor.attribute(test)
    else:
        raise ValueError(method)
    info["class"] = type(attributor).__name__
    return scores.T, sum(q.numel() for q in base.parameters()), info


def main() -> None:
    def version() -> str:
        from importlib.metadata import version

        return version("dattri")

    common.run_peer(compute, library="dattri", version=version,
                    methods=("exact", "cg", "lissa", "arnoldi", "ekfac", "tracin", "grad-dot",
                             "grad-cos", "trak"),
                    unavailable="no dattri method {method!r}",
                    tiny_options={"rank": 2, "max_iter": 5, "depth": 5, "batch_size": 4},
                    load=tc.load_case, warmup=tc.warmup_case)


if __name__ == "__main__":
    main()
