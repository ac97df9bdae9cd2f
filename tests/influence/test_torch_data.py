"""Torch Datasets and DataLoaders (tuple or dict batches) give the same scores as tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import datavalue as dv
from datavalue.exceptions import DatavalueError, InvalidParameterError


class DictDataset(Dataset):
    """Examples as dicts, as many real pipelines yield them."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "label": self.y[i], "id": i}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    x = torch.randn(90, 6, dtype=torch.float64)
    y = (x[:, 0] + 0.3 * torch.randn(90, dtype=torch.float64) > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    net = net.double()
    opt = torch.optim.LBFGS(net.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y) + 5e-3 * sum(
            (p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return net, x, y


def _inf(net, **kw):
    return dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact",
                                weight_decay=1e-2, damping=1e-3, **kw)


@pytest.mark.parametrize("batch_size", [1, 7, 90])
def test_tensors_datasets_and_dict_loaders_give_identical_scores(setup, batch_size):
    net, x, y = setup
    ref = _inf(net).fit(x, y)
    expected = ref.influence(x[:5], y[:5])
    tuple_loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    a = _inf(net).fit(tuple_loader)
    np.testing.assert_array_equal(a.influence(DataLoader(TensorDataset(x[:5], y[:5]))),
                                  expected)
    dict_loader = DataLoader(DictDataset(x, y), batch_size=batch_size)
    read = lambda b: (b["pixels"], b["label"])  # noqa: E731
    b = _inf(net, batch_fn=read).fit(dict_loader)
    np.testing.assert_array_equal(b.influence(x[:5], y[:5]), expected)
    np.testing.assert_array_equal(b.self_influence(), ref.self_influence())
    top = b.top_k(DataLoader(DictDataset(x[:2], y[:2])), k=3)
    np.testing.assert_array_equal(top.helpful, ref.top_k(x[:2], y[:2], k=3).helpful)


def test_a_map_style_dataset_with_known_keys_needs_no_batch_fn(setup):
    net, x, y = setup

    class Keyed(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return {"input": x[i], "target": y[i]}

    ref = _inf(net).fit(x, y).self_influence()
    np.testing.assert_array_equal(_inf(net).fit(Keyed()).self_influence(), ref)


def test_unreadable_batches_and_misuse_get_clear_errors(setup):
    net, x, y = setup
    with pytest.raises(DatavalueError, match="dicts with keys 'pixels', 'label', 'id'"):
        _inf(net).fit(DataLoader(DictDataset(x, y), batch_size=8))
    with pytest.raises(DatavalueError, match="'batch_fn' failed"):
        _inf(net, batch_fn=lambda b: (b["nope"], b["label"])).fit(
            DataLoader(DictDataset(x, y)))
    with pytest.raises(InvalidParameterError, match="shuffle=True"):
        _inf(net).fit(DataLoader(TensorDataset(x, y), shuffle=True))
    with pytest.raises(InvalidParameterError, match="leave 'y_train' out"):
        _inf(net).fit(DataLoader(TensorDataset(x, y)), y)
    with pytest.raises(InvalidParameterError, match="'y_train' is required"):
        _inf(net).fit(x)
    triples = DataLoader(TensorDataset(x, y, y), batch_size=8)
    with pytest.raises(DatavalueError, match="batch_fn"):
        _inf(net).fit(triples)
