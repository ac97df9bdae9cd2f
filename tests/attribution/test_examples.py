"""Torch Datasets and DataLoaders (tuple or dict batches) give the same scores as tensors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import datavalue as dv
from datavalue import DatavalueError, InvalidParameterError

from ._nets import autograd_scores, trained_tanh_net


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
    return trained_tanh_net(90, 6, 5, (1.0,), 300)


def _inf(net, **kw):
    kw.setdefault("solver", "exact")
    return dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), weight_decay=1e-2,
                                damping=1e-3, **kw)


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


# ---------------------------------------------------------------------------- streaming
class DiskDataset(Dataset):
    """Examples read from .npy files on disk one at a time (memory-mapped), as a data set larger
    than memory would be."""

    def __init__(self, folder):
        self.x = np.load(folder / "x.npy", mmap_mode="r")
        self.y = np.load(folder / "y.npy", mmap_mode="r")
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        return {"image": torch.from_numpy(np.array(self.x[i])), "label": int(self.y[i])}


class Stream(torch.utils.data.IterableDataset):
    """No random access: examples only in order."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


@pytest.fixture()
def on_disk(setup, tmp_path):
    net, x, y = setup
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    return DiskDataset(tmp_path)


@pytest.mark.parametrize("solver", ["exact", "cg", "arnoldi", "ekfac", "lissa"])
def test_a_dataset_streamed_from_disk_gives_the_scores_of_tensors(setup, on_disk, solver):
    # Identical blocks in the same order: the same floating-point operations, so agreement to
    # rounding (1e-12 relative) for the deterministic solvers and for LiSSA with its seed.
    net, x, y = setup
    opts = {"lissa": {"random_state": 0, "depth": 200, "scale": 10.0}, "arnoldi": {"rank": 20, "random_state": 0},
            }.get(solver, {})
    kw = dict(solver=solver, solver_options=opts, batch_size=16)
    # max_memory=0: nothing of size n x p is kept; every pass reads the files again.
    ref = _inf(net, max_memory=0.0, **kw).fit(x, y)
    streamed = _inf(net, max_memory=0.0, **kw).fit(DataLoader(on_disk, batch_size=5))
    assert streamed._train_grads._cache is None
    reads = on_disk.reads
    np.testing.assert_allclose(streamed.influence(x[:4], y[:4]), ref.influence(x[:4], y[:4]),
                               rtol=1e-10, atol=1e-14)
    assert on_disk.reads > reads  # the training set was read again, not held
    np.testing.assert_allclose(streamed.self_influence(), ref.self_influence(),
                               rtol=1e-10, atol=1e-14)


def test_every_method_works_without_random_access(setup):
    # An IterableDataset: chosen examples are found by a pass, the unlearning Hessian is summed
    # over a filtered pass.
    net, x, y = setup
    ref = _inf(net).fit(x, y)
    it = _inf(net).fit(DataLoader(Stream(x, y), batch_size=11))
    pick = [40, 3, 17]
    np.testing.assert_allclose(it.params_influence(pick), ref.params_influence(pick),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(it.perturbation_influence(x[:2], y[:2], pick),
                               ref.perturbation_influence(x[:2], y[:2], pick), rtol=1e-10,
                               atol=1e-14)
    np.testing.assert_allclose(it.margin_influence(Stream(x[:3], y[:3])),
                               ref.margin_influence(x[:3], y[:3]), rtol=1e-10, atol=1e-14)
    a, b = it.unlearn(pick, x[:3], y[:3]), ref.unlearn(pick, x[:3], y[:3])
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(it.losses(Stream(x, y), None), ref.losses(x, y), rtol=1e-12)


def test_batches_the_loss_cannot_read_are_named_before_any_work(setup):
    net, x, y = setup
    wrong_width = DataLoader(TensorDataset(x[:, :4], y), batch_size=8)
    with pytest.raises(dv.ModelOutputError,
                       match=r"could not be evaluated on a batch of 'x_train' \(inputs of shape "
                             r"\(90, 4\)"):
        _inf(net).fit(wrong_width)
    bad_label = y.clone()
    bad_label[13] = 7  # the network has 2 classes
    with pytest.raises(dv.ModelOutputError, match="'x_train'"):
        _inf(net).fit(DataLoader(TensorDataset(x, bad_label), batch_size=8))


def test_non_finite_losses_are_refused_naming_the_example(setup):
    net, x, y = setup
    huge = copy.deepcopy(net)
    with torch.no_grad():
        huge[2].bias[1] = float("inf")
    with pytest.raises(dv.ModelOutputError, match="loss of example 0 of 'x_train'"):
        _inf(huge).fit(DataLoader(TensorDataset(x, y), batch_size=8))


def test_data_that_changes_between_passes_is_refused(setup):
    net, x, y = setup

    class Shrinking(Dataset):
        def __init__(self):
            self.n = len(x)

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return x[i], y[i]

    data = Shrinking()
    inf = _inf(net, solver="cg").fit(DataLoader(data, batch_size=10))
    data.n = 50
    with pytest.raises(DatavalueError, match="gave 50 examples on this pass and 90 on the first"):
        inf.self_influence()


def test_a_model_left_in_train_mode_with_dropout_warns_and_is_scored_in_eval_mode(setup):
    net, x, y = setup
    with_dropout = torch.nn.Sequential(*list(copy.deepcopy(net)), torch.nn.Dropout(0.5)).train()
    with pytest.warns(UserWarning, match="train mode and has Dropout layers"):
        inf = _inf(with_dropout).fit(x, y)
    # eval mode: dropout is the identity, so the scores are the network's without it
    np.testing.assert_allclose(inf.self_influence(), _inf(net).fit(x, y).self_influence(),
                               rtol=1e-10)


def test_multiclass_margin_influence_of_a_torch_network_matches_autograd(setup):
    # The margin f_y - logsumexp_{k != y} f_k differentiated by plain autograd, one example at a
    # time, against the vmapped (masked) computation: agreement to rounding.
    net, x, y = setup
    inf = _inf(net).fit(x, y)

    def margin(out, label):
        k = int(label)
        return out[k] - torch.logsumexp(torch.cat([out[:k], out[k + 1:]]), 0)

    np.testing.assert_allclose(inf.margin_influence(x[:3], y[:3]),
                               -autograd_scores(inf, x, y, margin), rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------- loader order (issue 23)
@pytest.mark.parametrize("make_sampler", [
    lambda n: torch.utils.data.SubsetRandomSampler(list(range(n))),
    lambda n: list(np.random.default_rng(0).permutation(n)),
    lambda n: torch.utils.data.WeightedRandomSampler([1.0] * n, n),
], ids=["subset-random", "permutation", "weighted"])
def test_a_loader_whose_sampler_reorders_is_refused_not_scored_in_its_order(setup,
                                                                            make_sampler):
    # Scores are given by dataset index: a sampler's order would silently attach them to other
    # examples (the sweep found 6 of 6 top examples wrong).
    net, x, y = setup
    loader = DataLoader(TensorDataset(x, y), batch_size=16, sampler=make_sampler(len(x)))
    with pytest.raises(InvalidParameterError, match="sampler.*dataset's indices.*Subset"):
        _inf(net).fit(loader)
    with pytest.raises(InvalidParameterError, match="sampler"):
        dv.TracIn([net], torch.nn.CrossEntropyLoss()).fit(loader)


def test_a_custom_batch_sampler_is_refused(setup):
    net, x, y = setup
    batches = [list(range(i, min(i + 16, len(x)))) for i in range(0, len(x), 16)][::-1]
    with pytest.raises(InvalidParameterError, match="custom batch_sampler"):
        _inf(net).fit(DataLoader(TensorDataset(x, y), batch_sampler=batches))


def test_drop_last_is_refused_when_it_drops_and_harmless_when_it_does_not(setup):
    net, x, y = setup  # 90 examples
    with pytest.raises(InvalidParameterError, match="drop_last=True.*last 6 example"):
        _inf(net).fit(DataLoader(TensorDataset(x, y), batch_size=12, drop_last=True))
    whole = _inf(net).fit(DataLoader(TensorDataset(x, y), batch_size=15, drop_last=True))
    assert whole.self_influence().shape == (90,)
    np.testing.assert_array_equal(whole.self_influence(), _inf(net).fit(x, y).self_influence())


def test_an_iterable_dataset_that_reshuffles_every_pass_is_refused(setup):
    net, x, y = setup

    class Reshuffled(torch.utils.data.IterableDataset):
        def __init__(self):
            self.epoch = 0

        def __iter__(self):
            self.epoch += 1
            order = np.random.default_rng(self.epoch).permutation(len(x))
            for i in order:
                yield x[i], y[i]

    with pytest.raises(DatavalueError, match="another order.*shuffles"):
        # fit's second pass (the curvature) already sees the new order
        _inf(net, solver="cg").fit(DataLoader(Reshuffled(), batch_size=16)).self_influence()


def test_an_iterable_dataset_in_a_fixed_order_is_still_scored(setup):
    net, x, y = setup
    ref = _inf(net).fit(x, y)
    it = _inf(net).fit(DataLoader(Stream(x, y), batch_size=16))
    np.testing.assert_allclose(it.self_influence(), ref.self_influence(), rtol=1e-10)


def test_class_index_targets_of_shape_b_by_1_are_read_as_b(setup):
    # A DataLoader of one-element label lists collates to (b, 1): torch's loss failed with
    # an AssertionError that named nothing.
    net, x, y = setup
    ref = _inf(net).fit(x, y).self_influence()
    col = _inf(net).fit(DataLoader(TensorDataset(x, y[:, None]), batch_size=16))
    np.testing.assert_array_equal(col.self_influence(), ref)


def test_an_elementwise_loss_with_class_index_targets_is_refused(setup):
    # MSELoss broadcasts (b, 2) outputs against (b,) class indices with only a warning.
    net, x, y = setup
    with pytest.raises(DatavalueError, match="MSELoss compares outputs and targets entry by "
                                             "entry.*CrossEntropyLoss"):
        dv.InfluenceFunction(net, torch.nn.MSELoss(), damping=1e-3, solver="cg").fit(x, y)
