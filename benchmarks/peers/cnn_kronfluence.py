"""Run Kronfluence's EK-FAC on the CNN influence case (``benchmarks/.venvs/kronfluence``).

    benchmarks/.venvs/kronfluence/bin/python benchmarks/peers/cnn_kronfluence.py \
        --data CASE.npz --method ekfac --params '{"threads": 2, "damping": 0.01}' --out OUT.json

As ``influence_kronfluence.py`` (its docstring has the details), on the case's network
(``_cnn_common.trained_cnn``; Kronfluence wraps its ``Conv2d`` and ``Linear`` layers):
``fit_all_factors`` with ``strategy="ekfac"`` (true Fisher: labels sampled from the model,
``torch.manual_seed(0)``), then ``compute_pairwise_scores`` with ``damping_factor = damping +
l2``; float64 for every dtype option (or, with ``"defaults": true``, Kronfluence's own
dtypes on a float32 model), statistics over the whole training set. Batches: 256
examples for the factors, 256 training x all test images for the scores (one batch of every
training image, as in the MLP runner, would hold their per-example gradients at once).
Timed: the two calls. Scores divided by n (ours are leave-one-out predictions).
"""

from __future__ import annotations

import _cnn_common as cnn
import _influence_common as common
from influence_kronfluence import FLOAT_OPTIONS, SCORE_FLOAT_OPTIONS, _task, analyze


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from kronfluence.analyzer import prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from torch.utils.data import TensorDataset

    # "defaults": Kronfluence's own dtypes (float32 statistics, per-sample gradients and
    # scores, float64 eigendecomposition) on a float32 model; otherwise float64 throughout.
    defaults = bool(p.get("defaults"))
    dtype = torch.float32 if defaults else torch.float64
    net = cnn.trained_cnn(case, dtype)
    xtr, ytr, xte, yte = cnn.tensors(case, dtype, n_test=p.get("n_test"))
    n = len(xtr)
    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    task = _task(False)
    model = prepare_model(net, task)
    factor_args = FactorArguments(
        strategy=method, covariance_max_examples=None, lambda_max_examples=None,
        **({} if defaults else {k: dtype for k in FLOAT_OPTIONS}))
    score_args = ScoreArguments(damping_factor=reg, **(
        {} if defaults else {k: dtype for k in SCORE_FLOAT_OPTIONS}))
    train, test = TensorDataset(xtr, ytr), TensorDataset(xte, yte)
    batch = int(p.get("batch_size", 256))
    scores = analyze(model, task, train, test, method, factor_args, score_args, batch,
                     int(p.get("seed", 0)), timer)
    info = {"strategy": method, "damping_factor": reg, "fisher": "true (sampled labels)",
            "dtype": "Kronfluence's defaults" if defaults else str(dtype), "batch_size": batch}
    return scores / n, sum(q.numel() for q in net.parameters()), info


def main() -> None:
    def version() -> str:
        import kronfluence

        return kronfluence.__version__

    common.run_peer(compute, library="Kronfluence", version=version, methods=("ekfac", "kfac"),
                    unavailable="Kronfluence has no {method!r} solver (only K-FAC / EK-FAC)",
                    load=cnn.load_case, warmup=cnn.warmup_case)


if __name__ == "__main__":
    main()
