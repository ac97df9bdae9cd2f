"""Influence functions: speed, memory and accuracy of every solver, against Captum and pyDVL.

    .venv/bin/python benchmarks/bench_influence.py              # everything (~30-60 min, 2 cores)
    .venv/bin/python benchmarks/bench_influence.py --quick      # smoke test: small sizes, 1 repeat
    .venv/bin/python benchmarks/bench_influence.py --cases mlp,logreg --no-peers --repeats 3

Cases (see ``CASES`` below and benchmarks/README.md):

``mlp``
    A 64-32-10 ReLU MLP (2,410 parameters) trained here (seeded, full-batch L-BFGS on mean
    cross-entropy + weight_decay/2 ||theta||^2) on all of ``digits`` (x / 16; 1,257 train / 540
    test, a fixed permutation). The influence matrix of every test point on every training
    point with each solver, damping ``--damping``; Pearson against our exact (damped) solver.
    The same model, data and damping go to Captum's and pyDVL's solvers.
``cost``
    Read off the ``mlp`` runs: the time of the score matrix (``influence`` after ``fit``, the
    factors / eigenvectors / Hessian cached) divided by the time of one pass of per-example
    gradients over train + test (measured in the same process).
``scale``
    20,000 train x 2,000 test points of ``make_classification`` (64 features, 10 classes), an
    MLP 64-512-128-10 (100,234 parameters) trained here; ekfac and arnoldi: peak memory.
``logreg``
    L2 logistic regression (scikit-learn, C=1, newton-cg to tol 1e-12) on digits 1-vs-7 (252
    train, first 20 of the other 109 as test); Pearson of each solver's scores against actual
    leave-one-out retraining (all 20 x 252 pairs; and, as in Koh & Liang Fig. 2, the 50 of
    largest |influence| per test point).

Every measurement is a fresh process (``benchmarks/_harness.py``: peak memory of the process
tree, the runner's own timer around fit + scores only). Runs are interleaved over repeats and the
median time is reported. Threads: ``--threads N`` (default 1) for every implementation: torch
intra-op threads, OMP/BLAS variables, and the CPU affinity of the process (first N cores).
Results: markdown tables on stdout and ``benchmarks/results/influence-<timestamp>.md/.json``.
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
}
LABELS = {"ours": "datavalue", "captum": "Captum", "pydvl": "pyDVL"}
# Each peer's own virtual environment; `ensure_peer_env` creates the missing ones.
PEER_ENVS = {"captum": ("captum",), "pydvl": ("pyDVL[influence]==0.10.*",)}
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

    return LogisticRegression(C=LOGREG_C, solver="newton-cg", tol=1e-12, max_iter=1000).fit(x, y)


def _log_losses(est, x, y) -> np.ndarray:
    p = np.clip(est.predict_proba(x)[np.arange(len(y)), y], 1e-300, 1)
    return -np.log(p)


def make_logreg_case(path: Path, quick: bool) -> dict[str, Any]:
    """Digits 1-vs-7 as in tests/influence (x/16, permutation seed 0, 252 train), and the actual
    leave-one-out change of each test loss, by refitting the estimator without each point."""
    from threadpoolctl import threadpool_limits

    x, y = _digits()
    keep = (y == 1) | (y == 7)
    x, y = x[keep], (y[keep] == 7).astype(np.int64)
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
             widths=np.array([64, 1]), weight_decay=1.0 / (LOGREG_C * n), C=LOGREG_C,
             W0=est.coef_.astype(np.float64), b0=est.intercept_.astype(np.float64),
             loo_actual=actual, meta=json.dumps(meta))
    return meta


# --------------------------------------------------------------------------- configuration
@dataclass
class Job:
    """One implementation x solver on one case."""

    case: str
    impl: str  # ours, captum, pydvl
    solver: str
    params: dict[str, Any]
    label: str = ""  # shown in the table (solver and its key options)


def solver_configs(args) -> dict[str, dict[str, list[Job]]]:
    """The jobs of each case. Damping: ``args.damping`` on top of the objective's L2 term."""
    lam = args.damping
    t = args.threads
    base = {"threads": t, "damping": lam}
    mlp_ours = [
        ("exact", {}),
        ("cg", {"rtol": 1e-3}),
        ("lissa", {"depth": 200, "batch_size": 128, "repeats": 1}),
        ("arnoldi", {"rank": 100}),
        ("ekfac", {}),
    ]
    mlp_pydvl = [
        ("exact", {}),
        ("cg", {"rtol": 1e-3, "maxiter": 200}),
        ("lissa", {"maxiter": 200, "scale": None, "batch_size": 128}),
        ("arnoldi", {"rank": 100}),
        ("ekfac", {}),
    ]
    logreg_ours = [
        ("exact", {}),
        ("cg", {"rtol": 1e-6}),
        ("lissa", {"depth": 2000, "rtol": 1e-8}),
        ("arnoldi", {"rank": 20}),
        ("ekfac", {}),
    ]
    logreg_pydvl = [
        ("exact", {}),
        ("cg", {"rtol": 1e-6}),
        ("lissa", {"maxiter": 2000, "scale": None, "batch_size": 252}),
        ("arnoldi", {"rank": 20}),
        ("ekfac", {}),
    ]
    n_test_mlp = args.n_test

    def jobs(case, impl, specs, extra):
        return [Job(case, impl, s, {**base, **extra, "options": o}, _label(s, o))
                for s, o in specs]

    mlp = (jobs("mlp", "ours", mlp_ours, {"floor": True, "n_test": n_test_mlp})
           + jobs("mlp", "captum", [("exact", {})], {"n_test": n_test_mlp})
           + jobs("mlp", "pydvl", mlp_pydvl, {"n_test": n_test_mlp}))
    logreg = (jobs("logreg", "ours", logreg_ours, {"damping": 0.0})
              + jobs("logreg", "captum", [("exact", {})], {"damping": 0.0})
              + jobs("logreg", "pydvl", logreg_pydvl, {"damping": 0.0}))
    scale_threads = args.scale_threads
    scale = [Job("scale", "ours", s, {"threads": scale_threads, "damping": lam, "options": o,
                                      "save_scores": False, "floor": True}, _label(s, o))
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
    return h.VENVS_DIR / impl / "bin" / "python"


def ensure_peer_env(peer: str) -> str | None:
    """Create ``benchmarks/.venvs/<peer>`` if missing: torch's CPU wheel first (pinned: an
    unpinned torch pulls several GB of CUDA), then the peer. Returns a problem or None."""
    python = peer_python(peer)
    probe = "import captum" if peer == "captum" else "import pydvl.influence.torch"
    if python.is_file() and subprocess.call([str(python), "-c", probe],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL) == 0:
        return None
    log = h.VENVS_DIR / f"{peer}-influence-setup.log"
    print(f"  installing {peer} into {h.VENVS_DIR / peer} (log: {log}) ...", flush=True)
    steps = []
    if not python.is_file():
        steps.append([sys.executable.replace(sys.executable, "python3"), "-m", "venv",
                      str(h.VENVS_DIR / peer)])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    steps += [pip + [f"torch=={TORCH_VERSION}"], pip + [f"torch=={TORCH_VERSION}",
                                                       *PEER_ENVS[peer]]]
    with open(log, "w") as f:
        for cmd in steps:
            if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT) != 0:
                return f"installation failed; see {log}"
    return None


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
# g_t^T (H + lambda)^{-1} g_i (same sign, n times ours). Only the sign matters for Pearson.
SIGN = {"ours": 1.0, "captum": 1.0, "pydvl": 1.0}


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
        med = lambda key: (statistics.median(o.info[key] for o in ok)  # noqa: E731
                           if ok[0].info.get(key) is not None else None)
        r = Result(
            case=job.case, impl=job.impl, solver=job.solver, label=job.label, status="ok",
            threads=info.get("threads"), times=[o.time_s for o in ok],
            time_s=statistics.median(o.time_s for o in ok), fit_s=med("fit_s"),
            scores_s=med("scores_s"), grad_pass_s=med("grad_pass_s"),
            peak_mb=max(o.peak_mb for o in ok), version=f"{info.get('library')} "
            f"{info.get('version')}",
            info={k: v for k, v in info.items() if k not in ("values_path", "time_s")},
        )
        r.info["scores"] = None if ok[-1].values is None else ok[-1].values * SIGN[job.impl]
        results.append(r)
    return results
