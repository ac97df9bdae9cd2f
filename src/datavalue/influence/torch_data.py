"""Training and query data given as a torch ``Dataset`` or ``DataLoader``, with any batch
structure: tuples ``(inputs, targets)``, dicts, or anything a user's ``batch_fn`` reads.

The examples are gathered into two tensors (inputs, targets) once, in the dataset's order, so
every score refers to the dataset's own indices and any batch size gives the same scores.
(They are held in memory, like arrays given directly; streaming them for data sets larger than
memory is not done yet.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import InvalidDataError, InvalidParameterError

__all__ = ["is_torch_data", "gather_examples"]

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


def _split_batch(batch: Any, batch_fn: Callable | None, name: str) -> tuple[Any, Any]:
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


def gather_examples(data: Any, batch_fn: Callable | None, name: str) -> tuple[Any, Any]:
    """All examples of a ``Dataset`` or ``DataLoader`` as ``(inputs, targets)`` tensors, in
    order. A DataLoader that shuffles is refused (scores must refer to fixed indices)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            raise InvalidParameterError(
                f"'{name}' is a DataLoader with shuffle=True: influence scores refer to examples"
                " by position, so give the loader without shuffling (or its dataset).")
        loader = data
    else:
        loader = DataLoader(data, batch_size=256, shuffle=False)
    xs, ys = [], []
    for batch in loader:
        x, y = _split_batch(batch, batch_fn, name)
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    if not xs:
        raise InvalidDataError(f"'{name}' holds no examples.")
    try:
        return torch.cat(xs), torch.cat(ys)
    except RuntimeError as exc:
        raise InvalidDataError(f"The batches of '{name}' do not stack into one tensor of inputs "
                               f"and one of targets: {exc}") from exc
