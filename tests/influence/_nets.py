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
