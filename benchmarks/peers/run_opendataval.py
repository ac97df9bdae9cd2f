"""Run one OpenDataVal (``opendataval.dataval``, version 1.3) method on a benchmark case.

Started by the harness with ``benchmarks/.venvs/opendataval/bin/python``; see
``benchmarks/_runner.py`` for the command line and the output. Only the valuation is timed
(``train_data_values`` + ``evaluate_data_values``); converting the arrays to what OpenDataVal's
own ``DataFetcher`` produces (float32 tensors, one-hot float labels) is not.

- ``data-oob``: ``DataOob(num_models=n_estimators)`` with
  ``ClassifierSkLearnWrapper(DecisionTreeClassifier, n_classes)`` and the accuracy metric.
- ``knn-shapley``: ``KNNShapley(k_neighbors=n_neighbors)`` (its default batch size, 32).
- ``loo``: ``LeaveOneOut`` with ``ClassifierSkLearnWrapper(LogisticRegression, n_classes,
  max_iter=1000)`` and accuracy.
- ``dvrl`` (``bench_dvrl.py``): ``DVRL`` with all its defaults (``hidden_dim=100,
  layer_number=5, comb_dim=10, rl_epochs=1000, rl_batch_size=32, lr=0.01, threshold=0.9``;
  ``rl_epochs`` can be overridden with the ``n_iterations`` parameter), the predictor
  OpenDataVal calls ``"sklogreg"`` (``ClassifierSkLearnWrapper(LogisticRegression, n_classes)``,
  scikit-learn's defaults) and accuracy; one torch thread.

OpenDataVal has no ``n_jobs``: it runs in one process. For KNN-Shapley, torch's intra-op thread
pool (distances and sort) gets ``n_jobs`` threads so it can use the same cores as everyone else.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _runner
from _runner import load_arrays, parse_args, timed, write_result, write_unavailable  # noqa: E402


def stub_torchvision() -> None:
    """Let ``import opendataval`` succeed without torchvision.

    OpenDataVal imports torchvision at import time, only for its image data sets (CIFAR, MNIST
    loaders), which no benchmark here uses. PyPI's torchvision wheels for Linux are CUDA builds
    whose compiled operators do not load next to the CPU build of torch that we install (and
    the CUDA torch OpenDataVal pins is several GB), so ``setup.sh`` does not install torchvision
    and we register empty stand-in modules instead. Nothing in DataOob, KNNShapley or
    LeaveOneOut touches them.
    """

    def missing(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})  # a placeholder class, e.g. torchvision.datasets.CIFAR10

    for name in (
        "torchvision",
        "torchvision.transforms",
        "torchvision.transforms.functional",
        "torchvision.datasets",
    ):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__path__ = []
        module.__getattr__ = missing
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def one_hot(y: np.ndarray, n_classes: int):
    import torch

    return torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), n_classes).float()


def main() -> None:
    args = parse_args()
    try:
        import torchvision  # noqa: F401  (a working torchvision, if one is installed)
    except Exception:
        stub_torchvision()
    import opendataval
    import threadpoolctl
    import torch
    from opendataval.dataval import DVRL, DataOob, KNNShapley, LeaveOneOut
    from opendataval.metrics import accuracy
    from opendataval.model import ClassifierSkLearnWrapper

    a = load_arrays(args.data)
    p = args.params
    n_jobs = int(p.get("n_jobs", 1))
    # OpenDataVal runs in one process. Its KNN-Shapley is torch code (cdist, argsort): torch
    # gets n_jobs threads there. Data-OOB and LOO fit one small scikit-learn model at a time,
    # like one worker of the libraries that parallelise with joblib: one torch thread and one
    # BLAS thread (two BLAS threads on tiny LogisticRegression fits only wait on each other,
    # and under load they slowed OpenDataVal's LOO by an order of magnitude).
    torch_threads = n_jobs if args.method == "knn-shapley" else 1
    torch.set_num_threads(torch_threads)
    threadpoolctl.threadpool_limits(1, user_api="blas")
    seed = int(p.get("random_state", 0))
    n_classes = int(max(a["y_train"].max(), a["y_valid"].max())) + 1
    x_train = torch.tensor(a["x_train"], dtype=torch.float)
    x_valid = torch.tensor(a["x_valid"], dtype=torch.float)
    y_train = one_hot(a["y_train"], n_classes)
    y_valid = one_hot(a["y_valid"], n_classes)

    if args.method == "data-oob":
        from sklearn.tree import DecisionTreeClassifier

        evaluator = DataOob(num_models=int(p["n_estimators"]), random_state=seed)
        evaluator.input_data(x_train, y_train, x_valid, y_valid)
        evaluator.input_model_metric(
            ClassifierSkLearnWrapper(DecisionTreeClassifier, n_classes), accuracy
        )
    elif args.method == "knn-shapley":
        evaluator = KNNShapley(k_neighbors=int(p["n_neighbors"]), random_state=seed)
        evaluator.input_data(x_train, y_train, x_valid, y_valid)
    elif args.method == "loo":
        from sklearn.linear_model import LogisticRegression

        evaluator = LeaveOneOut(random_state=seed)
        evaluator.input_data(x_train, y_train, x_valid, y_valid)
        evaluator.input_model_metric(
            ClassifierSkLearnWrapper(LogisticRegression, n_classes, max_iter=1000), accuracy
        )
    elif args.method == "dvrl":
        from sklearn.linear_model import LogisticRegression

        dvrl_params = {"rl_epochs": int(p["n_iterations"])} if "n_iterations" in p else {}
        evaluator = DVRL(random_state=seed, **dvrl_params)
        evaluator.input_data(x_train, y_train, x_valid, y_valid)
        evaluator.input_model_metric(
            ClassifierSkLearnWrapper(LogisticRegression, n_classes), accuracy
        )
    else:
        write_unavailable(args.out, f"OpenDataVal runner has no method {args.method!r}")
        return

    t0 = os.times()
    values, seconds = timed(lambda: evaluator.train_data_values().evaluate_data_values())
    t1 = os.times()
    write_result(
        args.out,
        seconds=seconds,
        values=values,
        library="OpenDataVal",
        version=opendataval.__version__,
        n_jobs=1,
        cpu_s=(t1.user + t1.system) - (t0.user + t0.system),
        note=f"one process; torch threads = {torch_threads}, BLAS threads = 1",
    )


if __name__ == "__main__":
    main()
