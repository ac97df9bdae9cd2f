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
from influence_dattri import attribute  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch

    if method not in ("cg", "arnoldi", "ekfac"):
        raise ValueError(method)
    dtype = torch.float64
    net = cnn.trained_cnn(case, dtype)
    torch.set_default_dtype(dtype)
    torch.manual_seed(int(p.get("seed", 0)))
    data = cnn.tensors(case, dtype, n_test=p.get("n_test"))

    def loss_func(params, batch):
        x, y = batch
        out = torch.func.functional_call(net, params, (x.to(dtype),))
        return torch.nn.functional.cross_entropy(out, y.long())

    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    scores, info = attribute(net, loss_func, data, method, dict(p.get("options") or {}), reg,
                             timer)
    info["dtype"] = str(dtype)
    return scores, sum(q.numel() for q in net.parameters()), info


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
