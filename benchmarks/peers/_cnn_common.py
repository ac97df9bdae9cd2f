"""What the CNN influence runners share (ours, Kronfluence's, dattri's): the network, the case
file, the training set read from disk.

Standard library, numpy and torch only (imported by runners in their own environments).

A case file (``.npz``, written by ``bench_cnn.py``) holds::

    kind            "cnn"
    x_train, y_train, x_test, y_test   images (n, 1, 8, 8) in [0, 1], labels 0..9
    p:<name>        the trained network's parameters (float64), by state-dict name
    weight_decay    L2 coefficient of the mean training objective (every parameter)

Beside it, ``<case>-x_train.npy`` and ``<case>-y_train.npy`` hold the training set again for
runs that read it from disk through a ``DataLoader`` (:class:`DiskImages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def build_cnn(dtype=None):
    """Conv(1->8, 3x3, pad 1) ReLU MaxPool(2) Conv(8->16, 3x3, pad 1) ReLU Flatten
    Linear(256 -> 10): 3,818 parameters on 8x8 digits."""
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    return net.to(dtype or torch.float64)


def load_case(path: str | Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as f:
        case = {k: f[k] for k in f.files}
    case["kind"] = str(case["kind"])
    case["weight_decay"] = float(case["weight_decay"])
    case["path"] = str(path)
    return case


def trained_cnn(case: dict[str, Any], dtype=None):
    """The case's network with its stored parameters, exactly (built in float64 first)."""
    import torch

    net = build_cnn(torch.float64)
    state = {k[2:]: torch.as_tensor(v) for k, v in case.items() if k.startswith("p:")}
    net.load_state_dict(state)
    return net.to(dtype or torch.float64).eval()


def tensors(case: dict[str, Any], dtype=None, *, n_test: int | None = None):
    import torch

    dtype = dtype or torch.float64
    xtr = torch.as_tensor(case["x_train"]).to(dtype)
    xte = torch.as_tensor(case["x_test"]).to(dtype)
    ytr = torch.as_tensor(case["y_train"]).long()
    yte = torch.as_tensor(case["y_test"]).long()
    if n_test is not None:
        xte, yte = xte[:n_test], yte[:n_test]
    return xtr, ytr, xte, yte


def disk_files(case_path: str | Path) -> tuple[Path, Path]:
    p = Path(case_path)
    return (p.with_name(p.stem + "-x_train.npy"), p.with_name(p.stem + "-y_train.npy"))


def write_disk_files(case_path: str | Path, x: np.ndarray, y: np.ndarray) -> None:
    fx, fy = disk_files(case_path)
    np.save(fx, x.astype(np.float64))
    np.save(fy, y.astype(np.int64))


class DiskImages:
    """The training images read one at a time from memory-mapped ``.npy`` files (a map-style
    torch Dataset: what a data set larger than memory looks like)."""

    def __init__(self, case_path: str | Path) -> None:
        fx, fy = disk_files(case_path)
        self.x = np.load(fx, mmap_mode="r")
        self.y = np.load(fy, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        import torch

        return {"image": torch.from_numpy(np.array(self.x[i])), "label": int(self.y[i])}


def warmup_case(case: dict[str, Any]) -> dict[str, Any]:
    """A tiny case of the same network (random weights, 16 train and 4 test images)."""
    import torch

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = build_cnn(torch.float64)
    tiny: dict[str, Any] = {"kind": "cnn", "weight_decay": 0.1, "path": None}
    tiny.update({f"p:{k}": v.detach().numpy() for k, v in net.state_dict().items()})
    for name, n in (("train", 16), ("test", 4)):
        tiny[f"x_{name}"] = rng.random((n, 1, 8, 8))
        tiny[f"y_{name}"] = np.arange(n) % 10
    return tiny
