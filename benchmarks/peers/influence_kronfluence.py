"""Run Kronfluence's influence functions on one influence benchmark case
(``benchmarks/.venvs/kronfluence``).

    benchmarks/.venvs/kronfluence/bin/python benchmarks/peers/influence_kronfluence.py \
        --data CASE.npz --method ekfac --params '{"threads": 1, "damping": 0.01}' --out OUT.json

Kronfluence 1.0 (installed next to torch 2.13 CPU; its ``torchvision`` requirement pulls the
PyPI torchvision wheel, which does not load with the CPU torch, but Kronfluence never imports
it): ``prepare_model`` wraps every ``nn.Linear`` of the fitted module, a ``Task`` defines the
per-example training loss (summed over a batch, as Kronfluence requires; with ``sample=True``
the labels are drawn from the model's predictive distribution) and the measurement (the same
loss at the observed labels), and on CPU (``Analyzer(cpu=True)``):

========= ========================================================================
method    Kronfluence's calls
========= ========================================================================
ekfac     ``fit_all_factors(train, FactorArguments(strategy="ekfac"))`` (activation and
          pseudo-gradient covariances, their eigendecompositions, the eigenvalue
          correction) then ``compute_pairwise_scores(test, train,
          ScoreArguments(damping_factor=damping + l2))``
kfac      the same with ``strategy="kfac"`` (no eigenvalue correction)
========= ========================================================================

Kronfluence's defaults otherwise: the true Fisher (one label sampled per example and pass;
``torch.manual_seed(0)`` first), statistics over the whole training set
(``covariance_max_examples = lambda_max_examples = None``), one batch of all training points for
the factors and the scores, and every dtype option (covariances, eigendecomposition, lambdas,
per-sample gradients, preconditioning, scores) set to float64 (Kronfluence's defaults are
float32 with a float64 eigendecomposition), with the model and data in float64.

``damping_factor = damping + l2``: Kronfluence differentiates the plain loss, so the objective's
L2 term ``l2/2 ||theta||^2`` enters as a shift of the curvature, like the damping (it adds
``damping_factor`` to every eigenvalue of the Kronecker-factored Fisher of the *mean* loss). Its
pairwise score is ``g_t^T (F + (damping + l2) I)^{-1} g_i``: our sign, ``n`` times our scale
(divided by ``n`` here).

Kronfluence writes its factors and scores (safetensors) and its arguments (JSON) to an output
directory, inside the calls that compute them: a temporary directory, in ``/dev/shm`` when it
exists, so that this writing (a few MB) costs as little as possible; it is part of the timed calls.

On these small models most of Kronfluence's time is a fixed cost of its own: ``gc.collect()``
in its ``release_memory`` between phases (10 calls of ~0.1 s per fit + scores, measured with
cProfile on the quick MLP case), which it runs as released.

Before the timed run the same code runs once, untimed, on a tiny case of the same kind
(``_influence_common.warmup_case``). Timed: ``fit_all_factors`` ("fit") plus
``compute_pairwise_scores`` ("scores"). Not timed: imports, building the ``Analyzer``
(``prepare_model``), ``load_pairwise_scores``.
"""

from __future__ import annotations

import logging
import os
import tempfile

import _influence_common as common

FLOAT_OPTIONS = ("activation_covariance_dtype", "gradient_covariance_dtype",
                 "eigendecomposition_dtype", "per_sample_gradient_dtype", "lambda_dtype")
SCORE_FLOAT_OPTIONS = ("per_sample_gradient_dtype", "precondition_dtype", "score_dtype",
                       "query_gradient_svd_dtype")


def _task(logreg: bool):
    import torch
    from kronfluence.task import Task

    f = torch.nn.functional

    class ClassificationTask(Task):
        """Summed cross-entropy (binary log-loss for logreg) of a batch ``(x, y)``."""

        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            out = model(x)
            if logreg:
                logit = out[:, 0]
                if sample:
                    with torch.no_grad():
                        y = torch.bernoulli(torch.sigmoid(logit))
                return f.binary_cross_entropy_with_logits(logit, y, reduction="sum")
            if sample:
                with torch.no_grad():
                    y = torch.multinomial(f.softmax(out, dim=-1), 1).flatten()
            return f.cross_entropy(out, y, reduction="sum")

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model, sample=False)

    return ClassificationTask()


def compute(case: dict, method: str, p: dict, timer: common.Timer):
    import torch
    from kronfluence.analyzer import prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from torch.utils.data import TensorDataset

    dtype = getattr(torch, p.get("dtype", "float64"))
    logreg = case["kind"] == "logreg"
    net = common.build_module(case, dtype)
    xtr, ytr, xte, yte = common.tensors(case, dtype, n_test=p.get("n_test"))
    n = len(xtr)
    n_params = sum(q.numel() for q in net.parameters())
    reg = float(p.get("damping", 0.0)) + case["weight_decay"]
    task = _task(logreg)
    model = prepare_model(net, task)
    factor_args = FactorArguments(
        strategy=method, covariance_max_examples=None, lambda_max_examples=None,
        **{k: dtype for k in FLOAT_OPTIONS})
    score_args = ScoreArguments(damping_factor=reg, **{k: dtype for k in SCORE_FLOAT_OPTIONS})
    train, test = TensorDataset(xtr, ytr), TensorDataset(xte, yte)
    scores = analyze(model, task, train, test, method, factor_args, score_args, n,
                     int(p.get("seed", 0)), timer)
    info = {"strategy": method, "damping_factor": reg, "fisher": "true (sampled labels)",
            "dtype": str(dtype), "batch_size": n}
    return scores / n, n_params, info


def analyze(model, task, train, test, method: str, factor_args, score_args, batch: int,
            seed: int, timer: common.Timer):
    """Kronfluence's factors ("fit") and pairwise scores ("scores") of a prepared model, in a
    temporary output folder (``/dev/shm`` when it exists); the raw ``(n_test, n_train)``
    scores. ``batch``: training examples per batch, for the factors and the scores (the query
    set is one batch). Shared with ``cnn_kronfluence.py``."""
    import torch
    from kronfluence.analyzer import Analyzer

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm, prefix="kronfluence-") as tmp:
        analyzer = Analyzer(analysis_name="bench", model=model, task=task, cpu=True,
                            disable_tqdm=True, output_dir=tmp, log_level=logging.WARNING)
        torch.manual_seed(seed)  # the labels sampled for the true Fisher
        with timer("fit"):
            analyzer.fit_all_factors(factors_name=method, dataset=train,
                                     per_device_batch_size=batch, factor_args=factor_args,
                                     overwrite_output_dir=True)
        with timer("scores"):
            analyzer.compute_pairwise_scores(
                scores_name=method, factors_name=method, query_dataset=test,
                train_dataset=train, per_device_query_batch_size=len(test),
                per_device_train_batch_size=batch, score_args=score_args,
                overwrite_output_dir=True)
        return analyzer.load_pairwise_scores(scores_name=method)["all_modules"]


def main() -> None:
    def version() -> str:
        import kronfluence

        return kronfluence.__version__

    common.run_peer(compute, library="Kronfluence", version=version, methods=("ekfac", "kfac"),
                    unavailable="Kronfluence has no {method!r} solver (only K-FAC / EK-FAC)")


if __name__ == "__main__":
    main()
