"""Small trained networks shared by the influence tests."""

from __future__ import annotations


def trained_tanh_net(n: int, d: int, hidden: int, weights: tuple[float, ...], max_iter: int):
    """A small tanh network trained (float64, full-batch L-BFGS) to near-stationarity on a
    seeded two-class problem, labels ``x[:, :k] @ weights + noise > 0``: ``(net, x, y)``."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(n, d, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    y = (x[:, : len(w)] @ w + 0.3 * torch.randn(n, dtype=torch.float64) > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, 2)).double()
    opt = torch.optim.LBFGS(net.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y) + 5e-3 * sum(
            (p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return net, x, y


def autograd_scores(inf, x, y, f, rows: int = 3):
    """``(1/n) grad f(z_t)^T (H + lambda I)^{-1} grad L(z_i)`` for the first ``rows`` test
    points, with ``grad f`` by plain autograd one test point at a time: the reference for
    vmapped measured influences. ``f(outputs_row, label) -> scalar``."""
    import numpy as np
    import torch

    from datavalue.attribution.gradients import per_example_gradients

    m = inf.model_
    train = per_example_gradients(m, inf._data)
    out_rows = []
    for t in range(rows):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in m.params.items()}
        value = f(m.forward(params, x[t:t + 1])[0], y[t])
        g = dict(zip(params, torch.autograd.grad(value, list(params.values())), strict=True))
        u = inf.solver_.solve(m.layout.flatten(g)[None])
        out_rows.append(((u @ train.T) / inf.n_train_)[0].numpy())
    return np.array(out_rows)
