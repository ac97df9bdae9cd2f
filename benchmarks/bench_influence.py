"""Influence functions: speed, memory and accuracy of every solver, against Captum, pyDVL,
Kronfluence and dattri.

    .venv/bin/python benchmarks/bench_influence.py              # everything (~45 min on 2 cores)
    .venv/bin/python benchmarks/bench_influence.py --quick      # smoke test: small sizes, 1 repeat
    .venv/bin/python benchmarks/bench_influence.py --cases mlp,logreg --no-peers --repeats 3

Cases (the jobs and solver options are in ``solver_configs``):

``mlp``
    A 64-32-10 ReLU MLP (2,410 parameters) trained here (seeded, full-batch L-BFGS on mean
    cross-entropy + weight_decay/2 ||theta||^2) on all of ``digits`` (x / 16; 1,257 train / 540
    test, a fixed permutation). The influence matrix of every test point on every training
    point with each solver, damping ``--damping``; Pearson against our exact (damped) solver.
    The same model, data and damping go to Captum's, pyDVL's, Kronfluence's and dattri's
    solvers.
``cost`` (read off the ``mlp`` runs)
    The time of the score matrix with the solver's factors cached (``influence`` called again
    after the timed run, training gradients recomputed) divided by the time of one pass of
    per-example gradients over train + test, both measured in the same process.
``scale``
    20,000 train x 2,000 test points of ``make_classification`` (64 features, 10 classes), an
    MLP 64-512-128-10 (100,234 parameters) trained here (Adam); ekfac and arnoldi: peak memory.
``logreg``
    L2 logistic regression (scikit-learn, C=1, newton-cg to tol 1e-12; the intercept as a
    constant input column under the same penalty) on digits 1-vs-7 (252 train, first 20 of the
    other 109 as test); Pearson of each solver's scores against actual leave-one-out retraining
    (all 20 x 252 pairs; and, as in Koh & Liang Fig. 2, the 50 of largest |influence| per test
    point).

Every measurement is a fresh process (``benchmarks/_harness.py``: peak memory of the process
tree, the runner's own timer around fit + scores only); before the timed run, every runner
solves a tiny case of the same kind once, untimed (``peers/_influence_common.warmup_case``), so
that one-time costs of a fresh process (lazy imports, first calls) count for no library. Runs are
interleaved over repeats and the median time is reported. Threads: ``--threads N`` (default 1,
also ``--scale-threads``) for every implementation: torch intra-op threads, OMP/BLAS variables
and the CPU affinity of the process (the harness pins to the first N cores).

Runners: ``impl_influence_ours.py`` (our ``.venv``), ``peers/influence_captum.py``
(``benchmarks/.venvs/captum``: exact), ``peers/influence_pydvl.py`` (``benchmarks/.venvs/
pydvl-influence``: pyDVL with its ``influence`` extra; not the ``pydvl`` environment of
``run.py``, which ``peers/setup.sh`` rebuilds without torch; exact, CG, LiSSA, Arnoldi, EK-FAC),
``peers/influence_kronfluence.py`` (``benchmarks/.venvs/kronfluence``: EK-FAC and K-FAC) and
``peers/influence_dattri.py`` (``benchmarks/.venvs/dattri``: exact, CG, LiSSA, Arnoldi, EK-FAC);
the ``scale`` case is ours only. A missing environment is created on first use (torch's CPU
wheel first, then the peer with torch pinned on the same command line). Results: markdown tables
on stdout and ``benchmarks/results/influence-<timestamp>.md/.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import _harness as h

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache" / "influence"
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = BENCH_DIR.parent / ".." / "shared" / "data"
PEERS_DIR = BENCH_DIR / "peers"
RUNNERS = {
    "ours": BENCH_DIR / "impl_influence_ours.py",
    "captum": PEERS_DIR / "influence_captum.py",
    "pydvl": PEERS_DIR / "influence_pydvl.py",
    "kronfluence": PEERS_DIR / "influence_kronfluence.py",
    "dattri": PEERS_DIR / "influence_dattri.py",
}
LABELS = {"ours": "datavalue", "captum": "Captum", "pydvl": "pyDVL",
          "kronfluence": "Kronfluence", "dattri": "dattri"}
# Each peer's own virtual environment (benchmarks/.venvs/<name>) and what goes into it after the
# CPU wheel of torch; `ensure_peer_env` creates a missing one. pyDVL gets an environment of its
# own rather than the `pydvl` one of run.py, which peers/setup.sh rebuilds without torch.
# Kronfluence requires torchvision: pip adds the PyPI wheel matching torch 2.13, which does not
# load with the CPU torch, but Kronfluence never imports it. dattri does not depend on torch.
PEER_VENVS = {"captum": "captum", "pydvl": "pydvl-influence", "kronfluence": "kronfluence",
              "dattri": "dattri"}
PEER_PACKAGES = {"captum": ("captum",), "pydvl": ("pyDVL[influence]==0.10.*",),
                 "kronfluence": ("kronfluence==1.0.*",), "dattri": ("dattri==0.3.*",)}
# What must import in a peer's environment for it to count as installed.
PEER_PROBES = {"captum": "import captum", "pydvl": "import pydvl.influence.torch",
               "kronfluence": "import kronfluence.analyzer",
               "dattri": "import dattri.algorithm.influence_function"}
TORCH_VERSION = "2.13.0"


# --------------------------------------------------------------------------- the cases' data
def _digits() -> tuple[np.ndarray, np.ndarray]:
    path = SHARED_DATA / "digits.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path.resolve()} not found (the shared data sets)")
    with np.load(path) as f:
        return f["X"].astype(np.float64) / 16.0, f["y"].astype(np.int64)


def _train_mlp_lbfgs(x, y, widths, weight_decay, seed):
    """Full-batch L-BFGS on mean cross-entropy + weight_decay/2 ||theta||^2, float64, seeded:
    a (near-)stationary point, as influence functions assume."""
    import torch

    torch.manual_seed(seed)
    layers: list[Any] = []
    for k in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[k], widths[k + 1]))
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).double()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=5000, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt) + weight_decay / 2 * sum(
            (p**2).sum() for p in net.parameters())
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    loss = closure()
    grad_norm = float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())
    return net, float(loss.detach()), grad_norm


def _train_mlp_adam(x, y, widths, weight_decay, seed, epochs):
    """Minibatch Adam (the scale case: 20,000 points), float32, then copied to float64."""
    import torch

    torch.manual_seed(seed)
    layers: list[Any] = []
    for k in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[k], widths[k + 1]))
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(yt), generator=gen).split(256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[rows]), yt[rows]).backward()
            opt.step()
    return net.double()


def _weights(net) -> dict[str, np.ndarray]:
    import torch

    out = {}
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for k, lin in enumerate(linears):
        out[f"W{k}"] = lin.weight.detach().double().numpy()
        out[f"b{k}"] = lin.bias.detach().double().numpy()
    return out


def make_mlp_case(path: Path, weight_decay: float, quick: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # tiny matrices: more threads only spin (shared machine)
    x, y = _digits()
    perm = np.random.default_rng(0).permutation(len(y))
    n_train = 1257
    tr, te = perm[:n_train], perm[n_train:]
    if quick:
        tr, te = tr[:300], te[:60]
    widths = [64, 32, 10]
    start = time.perf_counter()
    net, loss, grad_norm = _train_mlp_lbfgs(x[tr], y[tr], widths, weight_decay, seed=0)
    with torch.no_grad():
        acc = float((net(torch.as_tensor(x[te])).argmax(1).numpy() == y[te]).mean())
    meta = {"train_loss": loss, "objective_grad_norm": grad_norm, "test_accuracy": acc,
            "train_time_s": time.perf_counter() - start}
    np.savez(path, kind="mlp", x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te],
             widths=np.array(widths), weight_decay=weight_decay, meta=json.dumps(meta),
             **_weights(net))
    return meta


def make_scale_case(path: Path, quick: bool) -> dict[str, Any]:
    import torch
    from sklearn.datasets import make_classification

    torch.set_num_threads(1)  # tiny matrices: more threads only spin (shared machine)
    n_train, n_test = (2_000, 200) if quick else (20_000, 2_000)
    x, y = make_classification(n_samples=n_train + n_test, n_features=64, n_informative=32,
                               n_redundant=0, n_classes=10, n_clusters_per_class=1,
                               class_sep=1.5, random_state=0)
    x = (x - x.mean(0)) / x.std(0)
    widths = [64, 512, 128, 10]
    weight_decay = 1e-4
    start = time.perf_counter()
    net = _train_mlp_adam(x[:n_train], y[:n_train], widths, weight_decay, seed=0,
                          epochs=3 if quick else 10)
    with torch.no_grad():
        acc = float((net(torch.as_tensor(x[n_train:])).argmax(1).numpy() == y[n_train:]).mean())
    n_params = sum(p.numel() for p in net.parameters())
    meta = {"test_accuracy": acc, "n_params": n_params, "train_time_s": time.perf_counter() - start}
    np.savez(path, kind="mlp", x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
             y_test=y[n_train:], widths=np.array(widths), weight_decay=weight_decay,
             meta=json.dumps(meta), **_weights(net))
    return meta


LOGREG_C = 1.0


def _logreg(x, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=LOGREG_C, fit_intercept=False, solver="newton-cg", tol=1e-12,
                              max_iter=1000).fit(x, y)


def _log_losses(est, x, y) -> np.ndarray:
    p = np.clip(est.predict_proba(x)[np.arange(len(y)), y], 1e-300, 1)
    return -np.log(p)


def make_logreg_case(path: Path, quick: bool) -> dict[str, Any]:
    """Digits 1-vs-7 as in tests/influence (x/16, permutation seed 0, 252 train), and the actual
    leave-one-out change of each test loss, by refitting the estimator without each point.

    The intercept is a constant last input column (``fit_intercept=False``), so that the L2
    penalty covers every parameter: Captum and pyDVL can only add one ``lambda I`` to the whole
    Hessian, and with scikit-learn's unpenalised intercept they would solve a different system
    than the estimator's (in a trial run that alone cost them 0.01 of Pearson against our exact
    solver)."""
    from threadpoolctl import threadpool_limits

    x, y = _digits()
    keep = (y == 1) | (y == 7)
    x, y = x[keep], (y[keep] == 7).astype(np.int64)
    x = np.hstack([x, np.ones((len(x), 1))])
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:252], perm[252:272]
    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    start = time.perf_counter()
    with threadpool_limits(1):
        est = _logreg(xtr, ytr)
        base = _log_losses(est, xte, yte)
        n_loo = 40 if quick else len(ytr)
        actual = np.full((len(yte), len(ytr)), np.nan)
        for i in range(n_loo):
            refit = _logreg(np.delete(xtr, i, 0), np.delete(ytr, i))
            actual[:, i] = _log_losses(refit, xte, yte) - base
    meta = {"loo_refits": n_loo, "loo_time_s": time.perf_counter() - start}
    n = len(ytr)
    np.savez(path, kind="logreg", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             widths=np.array([x.shape[1], 1]), weight_decay=1.0 / (LOGREG_C * n), C=LOGREG_C,
             bias=0, W0=est.coef_.astype(np.float64), b0=np.zeros(0),
             loo_actual=actual, meta=json.dumps(meta))
    return meta


# --------------------------------------------------------------------------- configuration
@dataclass
class Job:
    """One implementation x solver on one case."""

    case: str
    impl: str  # ours or a peer (RUNNERS)
    solver: str
    params: dict[str, Any]
    label: str = ""  # shown in the table (solver and its key options)


def solver_configs(args) -> dict[str, dict[str, list[Job]]]:
    """The jobs of each case. Damping: ``args.damping`` on top of the objective's L2 term."""
    lam = args.damping
    t = args.threads
    base = {"threads": t, "damping": lam}
    # LiSSA's scale s must exceed the largest eigenvalue of (minibatch) H + lambda I; both
    # libraries get the same s (ours would estimate 1.5 lambda_max by power iteration: 1.86 for
    # the MLP, 0.49 for logreg), so both run the same recursion.
    mlp_ours = [
        ("exact", {}),
        ("cg", {"rtol": 1e-2}),
        ("lissa", {"depth": 100, "batch_size": 64, "scale": 2.0}),
        ("arnoldi", {"rank": 100}),
        ("ekfac", {}),
        # The cost model's "cached factor" for CG: the training gradients solved once.
        ("cg", {"rtol": 1e-2, "cache_train_solves": True}),
        # EK-FAC refined by one step of conjugate gradients on the true curvature (EK-FAC as
        # the preconditioner): the answer to "EK-FAC as accurate as pyDVL's".
        ("cg", {"preconditioner": "ekfac", "maxiter": 1, "rtol": 1e-12}),
    ]
    mlp_pydvl = [
        ("exact", {}),
        ("cg", {"rtol": 1e-2, "solve_simultaneously": True, "maxiter": 100}),
        ("lissa", {"maxiter": 100, "batch_size": 64, "scale": 2.0, "rtol": 1e-12}),
        ("arnoldi", {"rank": 100}),
        ("ekfac", {"dtype": "float32"}),
    ]
    # Kronfluence: EK-FAC and K-FAC only, float64, damping_factor = damping + l2.
    kronfluence = [("ekfac", {}), ("kfac", {})]
    # dattri: CG always runs max_iter iterations (0.3 accepts tol but ignores it); LiSSA and
    # Arnoldi with the same depth, minibatch, scale and rank as ours (Arnoldi's Krylov dimension
    # = ours' default, see peers/influence_dattri.py).
    mlp_dattri = [
        ("exact", {}),
        ("cg", {"max_iter": 100, "tol": 1e-2}),
        ("lissa", {"depth": 100, "batch_size": 64, "scale": 2.0}),
        ("arnoldi", {"rank": 100}),
        ("ekfac", {}),
    ]
    logreg_ours = [
        ("exact", {}),
        ("cg", {"rtol": 1e-6}),
        ("lissa", {"depth": 1000, "scale": 0.5}),
        ("arnoldi", {"rank": 20}),
        ("ekfac", {}),
    ]
    logreg_pydvl = [
        ("exact", {}),
        ("cg", {"rtol": 1e-6, "solve_simultaneously": True}),
        ("lissa", {"maxiter": 1000, "scale": 0.5, "rtol": 1e-12}),
        ("arnoldi", {"rank": 20}),
        ("ekfac", {"dtype": "float32"}),
    ]
    logreg_dattri = [
        ("exact", {}),
        ("cg", {"max_iter": 100, "tol": 1e-6}),
        ("lissa", {"depth": 1000, "scale": 0.5}),
        ("arnoldi", {"rank": 20}),
        ("ekfac", {}),
    ]
    n_test_mlp = args.n_test

    def jobs(case, impl, specs, extra):
        out = []
        for solver, options in specs:
            options = dict(options)
            dtype = options.pop("dtype", None)  # job parameters, not solver options
            cached = options.pop("cache_train_solves", False)
            params = {**base, **extra, "options": options}
            if dtype:
                params["dtype"] = dtype
            if cached:
                params["cache_train_solves"] = True
            label = (_label(solver, options) + (f" [{dtype}]" if dtype else "")
                     + (" [cache_train_solves]" if cached else ""))
            out.append(Job(case, impl, solver, params, label))
        return out

    mlp = (jobs("mlp", "ours", mlp_ours, {"floor": True, "warm_scores": True,
                                          "n_test": n_test_mlp})
           + jobs("mlp", "captum", [("exact", {})], {"n_test": n_test_mlp})
           + jobs("mlp", "pydvl", mlp_pydvl, {"n_test": n_test_mlp})
           + jobs("mlp", "kronfluence", kronfluence, {"n_test": n_test_mlp})
           + jobs("mlp", "dattri", mlp_dattri, {"n_test": n_test_mlp}))
    logreg = (jobs("logreg", "ours", logreg_ours, {"damping": 0.0})
              + jobs("logreg", "captum", [("exact", {})], {"damping": 0.0})
              + jobs("logreg", "pydvl", logreg_pydvl, {"damping": 0.0})
              + jobs("logreg", "kronfluence", kronfluence, {"damping": 0.0})
              + jobs("logreg", "dattri", logreg_dattri, {"damping": 0.0}))
    scale_threads = args.scale_threads
    scale = [Job("scale", "ours", s, {"threads": scale_threads, "damping": lam, "options": o,
                                      "save_scores": False, "floor": True,
                                      "floor_repeats": 1}, _label(s, o))
             for s, o in (("ekfac", {}), ("arnoldi", {"rank": 50}))]
    return {"mlp": {"jobs": mlp}, "logreg": {"jobs": logreg}, "scale": {"jobs": scale}}


def _label(solver: str, options: dict[str, Any]) -> str:
    if not options:
        return solver
    return solver + " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"


# --------------------------------------------------------------------------- peers
def peer_python(impl: str) -> Path:
    if impl == "ours":
        return Path(sys.executable)
    return h.VENVS_DIR / PEER_VENVS[impl] / "bin" / "python"


def ensure_peer_env(peer: str) -> str | None:
    """Create ``benchmarks/.venvs/<peer>`` if missing: torch's CPU wheel first (pinned: an
    unpinned torch pulls several GB of CUDA), then the peer. Returns a problem or None."""
    python = peer_python(peer)
    probe = PEER_PROBES[peer]
    if python.is_file() and subprocess.call([str(python), "-c", probe],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) == 0:
        return None
    venv = h.VENVS_DIR / PEER_VENVS[peer]
    log = h.VENVS_DIR / f"{PEER_VENVS[peer]}-setup.log"
    print(f"  installing {peer} into {venv} (log: {log}) ...", flush=True)
    steps = []
    if not python.is_file():
        steps.append(["python3", "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    sklearn = f"scikit-learn=={_sklearn_version()}"
    steps += [pip + [f"torch=={TORCH_VERSION}"],
              pip + [f"torch=={TORCH_VERSION}", sklearn, *PEER_PACKAGES[peer]]]
    with open(log, "w") as f:
        for cmd in steps:
            if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT) != 0:
                return f"installation failed; see {log}"
    return None


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


# --------------------------------------------------------------------------- measuring
@dataclass
class Result:
    case: str
    impl: str
    solver: str
    label: str
    status: str
    threads: int | None = None
    times: list[float] = field(default_factory=list)
    time_s: float | None = None
    fit_s: float | None = None
    scores_s: float | None = None
    grad_pass_s: float | None = None
    scores_warm_s: float | None = None
    peak_mb: float | None = None
    pearson: float | None = None  # against the case's reference
    pearson_exact: float | None = None  # against our exact solver (logreg)
    pearson_top50: float | None = None  # logreg: 50 largest |score| per test point
    version: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def top_k_pearson(scores: np.ndarray, actual: np.ndarray, k: int = 50) -> float | None:
    """Koh & Liang Fig. 2: per test point the k training points of largest |score|."""
    pred, act = [], []
    for t in range(scores.shape[0]):
        cols = [i for i in np.argsort(-np.abs(scores[t])) if np.isfinite(actual[t, i])][:k]
        pred += list(scores[t, cols])
        act += list(actual[t, cols])
    return pearson(np.array(pred), np.array(act))


# The peers' score conventions relative to ours, (1/n) g_t^T (H + lambda)^{-1} g_i (helpful > 0):
# Captum's NaiveInfluenceFunction returns g_t^T (H_sum + reg)^{-1} g_i with H_sum the *summed*
# Hessian (same sign and scale as ours when reg = n lambda); pyDVL's "up" influences are
# g_t^T (H + lambda)^{-1} g_i (same sign, n times ours). Kronfluence's and dattri's runners
# divide by n themselves (their scores are n times ours, same sign). Only the sign matters for
# Pearson.
SIGN = {"ours": 1.0, "captum": 1.0, "pydvl": 1.0, "kronfluence": 1.0, "dattri": 1.0}


def run_jobs(jobs: list[Job], case_file: Path, *, repeats: int, timeout: float,
             workdir: Path) -> list[Result]:
    outcomes: dict[int, list[h.RunOutcome]] = {i: [] for i in range(len(jobs))}
    blocked: dict[int, str] = {}
    for rep in range(repeats):
        for i, job in enumerate(jobs):
            if i in blocked:
                continue
            python = peer_python(job.impl)
            print(f"  {job.case}: {LABELS[job.impl]} {job.label} (run {rep + 1}/{repeats}) ...",
                  end=" ", flush=True)
            out = workdir / job.case / f"{job.impl}-{job.solver}-{i}-{rep}.json"
            # run_env(n_jobs) caps OMP/BLAS and pins the process to the first n_jobs cores.
            params = {**job.params, "n_jobs": int(job.params.get("threads", 1))}
            outcome = h.run_once(python, RUNNERS[job.impl], case_file, job.solver, params, out,
                                 timeout=timeout)
            if outcome.status == "ok":
                print(f"{outcome.time_s:.2f} s, {outcome.peak_mb:.0f} MB", flush=True)
            else:
                print(outcome.status, flush=True)
                blocked[i] = outcome.status
            outcomes[i].append(outcome)
    results = []
    for i, job in enumerate(jobs):
        ok = [o for o in outcomes[i] if o.status == "ok"]
        if not ok:
            results.append(Result(job.case, job.impl, job.solver, job.label,
                                  blocked.get(i, "no run")))
            continue
        info = ok[-1].info

        def med(key: str, ok: list[h.RunOutcome] = ok) -> float | None:
            values = [o.info[key] for o in ok if o.info.get(key) is not None]
            return statistics.median(values) if values else None

        r = Result(
            case=job.case, impl=job.impl, solver=job.solver, label=job.label, status="ok",
            threads=info.get("threads"), times=[o.time_s for o in ok],
            time_s=statistics.median(o.time_s for o in ok), fit_s=med("fit_s"),
            scores_s=med("scores_s"), grad_pass_s=med("grad_pass_s"),
            scores_warm_s=med("scores_warm_s"),
            peak_mb=max(o.peak_mb for o in ok), version=f"{info.get('library')} "
            f"{info.get('version')}",
            info={k: v for k, v in info.items() if k not in ("values_path", "time_s")},
        )
        r.info["scores"] = None if ok[-1].values is None else ok[-1].values * SIGN[job.impl]
        results.append(r)
    return results


# --------------------------------------------------------------------------- scoring the runs
def add_accuracy(results: list[Result], case_file: Path) -> None:
    """Pearson of every run's scores against the case's reference."""
    with np.load(case_file) as f:
        actual = f["loo_actual"] if "loo_actual" in f.files else None
        shape = (len(f["x_test"]), len(f["x_train"]))
    exact = next((r for r in results if r.impl == "ours" and r.solver == "exact"
                  and r.status == "ok"), None)
    ref_exact = None if exact is None else exact.info.get("scores")
    for r in results:
        s = r.info.get("scores")
        if r.status != "ok" or s is None:
            continue
        s = np.asarray(s).reshape(-1, shape[1])
        if ref_exact is not None:
            r.pearson_exact = pearson(s, np.asarray(ref_exact).reshape(s.shape))
        if actual is not None:
            a = actual[: s.shape[0]]
            r.pearson = pearson(s, a)
            r.pearson_top50 = top_k_pearson(s, a)
        else:
            r.pearson = r.pearson_exact


# --------------------------------------------------------------------------- tables
def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _t(x: float | None) -> str:
    if x is None:
        return "-"
    return format(x, ".3f" if x < 1 else ".2f" if x < 100 else ".0f")


def _cells(r: Result) -> list[str]:
    return [LABELS[r.impl], r.label]


def mlp_table(results: list[Result]) -> str:
    head = ("impl", "solver (options)", "threads", "time_s", "fit_s", "scores_s", "peak_MB",
            "Pearson vs exact", "time / datavalue's")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ours = {r.solver: r for r in results if r.impl == "ours" and r.status == "ok"}
    for r in results:
        if r.status != "ok":
            lines.append("| " + " | ".join(_cells(r) + ["-", r.status] + [""] * 5) + " |")
            continue
        mine = ours.get(r.solver)
        rel = None if mine is None or r.impl == "ours" else r.time_s / mine.time_s
        lines.append("| " + " | ".join(_cells(r) + [
            _f(r.threads, "d"), _t(r.time_s), _t(r.fit_s), _t(r.scores_s),
            _f(r.peak_mb, ".0f"), _f(r.pearson, ".4f"), _f(rel, ".2f")]) + " |")
    return "\n".join(lines)


def logreg_table(results: list[Result]) -> str:
    head = ("impl", "solver (options)", "threads", "time_s", "peak_MB", "Pearson vs LOO",
            "Pearson vs LOO (top-50)", "Pearson vs our exact")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.status != "ok":
            lines.append("| " + " | ".join(_cells(r) + ["-", r.status] + [""] * 4) + " |")
            continue
        lines.append("| " + " | ".join(_cells(r) + [
            _f(r.threads, "d"), _t(r.time_s), _f(r.peak_mb, ".0f"), _f(r.pearson, ".4f"),
            _f(r.pearson_top50, ".4f"), _f(r.pearson_exact, ".4f")]) + " |")
    return "\n".join(lines)


def cost_table(results: list[Result]) -> str:
    head = ("solver", "scores_s, factors cached (warm)", "scores_s, first call",
            "grad pass train+test (s)", "ratio (warm)", "ratio (first call)", "fit_s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.impl != "ours" or r.status != "ok" or not r.grad_pass_s:
            continue
        warm = r.scores_warm_s
        lines.append("| " + " | ".join([
            r.label, _t(warm), _t(r.scores_s), _f(r.grad_pass_s, ".3f"),
            _f(None if warm is None else warm / r.grad_pass_s, ".1f"),
            _f(r.scores_s / r.grad_pass_s, ".1f"), _t(r.fit_s)]) + " |")
    return "\n".join(lines)


def scale_table(results: list[Result], meta: dict[str, Any]) -> str:
    head = ("solver", "threads", "time_s", "fit_s", "scores_s", "grad pass (s)",
            "scores / grad pass", "peak_MB")
    lines = [f"{meta.get('n_train')} train x {meta.get('n_test')} test, "
             f"{meta.get('n_params')} parameters (MLP {meta.get('widths')}), test accuracy "
             f"{_f(meta.get('test_accuracy'), '.3f')}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.label} | - | {r.status} | | | | | |")
            continue
        ratio = r.scores_s / r.grad_pass_s if r.grad_pass_s else None
        lines.append("| " + " | ".join([
            r.label, _f(r.threads, "d"), _t(r.time_s), _t(r.fit_s), _t(r.scores_s),
            _t(r.grad_pass_s), _f(ratio, ".1f"), _f(r.peak_mb, ".0f")]) + " |")
    return "\n".join(lines)


def peer_lines(results: list[Result]) -> list[str]:
    """``datavalue / peer`` time and memory for each solver both have, with both accuracies."""
    ours: dict[str, Result] = {}
    for r in results:  # the first row of each solver (later rows are variants)
        if r.impl == "ours" and r.status == "ok":
            ours.setdefault(r.solver, r)
    out = []
    for solver, mine in ours.items():
        best = best_peer([r for r in results if r.impl != "ours" and r.solver == solver])
        if best is not None:
            out.append(f"- {solver}: best peer (fastest at the top Pearson, ties within "
                       f"{PEARSON_TIE:g}) {LABELS[best.impl]} {_t(best.time_s)} s, Pearson "
                       f"{_f(best.pearson, '.4f')}; datavalue {_t(mine.time_s)} s, "
                       f"{_f(mine.pearson, '.4f')}")
    for r in results:
        mine = ours.get(r.solver)
        if r.impl == "ours" or r.status != "ok" or mine is None:
            continue
        out.append(
            f"- {r.solver}: datavalue / {LABELS[r.impl]} time = {mine.time_s / r.time_s:.2f} "
            f"({_t(mine.time_s)} s vs {_t(r.time_s)} s), peak memory "
            f"{mine.peak_mb / r.peak_mb:.2f} ({mine.peak_mb:.0f} MB vs {r.peak_mb:.0f} MB), "
            f"Pearson {_f(mine.pearson, '.4f')} vs {_f(r.pearson, '.4f')}")
    return out


def _find(results, impl, solver):
    return next((r for r in results if r.impl == impl and r.solver == solver
                 and r.status == "ok"), None)


#: Two Pearson values closer than this are equally accurate (two converged CG runs differ by
#: about 1e-5; the solvers' real differences are >= 1e-3).
PEARSON_TIE = 5e-4


def best_peer(peers: list[Result]) -> Result | None:
    """The best peer: the fastest among the peers as accurate as the most accurate one (within
    :data:`PEARSON_TIE`). Not simply the most accurate: a peer that reaches the same Pearson
    20x faster is the one to beat."""
    rated = [r for r in peers if r.status == "ok" and r.pearson is not None]
    if not rated:
        return None
    top = max(r.pearson for r in rated)
    return min((r for r in rated if r.pearson >= top - PEARSON_TIE), key=lambda r: r.time_s)


def target_lines(case: str, results: list[Result]) -> list[str]:
    """One line per speed/accuracy target (met / missed)."""
    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else "met" if ok else "MISSED"

    out = []
    if case == "mlp":
        ex, cap = _find(results, "ours", "exact"), _find(results, "captum", "exact")
        if ex:
            speed = None if cap is None else cap.time_s / ex.time_s
            out.append(f"- exact >= 2x faster than Captum's exact: "
                       f"{_f(speed, '.2f')}x -> {mark(None if speed is None else speed >= 2)}")
            out.append(f"- exact peak memory < 1 GB: {ex.peak_mb:.0f} MB -> "
                       f"{mark(ex.peak_mb < 1024)}")
        for solver, corr, secs in (("cg", 0.99, 5.0), ("lissa", 0.9, 20.0), ("ekfac", 0.75, None)):
            r = _find(results, "ours", solver)
            if r is None:
                continue
            ok = (r.pearson or 0) >= corr and (secs is None or r.time_s < secs)
            limit = "" if secs is None else f" in < {secs:g} s"
            out.append(f"- {solver} Pearson >= {corr}{limit}: {_f(r.pearson, '.4f')} in "
                       f"{_t(r.time_s)} s -> {mark(ok)}")
        for solver in ("cg", "lissa", "arnoldi", "ekfac"):
            mine = _find(results, "ours", solver)
            peers = [r for r in results if r.impl != "ours" and r.solver == solver
                     and r.status == "ok"]
            if mine and peers:
                best = best_peer(peers)
                if best is None:
                    continue
                ok = (mine.pearson or 0) >= (best.pearson or 0) - PEARSON_TIE \
                    and mine.time_s <= best.time_s
                out.append(f"- {solver} more accurate and faster than the best peer "
                           f"({LABELS[best.impl]}): {_f(mine.pearson, '.4f')} vs "
                           f"{_f(best.pearson, '.4f')}, {_t(mine.time_s)} s vs "
                           f"{_t(best.time_s)} s -> {mark(ok)}")
        refined = next((r for r in results if r.impl == "ours" and r.status == "ok"
                        and (r.info.get("solver_info") or {}).get("preconditioner")), None)
        peers = [r for r in results if r.impl != "ours" and r.solver == "ekfac"
                 and r.status == "ok"]
        best = best_peer(peers)
        if refined is not None and best is not None:
            ok = (refined.pearson or 0) >= (best.pearson or 0) and refined.time_s <= best.time_s
            out.append(f"- ekfac + 1 CG step at least as accurate as the best peer's EK-FAC "
                       f"({LABELS[best.impl]}) in no more time: {_f(refined.pearson, '.4f')} vs "
                       f"{_f(best.pearson, '.4f')}, {_t(refined.time_s)} s vs "
                       f"{_t(best.time_s)} s -> {mark(ok)}")
    elif case == "cost":
        for solver in ("cg", "arnoldi", "ekfac"):
            for r in results:
                if r.impl != "ours" or r.solver != solver or r.status != "ok" \
                        or not r.grad_pass_s:
                    continue
                ratio = (r.scores_warm_s or r.scores_s) / r.grad_pass_s
                out.append(f"- {r.label}: score matrix / gradient pass = {ratio:.1f} (<= 3) "
                           f"-> {mark(ratio <= 3)}")
    elif case == "scale":
        for r in results:
            if r.impl == "ours":
                ok = None if r.status != "ok" else r.peak_mb < 4096
                out.append(f"- {r.solver} finishes with peak memory < 4 GB: "
                           f"{_f(r.peak_mb, '.0f')} MB ({r.status}) -> {mark(ok)}")
    elif case == "logreg":
        # The target quotes what the peers reached on the original setup; the run's own peers, on the
        # same estimator and data, are the comparison that isolates the solver.
        refs = {"exact": 0.998, "cg": 0.998, "lissa": 0.99, "ekfac": 0.978, "arnoldi": 0.947}
        for solver, ref in refs.items():
            r = _find(results, "ours", solver)
            if r is None:
                continue
            peers = [x for x in results if x.impl != "ours" and x.solver == solver
                     and x.status == "ok" and x.pearson is not None]
            best = best_peer(peers)
            if best is None:
                verdict = "n/a (no peer ran)"
            else:
                verdict = (f"best peer here {LABELS[best.impl]} {best.pearson:.4f} -> "
                           f"{mark(r.pearson >= best.pearson - PEARSON_TIE)}")
            out.append(f"- {solver}: Pearson vs LOO {_f(r.pearson, '.4f')}; {verdict} "
                       f"(the peers' figure on the original setup: {ref})")
    return out


# --------------------------------------------------------------------------- main
def _case_path(name: str, args) -> Path:
    tag = "-quick" if args.quick else ""
    if name == "mlp":
        return CACHE_DIR / f"mlp-wd{args.weight_decay:g}{tag}.npz"
    return CACHE_DIR / f"{name}{tag}.npz"


def prepare(name: str, args) -> tuple[Path, dict[str, Any]]:
    path = _case_path(name, args)
    if not path.is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"  preparing {path.name} (trained once, then cached) ...", flush=True)
        tmp = path.with_suffix(".tmp.npz")
        if name == "mlp":
            make_mlp_case(tmp, args.weight_decay, args.quick)
        elif name == "scale":
            make_scale_case(tmp, args.quick)
        else:
            make_logreg_case(tmp, args.quick)
        tmp.replace(path)
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        meta.update(n_train=len(f["x_train"]), n_test=len(f["x_test"]),
                    widths=[int(w) for w in f["widths"]], weight_decay=float(f["weight_decay"]))
        meta.setdefault("n_params", int(sum(f[k].size for k in f.files
                                            if k[0] in "Wb" and k[1:].isdigit())))
    return path, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (smoke test)")
    parser.add_argument("--cases", default="mlp,logreg,scale",
                        help="comma-separated: mlp (also gives the cost model), logreg, scale")
    parser.add_argument("--repeats", type=int, default=None, help="runs per job (median)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads (and cores) per run for mlp and logreg (default 1)")
    parser.add_argument("--scale-threads", type=int, default=1,
                        help="threads for the scale case (default 1: on a shared machine more "
                             "threads spin-wait; give 2 on an idle one)")
    parser.add_argument("--scale-repeats", type=int, default=1,
                        help="runs per job of the scale case (default 1: ~10 min each)")
    parser.add_argument("--damping", type=float, default=0.01,
                        help="damping lambda of the MLP cases (default 0.01)")
    parser.add_argument("--weight-decay", type=float, default=1e-3,
                        help="L2 coefficient the MLP is trained with (default 1e-3)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="test points of the mlp case (default: all 540)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--solvers", default=None,
                        help="only these solvers (comma-separated), e.g. exact,ekfac")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument("--keep-scores", action="store_true",
                        help="keep every run's score matrix (.npy) under "
                             "benchmarks/.cache/influence-runs/")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    timeout = args.timeout or (300 if args.quick else 1800)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - {"mlp", "logreg", "scale"}
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}")

    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    workdir = BENCH_DIR / ".cache" / "influence-runs" / stamp
    header = _header(args)
    print(header, flush=True)
    configs = solver_configs(args)
    peers_ok: dict[str, str | None] = {}
    if not args.no_peers and {"mlp", "logreg"} & set(cases):
        for peer in PEER_VENVS:
            peers_ok[peer] = ensure_peer_env(peer)
    only = None if args.solvers is None else {s.strip() for s in args.solvers.split(",")}

    sections, record = [header], {"args": vars(args), "cases": {}}
    for name in cases:
        path, meta = prepare(name, args)
        jobs = [j for j in configs[name]["jobs"]
                if (j.impl == "ours" or not args.no_peers) and (only is None or j.solver in only)]
        if args.quick:
            for j in jobs:
                _shrink(j)
        ready = []
        skipped = []
        for j in jobs:
            problem = peers_ok.get(j.impl)
            if problem:
                skipped.append(Result(j.case, j.impl, j.solver, j.label,
                                      f"unavailable: {problem}"))
            else:
                ready.append(j)
        print(f"\n## {name}", flush=True)
        repeats = args.scale_repeats if name == "scale" else args.repeats
        results = run_jobs(ready, path, repeats=repeats, timeout=timeout,
                           workdir=workdir) + skipped
        add_accuracy(results, path)
        if not args.keep_scores:  # score matrices: ~5 MB per run (mlp), compared above
            for npy in (workdir / name).glob("*.npy"):
                npy.unlink()
        text = _section(name, results, meta, args)
        print("\n" + text, flush=True)
        sections.append(text)
        record["cases"][name] = {
            "meta": meta,
            "results": [_jsonable_result(r) for r in results],
        }
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    footer = f"Load average at the end: {_fmt_load(load_end)}"
    print(footer)
    sections.append(footer)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"influence-{stamp}"
    stem.with_suffix(".md").write_text("\n\n".join(sections) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=_plain))
    print(f"\nwritten: {stem}.md, {stem}.json")
    return 0


def _shrink(job: Job) -> None:
    """--quick: fewer iterations, so that the smoke test runs in a few minutes."""
    o = job.params.get("options", {})
    for key, small in (("depth", 50), ("maxiter", 50), ("max_iter", 50), ("rank", 20)):
        if key in o:
            o[key] = min(o[key], small)
    dtype = job.params.get("dtype")
    job.label = (_label(job.solver, o) + (f" [{dtype}]" if dtype else "")
                 + (" [cache_train_solves]" if job.params.get("cache_train_solves") else ""))


def _section(name: str, results: list[Result], meta: dict[str, Any], args) -> str:
    if name == "mlp":
        desc = (f"### Case 1: MLP {meta['widths']} on digits ({meta['n_train']} train x "
                f"{args.n_test or meta['n_test']} test), weight decay {meta['weight_decay']:g}, "
                f"damping {args.damping:g}; model test accuracy "
                f"{_f(meta.get('test_accuracy'), '.3f')}, ||grad F|| at the fitted parameters "
                f"{_f(meta.get('objective_grad_norm'), '.1e')}")
        parts = [desc, "", mlp_table(results), "", "Against the peers (same model, data, "
                 "damping, threads):", *peer_lines(results), "", "Targets:",
                 *target_lines("mlp", results), "",
                 "### Case 2: cost model (score matrix after fit / one pass of per-example "
                 "gradients over train + test)", "", cost_table(results), "", "Targets:",
                 *target_lines("cost", results)]
    elif name == "logreg":
        desc = (f"### Case 4: L2 logistic regression (C={LOGREG_C:g}), digits 1-vs-7 "
                f"({meta['n_train']} train x {meta['n_test']} test), Pearson against actual "
                f"leave-one-out retraining ({meta.get('loo_refits')} refits)")
        parts = [desc, "", logreg_table(results), "", "Against the peers:",
                 *peer_lines(results), "", "Targets:", *target_lines("logreg", results)]
    else:
        parts = ["### Case 3: scale", "", scale_table(results, meta), "", "Targets:",
                 *target_lines("scale", results)]
    return "\n".join(parts)


def _fmt_load(load) -> str:
    return "n/a" if load is None else ", ".join(f"{x:.2f}" for x in load)


def _header(args) -> str:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"# Influence-function benchmark ({time.strftime('%Y-%m-%d %H:%M')}"
        f"{', quick' if args.quick else ''})",
        "",
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch "
        f"{torch.__version__}; threads per run: {args.threads} (mlp, logreg), "
        f"{args.scale_threads} (scale); {args.repeats} run(s) per job "
        f"({args.scale_repeats} for scale), median time, max peak "
        f"memory (process tree PSS, includes the interpreter and torch, ~400 MB).",
        f"Load average at the start: {_fmt_load(load)}"
        + ("  (WARNING: the machine is busy; times are inflated and noisy)"
           if load and load[0] > 0.5 * (os.cpu_count() or 1) else ""),
    ]
    return "\n".join(lines)


def _jsonable_result(r: Result) -> dict[str, Any]:
    d = asdict(r)
    d["info"] = {k: v for k, v in r.info.items() if k != "scores"}
    return d


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
