"""What every influence runner shares (ours and the peers'): the case file, the models, timing.

Imported by ``benchmarks/impl_influence_ours.py`` (our ``.venv``) and by the peer runners
``peers/influence_captum.py`` and ``peers/influence_pydvl.py`` (their own virtual environments),
so it uses only the standard library, numpy and torch.

A case file (``.npz``, written by ``bench_influence.py``) holds::

    kind            "mlp" or "logreg"
    x_train, y_train, x_test, y_test
    widths          layer widths of the MLP, e.g. [64, 32, 10] (ReLU between layers);
                    for "logreg": [d, 1] (one logit, binary log-loss)
    W0, b0, W1, b1  the fitted weights (float64), layer by layer
    bias            1 if the layers have biases; 0 for "logreg", whose inputs end with a
                    constant column instead (every parameter under the same L2 penalty)
    weight_decay    L2 coefficient of the mean training objective
                    F = mean_i L(z_i) + weight_decay / 2 ||theta||^2 (MLP: every parameter;
                    logreg: the weights only, scikit-learn's 1 / (C n))
    C               (logreg) scikit-learn's C

Every implementation computes the same matrix: for each test point t and training point i,
``grad L(z_t)^T (H + damping I)^{-1} grad L(z_i)`` with ``H`` the Hessian of F; up to a positive
factor (ours divides by n, as a leave-one-out prediction) and a sign convention, which
``bench_influence.py`` removes before comparing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _runner import own_peak_mb  # noqa: E402  (benchmarks/: stdlib and numpy only)

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def parse_args() -> argparse.Namespace:
    """The ``_runner.py`` contract: ``--data CASE.npz --method SOLVER --params JSON --out OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--method", required=True, help="solver: exact, cg, lissa, arnoldi, ekfac")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.params = json.loads(args.params)
    return args


def set_threads(n: int) -> None:
    """torch's intra-op pool (the harness already capped OMP/BLAS through the environment)."""
    import torch

    torch.set_num_threads(max(1, int(n)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set
        pass


def load_case(path: str | os.PathLike) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as f:
        case = {k: f[k] for k in f.files}
    case["kind"] = str(case["kind"])
    case["widths"] = [int(w) for w in case["widths"]]
    case["weight_decay"] = float(case["weight_decay"])
    case["bias"] = bool(int(case.get("bias", 1)))
    return case


def warmup_case(case: dict[str, Any]) -> dict[str, Any]:
    """A tiny case of the same kind (4 features, 16 train and 4 test points, random weights):
    runners solve it once, untimed, before the real one, so that one-time costs of the first
    call in a process (lazy imports such as ``torch._dynamo`` under ``torch.func``, kernel
    initialisation) are not counted, for every library alike."""
    rng = np.random.default_rng(0)
    widths = [4, 1] if case["kind"] == "logreg" else [4, 3, 3]
    tiny: dict[str, Any] = {"kind": case["kind"], "widths": widths, "bias": case["bias"],
                            "weight_decay": 0.1, "C": 1.0}
    for k in range(len(widths) - 1):
        tiny[f"W{k}"] = rng.normal(size=(widths[k + 1], widths[k]))
        tiny[f"b{k}"] = rng.normal(size=widths[k + 1]) if case["bias"] else np.zeros(0)
    classes = 2 if case["kind"] == "logreg" else widths[-1]
    for name, n in (("train", 16), ("test", 4)):
        tiny[f"x_{name}"] = rng.normal(size=(n, 4))
        tiny[f"y_{name}"] = np.arange(n) % classes
    return tiny


def n_layers(case: dict[str, Any]) -> int:
    return len(case["widths"]) - 1


def build_module(case: dict[str, Any], dtype=None, *, two_logits: bool = False):
    """The fitted network as a ``torch.nn.Sequential`` of Linear (+ReLU) layers.

    ``two_logits`` (logreg only): the equivalent two-class softmax model with rows
    ``(-w/2, w/2)`` (for a peer whose solver needs cross-entropy); with L2 coefficient
    ``2 * weight_decay`` its optimum and its influence scores are those of the binary model.
    """
    import torch

    dtype = dtype or torch.float64
    widths = case["widths"]
    layers: list[torch.nn.Module] = []
    for k in range(len(widths) - 1):
        w = torch.as_tensor(case[f"W{k}"], dtype=torch.float64)
        b = torch.as_tensor(case[f"b{k}"], dtype=torch.float64)
        if two_logits:
            w = torch.cat([-w / 2, w / 2])
            b = torch.cat([-b / 2, b / 2]) if case["bias"] else b
        # Built in float64 whatever torch's default dtype, so that every library gets the
        # stored weights exactly (a float32 default would round them first).
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=case["bias"], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w)
            if case["bias"]:
                lin.bias.copy_(b)
        layers.append(lin)
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(dtype).eval()


def tensors(case: dict[str, Any], dtype=None, *, n_test: int | None = None):
    """``x_train, y_train, x_test, y_test`` as tensors (labels: long for the MLP, float for
    logreg), the test set cut to ``n_test`` rows."""
    import torch

    dtype = dtype or torch.float64
    out = []
    for name in ARRAYS:
        a = case[name]
        if name.startswith("x_"):
            t = torch.as_tensor(a).to(dtype)
        elif case["kind"] == "logreg":
            t = torch.as_tensor(a).to(dtype)
        else:
            t = torch.as_tensor(a).long()
        out.append(t)
    if n_test is not None:
        out[2], out[3] = out[2][:n_test], out[3][:n_test]
    return out


class Timer:
    """Named wall-clock sections: ``with timer("fit"): ...``; ``timer.total``."""

    def __init__(self) -> None:
        self.sections: dict[str, float] = {}
        self.extra: dict[str, float] = {}  # measurements outside the total
        self._name: str | None = None

    def __call__(self, name: str) -> Timer:
        self._name = name
        return self

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._name is not None
        self.sections[self._name] = (
            self.sections.get(self._name, 0.0) + time.perf_counter() - self._start
        )

    @property
    def total(self) -> float:
        return sum(self.sections.values())


def solver_summary(info: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A solver's ``info_`` for the result JSON: per-query lists (CG iterations, residuals)
    summarised as median / max / min; eigenvalues, Ritz residuals and ``drop`` left out."""
    out = {k: v for k, v in info.items()
           if k not in ("eigenvalues", "ritz_residuals", *drop)}
    for key in ("iterations", "residuals", "converged"):
        if key in out and isinstance(out[key], list) and out[key]:
            vals = np.asarray(out[key], dtype=float)
            out[key] = {"median": float(np.median(vals)), "max": float(vals.max()),
                        "min": float(vals.min())}
    return out


def write_result(
    out: str | os.PathLike,
    *,
    seconds: float,
    scores: np.ndarray | None,
    library: str,
    version: str,
    **extra: Any,
) -> None:
    """``OUT.json`` (``time_s`` etc., the ``_runner.py`` contract) and the score matrix as
    ``OUT.npy`` (float64, shape (n_test, n_train), saved flat-compatible)."""
    out = Path(out)
    values_path = None
    if scores is not None:
        values_path = out.with_suffix(".npy")
        np.save(values_path, np.asarray(scores, dtype=np.float64))
    record = {
        "time_s": seconds,
        "values_path": None if values_path is None else str(values_path),
        "library": library,
        "version": version,
        "vm_hwm_mb": own_peak_mb(),
        **extra,
    }
    out.write_text(json.dumps(record, indent=2, default=_plain))


def run_peer(
    compute,
    *,
    library: str,
    version,
    methods: tuple[str, ...],
    unavailable: str,
    tiny_options: dict[str, int] | None = None,
    load=None,
    warmup=None,
) -> None:
    """The ``main`` of a peer runner: parse the command line, set the threads, run ``compute``
    once untimed on :func:`warmup_case` (options in ``tiny_options`` capped at the given sizes),
    then timed on the case, and write the result. ``load(path)`` and ``warmup(case)`` replace
    :func:`load_case` and :func:`warmup_case` for other kinds of case (the CNN benchmark's).

    ``compute(case, method, params, timer) -> (scores tensor, n_params, info)`` times its fit
    and score sections with ``timer``; ``version()`` returns the library's version (called
    after the imports ``compute`` made); ``unavailable`` is the reason written for a method
    not in ``methods`` (``{method!r}`` is filled in).
    """
    import logging
    import warnings

    args = parse_args()
    p = args.params
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    set_threads(p.get("threads", 1))
    if args.method not in methods:
        write_unavailable(args.out, unavailable.format(method=args.method))
        return
    case = (load or load_case)(args.data)
    warm = Timer()
    with warm("warmup"):  # untimed, see warmup_case
        tiny = dict(p.get("options") or {})
        for key, small in (tiny_options or {}).items():
            if tiny.get(key) is not None:
                tiny[key] = min(tiny[key], small)
        try:
            compute((warmup or warmup_case)(case), args.method, {**p, "n_test": None, "options": tiny},
                    Timer())
        except Exception as exc:  # a failed warm-up changes nothing
            print(f"warm-up: {type(exc).__name__}: {exc}", file=sys.stderr)
    timer = Timer()
    scores, n_params, info = compute(case, args.method, p, timer)
    write_result(
        args.out, seconds=timer.total, scores=scores.detach().cpu().double().numpy(),
        library=library, version=version(), threads=torch.get_num_threads(),
        warmup_s=warm.sections["warmup"], fit_s=timer.sections["fit"],
        scores_s=timer.sections["scores"], n_params=n_params, solver_info=info,
    )


def write_unavailable(out: str | os.PathLike, reason: str) -> None:
    Path(out).write_text(json.dumps({"unavailable": reason}))


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(x)


def fail(out: str | os.PathLike, exc: BaseException) -> None:
    """Record a failure readably (the harness shows the last log line)."""
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    raise SystemExit(1)
