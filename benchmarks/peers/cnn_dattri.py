"""Run dattri's influence functions on the CNN influence case (``benchmarks/.venvs/dattri``).

    benchmarks/.venvs/dattri/bin/python benchmarks/peers/cnn_dattri.py \
        --data CASE.npz --method cg --params '{"threads": 2, "damping": 0.01,
        "options": {"max_iter": 20}, "n_test": 100}' --out OUT.json

As ``influence_dattri.py`` (its docstring has the details: mean-loss ``AttributionTask``,
``regularization = damping + l2``, scores transposed and divided by n), on the case's network
(``_cnn_common.trained_cnn``), float64, one batch for the training and one for the test loader:

- ``ekfac``: ``IFAttributorEKFAC(task, damping)``, which factors ``nn.Linear`` layers only (a
  refusal of the ``Conv2d`` layers is recorded as the result);
- ``arnoldi``: ``IFAttributorArnoldi(task, proj_dim=rank, max_iter=krylov + 1)``;
- ``cg``: ``IFAttributorCG(task, max_iter)`` (dattri 0.3 always runs ``max_iter`` iterations).

dattri's Arnoldi and CG use the Hessian of the loss; it offers no Gauss-Newton product, so they
solve a different (indefinite) system than ours and Kronfluence's.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import _cnn_common as cnn  # noqa: E402
import _influence_common as common  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from dattri.algorithm.influence_function import (
        IFAttributorArnoldi,
        IFAttributorCG,
        IFAttributorEKFAC,
    )
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    dtype = torch.float64
    net = cnn.trained_cnn(case, dtype)
    torch.set_default_dtype(dtype)
    torch.manual_seed(int(p.get("seed", 0)))
    opts = dict(p.get("options") or {})
    xtr, ytr, xte, yte = cnn.tensors(case, dtype, n_test=p.get("n_test"))
    n = len(xtr)
    n_params = sum(q.numel() for q in net.parameters())

    def loss_func(params, data):
        x, y = data
        out = torch.func.functional_call(net, params, (x.to(dtype),))
        return torch.nn.functional.cross_entropy(out, y.long())

    task = AttributionTask(loss_func=loss_func, model=net, checkpoints=net.state_dict())
    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    train_loader = DataLoader(TensorDataset(xtr, ytr), batch_size=n, shuffle=False)
    test_loader = DataLoader(TensorDataset(xte, yte), batch_size=len(xte), shuffle=False)
    info: dict = {"regularization": reg, "dtype": str(dtype)}
    if method == "cg":
        info.update(max_iter=int(opts.get("max_iter", 10)))
        attributor = IFAttributorCG(task, max_iter=info["max_iter"], regularization=reg)
    elif method == "arnoldi":
        rank = int(opts["rank"])
        krylov = min(n_params, max(2 * rank, rank + 20))
        info.update(proj_dim=rank, krylov_dimension=krylov)
        attributor = IFAttributorArnoldi(task, proj_dim=rank, max_iter=krylov + 1,
                                         regularization=reg)
    elif method == "ekfac":
        attributor = IFAttributorEKFAC(task, damping=reg)
    else:
        raise ValueError(method)
    with timer("fit"):
        attributor.cache(train_loader)
    with timer("scores"), torch.no_grad():
        scores = attributor.attribute(train_loader, test_loader)
    info["class"] = type(attributor).__name__
    return scores.T / n, n_params, info


def main() -> None:
    def version() -> str:
        from importlib.metadata import version

        return version("dattri")

    common.run_peer(compute, library="dattri", version=version,
                    methods=("cg", "arnoldi", "ekfac"), unavailable="no dattri solver {method!r}",
                    tiny_options={"rank": 2, "max_iter": 5}, load=cnn.load_case,
                    warmup=cnn.warmup_case)


if __name__ == "__main__":
    main()
