"""Run datavalue's influence functions on the CNN case (our ``.venv``).

    python benchmarks/impl_cnn_ours.py --data CASE.npz --method ekfac \
        --params '{"threads": 2, "damping": 0.01, "source": "disk", "max_memory": 6.4e7}' \
        --out OUT.json

The timed calls are the public API a user would write::

    inf = InfluenceFunction(cnn, torch.nn.CrossEntropyLoss(), solver=SOLVER, damping=damping,
                            weight_decay=weight_decay, solver_options=options).fit(train)
    scores = inf.influence(x_te, y_te)           # (n_test, n_train)

with the Gauss-Newton curvature (``hessian="auto"`` for a torch module; Kronfluence's EK-FAC
uses the true Fisher, equal to it in expectation for softmax cross-entropy). ``train`` is the
tensors (``source="tensors"``), or (``source="disk"``) a ``DataLoader`` over a ``Dataset``
that reads each image from memory-mapped ``.npy`` files, with ``max_memory`` bounding what is
cached: the run that shows peak memory independent of the number of training images.
``time_s`` = fit + influence; ``fit_s`` and ``scores_s`` separately.

Params: ``threads``, ``damping``, ``options`` (solver options), ``n_test``, ``batch_size``
(default 256), ``max_memory`` (default 2**30), ``source``, ``dtype`` (default float64; the
network's parameters are rounded to it).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import _cnn_common as cnn  # noqa: E402
import _influence_common as common  # noqa: E402


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from torch.utils.data import DataLoader

    from datavalue.attribution import InfluenceFunction

    net = cnn.trained_cnn(case)
    xtr, ytr, xte, yte = cnn.tensors(case, n_test=p.get("n_test"))
    batch_size = int(p.get("batch_size", 256))
    inf = InfluenceFunction(
        net, torch.nn.CrossEntropyLoss(), solver=method, damping=float(p.get("damping", 0.0)),
        weight_decay=case["weight_decay"], solver_options=dict(p.get("options") or {}) or None,
        batch_size=batch_size, max_memory=float(p.get("max_memory", 2**30)),
        dtype=p.get("dtype", "float64"), progress=False)
    if p.get("source") == "disk" and case.get("path"):
        train = DataLoader(cnn.DiskImages(case["path"]), batch_size=batch_size)
    else:
        train = (xtr, ytr)
    del xtr, ytr  # the disk run must not hold the training set
    with timer("fit"):
        if isinstance(train, tuple):
            inf.fit(*train)
        else:
            inf.fit(train)
    with timer("scores"):
        scores = inf.influence(xte, yte)
    return inf, scores


def main() -> None:
    args = common.parse_args()
    p = args.params
    import torch

    import datavalue

    common.set_threads(p.get("threads", 1))
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    case = cnn.load_case(args.data)
    warm = common.Timer()
    with warm("warmup"):
        opts = {k: (min(v, 4) if k in ("rank", "maxiter") and v else v)
                for k, v in (p.get("options") or {}).items()}
        try:
            compute(cnn.warmup_case(case), args.method,
                    {**p, "n_test": None, "options": opts, "source": "tensors"}, common.Timer())
        except Exception as exc:  # a warm-up that fails changes nothing
            print(f"warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
    # The process's high-water mark so far (interpreter, torch, the case's test images and the
    # warm-up): what the timed run adds above it is its own memory.
    start_mb = common.own_peak_mb() or 0.0
    timer = common.Timer()
    inf, scores = compute(case, args.method, p, timer)
    end_mb = common.own_peak_mb() or 0.0
    info = common.solver_summary(inf.solver_.info_, drop=("layers",))
    common.write_result(
        args.out, seconds=timer.total, scores=scores, library="datavalue",
        version=datavalue.__version__, threads=torch.get_num_threads(),
        warmup_s=warm.sections["warmup"], fit_s=timer.sections["fit"],
        scores_s=timer.sections["scores"], n_params=inf.n_params_,
        n_train=inf.n_train_, gradient_norm=inf.gradient_norm_, source=p.get("source", "tensors"),
        streamed=type(inf._data).__name__, start_mb=start_mb, added_mb=end_mb - start_mb,
        solver_info=info)


if __name__ == "__main__":
    main()
