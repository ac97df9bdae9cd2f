"""Compare valuation methods on the same data: the benchmark protocol of OpenDataVal.

:func:`compare` runs every method on the same splits for each seed (the split, the label flips,
the methods' randomness and the evaluation's random order all follow the seed), then every
evaluation of :mod:`datavalue.evaluate` — flip detection (AUC, the two-cluster F1 of Kwon & Zou
2023), point removal and addition curves (Ghorbani & Zou 2019) summarised by their mean score,
and the wall time — and returns a tidy table with one row per (method, seed) and its mean ± sd
over seeds. With ``out=DIR`` it also writes the tables (CSV, and Parquet when pyarrow is
installed), every value vector, every data set and a run log, so ``datavalue report DIR`` can
draw it.

Methods come from the registry :data:`datavalue.METHODS`: a newly registered method can be
compared as soon as it is registered, with no change here.

References
----------
K. F. Jiang, W. Liang, J. Zou and Y. Kwon. OpenDataVal: a unified benchmark for data valuation.
NeurIPS 2023 Datasets and Benchmarks (the protocol: 1,000 train / 100 valid / 500 test points,
label flips, a logistic regression, detection F1 and removal curves).
"""

from __future__ import annotations

import inspect
import json
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from datavalue._core.exceptions import DatavalueError, InvalidParameterError, UnknownNameError
from datavalue._core.parallel import progress_bar
from datavalue._core.result import ValuationResult, jsonable
from datavalue.actions.comparison import (
    CURVE_COLUMNS,
    DETECTION_COLUMNS,
    RETRAINING_COLUMNS,
    Comparison,
    _Output,
    _tidy,
    summarize,
)
from datavalue.data import Dataset, load_dataset
from datavalue.evaluate import noisy_detection, point_addition, point_removal, summarize_curve
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.registry import METHODS, make_valuator
from datavalue.valuation.utility import default_metric

__all__ = ["compare", "COMPARE_BUDGETS", "default_methods", "method_params"]

logger = logging.getLogger("datavalue.actions.compare")

#: Budgets of the Monte Carlo and iterative methods in a comparison (override any of them with
#: ``params={"tmc-shapley": {"max_permutations": 500}}`` or ``--param
#: tmc-shapley.max_permutations=500``). Chosen so that a comparison of every method on a built-in
#: set of a few hundred training points takes minutes, not hours; the published numbers of the
#: Shapley family use more samples (OpenDataVal runs TMC-Shapley until its Gelman-Rubin
#: statistic is below 1.05).
COMPARE_BUDGETS: dict[str, dict[str, Any]] = {
    "tmc-shapley": {"max_permutations": 50},
    "beta-shapley": {"max_permutations": 50},
    "g-shapley": {"max_permutations": 50},
    "data-banzhaf": {"max_subsets": 2000},
    "dvrl": {"n_iterations": 500},
}


def default_methods() -> list[str]:
    """Every registered method except the exact enumerations (``exact-*``), which only run on a
    handful of training points (2^n utility evaluations)."""
    return [m for m in METHODS if not m.startswith("exact-")]


# ---------------------------------------------------------------------------- validation
def _check_methods(methods: Any) -> list[str]:
    if methods is None:
        return default_methods()
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidParameterError("The 'methods' parameter must name at least one method.")
    for m in names:
        if not isinstance(m, str) or m not in METHODS:
            raise UnknownNameError(
                f"Unknown method {m!r} in 'methods': use any of {', '.join(METHODS)}."
            )
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"The 'methods' parameter has duplicates: {names}.")
    return names


def _check_seeds(seeds: Any) -> list[int]:
    items = [seeds] if isinstance(seeds, numbers.Integral) else list(seeds)
    if not items or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0 for s in items
    ):
        raise InvalidParameterError(
            f"The 'seeds' parameter must be a non-empty list of non-negative ints. Got {seeds!r}."
        )
    out = [int(s) for s in items]
    if len(set(out)) != len(out):
        raise InvalidParameterError(f"The 'seeds' parameter has duplicates: {out}.")
    return out


def _accepted(name: str) -> set[str]:
    return set(inspect.signature(METHODS[name].__init__).parameters) - {"self"}


def _resolve_params(methods: list[str], params: Any) -> dict[str, dict[str, Any]]:
    """Budgets merged with the user's per-method parameters, every name checked."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidParameterError(
            "The 'params' parameter must be a dict {method: {parameter: value}}, e.g. "
            f"{{'tmc-shapley': {{'max_permutations': 100}}}}. Got {type(params).__name__}."
        )
    for name, given in params.items():
        if name not in methods:
            raise UnknownNameError(
                f"'params' has parameters for {name!r}, which is not among the compared "
                f"methods ({', '.join(methods)})."
            )
        if not isinstance(given, Mapping):
            raise InvalidParameterError(
                f"'params[{name!r}]' must be a dict of parameters. Got {given!r}."
            )
        unknown = sorted(set(given) - _accepted(name))
        if unknown:
            raise UnknownNameError(
                f"The method {name!r} has no parameter {unknown[0]!r} (in 'params'): its "
                f"parameters are {', '.join(sorted(_accepted(name)))}."
            )
    resolved = {}
    for name in methods:
        budget = {k: v for k, v in COMPARE_BUDGETS.get(name, {}).items() if k in _accepted(name)}
        resolved[name] = {**budget, **dict(params.get(name, {}))}
    return resolved


def _make_model(model: Any, task: str, seed: int) -> Any:
    if isinstance(model, str):
        return make_model(model, task, seed)
    return clone(model)


def method_params(
    name: str,
    *,
    task: str,
    seed: int,
    model: Any = "logreg",
    metric: str | Callable | None = None,
    params: Mapping[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """The parameters :func:`compare` gives method ``name`` for one seed.

    ``random_state = seed``; the model (a fresh :func:`~datavalue.make_model` seeded with
    ``seed`` when ``model`` is a name) as ``model`` (retraining methods refit it; Data-OOB bags
    it, as OpenDataVal does); ``metric`` where it is the method's score metric;
    ``task``, ``n_jobs``, ``progress``; then ``params`` (budgets and user options) on top.
    Running ``dv.make_valuator(name, **method_params(...))`` alone gives the values
    :func:`compare` reports.
    """
    accepted = _accepted(name)
    out: dict[str, Any] = {}
    if "random_state" in accepted:
        out["random_state"] = seed
    if "task" in accepted:
        out["task"] = task
    if model is not None and "model" in accepted:
        out["model"] = _make_model(model, task, seed)
    if metric is not None and "metric" in accepted:
        out["metric"] = metric
    if n_jobs is not None and "n_jobs" in accepted:
        out["n_jobs"] = n_jobs
    if "progress" in accepted:
        out["progress"] = progress
    out.update(params or {})
    return out


def _check_model(model: Any) -> None:
    if isinstance(model, str):
        if model not in MODELS:
            raise UnknownNameError(
                f"Unknown model {model!r} given as 'model': use one of {', '.join(MODELS)}, or "
                "an unfitted scikit-learn estimator."
            )
    elif model is None or not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise InvalidParameterError(
            "The 'model' parameter must be a model name "
            f"({', '.join(MODELS)}) or an unfitted scikit-learn estimator. Got {model!r}."
        )


# ---------------------------------------------------------------------------- data
def _dataset_for(data: Any, seed: int, noise_rate: float, noise_kind: str,
                 load_options: Mapping[str, Any]) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if callable(data):
        ds = data(seed)
        if not isinstance(ds, Dataset):
            raise InvalidParameterError(
                f"The 'data' callable must return a Dataset for a seed; it returned "
                f"{type(ds).__name__}."
            )
        return ds
    if isinstance(data, str | os.PathLike):
        return load_dataset(data, noise_rate=noise_rate, noise_kind=noise_kind,
                            random_state=seed, **load_options)
    if isinstance(data, tuple) and len(data) == 2:
        # (X, y): arrays or a DataFrame with its labels, split and corrupted per seed like a
        # named data set (a table is encoded on each seed's training rows).
        from datavalue.data import corrupt_features, corrupt_labels

        ds = Dataset.from_arrays(data[0], data[1], random_state=seed,
                                 **{"standardize": True, **load_options})
        if noise_rate > 0:
            corrupt = corrupt_labels if noise_kind == "labels" else corrupt_features
            ds = corrupt(ds, noise_rate, random_state=seed)
        return ds
    raise InvalidParameterError(
        "The 'data' parameter must be a built-in name or a file path (loaded once per seed), "
        "a tuple (X, y) of arrays or a DataFrame and its labels, a Dataset, or a callable "
        f"seed -> Dataset. Got {type(data).__name__}."
    )


def _data_name(data: Any) -> str:
    if isinstance(data, Dataset):
        return data.name
    if isinstance(data, tuple):
        return "table" if hasattr(data[0], "columns") else "arrays"
    if isinstance(data, str | os.PathLike):
        return Path(data).stem if Path(data).suffix else str(data)
    return getattr(data, "__name__", "custom")

# ---------------------------------------------------------------------------- evaluation
def _evaluate(values: np.ndarray, ds: Dataset, model: Any, metric: Any, fractions: Any,
              seed: int, n_jobs: int | None, progress: bool | None,
              baseline: dict[str, Any]) -> tuple[dict[str, float], pd.DataFrame]:
    """Detection scores and curve summaries of one value vector; its curves as a frame.

    The random-order curves do not depend on the values: they are computed once per seed
    (``baseline``) and shared by every method, exactly as a separate run would compute them.
    """
    row: dict[str, float] = {c: float("nan") for c in DETECTION_COLUMNS}
    n_noisy = len(ds.noisy_indices)
    if 0 < n_noisy < ds.n_train:
        det = noisy_detection(values, ds.noisy_indices)
        row.update({c: float(det[c]) for c in DETECTION_COLUMNS})
    frames = []
    for experiment, fn in (("removal", point_removal), ("addition", point_addition)):
        kw = dict(metric=metric, fractions=None if fractions is None else fractions.get(experiment),
                  random_state=seed, n_jobs=n_jobs, progress=progress)
        if experiment not in baseline:
            baseline[experiment] = fn(np.zeros(ds.n_train), ds, model, orders=("random",),
                                      include_random=False, **kw)
        curve = fn(values, ds, model, include_random=False, **kw)
        curve = pd.concat([curve, baseline[experiment]], ignore_index=True)
        for order, mean in summarize_curve(curve).items():
            row[f"{experiment}_{order}"] = mean
        curve.insert(0, "experiment", experiment)
        frames.append(curve)
    curves = pd.concat(frames, ignore_index=True)
    row.update(_retraining_scores(values, baseline.get("truth", {})))
    return row, curves[["experiment", "order", "fraction", "n_points", "score"]]


def _retraining_truth(ds: Dataset, model: Any, seed: int, lds_subsets: int, loo_points: int,
                      n_jobs: int | None, progress: bool | None) -> dict[str, Any]:
    """Ground truth shared by every method of one seed: the mean test loss of ``model``
    retrained on random halves of the training split (LDS) and without single rows (LOO)."""
    from datavalue.evaluate.retrain import Retrain, loo_outputs, subset_outputs

    truth: dict[str, Any] = {}
    if not lds_subsets and not loo_points:
        return truth
    if ds.task == "classification" and not hasattr(model, "predict_proba"):
        raise InvalidParameterError(
            f"LDS and LOO columns compare values with the test log-loss of the retrained model; "
            f"{type(model).__name__} has no predict_proba. Use a probabilistic model (e.g. "
            "logreg) or leave lds_subsets and loo_points at 0.")
    retrain = Retrain(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, output="loss")
    if lds_subsets:
        truth["lds"] = subset_outputs(retrain, n_subsets=lds_subsets, random_state=seed,
                                      n_jobs=n_jobs, progress=progress)
    if loo_points:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(ds.n_train, min(loo_points, ds.n_train), replace=False))
        truth["loo"] = loo_outputs(retrain, rows, random_state=seed, n_jobs=n_jobs,
                                   progress=progress)
    return truth


def _retraining_scores(values: np.ndarray, truth: dict[str, Any]) -> dict[str, float]:
    from datavalue.evaluate import lds, loo_correlation

    row = {c: float("nan") for c in RETRAINING_COLUMNS}
    if "lds" in truth:
        row["lds"] = lds(values, truth["lds"])["lds"]
    if "loo" in truth:
        row["loo_pearson"] = loo_correlation(values, truth["loo"])["pearson"]
    return row


def _check_fractions(fractions: Any) -> dict[str, Any] | None:
    if fractions is None or not isinstance(fractions, Mapping):
        return None if fractions is None else {"removal": fractions, "addition": fractions}
    unknown = set(fractions) - {"removal", "addition"}
    if unknown:
        raise InvalidParameterError(
            f"'fractions' as a dict takes the keys 'removal' and 'addition'. Got {sorted(unknown)}."
        )
    return {"removal": fractions.get("removal"), "addition": fractions.get("addition")}


# ---------------------------------------------------------------------------- compare
def compare(
    data: str | os.PathLike | Dataset | Callable[[int], Dataset],
    *,
    methods: Sequence[str] | str | None = None,
    seeds: Iterable[int] | int = (0, 1, 2),
    noise_rate: float = 0.2,
    noise_kind: str = "labels",
    model: Any = "logreg",
    metric: str | Callable | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    fractions: Any = None,
    load_options: Mapping[str, Any] | None = None,
    on_error: str | None = None,
    lds_subsets: int = 0,
    loo_points: int = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
    out: str | os.PathLike | None = None,
) -> Comparison:
    """Run several valuation methods on the same splits and evaluate them all the same way.

    For each seed: load the data (split, standardise and corrupt ``noise_rate`` of the training
    rows, all seeded by the seed), run every method with ``random_state=seed``, and evaluate its
    values: flip detection (:func:`~datavalue.evaluate.noisy_detection`: AUC, two-cluster F1,
    precision/recall at the number of flips), point removal and addition curves
    (:func:`~datavalue.evaluate.point_removal`/``point_addition`` with ``model`` retrained on the
    training split and scored on the test split, summarised by
    :func:`~datavalue.evaluate.summarize_curve`) and the wall time of ``fit``. This is the
    protocol of OpenDataVal (Jiang et al. 2023); every number equals what running the method
    alone (``dv.make_valuator(name, **method_params(...))``) and the evaluation functions gives.

    Parameters
    ----------
    data : str, path, (X, y), Dataset or callable
        A built-in name or a ``.npz``/``.csv`` path, loaded once per seed with
        ``dv.load_dataset(data, noise_rate=..., noise_kind=..., random_state=seed,
        **load_options)``; or ``(X, y)``, arrays or a DataFrame (text columns, missing values
        with ``load_options={"missing": "impute"}``) and labels, split with
        ``Dataset.from_arrays(X, y, random_state=seed, standardize=True, **load_options)`` and
        corrupted per seed; or a ``Dataset`` (the same splits for every seed; only the methods'
        seeds change); or ``seed -> Dataset``.
    methods : list of str, comma-separated str, or None
        Names in :data:`datavalue.METHODS`. Default: :func:`default_methods` (every registered
        method but the exact enumerations).
    seeds : list of int
        One run of everything per seed. Default (0, 1, 2).
    noise_rate : float in [0, 1)
        Fraction of training rows corrupted (label flips by default; OpenDataVal uses 0.2).
    noise_kind : {"labels", "features"}
    model : str or estimator
        A name in :data:`datavalue.MODELS` (made with ``random_state=seed``) or an unfitted
        estimator: retrained by the retraining methods (LOO, Shapley family, influence), bagged
        by Data-OOB, and retrained by the removal/addition curves. Default "logreg".
    metric : str, callable or None
        Score of the model on held-out data (methods that have a score metric, and the curves).
        Default: accuracy / r2.
    params : dict or None
        ``{method: {parameter: value}}``, on top of :data:`COMPARE_BUDGETS`.
    fractions : list of float, dict or None
        Fractions of the training set for the curves (a dict may give ``"removal"`` and
        ``"addition"`` separately). Default: those of :mod:`datavalue.evaluate`.
    load_options : dict or None
        More options of :func:`~datavalue.load_dataset` (``train_size``, ``valid_size``,
        ``test_size``, ``n_samples``, ``target``, ...).
    on_error : {"raise", "record"} or None
        What to do when a method rejects the data or its options with a datavalue error
        (e.g. KNN-Shapley on a regression target): stop, or record the row with status
        "failed" and the message in ``error`` (and the log) and go on. None: "raise" for
        methods you listed, "record" for the default list.
    lds_subsets : int
        If > 0, the column ``lds``: the linear datamodeling score of the values
        (:func:`~datavalue.evaluate.lds`): over this many random halves of the training split,
        the Spearman correlation between the sum of the values of a half and minus the mean
        test log-loss (squared error for regression) of ``model`` retrained on it. Computed
        once per seed and shared by every method.
    loo_points : int
        If > 0, the column ``loo_pearson``: the Pearson correlation of the values of this many
        random training rows with the actual rise of the mean test loss when ``model`` is
        retrained without each (:func:`~datavalue.evaluate.loo_correlation`).
    n_jobs : int or None
        Workers for each method and for the curves' fits (results do not depend on it).
    progress : bool or None
        Progress bars over seeds and over methods (and the methods' own); None: only on a
        terminal.
    out : path or None
        Folder to write into: ``compare.csv`` (and ``compare.parquet`` with pyarrow),
        ``summary.csv``, ``summary.md`` (mean ± sd), ``curves.csv``, ``run.log``,
        ``values/<method>/seed-<seed>/`` (each :class:`ValuationResult`),
        ``datasets/seed-<seed>.npz``, and ``compare.json`` (the options; written last).

    Returns
    -------
    Comparison
    """
    method_names = _check_methods(methods)
    seed_list = _check_seeds(seeds)
    resolved = _resolve_params(method_names, params)
    _check_model(model)
    if on_error is None:
        on_error = "record" if methods is None else "raise"
    if on_error not in ("raise", "record"):
        raise InvalidParameterError(
            f"The 'on_error' parameter must be 'raise', 'record' or None. Got {on_error!r}."
        )
    if n_jobs == 0:
        raise InvalidParameterError("The 'n_jobs' parameter must not be 0 (use 1, 2, ... or -1).")
    if load_options is not None and not isinstance(load_options, Mapping):
        raise InvalidParameterError("The 'load_options' parameter must be a dict or None.")
    load_options = dict(load_options or {})
    fraction_map = _check_fractions(fractions)
    for name, count in (("lds_subsets", lds_subsets), ("loo_points", loo_points)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0 or (
                count == 1):
            raise InvalidParameterError(
                f"The '{name}' parameter must be 0 (off) or an int >= 2. Got {count!r}.")
    model_name = model if isinstance(model, str) else type(model).__name__
    config: dict[str, Any] = {
        "data": str(data) if isinstance(data, str | os.PathLike) else _data_name(data),
        "methods": method_names,
        "seeds": seed_list,
        "noise_rate": noise_rate,
        "noise_kind": noise_kind,
        "model": model_name,
        "metric": metric,
        "params": resolved,
        "fractions": fraction_map,
        "load_options": load_options,
        "on_error": on_error,
        "lds_subsets": int(lds_subsets),
        "loo_points": int(loo_points),
        "n_jobs": n_jobs,
    }
    output = _Output(out)
    try:
        return _run(data, method_names, seed_list, resolved, model, model_name, metric,
                    noise_rate, noise_kind, fraction_map, load_options, on_error, n_jobs,
                    progress, output, config)
    finally:
        output.close()


def _run(data, method_names, seed_list, resolved, model, model_name, metric, noise_rate,
         noise_kind, fraction_map, load_options, on_error, n_jobs, progress, output,
         config) -> Comparison:
    from datavalue._core.version import __version__

    started = time.perf_counter()
    config.update(library_version=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    logger.info("compare: data=%s methods=%s seeds=%s noise_rate=%s model=%s metric=%s",
                config["data"], ",".join(method_names), seed_list, noise_rate, model_name, metric)
    for name in method_names:
        logger.info("  %s parameters: %s", name, json.dumps(jsonable(resolved[name])))
    # Options shared by every method that some methods cannot use: said once, and recorded.
    not_applicable = {
        name: [opt for opt, given in (("model", model is not None), ("metric", metric is not None))
               if given and opt not in _accepted(name)]
        for name in method_names
    }
    not_applicable = {k: v for k, v in not_applicable.items() if v}
    config["not_applicable"] = not_applicable
    for name, opts in not_applicable.items():
        logger.info("  %s does not use %s (used by the evaluation only)", name, " or ".join(opts))
    metric_name = metric if metric is None or isinstance(metric, str) else getattr(
        metric, "__name__", "callable")
    rows: list[dict[str, Any]] = []
    curve_frames: list[pd.DataFrame] = []
    results: dict[tuple[str, int], ValuationResult] = {}
    datasets: dict[int, Dataset] = {}
    seed_bar = progress_bar(len(seed_list), "seeds", progress, unit="seed")
    try:
        for seed in seed_list:
            seed_bar.set_postfix_str(f"seed {seed}")
            ds = _dataset_for(data, seed, noise_rate, noise_kind, load_options)
            datasets[seed] = ds
            output.dataset(seed, ds)
            logger.info("seed %d: %s", seed, ds.describe())
            eval_model = _make_model(model, ds.task, seed)
            valuators = {}
            for name in method_names:  # every option is checked before anything runs
                p = method_params(name, task=ds.task, seed=seed, model=model, metric=metric,
                                  params=resolved[name], n_jobs=n_jobs, progress=progress)
                valuators[name] = make_valuator(name, **p)
                valuators[name]._validate_params()
            baseline: dict[str, Any] = {
                "truth": _retraining_truth(ds, eval_model, seed, config["lds_subsets"],
                                           config["loo_points"], n_jobs, progress)}
            method_bar = progress_bar(len(method_names), f"methods (seed {seed})", progress,
                                      unit="method")
            try:
                for name in method_names:
                    method_bar.set_postfix_str(name)
                    row = _one(name, valuators[name], ds, seed, eval_model, metric, fraction_map,
                               n_jobs, progress, baseline, on_error, output, results,
                               curve_frames)
                    row.update(data=config["data"], noise_rate=noise_rate, model=model_name,
                               metric=metric_name or default_metric(ds.task))
                    rows.append(row)
                    output.table(rows)
                    method_bar.update(1)
            finally:
                method_bar.close()
            seed_bar.update(1)
    finally:
        seed_bar.close()
    table = _tidy(rows)
    curves = (pd.concat(curve_frames, ignore_index=True) if curve_frames
              else pd.DataFrame(columns=["method", "seed", "experiment", "order", "fraction",
                                         "n_points", "score"]))
    comparison = Comparison(table=table, summary=summarize(table), curves=curves,
                            results=results, datasets=datasets, config=config)
    config["total_time"] = time.perf_counter() - started
    output.finish(comparison)
    logger.info("done in %.1f s", config["total_time"])
    for line in comparison.format_summary().to_string(index=False).splitlines():
        logger.info("  %s", line)
    return comparison


def _one(name, valuator, ds, seed, eval_model, metric, fraction_map, n_jobs, progress,
         baseline, on_error, output, results, curve_frames) -> dict[str, Any]:
    """Fit one method on one seed's data, evaluate it, and record everything."""
    row: dict[str, Any] = {"method": name, "seed": seed, "n_train": ds.n_train,
                           "n_noisy": len(ds.noisy_indices), "status": "", "error": ""}
    logger.info("seed %d: %s ...", seed, name)
    try:
        if ds.n_valid:
            valuator.fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
        else:
            valuator.fit(ds.x_train, ds.y_train)
    except DatavalueError as exc:
        if on_error == "raise":
            raise
        logger.error("seed %d: %s failed: %s", seed, name, exc)
        row.update(status="failed", error=" ".join(str(exc).split()), wall_time=float("nan"))
        row.update({c: float("nan") for c in (*DETECTION_COLUMNS, *CURVE_COLUMNS,
                                              *RETRAINING_COLUMNS)})
        return row
    result = replace(valuator.result_, ids=ds.ids_train)  # the data's own row ids
    results[(name, seed)] = result
    output.result(name, seed, result)
    scores, curves = _evaluate(result.values, ds, eval_model, metric, fraction_map, seed,
                               n_jobs, progress, baseline)
    curves.insert(0, "seed", seed)
    curves.insert(0, "method", name)
    curve_frames.append(curves)
    row.update(status=result.status, wall_time=result.wall_time, **scores)
    logger.info("seed %d: %s done in %.2f s (status %s): auc=%.4f f1_kmeans=%.4f "
                "removal_most_valuable_first=%.4f", seed, name, result.wall_time, result.status,
                scores["auc"], scores["f1_kmeans"], scores["removal_most_valuable_first"])
    return row

