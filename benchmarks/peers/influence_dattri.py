"""Run dattri's influence functions on one influence benchmark case (``benchmarks/.venvs/dattri``).

    benchmarks/.venvs/dattri/bin/python benchmarks/peers/influence_dattri.py \
        --data CASE.npz --method cg --params '{"threads": 1, "damping": 0.01,
        "options": {"max_iter": 100}}' --out OUT.json

dattri 0.3 (``dattri.algorithm.influence_function``, installed next to torch 2.13 CPU; dattri
itself does not depend on torch), on an ``AttributionTask`` whose loss is the *mean* loss of a
batch (``torch.func.functional_call`` of the fitted module; per-example gradients are that loss on
one example), float64 throughout (``torch.set_default_dtype``: dattri allocates its score matrix
and Krylov matrices in the default dtype):

========= ========================================================================
method    attributor (options from ``params["options"]``)
========= ========================================================================
exact     ``IFAttributorExplicit(task, regularization)``: ``torch.func.hessian`` of the
          mean training loss, ``torch.linalg.solve``
cg        ``IFAttributorCG(task, max_iter, tol, regularization)``; dattri 0.3 accepts
          ``tol`` but ignores it (always ``max_iter`` iterations, started from ``x0 = v``)
lissa     ``IFAttributorLiSSA(task, recursion_depth=depth, batch_size, scaling=scale,
          damping=(damping + l2) / scale)``: the recursion
          ``h <- v + (1 - damping) h - H_batch h / scale``, answer ``h / scale``, whose fixed
          point is ``(H + (damping + l2) I)^{-1} v``: the same recursion as ours and pyDVL's
          with the same scale and depth; ``batch_size`` rows sampled per step (none given:
          the whole training set, as ours)
arnoldi   ``IFAttributorArnoldi(task, proj_dim=rank, max_iter=krylov + 1, regularization)``
          with a Krylov dimension ``krylov = min(p, max(2 rank, rank + 20))`` (ours' default)
ekfac     ``IFAttributorEKFAC(task, damping)``: empirical Fisher (observed labels),
          every ``nn.Linear`` layer, statistics over the whole training set
========= ========================================================================

``regularization`` (and EK-FAC's ``damping``) ``= damping + l2``: dattri differentiates the plain
loss, so the objective's L2 term ``l2/2 ||theta||^2`` enters as a shift of the Hessian, like the
damping. ``attribute`` returns ``g_i^T (H + (damping + l2) I)^{-1} g_t`` as a (train, test)
matrix, ``H`` the Hessian of the mean loss: our sign, ``n`` times our scale; it is transposed and
divided by ``n``. The training and test loaders hold one batch each (dattri sums the inverse
Hessian-vector products over the batches of the training loader and recomputes the test
transformation for every training batch: one batch is the only setting that solves the
system once with the whole Hessian).

dattri's EK-FAC estimates its Fisher on the task's loss at the observed labels: the empirical
Fisher (ours and Kronfluence use the true Fisher, whose expectation is the Gauss-Newton matrix).
(dattri 0.3 also concatenates a layer's weight and bias gradients before reshaping them to the
``(out, in + 1)`` Kronecker layout, which mixes weight rows and biases; corrected by hand, the
Pearson on the quick MLP case moved by less than 0.001, so it runs as released.)

Before the timed run the same code runs once, untimed, on a tiny case of the same kind
(``_influence_common.warmup_case``). Timed: ``attributor.cache(train_loader)`` ("fit": EK-FAC's
factors; only storing the loader for the others) plus ``attributor.attribute(train_loader,
test_loader)`` ("scores": the full matrix; Arnoldi's eigenpairs are computed lazily, on its
first projection, so they land here).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # dattri's progress bars

import _influence_common as common  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch

    dtype = getattr(torch, p.get("dtype", "float64"))
    # build_module gives every runner the stored weights exactly (at damping 0.01 the MLP's
    # H + damping I is nearly singular: weights rounded differently alone cost 3e-4 of Pearson).
    net = common.build_module(case, dtype)
    torch.set_default_dtype(dtype)
    torch.manual_seed(int(p.get("seed", 0)))
    opts = dict(p.get("options") or {})
    logreg = case["kind"] == "logreg"
    xtr, ytr, xte, yte = common.tensors(case, dtype, n_test=p.get("n_test"))
    n_params = sum(q.numel() for q in net.parameters())

    def loss_func(params, data):
        # dattri's LiSSA casts the data to float32 (digits' x / 16 and the 0/1 labels survive
        # exactly); back to the model's dtype and, for the MLP, integer labels.
        x, y = data
        out = torch.func.functional_call(net, params, (x.to(dtype),))
        if logreg:
            return torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.to(dtype))
        return torch.nn.functional.cross_entropy(out, y.long())

    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    scores, info = attribute(net, loss_func, (xtr, ytr, xte, yte), method, opts, reg, timer)
    info["dtype"] = str(dtype)
    return scores, n_params, info


def attribute(net, loss_func, data, method: str, opts: dict, reg: float,
              timer: common.Timer):
    """dattri's attributor ``method`` on ``net`` with the mean-loss ``loss_func``: the training
    and test sets as one batch each, ``cache`` timed as "fit" and ``attribute`` as "scores";
    returns ``(scores (n_test, n_train) / n, info)``. Shared with ``cnn_dattri.py``."""
    import torch
    from dattri.algorithm.influence_function import (
        IFAttributorArnoldi,
        IFAttributorCG,
        IFAttributorEKFAC,
        IFAttributorExplicit,
        IFAttributorLiSSA,
    )
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    xtr, ytr, xte, yte = data
    n = len(xtr)
    n_params = sum(q.numel() for q in net.parameters())
    task = AttributionTask(loss_func=loss_func, model=net, checkpoints=net.state_dict())
    train_loader = DataLoader(TensorDataset(xtr, ytr), batch_size=n, shuffle=False)
    test_loader = DataLoader(TensorDataset(xte, yte), batch_size=len(xte), shuffle=False)
    info: dict = {"regularization": reg}
    if method == "exact":
        attributor = IFAttributorExplicit(task, regularization=reg)
    elif method == "cg":
        info.update(max_iter=int(opts.get("max_iter", 10)), tol=float(opts.get("tol", 1e-7)))
        attributor = IFAttributorCG(task, max_iter=info["max_iter"], tol=info["tol"],
                                    regularization=reg)
    elif method == "lissa":
        scale = float(opts["scale"])
        info.update(recursion_depth=int(opts["depth"]), batch_size=int(opts.get("batch_size") or n),
                    scaling=scale, lissa_damping=reg / scale)
        attributor = IFAttributorLiSSA(task, batch_size=info["batch_size"],
                                       recursion_depth=info["recursion_depth"],
                                       damping=reg / scale, scaling=scale)
    elif method == "arnoldi":
        rank = int(opts["rank"])
        krylov = int(opts.get("krylov_dimension") or min(n_params, max(2 * rank, rank + 20)))
        info.update(proj_dim=rank, krylov_dimension=krylov, max_iter=krylov + 1)
        attributor = IFAttributorArnoldi(task, proj_dim=rank, max_iter=krylov + 1,
                                         regularization=reg)
    elif method == "ekfac":
        info.update(damping=reg)
        attributor = IFAttributorEKFAC(task, damping=reg)
    else:
        raise ValueError(method)
    with timer("fit"):
        attributor.cache(train_loader)
    # Outside torch.no_grad, dattri's flattened parameters (which require grad) put an autograd
    # graph on every Hessian-vector product, and CG / LiSSA iterations extend it: memory grew by
    # ~0.8 GB per 10 CG iterations over 30 test points of the MLP (OOM at 24 GB for all 540).
    # torch.func's transforms differentiate inside no_grad all the same.
    with timer("scores"), torch.no_grad():
        scores = attributor.attribute(train_loader, test_loader)
    info["class"] = type(attributor).__name__
    return scores.T / n, info


def main() -> None:
    def version() -> str:
        from importlib.metadata import version

        return version("dattri")

    common.run_peer(compute, library="dattri", version=version,
                    methods=("exact", "cg", "lissa", "arnoldi", "ekfac"),
                    unavailable="no dattri solver {method!r}",
                    tiny_options={"rank": 2, "max_iter": 5, "depth": 5, "batch_size": 4})


if __name__ == "__main__":
    main()
