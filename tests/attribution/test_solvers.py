"""Inverse-Hessian solvers against exact answers.

Oracles: ``torch.linalg.solve`` on a random symmetric positive definite (SPD) matrix with a known
spectrum; on a real model (a tanh MLP trained on 200 digits), the dense Hessian from
``torch.func.hessian`` and the dense Gauss-Newton matrix ``mean_i J_iᵀ H_out,i J_i``; for
(E)K-FAC, Kronecker factors computed by hand and the algebraic facts that make K-FAC exact.
Every tolerance states why it is what it is.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from torch.func import grad, hessian, jacrev, jvp, vmap  # noqa: E402

from datavalue import (  # noqa: E402
    InvalidDataError,
    InvalidParameterError,
    UnknownNameError,
)
from datavalue.attribution.solvers import (  # noqa: E402
    SOLVERS,
    HessianOperator,
    KFACSource,
    SolverError,
    inverse_hvp,
    make_solver,
)

DT = torch.float64


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm())


def spd(p: int, eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigenvalues) Qᵀ with a random orthogonal Q."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=DT))
    return (q * eigenvalues) @ q.T


def exact_solve(h: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    return torch.linalg.solve(h + damping * torch.eye(len(h), dtype=DT), v.T).T


@pytest.fixture(scope="module")
def system():
    """A 40 x 40 SPD matrix with eigenvalues from 1 to 0.01, and 6 right-hand sides."""
    p = 40
    h = spd(p, torch.logspace(0, -2, p, dtype=DT))
    v = torch.randn(6, p, generator=torch.Generator().manual_seed(1), dtype=DT)
    return SimpleNamespace(p=p, h=h, v=v, op=HessianOperator.from_dense(h), damping=0.01)


@pytest.fixture(scope="module")
def sampled_system():
    """H = mean_i a_i a_iᵀ + 0.1 I over 200 examples, with minibatch products for LiSSA."""
    n, p = 200, 20
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(n, p, generator=gen, dtype=DT) * torch.linspace(1, 0.3, p, dtype=DT)
    mu = 0.1
    h = a.T @ a / n + mu * torch.eye(p, dtype=DT)

    def batch_matvec(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        rows = a[idx]
        return (v @ rows.T) @ rows / len(idx) + mu * v

    op = HessianOperator(
        n_params=p, matvec=lambda v: v @ h, batch_matvec=batch_matvec, n_samples=n
    )
    v = torch.randn(3, p, generator=gen, dtype=DT)
    return SimpleNamespace(h=h, op=op, v=v, p=p)


# ---------------------------------------------------------------------------------------------
# A real model: MLP 64-8-10 (tanh) on 200 digits, L2 1e-2, trained to a stationary point.
# ---------------------------------------------------------------------------------------------

HIDDEN, N_DIGITS, L2 = 8, 200, 1e-2
SIZES = [HIDDEN * 64, HIDDEN, 10 * HIDDEN, 10]


def mlp(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = theta.split(SIZES)
    return torch.tanh(x @ w1.reshape(HIDDEN, 64).T + b1) @ w2.reshape(10, HIDDEN).T + b2


@pytest.fixture(scope="module")
def digits_mlp():
    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np[:N_DIGITS] / 16, dtype=DT)
    y = torch.tensor(y_np[:N_DIGITS])

    def objective(theta, idx=None):
        xs, ys = (x, y) if idx is None else (x[idx], y[idx])
        return F.cross_entropy(mlp(theta, xs), ys) + 0.5 * L2 * theta.square().sum()

    gen = torch.Generator().manual_seed(0)
    theta = (0.1 * torch.randn(sum(SIZES), generator=gen, dtype=DT)).requires_grad_()
    opt = torch.optim.LBFGS(
        [theta], max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure():
        opt.zero_grad()
        loss = objective(theta)
        loss.backward()
        return loss

    opt.step(closure)
    theta = theta.detach()
    p = theta.numel()

    # Hessian-vector products as the influence code makes them: jvp of grad (forward-over-reverse).
    gradient = grad(objective)
    matvec = vmap(lambda u: jvp(gradient, (theta,), (u,))[1])

    def batch_matvec(v, idx):
        return vmap(lambda u: jvp(lambda t: grad(objective)(t, idx), (theta,), (u,))[1])(v)

    h = hessian(objective)(theta)
    # Gauss-Newton: mean_i J_iᵀ (diag(p_i) - p_i p_iᵀ) J_i (+ L2 I), what (E)K-FAC approximates.
    jac = jacrev(mlp)(theta, x)
    prob = torch.softmax(mlp(theta, x), 1)
    h_out = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
    ggn_loss = torch.einsum("ncp,ncd,ndq->pq", jac, h_out, jac) / N_DIGITS
    ggn = ggn_loss + L2 * torch.eye(p, dtype=DT)

    module = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 10)
    ).to(DT)
    with torch.no_grad():
        for param, chunk in zip(module.parameters(), theta.split(SIZES), strict=True):
            param.copy_(chunk.reshape(param.shape))
    o = [0, *torch.tensor(SIZES).cumsum(0).tolist()]
    source = KFACSource(
        module=module,
        layers=[("0", module[0]), ("2", module[2])],
        param_slices=[(slice(o[0], o[1]), slice(o[1], o[2])), (slice(o[2], o[3]), slice(o[3], o[4]))],
        batches=lambda: [(x[i : i + 64], y[i : i + 64]) for i in range(0, N_DIGITS, 64)],
        loss_fn=lambda out, t: F.cross_entropy(out, t, reduction="none"),
        output_kind="classification",
        l2=L2,
    )
    op = HessianOperator(
        n_params=p, matvec=matvec, dense=lambda: h, batch_matvec=batch_matvec,
        n_samples=N_DIGITS, kfac=source,
    )
    op_ggn = HessianOperator(n_params=p, matvec=lambda v: v @ ggn, dense=lambda: ggn, kfac=source)
    v = torch.randn(4, p, generator=torch.Generator().manual_seed(3), dtype=DT)
    return SimpleNamespace(
        x=x, y=y, theta=theta, p=p, h=h, ggn=ggn, ggn_loss=ggn_loss, module=module,
        source=source, op=op, op_ggn=op_ggn, v=v, offsets=o,
        grad_norm=float(gradient(theta).norm()),
    )


# ---------------------------------------------------------------------------------------------
# exact
# ---------------------------------------------------------------------------------------------


def test_exact_matches_dense_solve(system):
    # Cholesky is backward stable: error ~ cond (100) x machine epsilon.
    solver = make_solver("exact").fit(system.op, system.damping)
    ref = exact_solve(system.h, system.v, system.damping)
    assert rel_err(solver.solve(system.v), ref) < 1e-12
    assert solver.info_["method"] == "cholesky"
    # Without op.dense, the matrix is built column block by column block from matvec.
    op = HessianOperator(n_params=system.p, matvec=system.op.matvec)
    built = make_solver("exact", block_size=7).fit(op, system.damping)
    assert built.info_["dense_from"] == "matvec"
    assert rel_err(built.solve(system.v), ref) < 1e-12


def test_exact_on_indefinite_matrix_warns_and_inverts(system):
    eigenvalues = torch.linspace(-0.5, 1, system.p, dtype=DT)
    eigenvalues[eigenvalues.abs() < 0.05] = 0.05  # indefinite but well conditioned
    h = spd(system.p, eigenvalues, seed=4)
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        solver = make_solver("exact").fit(HessianOperator.from_dense(h), 0.0)
    assert solver.info_["method"] == "eigh"
    # The eigendecomposition gives the true inverse (condition number 20).
    assert rel_err(solver.solve(system.v), exact_solve(h, system.v, 0.0)) < 1e-12


# ---------------------------------------------------------------------------------------------
# conjugate gradients
# ---------------------------------------------------------------------------------------------


def test_cg_matches_exact_to_1e_6(system):
    # ||x - x*|| / ||x*|| <= cond(H + λI) * ||r|| / ||v|| = 100 * 1e-10 = 1e-8 < 1e-6.
    solver = make_solver("cg", rtol=1e-10).fit(system.op, system.damping)
    x = solver.solve(system.v)
    assert rel_err(x, exact_solve(system.h, system.v, system.damping)) < 1e-6
    assert all(solver.info_["converged"])
    assert max(solver.info_["residuals"]) <= 1e-10
    # Convergence bound ||r_k|| / ||v|| <= 2 sqrt(κ) ((sqrt(κ) - 1) / (sqrt(κ) + 1))^k with
    # κ = 1.01 / 0.02: at most 91 steps for 1e-10 (rounding makes it more than p = 40 here).
    kappa = 1.01 / 0.02
    rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    assert max(solver.info_["iterations"]) <= math.log(1e-10 / (2 * math.sqrt(kappa))) / math.log(rate)


def test_cg_preconditioners(system):
    ref = exact_solve(system.h, system.v, system.damping)
    plain = make_solver("cg", rtol=1e-10).fit(system.op, system.damping)
    plain.solve(system.v)
    # The exact inverse as preconditioner: one step.
    exact = make_solver("cg", rtol=1e-10, preconditioner="exact").fit(system.op, system.damping)
    assert rel_err(exact.solve(system.v), ref) < 1e-6
    assert max(exact.info_["iterations"]) == 1
    # A low-rank (top 10 eigenpairs) preconditioner removes the top of the spectrum: fewer steps.
    low = make_solver(
        "cg", rtol=1e-10, preconditioner="arnoldi", preconditioner_options={"rank": 10}
    ).fit(system.op, system.damping)
    assert rel_err(low.solve(system.v), ref) < 1e-6
    assert max(low.info_["iterations"]) < max(plain.info_["iterations"])
    # A callable.
    h_inv = torch.linalg.inv(system.h + system.damping * torch.eye(system.p, dtype=DT))
    call = make_solver("cg", rtol=1e-10, preconditioner=lambda r: r @ h_inv)
    assert rel_err(call.fit(system.op, system.damping).solve(system.v), ref) < 1e-6


def _counting(op: HessianOperator) -> tuple[HessianOperator, list[int]]:
    """``op`` whose matvec records how many vectors each call multiplies."""
    calls: list[int] = []

    def matvec(v):
        calls.append(int(v.shape[0]))
        return op.matvec(v)

    return HessianOperator(n_params=op.n_params, matvec=matvec), calls


def test_block_cg_matches_exact_with_fewer_products():
    """Block CG solves every row over the shared block Krylov space: on a 200 x 200 system with
    a wide spectrum (κ = 1e3) and 30 right-hand sides it reaches 1e-10 with far fewer Hessian-
    vector products than 30 separate recurrences; both match the dense solve."""
    p = 200
    h = spd(p, torch.logspace(0, -3, p, dtype=DT), seed=3)
    v = torch.randn(30, p, generator=torch.Generator().manual_seed(4), dtype=DT)
    ref = exact_solve(h, v, 0.0)
    counts = {}
    for block in (True, False):
        op, calls = _counting(HessianOperator.from_dense(h))
        solver = make_solver("cg", rtol=1e-10, block=block).fit(op, 0.0)
        # ||x - x*|| / ||x*|| <= κ ||r|| / ||v|| = 1e3 * 1e-10.
        assert rel_err(solver.solve(v), ref) < 1e-6
        assert all(solver.info_["converged"]) and max(solver.info_["residuals"]) <= 1e-10
        counts[block] = sum(calls)
    assert counts[True] < 0.5 * counts[False]


def test_block_cg_blocks_duplicates_and_zero_rows(system):
    """Splitting the rows into blocks does not change the answer; duplicated rows (a rank-
    deficient block: directions are dropped, not divided by zero) and a zero row are solved."""
    ref = exact_solve(system.h, system.v, system.damping)
    whole = make_solver("cg", rtol=1e-12).fit(system.op, system.damping).solve(system.v)
    split = make_solver("cg", rtol=1e-12, block_size=4).fit(system.op, system.damping)
    assert rel_err(split.solve(system.v), ref) < 1e-8
    assert rel_err(whole, ref) < 1e-8
    assert len(split.info_["iterations"]) == len(system.v)
    v = torch.cat([system.v[:2], system.v[:2], torch.zeros(1, system.p, dtype=DT)])
    solver = make_solver("cg", rtol=1e-12).fit(system.op, system.damping)
    x = solver.solve(v)
    assert torch.isfinite(x).all() and float(x[-1].abs().max()) == 0.0
    assert rel_err(x[:4], exact_solve(system.h, v[:4], system.damping)) < 1e-8
    assert all(solver.info_["converged"])


@pytest.mark.parametrize("block", [True, False])
def test_cg_negative_curvature_and_nonconvergence(system, block):
    h = spd(system.p, torch.linspace(-1, 1, system.p, dtype=DT) + 0.013, seed=5)
    op = HessianOperator.from_dense(h)
    with pytest.raises(SolverError, match="non-positive curvature"):
        make_solver("cg", block=block).fit(op, 0.0).solve(system.v)
    with pytest.warns(RuntimeWarning, match="non-positive curvature"):
        make_solver("cg", on_negative_curvature="warn", block=block).fit(op, 0.0).solve(system.v)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        solver = make_solver("cg", maxiter=3, block=block).fit(system.op, system.damping)
        solver.solve(system.v)
    assert not any(solver.info_["converged"])
    assert solver.info_["iterations"] == [3] * len(system.v)


# ---------------------------------------------------------------------------------------------
# LiSSA
# ---------------------------------------------------------------------------------------------


def test_lissa_full_batch_matches_exact(system):
    # Deterministic recursion: error = (H + λI)^{-1} (I - (H + λI)/s)^(depth+1) v, so
    # rel. error <= cond * ρ^(depth+1) with ρ = 1 - (λ_min + λ)/s = 1 - 0.02/1.1; depth 1200
    # gives 100 * exp(-21.8) ≈ 3e-8.
    scale, depth = 1.1, 1200
    rho = 1 - (0.01 + system.damping) / scale
    bound = 101 * rho ** (depth + 1)
    solver = make_solver("lissa", scale=scale, depth=depth).fit(system.op, system.damping)
    err = rel_err(solver.solve(system.v), exact_solve(system.h, system.v, system.damping))
    assert err < bound < 1e-6


def test_lissa_scale_estimate_and_divergence(system):
    solver = make_solver("lissa", depth=2000).fit(system.op, system.damping)
    # Scale from power iteration: 1.5 * λ_max(H + λI) (from below, so between 1.4 and 1.52).
    assert 1.4 < solver.info_["scale"] <= 1.5 * 1.01 + 1e-9
    # ρ = 1 - 0.02/1.515, 2000 steps: bound 100 * exp(-26) ≈ 5e-10.
    assert rel_err(solver.solve(system.v), exact_solve(system.h, system.v, system.damping)) < 1e-8
    # Early stop once a step changes h by <= rtol relative: the remaining error is about
    # (s / λ_min) * cond * rtol ≈ 5e-10.
    early = make_solver("lissa", depth=100_000, scale=1.1, rtol=1e-13).fit(system.op, system.damping)
    assert rel_err(early.solve(system.v), exact_solve(system.h, system.v, system.damping)) < 1e-8
    assert early.info_["steps"][0] < 100_000
    # Scale below λ_max / 2: the recursion blows up, and says so.
    with pytest.raises(SolverError, match="diverged"):
        make_solver("lissa", scale=0.3, depth=5000).fit(system.op, system.damping).solve(system.v)


def test_lissa_stochastic_within_tolerance_and_seeded(sampled_system):
    s = sampled_system
    ref = exact_solve(s.h, s.v, 0.0)
    opts = dict(batch_size=100, depth=300, repeats=8, random_state=7)
    solver = make_solver("lissa", **opts).fit(s.op, 0.0)
    x = solver.solve(s.v)
    # Bias after 300 steps: ρ^300 with ρ = 1 - λ_min/s = 1 - 0.167/1.77, i.e. 1e-13; the rest is
    # minibatch noise: measured at most 0.031 over seeds 0-19, asserted at 0.06.
    err = rel_err(x, ref)
    assert err < 0.06
    # The reported standard error of the average predicts that noise (ratio 0.82-1.32 measured).
    assert 0.5 < err / solver.info_["stderr"] < 2
    again = make_solver("lissa", **opts).fit(s.op, 0.0).solve(s.v)
    assert torch.equal(x, again)
    other = make_solver("lissa", **{**opts, "random_state": 8}).fit(s.op, 0.0).solve(s.v)
    assert not torch.equal(x, other)
    # Batch size n: every minibatch Hessian is H (drawn without replacement), so LiSSA is exact.
    full = make_solver("lissa", batch_size=200, depth=600).fit(s.op, 0.0)
    assert rel_err(full.solve(s.v), ref) < 1e-8


# ---------------------------------------------------------------------------------------------
# Arnoldi
# ---------------------------------------------------------------------------------------------


def test_arnoldi_full_rank_is_exact(system):
    # rank = n_iter = p: the Krylov basis spans R^p and Rayleigh-Ritz is an eigendecomposition.
    solver = make_solver("arnoldi", rank=system.p).fit(system.op, system.damping)
    ref = exact_solve(system.h, system.v, system.damping)
    assert rel_err(solver.solve(system.v), ref) < 1e-10
    # Repeated eigenvalues make the Krylov space smaller than p: Arnoldi restarts, still exact.
    h = spd(system.p, torch.repeat_interleave(torch.tensor([3.0, 1.0, 0.5], dtype=DT), torch.tensor([10, 20, 10])))
    solver = make_solver("arnoldi", rank=system.p).fit(HessianOperator.from_dense(h), 0.1)
    assert solver.info_["restarts"] > 0
    assert rel_err(solver.solve(system.v), exact_solve(h, system.v, 0.1)) < 1e-10


def test_arnoldi_low_rank_error_is_the_discarded_spectrum(system):
    p, r, damping = system.p, 8, 0.01
    eigenvalues = torch.cat(
        [torch.linspace(10, 3, r, dtype=DT), torch.linspace(0.1, 0.01, p - r, dtype=DT)]
    )
    gen = torch.Generator().manual_seed(6)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=DT))
    h = (q * eigenvalues) @ q.T
    op = HessianOperator.from_dense(h)
    ref = exact_solve(h, system.v, damping)
    top = q[:, :r]
    discarded = system.v - (system.v @ top) @ top.T  # part of v outside the top eigenspace
    # With the exact top eigenvectors, the "drop" answer misses exactly (H + λI)^{-1} discarded,
    # whose norm is at most ||discarded|| / (λ_min + λ). 3r Krylov steps resolve a spectral gap
    # of 30x to ~1e-9 (Kaniel-Paige).
    solver = make_solver("arnoldi", rank=r, n_iter=3 * r).fit(op, damping)
    x = solver.solve(system.v)
    missing = exact_solve(h, discarded, damping)
    assert torch.allclose(x, ref - missing, atol=1e-8 * float(ref.norm()))
    err = (x - ref).norm(dim=1)
    assert torch.all(err <= discarded.norm(dim=1) / (0.01 + damping) * (1 + 1e-8))
    assert max(solver.info_["ritz_residuals"]) < 1e-8
    assert torch.allclose(solver.eigenvalues_, eigenvalues[:r], rtol=1e-10)
    # If the discarded eigenvalues are 0, complement="damping" is exact.
    h_low = (top * eigenvalues[:r]) @ top.T
    low = make_solver("arnoldi", rank=r, n_iter=3 * r, complement="damping")
    x_low = low.fit(HessianOperator.from_dense(h_low), damping).solve(system.v)
    assert rel_err(x_low, exact_solve(h_low, system.v, damping)) < 1e-8


def test_arnoldi_is_deterministic_for_a_seed(system):
    a = make_solver("arnoldi", rank=10, random_state=3).fit(system.op, 0.01).solve(system.v)
    b = make_solver("arnoldi", rank=10, random_state=3).fit(system.op, 0.01).solve(system.v)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Every solver batched over rows; every solver on the real model
# ---------------------------------------------------------------------------------------------

BATCH_CASES = [
    ("exact", {}),
    ("cg", {"rtol": 1e-12}),
    ("lissa", {"depth": 200, "scale": 1.1}),
    ("arnoldi", {"rank": 12, "random_state": 1}),
]


@pytest.mark.parametrize(("name", "options"), BATCH_CASES)
def test_batched_solve_equals_row_by_row(system, name, options):
    solver = make_solver(name, **options).fit(system.op, system.damping)
    batched = solver.solve(system.v)
    rows = torch.stack([solver.solve(row) for row in system.v])
    # Same arithmetic per row up to matmul blocking: 1e-10 relative.
    assert rel_err(batched, rows) < 1e-10


def test_batched_stochastic_lissa_and_ekfac_equal_row_by_row(sampled_system, digits_mlp):
    s = sampled_system
    solver = make_solver("lissa", batch_size=30, depth=100, repeats=2, random_state=4).fit(s.op, 0.0)
    # Each call restarts the seeded minibatch sequence, shared by all rows.
    rows = torch.stack([solver.solve(row) for row in s.v])
    assert rel_err(solver.solve(s.v), rows) < 1e-12
    ekfac = make_solver("ekfac").fit(digits_mlp.op_ggn, 1e-3)
    rows = torch.stack([ekfac.solve(row) for row in digits_mlp.v])
    assert rel_err(ekfac.solve(digits_mlp.v), rows) < 1e-12


def test_solvers_on_the_digits_mlp(digits_mlp):
    m, damping = digits_mlp, 0.01
    assert m.grad_norm < 1e-3  # near a stationary point, so H (+ L2) is nearly PSD
    ref = exact_solve(m.h, m.v, damping)
    assert rel_err(make_solver("exact").fit(m.op, damping).solve(m.v), ref) < 1e-12
    # CG on jvp-of-grad products: rtol 1e-10 and cond(H + λI) ≈ 150 give < 1e-7.
    cg = make_solver("cg", rtol=1e-10).fit(m.op, damping)
    assert rel_err(cg.solve(m.v), ref) < 1e-6
    # Arnoldi, rank 30 of 610, 90 Krylov steps: equals the projection onto the top-30
    # eigenvectors of the dense Hessian (measured 2e-12; the top Ritz pairs converge first).
    w, u = torch.linalg.eigh(m.h)
    top = torch.argsort(w.abs(), descending=True)[:30]
    projected = ((m.v @ u[:, top]) / (w[top] + damping)) @ u[:, top].T
    arnoldi = make_solver("arnoldi", rank=30, n_iter=90).fit(m.op, damping)
    assert rel_err(arnoldi.solve(m.v), projected) < 1e-6


def test_stochastic_lissa_on_the_digits_mlp(digits_mlp):
    m, damping = digits_mlp, 0.1
    ref = exact_solve(m.h, m.v, damping)
    solver = make_solver("lissa", batch_size=100, depth=300, random_state=0).fit(m.op, damping)
    # Bias: ρ^300 with ρ = 1 - (λ_min + λ)/s ≈ 1 - 0.1/2.8, i.e. 2e-5; the rest is minibatch
    # noise: measured at most 0.0084 over seeds 0-5, asserted at 0.02.
    assert rel_err(solver.solve(m.v), ref) < 0.02


# ---------------------------------------------------------------------------------------------
# K-FAC and EK-FAC
# ---------------------------------------------------------------------------------------------


def linear_source(layer, x, y, loss_fn, kind, l2=0.0):
    n_w = layer.weight.numel()
    bias = slice(n_w, n_w + layer.out_features) if layer.bias is not None else None
    return KFACSource(
        module=layer, layers=[("linear", layer)], param_slices=[(slice(0, n_w), bias)],
        batches=lambda: [(x, y)], loss_fn=loss_fn, output_kind=kind, l2=l2,
    )


def flat_linear(layer):
    return torch.cat([layer.weight.detach().reshape(-1), layer.bias.detach()])


def linear_forward(layer):
    n_w = layer.weight.numel()

    def forward(theta, x):
        w, b = theta[:n_w].reshape(layer.weight.shape), theta[n_w:]
        return x @ w.T + b

    return forward


@pytest.mark.parametrize("fisher", ["true", "empirical"])
@pytest.mark.parametrize("n_classes", [3, 1])
def test_one_example_ekfac_equals_kfac_equals_the_fisher(fisher, n_classes):
    """With one example, A = ā āᵀ and S = E[g gᵀ], and the Fisher block E[(g ⊗ ā)(g ⊗ ā)ᵀ] is
    exactly S ⊗ A: K-FAC is exact, and so is EK-FAC (its re-fitted eigenvalues are then
    Λ_S Λ_Aᵀ). "true": the Gauss-Newton matrix Jᵀ H_out J; "empirical": ∇ℓ ∇ℓᵀ. Softmax
    cross-entropy (3 classes) and a single logit with binary cross-entropy."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, n_classes).to(DT)
    x = torch.randn(1, 5, dtype=DT)
    if n_classes == 1:
        y = torch.tensor([1.0], dtype=DT)

        def loss_fn(out, t):
            return F.binary_cross_entropy_with_logits(out[:, 0], t, reduction="none")
    else:
        y = torch.tensor([2])

        def loss_fn(out, t):
            return F.cross_entropy(out, t, reduction="none")

    source = linear_source(layer, x, y, loss_fn, "classification")
    theta, forward = flat_linear(layer), linear_forward(layer)
    if fisher == "true":
        jac = jacrev(forward)(theta, x)[0]  # (classes, p)
        logits = forward(theta, x)[0]
        if n_classes == 1:
            prob = torch.sigmoid(logits)
            h_out = torch.diag(prob * (1 - prob))
        else:
            prob = torch.softmax(logits, 0)
            h_out = torch.diag(prob) - torch.outer(prob, prob)
        fisher_matrix = jac.T @ h_out @ jac
    else:
        g = grad(lambda t: loss_fn(forward(t, x), y).sum())(theta)
        fisher_matrix = torch.outer(g, g)
    p, damping = theta.numel(), 1e-3
    op = HessianOperator(n_params=p, matvec=lambda v: v @ fisher_matrix, kfac=source)
    v = torch.randn(5, p, dtype=DT)
    ref = exact_solve(fisher_matrix, v, damping)
    # Cond ≈ λ_max / 1e-3 ≈ 1e3: agreement to ~1e-13, asserted at 1e-10.
    ek = make_solver("ekfac", fisher=fisher).fit(op, damping).solve(v)
    k = make_solver("kfac", fisher=fisher).fit(op, damping).solve(v)
    assert rel_err(k, ref) < 1e-10
    assert rel_err(ek, ref) < 1e-10


def test_linear_regression_kfac_is_exact_for_any_n():
    """Squared error on one Linear layer: g = ∂ℓ/∂out has the constant covariance H_out = I
    (the true Fisher / Gauss-Newton, which is the Hessian here), so H = I ⊗ A exactly for any n:
    K-FAC = EK-FAC = exact, including the L2 term."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(6, 3).to(DT)
    n, l2 = 50, 0.05
    x, y = torch.randn(n, 6, dtype=DT), torch.randn(n, 3, dtype=DT)
    loss_fn = lambda out, t: 0.5 * (out - t).square().sum(1)  # noqa: E731
    source = linear_source(layer, x, y, loss_fn, "regression", l2=l2)
    theta, forward = flat_linear(layer), linear_forward(layer)
    h = hessian(lambda t: loss_fn(forward(t, x), y).mean() + 0.5 * l2 * t.square().sum())(theta)
    op = HessianOperator(n_params=theta.numel(), matvec=lambda v: v @ h, kfac=source)
    v = torch.randn(4, theta.numel(), dtype=DT)
    ref = exact_solve(h, v, 1e-3)
    for name in ("kfac", "ekfac"):
        assert rel_err(make_solver(name).fit(op, 1e-3).solve(v), ref) < 1e-10
    # An objective normalised by a larger set than the batches hold (n_total): still exact.
    h_sub = h - l2 * torch.eye(len(h), dtype=DT)
    h_sub = h_sub * n / 80 + l2 * torch.eye(len(h), dtype=DT)
    sub = HessianOperator(
        n_params=theta.numel(), matvec=lambda u: u @ h_sub,
        kfac=KFACSource(**{**source.__dict__, "n_total": 80}),
    )
    for name in ("kfac", "ekfac"):
        assert rel_err(make_solver(name).fit(sub, 1e-3).solve(v), exact_solve(h_sub, v, 1e-3)) < 1e-10
    # Sampled targets (y ~ N(f, I)) give a Monte Carlo estimate of the same matrix.
    sampled = make_solver("ekfac", mc_samples=200, random_state=0).fit(op, 1e-3).solve(v)
    assert rel_err(sampled, ref) < 0.1  # 10^4 Gaussian draws: ~1e-2 error, 10x margin


def hand_factors(m, fisher):
    """A and S of both MLP layers from the closed-form backward pass (independent of hooks)."""
    w1, b1, w2, b2 = m.theta.split(SIZES)
    w2 = w2.reshape(10, HIDDEN)
    z = torch.tanh(m.x @ w1.reshape(HIDDEN, 64).T + b1)
    ones = torch.ones(N_DIGITS, 1, dtype=DT)
    a1, a2 = torch.cat([m.x, ones], 1), torch.cat([z, ones], 1)
    prob = torch.softmax(z @ w2.T + b2, 1)
    d = 1 - z.square()  # tanh'
    if fisher == "empirical":
        g2 = prob - F.one_hot(m.y, 10).to(DT)
        g1 = (g2 @ w2) * d
        s1, s2 = g1.T @ g1 / N_DIGITS, g2.T @ g2 / N_DIGITS
    else:
        h_out = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
        back = w2[None] * d[:, None, :]  # ∂out/∂(layer-1 output), (n, 10, hidden)
        s1 = torch.einsum("nci,ncd,ndj->ij", back, h_out, back) / N_DIGITS
        s2 = h_out.mean(0)
    return [(a1.T @ a1 / N_DIGITS, s1), (a2.T @ a2 / N_DIGITS, s2)]


def layer_index(m, layer):
    """Flat indices of a layer's (out, in + 1) gradient matrix, row-major (bias last)."""
    o = m.offsets
    n_in, n_out = (64, HIDDEN) if layer == 0 else (HIDDEN, 10)
    w0, b0 = o[2 * layer], o[2 * layer + 1]
    weight = w0 + torch.arange(n_out * n_in).reshape(n_out, n_in)
    bias = b0 + torch.arange(n_out).reshape(n_out, 1)
    return torch.cat([weight, bias], 1).reshape(-1)


@pytest.mark.parametrize("fisher", ["true", "empirical"])
def test_kfac_equals_explicit_kronecker_product(digits_mlp, fisher):
    m, damping = digits_mlp, 1e-3
    solver = make_solver("kfac", fisher=fisher).fit(m.op_ggn, damping)
    dense = torch.zeros(m.p, m.p, dtype=DT)
    for layer, ((a, s), fitted) in enumerate(zip(hand_factors(m, fisher), solver.factors_, strict=True)):
        # The hooks see the same A and S as the closed-form backward pass (rounding only).
        assert torch.allclose(fitted.a_cov, a, rtol=1e-10, atol=1e-14)
        assert torch.allclose(fitted.s_cov, s, rtol=1e-10, atol=1e-14)
        idx = layer_index(m, layer)
        dense[idx[:, None], idx[None, :]] = torch.kron(s, a)
    ref = exact_solve(dense + L2 * torch.eye(m.p, dtype=DT), m.v, damping)
    # (S ⊗ A + (L2 + λ) I)^{-1} through the two eigenbases vs a dense solve; cond ≈ 100.
    assert rel_err(solver.solve(m.v), ref) < 1e-10
    assert rel_err(solver.curvature(ref), m.v - damping * ref) < 1e-10


def test_ekfac_eigenvalues_are_the_ggn_diagonal_in_the_kfac_basis(digits_mlp):
    """George et al. (2018), eq. 10: EK-FAC's eigenvalues are diag(Qᵀ G Q) for the exact
    Gauss-Newton block G in the K-FAC eigenbasis Q = Q_S ⊗ Q_A, hence the Frobenius-best
    approximation of G diagonal in that basis — at least as close to G as K-FAC."""
    m = digits_mlp
    ekfac = make_solver("ekfac").fit(m.op_ggn, 1e-3)
    kfac = make_solver("kfac").fit(m.op_ggn, 1e-3)
    for layer, (f, f_k) in enumerate(zip(ekfac.factors_, kfac.factors_, strict=True)):
        idx = layer_index(m, layer)
        block = m.ggn_loss[idx[:, None], idx[None, :]]
        basis = torch.kron(f.q_s, f.q_a)
        diagonal = torch.diagonal(basis.T @ block @ basis).reshape(f.eigenvalues.shape)
        assert torch.allclose(f.eigenvalues, diagonal, rtol=1e-9, atol=1e-12 * float(diagonal.max()))
        ek_err = torch.linalg.norm((basis * f.eigenvalues.reshape(-1)) @ basis.T - block)
        k_err = torch.linalg.norm((basis * f_k.eigenvalues.reshape(-1)) @ basis.T - block)
        assert ek_err <= k_err * (1 + 1e-12)


def test_ekfac_approximates_the_ggn_inverse_on_the_mlp(digits_mlp):
    m, damping = digits_mlp, 0.01
    ref = exact_solve(m.ggn, m.v, damping)
    errors = {}
    for name, opts in [("ekfac", {}), ("kfac", {}), ("ekfac", {"fisher": "empirical"})]:
        x = make_solver(name, **opts).fit(m.op_ggn, damping).solve(m.v)
        errors[(name, opts.get("fisher", "true"))] = rel_err(x, ref)
    # Block-diagonal (two layers) and Kronecker-factored: measured 0.162 (EK-FAC), 0.166 (K-FAC),
    # 0.191 (EK-FAC, empirical Fisher); asserted at 0.3 — far from a wrong solve (error ~1).
    assert max(errors.values()) < 0.3, errors
    # One sampled target per example (measured 0.170); same seed, same answer.
    sampled = make_solver("ekfac", mc_samples=1, random_state=5).fit(m.op_ggn, damping).solve(m.v)
    assert rel_err(sampled, ref) < 0.3
    assert torch.equal(sampled, make_solver("ekfac", mc_samples=1, random_state=5).fit(m.op_ggn, damping).solve(m.v))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_unknown_solver_and_bad_options(system):
    with pytest.raises(UnknownNameError, match="cg, lissa, arnoldi, ekfac"):
        make_solver("newton")
    with pytest.raises(InvalidParameterError, match="'tolerance'.*rtol"):
        make_solver("cg", tolerance=1e-3)
    for name, option, value in [
        ("lissa", "depth", 0), ("lissa", "scale", -1.0), ("lissa", "repeats", 1.5),
        ("arnoldi", "rank", 0), ("arnoldi", "complement", "zero"), ("cg", "rtol", -1e-3),
        ("cg", "on_negative_curvature", "ignore"), ("ekfac", "fisher", "sampled"),
        ("ekfac", "mc_samples", 0), ("exact", "rcond", 2.0), ("kfac", "random_state", -1),
        ("kfac", "eigenvalue_correction", True),
    ]:
        with pytest.raises(InvalidParameterError, match=f"'{option}'"):
            make_solver(name, **{option: value})
    with pytest.raises(InvalidParameterError, match="'mc_samples'"):
        make_solver("ekfac", fisher="empirical", mc_samples=3)
    assert set(SOLVERS) == {"exact", "cg", "lissa", "arnoldi", "ekfac", "kfac"}
    with pytest.raises(InvalidParameterError, match="'damping'"):
        make_solver("cg").fit(system.op, -1.0)
    with pytest.raises(InvalidParameterError, match="'n_iter'"):
        make_solver("arnoldi", rank=10, n_iter=5).fit(system.op, 0.0)
    with pytest.raises(InvalidParameterError, match="'batch_size'"):
        make_solver("lissa", batch_size=10).fit(system.op, 0.0)
    with pytest.raises(InvalidParameterError, match="'max_params'"):
        make_solver("exact", max_params=10).fit(system.op, 0.0)
    with pytest.raises(NotFittedError):
        make_solver("cg").solve(system.v)
    with pytest.raises(InvalidDataError, match="'v'"):
        make_solver("cg").fit(system.op, 0.1).solve(system.v[:, :5])
    with pytest.raises(InvalidParameterError, match="kfac"):
        make_solver("ekfac").fit(system.op, 0.1)
    # inverse_hvp: by name with options, or with an instance.
    ref = exact_solve(system.h, system.v, 0.1)
    assert rel_err(inverse_hvp(system.op, system.v, "cg", damping=0.1, rtol=1e-10), ref) < 1e-6
    assert rel_err(inverse_hvp(system.op, system.v, make_solver("exact"), damping=0.1), ref) < 1e-12


def test_ekfac_rejects_parameters_outside_linear_layers(digits_mlp):
    m = digits_mlp
    more = HessianOperator(n_params=m.p + 3, matvec=lambda v: v, kfac=m.source)
    with pytest.raises(InvalidParameterError, match=r"\[610, 613\) are not in any listed Linear or Conv2d"):
        make_solver("ekfac").fit(more, 0.1)
    with pytest.raises(InvalidParameterError, match="supports torch.nn.Linear and torch.nn.Conv2d"):
        KFACSource(
            module=m.module, layers=[("1", m.module[1])], param_slices=[(slice(0, 1), None)],
            batches=m.source.batches, loss_fn=m.source.loss_fn,
        )
    # Zero curvature (an unused input pixel) without damping cannot be inverted.
    with pytest.raises(SolverError, match="damping > 0"):
        make_solver("kfac").fit(
            HessianOperator(n_params=m.p, matvec=lambda v: v, kfac=_no_l2(m.source)), 0.0
        )


def _no_l2(source):
    return KFACSource(**{**source.__dict__, "l2": 0.0})


def test_float32_input_gives_float64_answer(system):
    x = make_solver("exact").fit(system.op, 0.01).solve(system.v.float())
    assert x.dtype == DT
    assert rel_err(x, exact_solve(system.h, system.v.float().double(), 0.01)) < 1e-12
    assert math.isfinite(float(x.sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_solver("cg", rtol=1e-10).fit(system.op, 0.01).solve(system.v)


def test_lissa_reports_progress_inside_a_solve():
    """LiSSA's recursion runs thousands of products per solve: it reports the fraction done,
    so the progress bar moves from the first seconds on."""
    import numpy as np

    from datavalue.attribution.solvers import make_solver

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    h = torch.as_tensor(a @ a.T + 6 * np.eye(6))
    op = HessianOperator(n_params=6, matvec=lambda v: v @ h)
    solver = make_solver("lissa", depth=400).fit(op, 0.0)
    seen: list[float] = []
    solver.progress_hook = seen.append
    x = solver.solve(torch.ones(2, 6, dtype=h.dtype))
    # One report per 1% of the 400 steps until the recursion reaches its fixed point exactly
    # (rtol=0 stops only then: here after about a third of the steps).
    assert len(seen) >= 10 and seen == sorted(seen) and 0 < seen[-1] <= 1.0
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(h.numpy(), np.ones((6, 2))).T,
                               rtol=1e-6)


def test_the_exact_solver_estimates_its_memory_before_allocating():
    # The sweep: a 50k-parameter exact solve with max_params raised grew to 24 GB and was
    # killed. The peak (about four p x p matrices) is compared with the available memory
    # first; nothing is built (the matvec would fail the test if it were called).
    from datavalue._core.validation import available_memory

    def never(v):
        raise AssertionError("the dense matrix was being built")

    p = 3_000_000  # 4 * 8 * p^2 = 262 TiB: more than any machine running this test
    op = HessianOperator(n_params=p, matvec=never)
    free = available_memory()
    if free is None:
        pytest.skip("this platform does not report its available memory")
    with pytest.raises(InvalidParameterError, match="only .* of memory is available.*cg"):
        make_solver("exact", max_params=10 * p).fit(op, 0.1)
    with pytest.raises(InvalidParameterError, match=r"'max_params'=20000.*solver_options="
                                                    r"\{'max_params': 3000000\}"):
        make_solver("exact").fit(op, 0.1)
