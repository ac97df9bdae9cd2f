"""Measure proposed speed-ups of datavalue's influence solvers against the current code.

    .venv/bin/python benchmarks/influence_proposals.py [--repeats 3]

A local experiment, not part of the benchmark: each proposal is applied by replacing one
private function of ``datavalue.attribution`` *in this process only* (nothing in ``src/`` is
changed), on the ``mlp`` case of ``bench_influence.py`` (run that first: it trains and caches
the model). Current and proposed variants alternate, one thread, after an untimed warm-up; the
median time and the Pearson correlation of the resulting score matrix with the current exact
solver's are printed.

P1  ``gradients._vector_chunk``: vectors per vmapped Hessian-vector product capped so that
    ``chunk x batch <= 2**14`` (intermediates stay in cache) instead of up to 512 vectors of a
    256-example batch. Affects every Hessian-vector product (exact's dense H, CG, LiSSA).
P2  Block conjugate gradients (breakdown-free block CG, Ji & Li 2017) over all test gradients
    at once, instead of one CG recurrence per row: the block Krylov space grows by k
    directions per Hessian product.
P3  Single-vector Hessian-vector products (Arnoldi, LiSSA's power iteration) through plain
    autograd double-backward over one full batch instead of the vmapped forward-over-reverse
    path.
P4  A recycled block-Krylov basis as CG's "cached factor": two block-CG steps on 256 random
    training gradients at fit time; queries are Galerkin projections onto that basis.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
import _influence_common as common  # noqa: E402

CASE = HERE / ".cache" / "influence" / "mlp-wd0.001.npz"
DAMPING = 0.01


def chunk_proposed(batch: int, n_params: int) -> int:
    """P1: at most 2**14 (vector, example) pairs per vmapped HVP call."""
    return int(max(1, min(512, 2**14 // max(1, batch), 2**26 // max(1, n_params))))


def _orth(w, tol: float = 1e-10):
    import torch

    q, r = torch.linalg.qr(w)
    d = r.diagonal().abs()
    return q[:, d > tol * d.max()]


def block_cg(matvec, b, rtol: float, maxiter: int = 50):
    """P2: breakdown-free block CG (Ji & Li 2017) for ``A X = B``, ``B`` of shape (p, k)."""
    import torch

    x = torch.zeros_like(b)
    r = b.clone()
    b_norm = b.norm(dim=0)
    p = _orth(r)
    iterations = 0
    while iterations < maxiter:
        iterations += 1
        q = matvec(p)
        pq = p.T @ q
        alpha = torch.linalg.solve(pq, p.T @ r)
        x += p @ alpha
        r -= q @ alpha
        if (r.norm(dim=0) <= rtol * b_norm).all():
            break
        beta = -torch.linalg.solve(pq, q.T @ r)
        p = _orth(r + p @ beta)
    return x, iterations


def autograd_single_vector(model, x, y, n_total: int, inner):
    """P3: ``matvec`` that sends one-vector products through autograd double-backward."""
    import torch

    def matvec(v):
        if v.shape[0] != 1:
            return inner(v)
        ps = {k: t.detach().requires_grad_(True) for k, t in model.params.items()}
        vd = model.layout.unflatten(v[0].to(model.dtype))
        f = model.losses(ps, x, y).sum() / n_total
        if model.regularizer is not None:
            f = f + model.regularization(ps)
        g = torch.autograd.grad(f, list(ps.values()), create_graph=True)
        hv = torch.autograd.grad(sum((gi * vd[k]).sum() for gi, k in zip(g, ps, strict=True)),
                                 list(ps.values()))
        return torch.cat([h.reshape(-1) for h in hv])[None].detach()

    return matvec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    import datavalue.attribution.gradients as grads
    from datavalue.attribution import InfluenceFunction
    from datavalue.attribution.gradients import per_example_gradients

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if not CASE.is_file():
        sys.exit(f"{CASE} not found: run benchmarks/bench_influence.py --cases mlp first")
    case = common.load_case(CASE)
    net = common.build_module(case)
    xtr, ytr, xte, yte = case["x_train"], case["y_train"], case["x_test"], case["y_test"]
    wd = case["weight_decay"]
    current_chunk, current_op = grads._vector_chunk, grads.hessian_operator

    def make(solver, **options):
        return InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=solver,
                                 damping=DAMPING, weight_decay=wd, progress=False,
                                 hessian="exact",
                                 solver_options=options or None)

    for solver in ("exact", "cg", "arnoldi", "ekfac"):  # warm-up: first calls, lazy imports
        try:
            make(solver).fit(xtr[:40], ytr[:40]).influence(xte[:4], yte[:4])
        except Exception:  # noqa: BLE001 - a warm-up only
            pass
    reference = make("exact").fit(xtr, ytr).influence(xte, yte)

    def pearson(s):
        return float(np.corrcoef(np.asarray(s).ravel(), reference.ravel())[0, 1])

    def exact_run():
        start = time.perf_counter()
        s = make("exact").fit(xtr, ytr).influence(xte, yte)
        return time.perf_counter() - start, pearson(s)

    def cg_run():
        start = time.perf_counter()
        s = make("cg", rtol=1e-2).fit(xtr, ytr).influence(xte, yte)
        return time.perf_counter() - start, pearson(s)

    def block_cg_run():
        start = time.perf_counter()
        inf = make("cg").fit(xtr, ytr)
        m, op = inf.model_, inf.operator_
        x, y = m.prepare(xte, yte, "x", "y")
        u, _ = block_cg(lambda p: (op.matvec(p.T) + DAMPING * p.T).T,
                        per_example_gradients(m, x, y).T.contiguous(), 1e-2)
        g = per_example_gradients(m, inf._data)
        s = (u.T @ g.T / len(g)).numpy()
        return time.perf_counter() - start, pearson(s)

    def arnoldi_run():
        start = time.perf_counter()
        s = make("arnoldi", rank=100).fit(xtr, ytr).influence(xte, yte)
        return time.perf_counter() - start, pearson(s)

    def patched_operator(model, x, y, **kw):
        op = current_op(model, x, y, **kw)
        if kw.get("hessian", "exact") == "exact" and kw.get("rows") is None:
            op.matvec = autograd_single_vector(model, x, y, int(x.shape[0]), op.matvec)
        return op

    def recycled_run():
        start = time.perf_counter()
        inf = make("cg").fit(xtr, ytr)
        m, op = inf.model_, inf.operator_

        def a(p):
            return (op.matvec(p.T) + DAMPING * p.T).T

        g_train = per_example_gradients(m, inf._data)
        rows = torch.randperm(len(g_train), generator=torch.Generator().manual_seed(0))[:256]
        v1 = _orth(g_train[rows].T.contiguous())
        av1 = a(v1)
        v2 = _orth(av1 - v1 @ (v1.T @ av1))
        basis = torch.cat([v1, v2], 1)
        t = basis.T @ torch.cat([av1, a(v2)], 1)
        chol = torch.linalg.cholesky((t + t.T) / 2)
        fit = time.perf_counter() - start
        start = time.perf_counter()
        x, y = m.prepare(xte, yte, "x", "y")
        g_test = per_example_gradients(m, x, y)
        g_train = per_example_gradients(m, inf._data)  # recomputed: part of the query
        u = basis @ torch.cholesky_solve(basis.T @ g_test.T, chol)
        s = (u.T @ g_train.T / len(g_train)).numpy()
        return fit + time.perf_counter() - start, pearson(s), time.perf_counter() - start

    def grad_pass():
        inf = make("ekfac").fit(xtr[:10], ytr[:10])
        m = inf.model_
        sets = [m.prepare(a, b, "x", "y") for a, b in ((xtr, ytr), (xte, yte))]
        start = time.perf_counter()
        for x, y in sets:
            per_example_gradients(m, x, y)
        return time.perf_counter() - start, 1.0

    experiments = [
        ("P1", "exact (dense H)", exact_run, exact_run, True, False),
        ("P1", "cg rtol 1e-2 (per-row)", cg_run, cg_run, True, False),
        ("P2", "cg rtol 1e-2 -> block CG (P1 chunks)", cg_run, block_cg_run, True, False),
        ("P3", "arnoldi rank 100", arnoldi_run, arnoldi_run, False, True),
    ]
    rows = []
    for tag, name, cur, new, chunk, single in experiments:
        times = {"current": [], "proposed": []}
        corr = {}
        for _ in range(args.repeats):
            for variant, fn in (("current", cur), ("proposed", new)):
                proposed = variant == "proposed"
                grads._vector_chunk = chunk_proposed if (proposed and chunk) else current_chunk
                grads.hessian_operator = patched_operator if (proposed and single) \
                    else current_op
                seconds, r = fn()
                times[variant].append(seconds)
                corr[variant] = r
        grads._vector_chunk, grads.hessian_operator = current_chunk, current_op
        cur_t, new_t = statistics.median(times["current"]), statistics.median(times["proposed"])
        rows.append(f"| {tag} | {name} | {cur_t:.2f} | {new_t:.2f} | {cur_t / new_t:.1f}x | "
                    f"{corr['current']:.5f} | {corr['proposed']:.5f} |")
        print(rows[-1], flush=True)
    grads._vector_chunk = chunk_proposed
    recycled = [recycled_run() for _ in range(args.repeats)]
    passes = [grad_pass()[0] for _ in range(args.repeats)]
    grads._vector_chunk = current_chunk
    q = statistics.median(r[2] for r in recycled)
    g = statistics.median(passes)
    print(f"\nP4 recycled block-Krylov basis (dim <= 512): total "
          f"{statistics.median(r[0] for r in recycled):.2f} s, Pearson {recycled[-1][1]:.5f}; "
          f"score matrix with the basis cached {q:.3f} s / gradient pass {g:.3f} s = "
          f"{q / g:.1f}")
    print("\n| | what | current (s) | proposed (s) | speed-up | Pearson current | "
          "Pearson proposed |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
