"""The attribution benchmark's case file and models, shared by every runner (ours and dattri's).

Standard library, numpy and torch only (it is imported in dattri's virtual environment too).

A case file (``.npz``, written by ``bench_tracing.py``) holds::

    kind                    "lr" (nn.Linear(64, 10)) or "mlp" (64-128-64-10, ReLU, dropout 0.1:
                            dattri's MNIST MLP with 64 inputs)
    x_train, y_train, x_test, y_test
    final:<name>            the trained model's state dict (float32)
    ckpt<c>:<name>          TracIn checkpoints (end of evenly spaced epochs), lrs: their rates
    ens<s>:<name>           TRAK's ensemble: models trained on random halves, one seed each
    reg                     damping of the influence solvers (dattri's "regularization")
    lissa_scale             LiSSA's scale (1.5 x the top eigenvalue of H + reg I), both libraries
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def build(kind: str, dtype=None):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if kind == "lr":
        net = nn.Sequential(nn.Linear(64, 10))
    elif kind == "mlp":
        net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64),
                            nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    else:
        raise ValueError(kind)
    return net if dtype is None else net.to(dtype)


def load_case(path: str | os.PathLike) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as f:
        case = {k: f[k] for k in f.files}
    case["kind"] = str(case["kind"])
    case["path"] = str(path)
    return case


def state(case: dict[str, Any], prefix: str) -> dict[str, Any]:
    import torch

    return {k.split(":", 1)[1]: torch.as_tensor(v) for k, v in case.items()
            if k.startswith(prefix + ":")}


def model(case: dict[str, Any], prefix: str = "final", dtype=None):
    """A trained model of the case (``final``, ``ckpt<c>`` or ``ens<s>``), in eval mode."""
    import torch

    net = build(case["kind"])
    net.load_state_dict(state(case, prefix))
    net = net.to(dtype or torch.float32)
    return net.eval()


def n_members(case: dict[str, Any], prefix: str) -> int:
    return len({k.split(":", 1)[0] for k in case if k.startswith(prefix) and ":" in k})


def tensors(case: dict[str, Any], dtype=None, n_test: int | None = None):
    import torch

    dtype = dtype or torch.float32
    xte, yte = case["x_test"], case["y_test"]
    if n_test:
        xte, yte = xte[:n_test], yte[:n_test]
    return (torch.as_tensor(case["x_train"], dtype=dtype), torch.as_tensor(case["y_train"]),
            torch.as_tensor(xte, dtype=dtype), torch.as_tensor(yte))


def warmup_case(case: dict[str, Any]) -> dict[str, Any]:
    """A tiny case of the same kind (20 train, 5 test, untrained models), run untimed first."""
    import torch

    rng = np.random.default_rng(0)
    tiny: dict[str, Any] = {"kind": case["kind"], "reg": case["reg"],
                            "lissa_scale": case["lissa_scale"], "lrs": case["lrs"][:2]}
    for name, n in (("train", 20), ("test", 5)):
        tiny[f"x_{name}"] = rng.normal(size=(n, 64)).astype(np.float32)
        tiny[f"y_{name}"] = np.arange(n) % 10
    net = build(case["kind"])
    for prefix in ("final", "ckpt0", "ckpt1", "ens0", "ens1"):
        for k, v in net.state_dict().items():
            tiny[f"{prefix}:{k}"] = v.detach().numpy()
    del torch
    return tiny
