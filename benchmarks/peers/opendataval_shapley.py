"""Run OpenDataVal 1.3's DataShapley (TMC-Shapley) on a benchmark case (``bench_shapley.py``).

Started with ``benchmarks/.venvs/opendataval/bin/python``; the command line and the output are
those of ``benchmarks/_runner.py``::

    python opendataval_shapley.py --data CASE.npz --method tmc-shapley \
        --params '{"n_permutations": 100, "random_state": 0}' --out OUT.json

What runs (``train_data_values().evaluate_data_values()`` is timed)::

    DataShapley(max_mc_epochs=1, models_per_epoch=n_permutations, cache_name=None,
                random_state=random_state)
    .input_model_metric(ClassifierSkLearnWrapper(LogisticRegression, 2, max_iter=1000), accuracy)

OpenDataVal's sampler (``GrTMCSampler``) draws ``models_per_epoch`` permutations per epoch and
checks its Gelman-Rubin statistic between epochs; one epoch of ``n_permutations`` is exactly
``n_permutations`` permutations. Its own truncation is kept: a permutation starts from a
coalition of ``min_cardinality=5`` points and stops after 10 consecutive steps whose score
change is below 1e-8 of the running sum of increments. The caching of marginal contributions
between evaluators is disabled (``cache_name=None``). OpenDataVal has no parallelism: one
process, one torch thread and one BLAS thread (``n_jobs`` is ignored).

Written to OUT.json besides the time: ``n_fits`` (calls of the scikit-learn model's ``fit``,
counted by a ``LogisticRegression`` subclass; subsets missing a class get a ``DummyClassifier``
from OpenDataVal and are not counted) and ``cpu_s`` (CPU seconds of the process during the
timed call).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _runner
from _runner import load_arrays, parse_args, timed, write_result, write_unavailable  # noqa: E402


class CountingLogisticRegression(LogisticRegression):
    """LogisticRegression that counts its ``fit`` calls (one process: a class attribute)."""

    n_fit_calls = 0

    def fit(self, X, y, sample_weight=None):
        CountingLogisticRegression.n_fit_calls += 1
        return super().fit(X, y, sample_weight=sample_weight)


def _stub_torchvision() -> None:
    """OpenDataVal imports torchvision (only for image data sets); reuse the stand-ins of the
    main OpenDataVal runner when no working torchvision is installed."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        spec = importlib.util.spec_from_file_location(
            "_odv_runner", Path(__file__).with_name("run_opendataval.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.stub_torchvision()


def main() -> None:
    args = parse_args()
    if args.method != "tmc-shapley":
        write_unavailable(args.out, f"opendataval_shapley.py has no method {args.method!r}")
        return
    _stub_torchvision()
    import opendataval
    import threadpoolctl
    import torch
    from opendataval.dataval import DataShapley
    from opendataval.metrics import accuracy
    from opendataval.model import ClassifierSkLearnWrapper

    a = load_arrays(args.data)
    p = args.params
    n_permutations = int(p["n_permutations"])
    seed = int(p.get("random_state", 0))
    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1, user_api="blas")
    n_classes = int(max(a["y_train"].max(), a["y_valid"].max())) + 1

    def one_hot(y):
        return torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), n_classes).float()

    evaluator = DataShapley(
        max_mc_epochs=1, models_per_epoch=n_permutations, cache_name=None, random_state=seed
    )
    evaluator.input_data(
        torch.tensor(a["x_train"], dtype=torch.float), one_hot(a["y_train"]),
        torch.tensor(a["x_valid"], dtype=torch.float), one_hot(a["y_valid"]),
    )
    evaluator.input_model_metric(
        ClassifierSkLearnWrapper(CountingLogisticRegression, n_classes, max_iter=1000), accuracy
    )

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
        n_fits=CountingLogisticRegression.n_fit_calls,
        cpu_s=(t1.user + t1.system) - (t0.user + t0.system),
        n_permutations=n_permutations,
        note=f"DataShapley(max_mc_epochs=1, models_per_epoch={n_permutations}); one process, "
             "1 torch thread, 1 BLAS thread",
    )


if __name__ == "__main__":
    main()
