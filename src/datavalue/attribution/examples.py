"""The examples an influence computation reads: tensors held in memory, or a torch ``Dataset`` /
``DataLoader`` streamed batch by batch.

Every computation (gradients, Hessian-vector products, (E)K-FAC statistics, scores) reads its
examples through :class:`Examples`: ``blocks(batch_size)`` serves consecutive rows in blocks of
exactly ``batch_size`` (the last may be shorter), already validated and converted for the model,
and ``take(indices)`` a chosen few. :class:`StreamedExamples` reads a dataset or loader again on
every pass and holds one block at a time, so neither the training set nor its ``n x p``
gradients need to fit in memory (Kronfluence and TRAK read their data the same way). Its blocks
are re-cut from the loader's batches, so any loader batch size gives the same blocks and the same
scores.

Batches may be tuples ``(inputs, targets)``, dicts (keys such as ``"x"``/``"input"`` and
``"y"``/``"label"``) or anything a user's ``batch_fn(batch) -> (inputs, targets)`` reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.fingerprint import hash_batch

__all__ = ["is_torch_data", "Examples", "TensorExamples", "StreamedExamples", "gather_examples",
           "check_examples_args", "model_examples"]

#: Keys tried, in order, for the inputs and the targets of a dict batch.
INPUT_KEYS = ("x", "input", "inputs", "image", "images", "features", "pixel_values")
TARGET_KEYS = ("y", "target", "targets", "label", "labels")


def is_torch_data(obj: Any) -> bool:
    """Whether ``obj`` is a torch ``Dataset`` or ``DataLoader`` (without importing torch)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return False
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    return isinstance(obj, DataLoader | Dataset | IterableDataset)


def ordered_loader(data: Any, name: str, batch_size: int = 256) -> tuple[Any, bool]:
    """A DataLoader reading ``data`` (a Dataset, or a DataLoader that must not shuffle) in a
    fixed order, and whether position ``i`` is ``dataset[i]`` (random access possible)."""
    from torch.utils.data import (
        BatchSampler,
        DataLoader,
        IterableDataset,
        RandomSampler,
        SequentialSampler,
    )

    if not isinstance(data, DataLoader):
        return (DataLoader(data, batch_size=batch_size, shuffle=False),
                not isinstance(data, IterableDataset))
    if getattr(data, "drop_last", False) and data.batch_size:
        size = len(data.dataset) if hasattr(data.dataset, "__len__") else None
        dropped = None if size is None else size % data.batch_size
        if dropped != 0:  # nothing is dropped when the batches divide the data exactly
            raise InvalidParameterError(
                f"'{name}' is a DataLoader with drop_last=True, which leaves out the last "
                f"{dropped if dropped is not None else 'few'} example(s): influence needs every "
                "example. Give a loader with drop_last=False (or its dataset).")
    sampler = data.sampler
    if data.batch_sampler is not None and not isinstance(data.batch_sampler, BatchSampler):
        raise InvalidParameterError(
            f"'{name}' is a DataLoader with a custom batch_sampler "
            f"({type(data.batch_sampler).__name__}): scores must refer to the dataset's "
            "indices, so give the dataset itself or a loader that reads it in order (no "
            "sampler, shuffle=False); for a part of it use torch.utils.data.Subset.")
    if isinstance(data.batch_sampler, BatchSampler):
        sampler = data.batch_sampler.sampler
    if isinstance(sampler, RandomSampler):
        raise InvalidParameterError(
            f"'{name}' is a DataLoader with shuffle=True: influence scores refer to examples by "
            "position, so give the loader without shuffling (or its dataset).")
    if not isinstance(data.dataset, IterableDataset) and not isinstance(sampler,
                                                                         SequentialSampler):
        # A sampler (SubsetRandomSampler, a permutation, a weighted sampler) reorders or
        # repeats examples: position i of the loader is not dataset[i], and scores given in the
        # loader's order would silently name the wrong training examples.
        raise InvalidParameterError(
            f"'{name}' is a DataLoader with a sampler ({type(sampler).__name__}): scores must "
            "refer to "
            "the dataset's indices, so give the dataset itself or a loader that reads it in "
            "order (no sampler, shuffle=False); for a part of it use "
            "torch.utils.data.Subset(dataset, indices).")
    # An IterableDataset has no indices: positions are the order of its first pass, and every
    # later pass is checked to give the same examples in the same order (StreamedExamples).
    return data, (not isinstance(data.dataset, IterableDataset))


def split_batch(batch: Any, batch_fn: Callable | None, name: str) -> tuple[Any, Any]:
    """``(inputs, targets)`` of one batch of ``name``, or a clear error saying how to read it."""
    if batch_fn is not None:
        try:
            out = batch_fn(batch)
        except Exception as exc:
            raise InvalidDataError(f"'batch_fn' failed on a batch of '{name}': "
                                   f"{type(exc).__name__}: {exc}") from exc
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise InvalidParameterError("'batch_fn' must return (inputs, targets) for a batch; "
                                        f"it returned {type(out).__name__}.")
        return out[0], out[1]
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        xk = next((k for k in INPUT_KEYS if k in batch), None)
        yk = next((k for k in TARGET_KEYS if k in batch), None)
        if xk is not None and yk is not None:
            return batch[xk], batch[yk]
        keys = ", ".join(map(repr, list(batch)[:8]))
        raise InvalidDataError(
            f"The batches of '{name}' are dicts with keys {keys}; none is a known input key "
            f"({', '.join(INPUT_KEYS)}) or target key ({', '.join(TARGET_KEYS)}). Pass "
            "batch_fn=lambda b: (inputs, targets) to say which.")
    what = f"{type(batch).__name__}" + (f" of length {len(batch)}"
                                         if isinstance(batch, tuple | list) else "")
    raise InvalidDataError(
        f"The batches of '{name}' are a {what}, not (inputs, targets) or a dict. Pass "
        "batch_fn=lambda b: (inputs, targets) to say how to read them.")


class Examples:
    """Rows ``(inputs, targets)`` ready for the model (validated, on its device and dtype)."""

    #: Number of examples.
    n: int
    #: Whether the targets are real numbers (regression) rather than class labels.
    float_targets: bool
    #: Shape of one input (without the batch dimension).
    input_shape: tuple[int, ...]

    def blocks(self, batch_size: int) -> Iterator[tuple[slice, Any, Any]]:
        """Yield ``(rows, x, y)`` over all examples in order, ``batch_size`` rows at a time."""
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> tuple[Any, Any]:
        """The examples at ``indices`` (in that order) as two tensors."""
        raise NotImplementedError

    def subset(self, indices: np.ndarray) -> Examples:
        """The examples at the sorted ``indices``, served in blocks like the whole."""
        raise NotImplementedError

    def tensors(self) -> tuple[Any, Any]:
        """Every example in memory (for the computations that need them all at once)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """SHA-256 of every input and target, their dtypes and shapes, in order."""
        raise NotImplementedError


class TensorExamples(Examples):
    """Examples held as two tensors."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y
        self.n = int(x.shape[0])
        self.float_targets = bool(y.is_floating_point())
        self.input_shape = tuple(x.shape[1:])
        self._fingerprint: str | None = None

    def blocks(self, batch_size: int) -> Iterator[tuple[slice, Any, Any]]:
        for start in range(0, self.n, batch_size):
            rows = slice(start, min(start + batch_size, self.n))
            yield rows, self.x[rows], self.y[rows]

    def take(self, indices: np.ndarray) -> tuple[Any, Any]:
        import torch

        rows = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.x.device)
        return self.x[rows], self.y[rows]

    def subset(self, indices: np.ndarray) -> TensorExamples:
        return TensorExamples(*self.take(indices))

    def tensors(self) -> tuple[Any, Any]:
        return self.x, self.y

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256()
            hash_batch(h, self.x)
            hash_batch(h, self.y)
            self._fingerprint = h.hexdigest()
        return self._fingerprint


class StreamedExamples(Examples):
    """Examples read from a torch ``Dataset`` or ``DataLoader`` on every pass.

    One scan at construction reads every batch once: it counts the examples, checks that each
    batch can be read and validated (``prepare``), that the inputs have one shape, and computes
    the fingerprint. Later passes hold one block at a time. The data must be the same on every
    pass (no random augmentation): a pass that sees a different number of examples is refused.

    Parameters
    ----------
    data : Dataset or DataLoader
        A DataLoader must not shuffle. A Dataset is read through a DataLoader with
        ``loader_batch_size`` and the default collation.
    batch_fn : callable or None
        ``batch -> (inputs, targets)`` (see :func:`split_batch`).
    prepare : callable
        ``(x, y) -> (x, y)`` validated tensors for the model (raises naming ``name``).
    name : str
        The argument's name, for messages.
    """

    def __init__(self, data: Any, batch_fn: Callable | None, prepare: Callable, name: str,
                 loader_batch_size: int = 256) -> None:
        loader, self._indexable = ordered_loader(data, name, loader_batch_size)
        self._collate = loader.collate_fn
        self.loader, self.batch_fn, self.prepare, self.name = loader, batch_fn, prepare, name
        self._dataset = loader.dataset
        self.n = -1
        h = hashlib.sha256()
        count, shape, float_targets = 0, None, None
        for x, y in self._batches():
            if shape is None:
                shape, float_targets = tuple(x.shape[1:]), bool(y.is_floating_point())
            elif tuple(x.shape[1:]) != shape:
                raise InvalidDataError(
                    f"The inputs of '{name}' change shape between batches: {shape} then "
                    f"{tuple(x.shape[1:])} (at example {count}); pad or resize them to one shape.")
            hash_batch(h, x)
            hash_batch(h, y)
            count += int(x.shape[0])
        if count == 0:
            raise InvalidDataError(f"'{name}' holds no examples.")
        self.n, self.input_shape, self.float_targets = count, shape, bool(float_targets)
        self._fingerprint = h.hexdigest()

    def _batches(self) -> Iterator[tuple[Any, Any]]:
        # An IterableDataset has no indices, so positions are the order of its first pass; a
        # later pass that reorders (a shuffle per epoch) would silently attach scores to other
        # examples. Each of its passes is hashed as the first was and refused when it differs
        # (hashing costs far less than the gradients computed on the same pass).
        check = not self._indexable and self.n >= 0
        h = hashlib.sha256() if check else None
        for batch in self.loader:
            x, y = split_batch(batch, self.batch_fn, self.name)
            x, y = self.prepare(x, y)
            if h is not None:
                hash_batch(h, x)
                hash_batch(h, y)
            yield x, y
        if h is not None and h.hexdigest() != self._fingerprint:
            raise InvalidDataError(
                f"'{self.name}' gave its examples in another order (or other examples) on this "
                "pass than on the first: an IterableDataset that shuffles or augments on every "
                "pass cannot be attributed, since scores refer to examples by position. Give "
                "it a fixed order (no shuffling) while influence is computed.")

    def blocks(self, batch_size: int) -> Iterator[tuple[slice, Any, Any]]:
        import torch

        # Re-cut the loader's batches into blocks of exactly batch_size rows: the scores then
        # do not depend on the loader's batch size (sums are taken in the same groups).
        pending_x: list[Any] = []
        pending_y: list[Any] = []
        held = start = 0
        for x, y in self._batches():
            pending_x.append(x)
            pending_y.append(y)
            held += int(x.shape[0])
            while held >= batch_size:
                bx = torch.cat(pending_x) if len(pending_x) > 1 else pending_x[0]
                by = torch.cat(pending_y) if len(pending_y) > 1 else pending_y[0]
                if start + batch_size > self.n:
                    self._changed(start + held)
                yield slice(start, start + batch_size), bx[:batch_size], by[:batch_size]
                start += batch_size
                pending_x, pending_y = [bx[batch_size:]], [by[batch_size:]]
                held -= batch_size
        if held:
            bx = torch.cat(pending_x) if len(pending_x) > 1 else pending_x[0]
            by = torch.cat(pending_y) if len(pending_y) > 1 else pending_y[0]
            if start + held != self.n:
                self._changed(start + held)
            yield slice(start, start + held), bx, by
            start += held
        if start != self.n:
            self._changed(start)

    def _changed(self, count: int) -> None:
        raise InvalidDataError(
            f"'{self.name}' gave {'at least ' if count > self.n else ''}{count} examples on this "
            f"pass and {self.n} on the first: its examples must be the same on every pass (no "
            "random sampling or augmentation while influence is computed).")

    def take(self, indices: np.ndarray) -> tuple[Any, Any]:
        import torch

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise InvalidDataError(f"indices into '{self.name}' must be in 0..{self.n - 1}.")
        if self._indexable:
            # Random access: only the chosen examples are read.
            items = [self._dataset[int(i)] for i in idx]
            return self.prepare(*split_batch(self._collate(items), self.batch_fn, self.name))
        # No random access (an IterableDataset or a custom sampler): one pass, keeping the
        # chosen rows.
        want = np.unique(idx)
        xs, ys, got = [], [], []
        for rows, x, y in self.blocks(1024):
            sel = want[(want >= rows.start) & (want < rows.stop)]
            if sel.size:
                local = torch.as_tensor(sel - rows.start, device=x.device)
                xs.append(x[local])
                ys.append(y[local])
                got.append(sel)
        order = torch.as_tensor(np.searchsorted(np.concatenate(got), idx))
        return torch.cat(xs)[order.to(xs[0].device)], torch.cat(ys)[order.to(ys[0].device)]

    def subset(self, indices: np.ndarray) -> Examples:
        return _SubsetExamples(self, np.asarray(indices, dtype=np.int64))

    def tensors(self) -> tuple[Any, Any]:
        import torch

        xs, ys = zip(*[(x, y) for _, x, y in self.blocks(1024)], strict=True)
        return torch.cat(xs), torch.cat(ys)

    def fingerprint(self) -> str:
        return self._fingerprint


class _SubsetExamples(Examples):
    """The rows ``indices`` (sorted) of streamed examples, read in one pass of the parent."""

    def __init__(self, parent: StreamedExamples, indices: np.ndarray) -> None:
        self.parent, self.indices = parent, np.unique(indices)
        self.n = int(self.indices.size)
        self.float_targets, self.input_shape = parent.float_targets, parent.input_shape

    def blocks(self, batch_size: int) -> Iterator[tuple[slice, Any, Any]]:
        import torch

        out = 0
        for rows, x, y in self.parent.blocks(batch_size):
            sel = self.indices[(self.indices >= rows.start) & (self.indices < rows.stop)]
            if sel.size:
                local = torch.as_tensor(sel - rows.start, device=x.device)
                yield slice(out, out + sel.size), x[local], y[local]
                out += sel.size

    def take(self, indices: np.ndarray) -> tuple[Any, Any]:
        return self.parent.take(self.indices[np.asarray(indices, dtype=np.int64)])

    def subset(self, indices: np.ndarray) -> Examples:
        return _SubsetExamples(self.parent, self.indices[np.asarray(indices, dtype=np.int64)])

    def tensors(self) -> tuple[Any, Any]:
        return self.parent.take(self.indices)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.parent.fingerprint().encode())
        h.update(self.indices.tobytes())
        return h.hexdigest()


def gather_examples(data: Any, batch_fn: Callable | None, name: str) -> tuple[Any, Any]:
    """All examples of a ``Dataset`` or ``DataLoader`` as raw ``(inputs, targets)`` tensors,
    in order (for models that take arrays, e.g. scikit-learn estimators): one pass."""
    import torch

    loader, _ = ordered_loader(data, name)
    xs, ys = [], []
    for batch in loader:
        x, y = split_batch(batch, batch_fn, name)
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    if not xs:
        raise InvalidDataError(f"'{name}' holds no examples.")
    try:
        return torch.cat(xs), torch.cat(ys)
    except RuntimeError as exc:
        raise InvalidDataError(f"The batches of '{name}' do not stack into one tensor of inputs "
                               f"and one of targets: {exc}") from exc


def check_examples_args(x: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
    """``(x, y)`` as given (``y`` None for a torch Dataset / DataLoader, which holds the
    targets), checked: the one rule of every estimator that takes examples."""
    if is_torch_data(x):
        if y is not None:
            raise InvalidParameterError(
                f"'{x_name}' is a torch Dataset/DataLoader, which holds the targets: leave "
                f"'{y_name}' out (None).")
        return x, None
    if y is None:
        raise InvalidParameterError(
            f"'{y_name}' is required when '{x_name}' is an array or tensor (give a torch "
            "Dataset or DataLoader to pass both at once).")
    return x, y


def model_examples(model: Any, x: Any, y: Any, x_name: str, y_name: str, *,
                   batch_fn: Callable | None, batch_size: int,
                   pipeline_input: Any = None) -> Examples:
    """:class:`Examples` for a wrapped ``model``: a torch Dataset / DataLoader is streamed for a
    torch module (read again on every pass, one block in memory) and gathered for a
    scikit-learn model, whose inputs are arrays (passed through ``pipeline_input``'s fitted
    preprocessing for a Pipeline); arrays and tensors are validated once."""
    if is_torch_data(x):
        if model.kind == "torch":
            return StreamedExamples(
                x, batch_fn, lambda a, b: model.prepare(a, b, x_name, y_name), x_name,
                loader_batch_size=batch_size)
        x, y = (t.numpy() for t in gather_examples(x, batch_fn, x_name))
    if pipeline_input is not None:
        x = pipeline_input.transform(x, x_name)
    return TensorExamples(*model.prepare(x, y, x_name, y_name))
