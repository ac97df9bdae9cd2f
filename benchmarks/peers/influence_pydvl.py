"""Run pyDVL's influence functions on one influence benchmark case (``benchmarks/.venvs/pydvl``).

    benchmarks/.venvs/pydvl/bin/python benchmarks/peers/influence_pydvl.py \
        --data CASE.npz --method cg --params '{"threads": 1, "damping": 0.01,
        "options": {"rtol": 1e-3}}' --out OUT.json

pyDVL 0.10 (``pydvl.influence.torch``, installed with the ``influence`` extra and torch 2.13 CPU):

========= ========================================================================
method    class (options from ``params["options"]``)
========= ========================================================================
exact     ``DirectInfluence(model, loss, regularization)``
cg        ``CgInfluence(..., rtol, atol, maxiter, solve_simultaneously)``
lissa     ``LissaInfluence(..., maxiter, scale, dampen, rtol)``; minibatches of
          ``options["batch_size"]`` rows (its data loader's batch size)
arnoldi   ``ArnoldiInfluence(..., rank, krylov_dimension)``
ekfac     ``EkfacInfluence(model, update_diagonal=True, hessian_regularization)``
========= ========================================================================

``regularization = damping + l2`` (pyDVL differentiates the plain loss, so the objective's L2
term ``l2/2 ||theta||^2`` enters as a shift of the Hessian, like the damping). Its scores are
``<(H + damping I)^{-1} g_t, g_i>`` ("up" mode): our sign, ``n`` times our scale.
``EkfacInfluence`` supports ``cross_entropy`` only: for logistic regression it gets the
equivalent two-logit softmax model (rows ``-w/2, w/2``) with ``hessian_regularization =
2 (damping + l2)``, whose optimum and influence scores equal those of the binary model.

Before the timed run the same code runs once, untimed, on a tiny case of the same kind
(``_influence_common.warmup_case``). Timed: ``fit(loader)`` plus ``influences(x_test, y_test, x_train, y_train)``.
"""

from __future__ import annotations

import _influence_common as common


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from pydvl.influence.torch import (
        ArnoldiInfluence,
        CgInfluence,
        DirectInfluence,
        EkfacInfluence,
        LissaInfluence,
    )
    from torch.utils.data import DataLoader, TensorDataset

    # EkfacInfluence builds its factors in float32 whatever the model's dtype: it gets a
    # float32 model and data (the bench passes dtype "float32" for it).
    dtype = getattr(torch, p.get("dtype", "float64"))
    opts = dict(p.get("options") or {})
    logreg = case["kind"] == "logreg"
    two_logits = logreg and method == "ekfac"
    net = common.build_module(case, dtype, two_logits=two_logits)
    xtr, ytr, xte, yte = common.tensors(case, dtype, n_test=p.get("n_test"))
    n = len(xtr)
    if two_logits:
        ytr, yte = ytr.long(), yte.long()
        loss = torch.nn.functional.cross_entropy
    elif logreg:
        ytr, yte = ytr[:, None], yte[:, None]
        loss = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        loss = torch.nn.functional.cross_entropy
    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    batch = int(opts.pop("batch_size", None) or p.get("batch_size") or n)
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=batch)
    if method == "exact":
        model = DirectInfluence(net, loss, regularization=reg)
    elif method == "cg":
        model = CgInfluence(net, loss, regularization=reg, warn_on_max_iteration=False, **opts)
    elif method == "lissa":
        model = LissaInfluence(net, loss, regularization=reg, warn_on_max_iteration=False,
                               **opts)
    elif method == "arnoldi":
        model = ArnoldiInfluence(net, loss, regularization=reg, **opts)
    elif method == "ekfac":
        opts.setdefault("update_diagonal", True)
        model = EkfacInfluence(net, hessian_regularization=(2 * reg if two_logits else reg),
                               **opts)
    else:
        raise ValueError(method)
    with timer("fit"):
        model = model.fit(loader)
    with timer("scores"):
        scores = model.influences(xte, yte, xtr, ytr)
    info = {"class": type(model).__name__, "regularization": reg, "loader_batch_size": batch,
            "dtype": str(dtype), **opts}
    return scores, sum(q.numel() for q in net.parameters()), info


def main() -> None:
    def version() -> str:
        import pydvl

        return pydvl.__version__

    common.run_peer(compute, library="pyDVL", version=version,
                    methods=("exact", "cg", "lissa", "arnoldi", "ekfac"),
                    unavailable="no pyDVL solver {method!r}",
                    tiny_options={"rank": 2, "maxiter": 5, "batch_size": 4})


if __name__ == "__main__":
    main()
