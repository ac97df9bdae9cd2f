"""TracIn, Grad-Dot, Grad-Cos and TRAK against their closed forms, and the projection's
Johnson-Lindenstrauss guarantee."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from datavalue import (  # noqa: E402
    InvalidParameterError,
    ModelOutputError,
    StoreMismatchError,
)
from datavalue.attribution import TRAK, GradCos, GradDot, TracIn  # noqa: E402
from datavalue.attribution.projection import jl_tolerance  # noqa: E402

N, D, K = 60, 6, 3


def _data(seed: int = 0, n: int = N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    y = rng.integers(0, K, n)
    return x, y


def _linear(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(D, K).double()


def _softmax(net, x):
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(x)), 1).numpy()


def _loss_grads(net, x, y):
    """Closed form of the cross-entropy gradients of a linear softmax model:
    ``(p - e_y) x^T`` for the weights and ``p - e_y`` for the bias, flattened."""
    r = _softmax(net, x) - np.eye(K)[y]
    return np.concatenate([(r[:, :, None] * x[:, None, :]).reshape(len(x), -1), r], 1)


def _margin_grads(net, x, y):
    """Closed form of the gradients of the margin ``f_y - logsumexp_{k != y} f_k``:
    ``d m / d f = e_y - softmax over the other classes``."""
    with torch.no_grad():
        f = net(torch.as_tensor(x)).numpy()
    others = np.where(np.eye(K)[y] > 0, -np.inf, f)
    soft = np.exp(others - others.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    r = np.eye(K)[y] - soft
    return np.concatenate([(r[:, :, None] * x[:, None, :]).reshape(len(x), -1), r], 1)


CE = torch.nn.CrossEntropyLoss()


# ------------------------------------------------------------------ TracIn family
def test_grad_dot_equals_the_closed_form_of_a_linear_model():
    # <grad L(z_t), grad L(z_i)> = (r_t . r_i) (x_t . x_i + 1) for a linear softmax model.
    x, y = _data()
    net = _linear()
    gd = GradDot(net, CE).fit(x, y)
    r = _softmax(net, x) - np.eye(K)[y]
    expected = (r[:8] @ r.T) * (x[:8] @ x.T + 1.0)
    np.testing.assert_allclose(gd.influence(x[:8], y[:8]), expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gd.self_influence(), np.diag(r @ r.T) * ((x * x).sum(1) + 1),
                               rtol=1e-10)


def test_grad_dot_on_a_scikit_learn_logistic_regression():
    # Binary log-loss: grad = (p - y) [x, 1]; the estimator's own (unregularised) loss.
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    y = (x[:, 0] + 0.5 * rng.normal(size=50) > 0).astype(int)
    est = LogisticRegression().fit(x, y)
    gd = GradDot(est).fit(x, y)
    resid = est.predict_proba(x)[:, 1] - y
    xb = np.hstack([x, np.ones((50, 1))])
    expected = np.outer(resid[:5], resid) * (xb[:5] @ xb.T)
    np.testing.assert_allclose(gd.influence(x[:5], y[:5]), expected, rtol=1e-9, atol=1e-12)


def test_tracin_sums_checkpoints_weighted_by_their_learning_rates():
    x, y = _data()
    nets = [_linear(s) for s in range(3)]
    rates = [0.5, 0.1, 0.02]
    tr = TracIn(nets, CE, learning_rates=rates).fit(x, y)
    expected = sum(lr * _loss_grads(n, x[:6], y[:6]) @ _loss_grads(n, x, y).T
                   for n, lr in zip(nets, rates, strict=True))
    np.testing.assert_allclose(tr.influence(x[:6], y[:6]), expected, rtol=1e-10, atol=1e-13)
    expected_self = sum(lr * (_loss_grads(n, x, y) ** 2).sum(1)
                        for n, lr in zip(nets, rates, strict=True))
    np.testing.assert_allclose(tr.self_influence(), expected_self, rtol=1e-10)


def test_checkpoints_as_state_dict_files(tmp_path):
    x, y = _data()
    nets = [_linear(s) for s in range(2)]
    paths = []
    for k, n in enumerate(nets):
        paths.append(tmp_path / f"epoch{k}.pt")
        torch.save(n.state_dict(), paths[-1])
    from_files = TracIn(paths, CE, learning_rates=0.1, module=_linear(9)).fit(x, y)
    from_modules = TracIn(nets, CE, learning_rates=0.1).fit(x, y)
    np.testing.assert_array_equal(from_files.influence(x[:4], y[:4]),
                                  from_modules.influence(x[:4], y[:4]))
    with pytest.raises(InvalidParameterError, match="module"):
        TracIn(paths, CE).fit(x, y)
    with pytest.raises(InvalidParameterError, match="no file"):
        TracIn([tmp_path / "missing.pt"], CE, module=_linear()).fit(x, y)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(InvalidParameterError, match="not a torch state dict"):
        TracIn([tmp_path / "junk.pt"], CE, module=_linear()).fit(x, y)


def test_grad_cos_is_scale_invariant_and_bounded():
    x, y = _data()
    net = _linear()

    def scaled(out, t):
        return 7.0 * torch.nn.functional.cross_entropy(out, t, reduction="none")

    cos = GradCos(net, CE).fit(x, y).influence(x[:10], y[:10])
    cos_scaled = GradCos(net, scaled).fit(x, y).influence(x[:10], y[:10])
    np.testing.assert_allclose(cos, cos_scaled, rtol=1e-10, atol=1e-12)
    dot = GradDot(net, CE).fit(x, y).influence(x[:10], y[:10])
    dot_scaled = GradDot(net, scaled).fit(x, y).influence(x[:10], y[:10])
    np.testing.assert_allclose(dot_scaled, 49.0 * dot, rtol=1e-10)
    assert np.all(np.abs(cos) <= 1 + 1e-12)
    np.testing.assert_allclose(np.diag(cos[:, :10]), 1.0, rtol=1e-12)
    g = _loss_grads(net, x, y)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, g[:10] @ g.T, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ TRAK
@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_trak_without_projection_equals_its_closed_form(damping):
    # One model, proj_dim >= p (so no projection noise): phi_t (Phi^T Phi + lambda I)^+ Phi^T
    # diag(1 - p), with phi the margin gradients; float64 to 1e-8.
    x, y = _data()
    net = _linear()
    trak = TRAK(net, proj_dim=10_000, damping=damping, dtype="float64").fit(x, y)
    assert trak.projection_ is None and trak.proj_dim_ == trak.n_params_ == D * K + K
    m = _margin_grads(net, x, y)
    kernel = np.linalg.pinv(m.T @ m + damping * np.eye(m.shape[1]), rcond=1e-12)
    q = 1.0 - _softmax(net, x)[np.arange(N), y]
    expected = (m[:7] @ kernel @ m.T) * q
    np.testing.assert_allclose(trak.influence(x[:7], y[:7]), expected, rtol=1e-8,
                               atol=1e-10 * np.abs(expected).max())
    np.testing.assert_allclose(trak.out_to_loss_, q, rtol=1e-12)
    np.testing.assert_allclose(trak.self_influence(), np.einsum("ij,jk,ik->i", m, kernel, m) * q,
                               rtol=1e-8, atol=1e-12)


def test_trak_ensemble_averages_kernels_and_weights_separately():
    x, y = _data()
    nets = [_linear(s) for s in (0, 1)]
    trak = TRAK(nets, proj_dim=None, dtype="float64").fit(x, y)
    parts, qs = [], []
    for n in nets:
        m = _margin_grads(n, x, y)
        parts.append(m[:5] @ np.linalg.pinv(m.T @ m, rcond=1e-12) @ m.T)
        qs.append(1.0 - _softmax(n, x)[np.arange(N), y])
    expected = np.mean(parts, axis=0) * np.mean(qs, axis=0)
    np.testing.assert_allclose(trak.influence(x[:5], y[:5]), expected, rtol=1e-8,
                               atol=1e-10 * np.abs(expected).max())


def test_trak_binary_one_logit_margin():
    # One output: margin = s f(x), 1 - p = sigmoid(-margin).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(np.float64)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0)).double()
    trak = TRAK(net, proj_dim=None, dtype="float64").fit(x, y)
    s = np.where(y > 0, 1.0, -1.0)
    xb = np.hstack([x, np.ones((40, 1))])
    m = s[:, None] * xb
    with torch.no_grad():
        f = net(torch.as_tensor(x)).numpy()
    q = 1.0 / (1.0 + np.exp(s * f))
    expected = (m[:4] @ np.linalg.inv(m.T @ m) @ m.T) * q
    np.testing.assert_allclose(trak.influence(x[:4], y[:4]), expected, rtol=1e-8)


def test_projected_tracin_approximates_exact_tracin():
    x, y = _data(n=200)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, K)).double()  # p = 643
    exact = GradDot(net, CE).fit(x, y)
    proj = GradDot(net, CE, proj_dim=256, random_state=0, projection="gaussian").fit(x, y)
    assert proj.proj_dim_ == 256 and proj.projection_ is not None
    e, a = exact.influence(x[:30], y[:30]), proj.influence(x[:30], y[:30])
    norms = np.sqrt(exact.self_influence())
    assert (np.abs(a - e) / np.outer(norms[:30], norms)).max() <= jl_tolerance(256)
    # the ranking is kept too (measured 0.967 with this seed)
    assert np.corrcoef(e.ravel(), a.ravel())[0, 1] > 0.95


def test_same_scores_for_any_batch_size_and_seed_reproducible():
    x, y = _data(n=120)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, K)).double()
    kw = dict(proj_dim=40, random_state=5, dtype="float64")
    a = TRAK(net, batch_size=7, **kw).fit(x, y).influence(x[:20], y[:20])
    b = TRAK(net, batch_size=120, **kw).fit(x, y).influence(x[:20], y[:20])
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(a).max())
    c = TRAK(net, batch_size=7, **kw).fit(x, y).influence(x[:20], y[:20])
    np.testing.assert_array_equal(a, c)
    d = TRAK(net, batch_size=7, proj_dim=40, random_state=6, dtype="float64").fit(x, y).influence(
        x[:20], y[:20])
    assert not np.allclose(a, d)
    t1 = TracIn([net, net], CE, learning_rates=[1, 2], batch_size=5, proj_dim=30).fit(x, y)
    t2 = TracIn([net, net], CE, learning_rates=[1, 2], batch_size=64, proj_dim=30).fit(x, y)
    np.testing.assert_allclose(t1.influence(x[:9], y[:9]), t2.influence(x[:9], y[:9]),
                               rtol=1e-9, atol=1e-12)


class _DictImages(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


@pytest.mark.parametrize("cls", ["tracin", "trak"])
def test_datasets_and_loaders_with_dict_batches_give_the_scores_of_tensors(cls):
    x, y = _data(n=50)
    net = _linear()

    def make():
        if cls == "trak":
            return TRAK(net, proj_dim=12, dtype="float64", batch_size=8)
        return TracIn([net, _linear(2)], CE, learning_rates=[1.0, 0.5], proj_dim=12,
                      batch_size=8)

    ref = make().fit(x, y)
    loader = torch.utils.data.DataLoader(_DictImages(x, y), batch_size=13,
                                         collate_fn=lambda items: {
                                             "x": torch.stack([i["image"] for i in items]),
                                             "y": torch.stack([i["label"] for i in items])})
    streamed = make().fit(loader)
    test = torch.utils.data.DataLoader(_DictImages(x[:9], y[:9]), batch_size=4,
                                       collate_fn=loader.collate_fn)
    np.testing.assert_allclose(streamed.influence(test), ref.influence(x[:9], y[:9]),
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(streamed.self_influence(), ref.self_influence(), rtol=1e-10)
    top = streamed.top_k(test, k=3)
    full = ref.influence(x[:9], y[:9])
    np.testing.assert_array_equal(top.helpful, np.argsort(-full, axis=1, kind="stable")[:, :3])
    np.testing.assert_array_equal(top.harmful, np.argsort(full, axis=1, kind="stable")[:, :3])


def test_self_influence_finds_flipped_labels():
    # Pruthi et al. (Sec. 4.1): mislabeled examples carry large self-influence. Digits 0-4,
    # 10% of the labels flipped, a softmax regression trained to convergence.
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = load_digits(n_class=5, return_X_y=True)
    x = x[:400] / 16.0
    y = y[:400].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(400, 40, replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 5, 40)) % 5
    est = LogisticRegression(C=1.0, max_iter=3000).fit(x, y)
    is_flipped = np.isin(np.arange(400), flipped)
    auc_tracin = roc_auc_score(is_flipped, GradDot(est).fit(x, y).self_influence())
    auc_trak = roc_auc_score(is_flipped, TRAK(est, proj_dim=None).fit(x, y).self_influence())
    assert auc_tracin > 0.95, auc_tracin  # measured 0.9994
    assert auc_trak > 0.95, auc_trak  # measured 0.9990


# ------------------------------------------------------------------ store
def test_store_keeps_projected_features_and_refuses_other_settings(tmp_path):
    x, y = _data(n=80)
    net = _linear()
    folder = tmp_path / "trak"
    first = TRAK([net, _linear(1)], proj_dim=10, store=folder).fit(x, y)
    scores = first.influence(x[:5], y[:5])
    files = {p.name for p in folder.iterdir()}
    assert {"train-features.npy", "train-kernel-features.npy", "kernel-ranks.npy"} <= files
    passes = []

    class Counted(TRAK):
        def _feature_blocks(self, data, fns, desc):
            passes.append(desc)
            yield from super()._feature_blocks(data, fns, desc)

    again = Counted([net, _linear(1)], proj_dim=10, store=folder).fit(x, y)
    assert passes == []  # the training features were read from the store, not recomputed
    assert again.rank_ == first.rank_ == [10, 10]
    np.testing.assert_array_equal(again.influence(x[:5], y[:5]), scores)
    np.testing.assert_array_equal(again.self_influence(), first.self_influence())
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    for change, match in (
            (dict(proj_dim=11), "proj_dim"),
            (dict(random_state=1), "random_state"),
            (dict(damping=0.5), "damping"),
    ):
        with pytest.raises(StoreMismatchError, match=match):
            TRAK([net, _linear(1)], store=folder, **{"proj_dim": 10, **change}).fit(x, y)
    with pytest.raises(StoreMismatchError, match="the model"):
        TRAK([net, _linear(2)], proj_dim=10, store=folder).fit(x, y)
    with pytest.raises(StoreMismatchError, match="training data"):
        TRAK([net, _linear(1)], proj_dim=10, store=folder).fit(x[:79], y[:79])
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    tr_folder = tmp_path / "tracin"
    a = TracIn([net], CE, proj_dim=8, store=tr_folder).fit(x, y).influence(x[:3], y[:3])
    b = TracIn([net], CE, proj_dim=8, store=tr_folder).fit(x, y).influence(x[:3], y[:3])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(StoreMismatchError, match="learning_rates"):
        TracIn([net], CE, proj_dim=8, learning_rates=0.5, store=tr_folder).fit(x, y)


def test_store_is_reused_by_another_process(tmp_path):
    import subprocess
    import sys
    import textwrap

    x, y = _data(n=40)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    torch.save(_linear().state_dict(), tmp_path / "net.pt")
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch
        from datavalue.attribution import TRAK
        d = np.load({str(tmp_path / 'data.npz')!r})
        net = torch.nn.Linear({D}, {K}).double()
        trak = TRAK([{str(tmp_path / 'net.pt')!r}], module=net, proj_dim=9,
                    store={str(tmp_path / 'store')!r}).fit(d["x"], d["y"])
        np.save(sys.argv[1], trak.influence(d["x"][:4], d["y"][:4]))
    """)
    for out in ("a.npy", "b.npy"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / out)], check=True,
                       timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


# ------------------------------------------------------------------ errors
def test_bad_inputs_are_named():
    x, y = _data()
    net = _linear()
    with pytest.raises(InvalidParameterError, match="learning_rates"):
        TracIn([net, net], CE, learning_rates=[1, 2, 3]).fit(x, y)
    with pytest.raises(InvalidParameterError, match="learning_rates"):
        TracIn([net], CE, learning_rates=-1.0).fit(x, y)
    with pytest.raises(InvalidParameterError, match="empty"):
        TracIn([], CE).fit(x, y)
    with pytest.raises(InvalidParameterError, match="one architecture"):
        TRAK([net, torch.nn.Linear(D, K, bias=False).double()]).fit(x, y)
    with pytest.raises(InvalidParameterError, match="custom 'output'"):
        TRAK(net, output=lambda o, t: o[:, 0]).fit(x, y)
    with pytest.raises(InvalidParameterError, match="proj_dim"):
        TRAK(net, proj_dim=0).fit(x, y)
    with pytest.raises(InvalidParameterError, match="y_train"):
        TRAK(net).fit(x)
    with pytest.raises(InvalidParameterError, match="'measure'"):
        TRAK(net, proj_dim=None).fit(x, y).influence(x[:2], y[:2], measure=lambda o, t: o[:, 0])
    with pytest.raises(InvalidParameterError, match="takes one trained model"):
        GradDot([net, net], CE).fit(x, y)
    with pytest.raises(InvalidParameterError, match="max_memory"):
        TracIn(net, CE, max_memory=100).fit(x, y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TRAK(net).influence(x, y)
    x_nan = x.copy()
    x_nan[5, 2] = np.nan
    with pytest.raises(Exception, match="x_train.*NaN"):
        GradDot(net, CE).fit(x_nan, y)

    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(D, K).double()

        def forward(self, inp):
            return self.lin(inp) / (inp[:, :1] - inp[:, :1])  # 0/0 -> NaN

    with pytest.raises(ModelOutputError, match="not finite"):
        GradDot(Exploding(), CE).fit(x, y)


def test_custom_output_with_unit_weights():
    # A regression output: the features are the gradients of f itself, weights 1.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3))
    y = x @ np.array([1.0, -2.0, 0.5])
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).double()
    trak = TRAK(net, torch.nn.MSELoss(), output=lambda o, t: o[:, 0], weights="none",
                proj_dim=None, dtype="float64").fit(x, y)
    xb = np.hstack([x, np.ones((30, 1))])
    expected = xb[:4] @ np.linalg.inv(xb.T @ xb) @ xb.T
    np.testing.assert_allclose(trak.influence(x[:4], y[:4]), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(trak.out_to_loss_, 1.0)


def test_every_attributor_shares_one_engine_for_top_k_losses_and_fitted_checks():
    # top_k is written once (engine.Attributor): for every method it equals the argsort of
    # its own influence matrix, ties broken by the lower index.
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    import datavalue as dv
    from datavalue.attribution.engine import Attributor

    ds = dv.load_dataset("breast_cancer", random_state=0)
    model = LogisticRegression(max_iter=2000).fit(ds.x_train, ds.y_train)
    x, y = ds.x_test[:4], ds.y_test[:4]
    methods = [dv.InfluenceFunction(model, solver="exact"), dv.GradDot(model),
               dv.GradCos(model), dv.TRAK(model, proj_dim=None)]
    for m in methods:
        assert isinstance(m, Attributor)
        with pytest.raises(NotFittedError, match=f"This {type(m).__name__} is not fitted"):
            m.top_k(x, y, k=3)
        m.fit(ds.x_train, ds.y_train)
        scores = m.influence(x, y)
        top = m.top_k(x, y, k=3)
        np.testing.assert_array_equal(top.helpful, np.argsort(-scores, axis=1,
                                                              kind="stable")[:, :3])
        np.testing.assert_allclose(top.harmful_scores, np.sort(scores, axis=1)[:, :3],
                                   rtol=1e-12, atol=1e-15)
    p = model.predict_proba(x)[np.arange(4), y]
    for m in methods[1:]:  # the same per-example loss for the tracers as for influence
        # The tracers compute in float32: log-losses near 0 carry its absolute rounding (~1e-7).
        np.testing.assert_allclose(m.losses(x, y), -np.log(p), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(methods[0].losses(x, y), -np.log(p), rtol=1e-8)
