"""Per-example gradients, curvature products and score blocks against plain-autograd references.

The references are written independently of ``torch.func``: a for-loop over examples with
``torch.autograd.grad``, and dense Hessians / Jacobians from ``torch.autograd.functional`` of a
hand-written objective over the flat parameter vector.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.linear_model import LogisticRegression  # noqa: E402

from datavalue.attribution.gradients import (  # noqa: E402
    TrainGradients,
    group_blocks,
    hessian_operator,
    mixed_input_gradients,
    open_score_file,
    per_example_gradients,
    score_matrix,
)
from datavalue.attribution.wrap import wrap_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)



N, D, H, K = 37, 4, 5, 3
WD = 0.03


@pytest.fixture(scope="module")
def mlp_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, K, (N,), generator=gen)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.Tanh(), torch.nn.Linear(H, K))
    return net, x, y


def _ref_outputs(flat, x):
    """The MLP above, written out over the flat parameter vector (layout order)."""
    i = 0
    w1 = flat[i : i + H * D].reshape(H, D)
    i += H * D
    b1 = flat[i : i + H]
    i += H
    w2 = flat[i : i + K * H].reshape(K, H)
    i += K * H
    b2 = flat[i : i + K]
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


def _ref_objective(flat, x, y, n_total):
    loss = torch.nn.functional.cross_entropy(_ref_outputs(flat, x), y, reduction="sum")
    return loss / n_total + 0.5 * WD * (flat**2).sum()


def _model(net, **kw):
    return wrap_model(net, torch.nn.CrossEntropyLoss(), weight_decay=WD, **kw)


def test_per_example_gradients_equal_for_loop(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    theta = m.theta.clone()
    ref = []
    for i in range(N):
        flat = theta.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(_ref_outputs(flat, x[i : i + 1]), y[i : i + 1])
        ref.append(torch.autograd.grad(loss, flat)[0])
    ref = torch.stack(ref)
    for bs in (1, 5, 100):
        g = per_example_gradients(m, x, y, batch_size=bs)
        assert g.shape == (N, m.n_params)
        torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-14)


def test_per_example_gradients_last_layer_only(mlp_data):
    net, x, y = mlp_data
    m = _model(net, params=[net[2]])
    full = per_example_gradients(_model(net), x, y)
    torch.testing.assert_close(per_example_gradients(m, x, y, batch_size=8), full[:, H * D + H :])


def test_logistic_gradients_are_analytic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=30) > 0).astype(int)
    est = LogisticRegression().fit(x, y)
    m = wrap_model(est, x_train=x, y_train=y)
    xt, yt = m.prepare(x, y, "x", "y")
    p = est.predict_proba(x)[:, 1]
    ref = (p - y)[:, None] * np.hstack([x, np.ones((30, 1))])
    np.testing.assert_allclose(per_example_gradients(m, xt, yt, batch_size=7).numpy(), ref,
                               atol=1e-12)


def test_hessian_matvec_and_dense_equal_autograd_hessian(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    ref = torch.autograd.functional.hessian(lambda f: _ref_objective(f, x, y, N), m.theta)
    op = hessian_operator(m, x, y, batch_size=10)
    v = torch.randn(6, m.n_params, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), v @ ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.dense(), ref, rtol=1e-10, atol=1e-12)
    assert op.n_params == m.n_params and op.n_samples == N and op.dtype == torch.float64


@pytest.mark.parametrize("single_batch", [4, 4096])
def test_single_vector_products_equal_the_hessian(mlp_data, monkeypatch, single_batch):
    """One vector goes through autograd double-backward, many through the vmapped path: both
    must give the same H v (with the regulariser; in one pass and over several batches)."""
    import datavalue.attribution.gradients as gradients_module

    monkeypatch.setattr(gradients_module, "_SINGLE_HVP_EXAMPLES", single_batch)
    net, x, y = mlp_data
    m = _model(net)
    ref = torch.autograd.functional.hessian(lambda f: _ref_objective(f, x, y, N), m.theta)
    op = hessian_operator(m, x, y, batch_size=3, dense_cache_max_params=0)
    v = torch.randn(3, m.n_params, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    for row in v:
        torch.testing.assert_close(op.matvec(row[None])[0], row @ ref, rtol=1e-10, atol=1e-12)
    # A subset operator (unlearning) and a minibatch product go through the same path.
    rows = torch.tensor([1, 2, 30])
    sub = hessian_operator(m, x, y, rows=rows, n_total=N, batch_size=2)
    ref_sub = torch.autograd.functional.hessian(
        lambda f: _ref_objective(f, x[rows], y[rows], N), m.theta)
    torch.testing.assert_close(sub.matvec(v[:1]), v[:1] @ ref_sub, rtol=1e-10, atol=1e-12)
    reg = WD * v[:1]  # the regulariser's Hessian is WD * I, in every product once
    torch.testing.assert_close(op.batch_matvec(v[:1], rows) - reg,
                               (sub.matvec(v[:1]) - reg) * N / len(rows), rtol=1e-10, atol=1e-12)


def test_operator_switches_to_a_cached_dense_hessian(mlp_data):
    """After more than p vector products the operator builds H once and multiplies by it: the
    products do not change, and dense() returns the same cached matrix."""
    net, x, y = mlp_data
    m = _model(net)
    p = m.n_params
    ref = torch.autograd.functional.hessian(lambda f: _ref_objective(f, x, y, N), m.theta)
    op = hessian_operator(m, x, y, batch_size=10)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):  # 3 x (p // 2 + 1) > p vectors: the last call uses the cached H
        v = torch.randn(p // 2 + 1, p, dtype=torch.float64, generator=gen)
        torch.testing.assert_close(op.matvec(v), v @ ref, rtol=1e-10, atol=1e-12)
    assert op.dense() is op.dense()
    uncached = hessian_operator(m, x, y, batch_size=10, dense_cache_max_params=p - 1)
    assert uncached.dense() is not uncached.dense()


def test_gauss_newton_equals_jt_h_j(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    theta = m.theta
    jac = torch.autograd.functional.jacobian(lambda f: _ref_outputs(f, x), theta)  # (N, K, p)
    p = torch.softmax(_ref_outputs(theta, x), dim=1)
    h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    eye = torch.eye(m.n_params, dtype=torch.float64)
    ref = torch.einsum("nkp,nkl,nlq->pq", jac, h_out, jac) / N + WD * eye
    op = hessian_operator(m, x, y, hessian="gauss-newton", batch_size=9)
    v = torch.randn(4, m.n_params, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), v @ ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.dense(), ref, rtol=1e-10, atol=1e-12)
    # PSD, unlike the exact Hessian of a non-convex network is allowed to be.
    assert torch.linalg.eigvalsh(op.dense()).min() > 0


@pytest.mark.parametrize("case", ["multinomial", "binary", "no-intercept", "ridge", "torch"])
def test_linear_model_dense_is_the_exact_hessian(case):
    # The dense Hessian of one linear layer is built blockwise (I_k kron [x, 1]); it must equal
    # k Hessian-vector products through autograd (generic path) to rounding.
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    y = rng.integers(0, 3, 50)
    if case == "torch":
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 3).double()
        m = wrap_model(layer, torch.nn.CrossEntropyLoss(), weight_decay=0.1)
    else:
        est = {"multinomial": LogisticRegression(C=0.5),
               "binary": LogisticRegression(C=0.5),
               "no-intercept": LogisticRegression(C=0.5, fit_intercept=False),
               "ridge": Ridge(alpha=2.0)}[case]
        if case == "binary":
            y = (y > 0).astype(int)
        elif case == "ridge":
            y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=50)
        est.fit(x, y)
        m = wrap_model(est, x_train=x, y_train=y)
    xt, yt = m.prepare(x, y, "x", "y")
    # a torch layer is linear in its parameters too, but only flagged so when wrapped from
    # scikit-learn: its Gauss-Newton matrix (built blockwise) is its exact Hessian
    kind = {"hessian": "gauss-newton"} if case == "torch" else {}
    op = hessian_operator(m, xt, yt, batch_size=16, **kind)
    exact = hessian_operator(m, xt, yt, batch_size=16, hessian="exact")
    eye = torch.eye(m.n_params, dtype=torch.float64)
    torch.testing.assert_close(op.dense(), exact.matvec(eye), rtol=1e-10, atol=1e-13)


def test_subset_and_minibatch_operators(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    rows = torch.tensor([0, 3, 4, 10, 20, 36])
    ref = torch.autograd.functional.hessian(lambda f: _ref_objective(f, x[rows], y[rows], N),
                                            m.theta)
    op = hessian_operator(m, x, y, rows=rows, n_total=N, batch_size=4)
    v = torch.randn(3, m.n_params, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), v @ ref, rtol=1e-10, atol=1e-12)
    assert op.n_samples == len(rows)
    # A minibatch product is unbiased: averaging over a partition of the rows gives H v.
    full = hessian_operator(m, x, y, batch_size=8)
    parts = [torch.arange(0, 20), torch.arange(20, N)]
    avg = sum(full.batch_matvec(v, idx) * len(idx) for idx in parts) / N
    torch.testing.assert_close(avg, full.matvec(v), rtol=1e-10, atol=1e-12)


def test_kfac_source_of_an_mlp(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    op = hessian_operator(m, x, y, batch_size=16)
    src = op.kfac
    assert src is not None and [n for n, _ in src.layers] == ["0", "2"]
    assert src.output_kind == "classification" and src.l2 == WD
    seen = sum(int(xb.shape[0]) for xb, _ in src.batches())
    assert seen == N
    out = src.module(x[:3])
    torch.testing.assert_close(src.loss_fn(out, y[:3]), m.losses(m.params, x[:3], y[:3]))


def test_mixed_input_gradients_equal_double_backward(mlp_data):
    net, x, y = mlp_data
    m = _model(net)
    u = torch.randn(2, m.n_params, dtype=torch.float64)
    got = mixed_input_gradients(m, u, x[:5], y[:5])
    assert got.shape == (2, 5, D)
    for k in range(2):
        for j in range(5):
            flat = m.theta.clone().requires_grad_(True)
            xj = x[j : j + 1].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(_ref_outputs(flat, xj), y[j : j + 1])
            (g,) = torch.autograd.grad(loss, flat, create_graph=True)
            (gx,) = torch.autograd.grad(g @ u[k], xj)
            torch.testing.assert_close(got[k, j], gx[0], rtol=1e-10, atol=1e-12)


def test_score_blocks_do_not_depend_on_block_size_or_caching(mlp_data, tmp_path):
    net, x, y = mlp_data
    m = _model(net)
    q = torch.randn(11, m.n_params, dtype=torch.float64)
    ref = (q @ per_example_gradients(m, x, y).T).numpy() / N
    results = []
    for bs, memory in ((4, 0), (16, 1e9), (100, 0)):
        train = TrainGradients(m, x, y, batch_size=bs, max_memory=memory)
        assert train.cacheable == (memory > 0)
        blocks = ((slice(s, min(s + 3, 11)), q[s : s + 3]) for s in range(0, 11, 3))
        results.append(score_matrix(blocks, train, (11, N), scale=1.0 / N))
    for r in results:
        np.testing.assert_allclose(r, ref, rtol=1e-12, atol=1e-15)
    # Written straight to a memory-mapped .npy file.
    target = open_score_file(tmp_path / "scores", (11, N))
    train = TrainGradients(m, x, y, batch_size=5, max_memory=0)
    out = score_matrix(iter([(slice(0, 11), q)]), train, (11, N), scale=1.0 / N, out=target)
    assert isinstance(out, np.memmap)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), ref, rtol=1e-12, atol=1e-15)


def test_group_blocks_merges_consecutive_rows_up_to_a_budget():
    blocks = [(slice(s, s + 2), torch.full((2, 3), float(s), dtype=torch.float64))
              for s in range(0, 10, 2)]
    # Two blocks per group; yielded tensors live in one reused buffer, so copy them to keep.
    grouped = [(rows, t.clone(), t.data_ptr())
               for rows, t in group_blocks(iter(blocks), max_bytes=4 * 3 * 8)]
    assert [g[0] for g in grouped] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    torch.testing.assert_close(torch.cat([g[1] for g in grouped]),
                               torch.cat([b[1] for b in blocks]))
    assert grouped[0][2] == grouped[1][2]  # the merged groups share one buffer
    assert grouped[2][2] == blocks[4][1].data_ptr()  # a lone block is passed through, not copied
    assert len(list(group_blocks(iter(blocks), max_bytes=0))) == 5
    # A gap in the rows ends a group; the budget is in bytes of whole rows.
    gap = [blocks[0], blocks[1], blocks[3]]
    assert [r for r, _ in group_blocks(iter(gap), max_bytes=1e9)] == [slice(0, 4), slice(6, 8)]
    big = [(slice(s, s + 1), torch.full((1, 3), float(s), dtype=torch.float64))
           for s in range(7)]
    out = [(r, t.clone()) for r, t in group_blocks(iter(big), max_bytes=3 * 3 * 8)]
    assert [r for r, _ in out] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    torch.testing.assert_close(torch.cat([t for _, t in out]), torch.cat([t for _, t in big]))
