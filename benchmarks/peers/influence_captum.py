"""Run Captum's influence function on one influence benchmark case (``benchmarks/.venvs/captum``).

    benchmarks/.venvs/captum/bin/python benchmarks/peers/influence_captum.py \
        --data CASE.npz --method exact --params '{"threads": 1, "damping": 0.01}' --out OUT.json

Captum 0.9's ``captum.influence`` has one Hessian-inverse influence function,
``NaiveInfluenceFunction`` ("exact": it forms the Hessian of the summed training loss with
``torch.autograd.functional.hessian``, eigendecomposes it and keeps the top ``projection_dim``
eigenpairs). Given ``projection_dim = p`` (all of them), ``hessian_reg = n * (damping + l2)``
and a per-example loss (reduction ``"none"``, whose sum over the training set Captum
differentiates), its score is

    g_t^T (sum_i Hess L_i + n (damping + l2) I)^{-1} g_i = (1/n) g_t^T (H + damping I)^{-1} g_i,

with ``H`` the Hessian of the mean objective ``mean L + l2/2 ||theta||^2``: exactly our scale and
sign. (For logistic regression Captum's L2 term also covers the intercept, which scikit-learn
does not penalise: a negligible difference at this C.)

Before the timed run the same code runs once, untimed, on a tiny case of the same kind
(``_influence_common.warmup_case``). Timed: constructing ``NaiveInfluenceFunction`` (builds and decomposes the Hessian) plus
``influence((x_test, y_test))`` (the full matrix). Not timed: imports, loading, writing the
checkpoint file Captum requires.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _influence_common as common


def compute(case: dict, p: dict, timer: common.Timer):
    import torch
    from captum.influence import NaiveInfluenceFunction
    from torch.utils.data import DataLoader, TensorDataset

    dtype = getattr(torch, p.get("dtype", "float64"))
    torch.set_default_dtype(dtype)  # Captum builds its identity matrix in the default dtype
    net = common.build_module(case, dtype)
    xtr, ytr, xte, yte = common.tensors(case, dtype, n_test=p.get("n_test"))
    n = len(xtr)
    if case["kind"] == "logreg":
        ytr, yte = ytr[:, None], yte[:, None]
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    else:
        loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    n_params = sum(q.numel() for q in net.parameters())
    reg = n * (float(p.get("damping", 0.0)) + case["weight_decay"])
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=int(p.get("batch_size", n)))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = str(Path(tmp) / "model.pt")
        torch.save(net.state_dict(), checkpoint)
        with timer("fit"):
            inf = NaiveInfluenceFunction(
                net, loader, checkpoint, loss_fn=loss_fn, batch_size=None,
                projection_dim=n_params, hessian_reg=reg, hessian_inverse_tol=0.0,
            )
        with timer("scores"):
            scores = inf.influence((xte, yte))
    info = {"class": "NaiveInfluenceFunction", "projection_dim": n_params, "hessian_reg": reg,
            "loader_batch_size": loader.batch_size}
    return scores, n_params, info


def main() -> None:
    def version() -> str:
        import captum

        return captum.__version__

    common.run_peer(lambda case, method, p, timer: compute(case, p, timer), library="Captum",
                    version=version, methods=("exact",),
                    unavailable="Captum has no {method!r} influence solver")


if __name__ == "__main__":
    main()
