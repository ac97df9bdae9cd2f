"""Influence on a small CNN: 10,000 training images, 1,000 test images; datavalue's EK-FAC,
Arnoldi and CG against Kronfluence and dattri on the same trained network, and the training set
streamed from disk with memory independent of its size.

    .venv/bin/python benchmarks/bench_cnn.py                 # everything (~25 min on 2 cores)
    .venv/bin/python benchmarks/bench_cnn.py --quick         # smoke test: 1,000 train, 100 test
    .venv/bin/python benchmarks/bench_cnn.py --no-peers --repeats 1

The case
    digits (``../shared/data/digits.npz``, 8x8, x / 16). Each image and its 8 copies shifted
    by one pixel (zero fill) make 9 images; the shifted copies of 1,300 digits give the
    10,000 training images (a seeded draw), those of the other 497 digits the 1,000 test
    images, so no test digit is a shifted training digit. The network
    (``peers/_cnn_common.build_cnn``: two 3x3 convolutions, max pooling, a linear layer; 3,818
    parameters) is trained here: Adam (float32, minibatches of 128, 15 epochs) on mean
    cross-entropy + ``weight_decay / 2 ||theta||^2``, then full-batch L-BFGS in float64 towards
    a stationary point, as influence functions assume. Cached in ``benchmarks/.cache/cnn``.

What runs (each a fresh process, ``_harness.run_once``: time of fit + scores by the runner's
own timer, peak memory of the process tree)
    datavalue (``impl_cnn_ours.py``): ``exact`` (the reference: a Cholesky solve of the dense
    Gauss-Newton matrix + (l2 + damping) I), ``ekfac``, ``arnoldi`` (rank 100), ``cg`` (rtol
    1e-2, on the first ``--cg-test`` test images: a block CG over 10,000 examples per query
    block costs far more than the factored solvers); then ``ekfac`` with the training set read
    image by image from memory-mapped ``.npy`` files through a ``DataLoader``, with
    ``max_memory`` = 32 MB, at 2,500 and at 10,000 training images (the first 2,500 of them):
    peak memory against the size of the ``n x p`` gradient matrix.
    Kronfluence 1.0 (``peers/cnn_kronfluence.py``): EK-FAC (it handles ``Conv2d``), float64,
    ``damping_factor = damping + l2``.
    dattri 0.3 (``peers/cnn_dattri.py``): ``IFAttributorEKFAC`` (``nn.Linear`` layers only: it
    is recorded as unavailable if it refuses the network), ``IFAttributorArnoldi`` and
    ``IFAttributorCG`` (the full Hessian, not Gauss-Newton: dattri has no other), CG on the
    first ``--dattri-cg-test`` (10) test images with ``--dattri-cg-iter`` iterations (on the 100
    of our CG row it had not finished after 10 minutes).

Accuracy: Pearson of each run's score matrix against our exact solve (over the test rows the
run computed). Speed: time ratio against Kronfluence's EK-FAC (our target: below 1 at equal
correlation; float32 rows against Kronfluence's float32 defaults, float64 rows against its
float64 run). Results: a markdown table on stdout and ``benchmarks/results/cnn-<stamp>.md/.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import _harness as h

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR / "peers"))
import _cnn_common as cnn  # noqa: E402

CACHE_DIR = BENCH_DIR / ".cache" / "cnn"
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = BENCH_DIR.parent / ".." / "shared" / "data"
RUNNERS = {"ours": BENCH_DIR / "impl_cnn_ours.py",
           "kronfluence": BENCH_DIR / "peers" / "cnn_kronfluence.py",
           "dattri": BENCH_DIR / "peers" / "cnn_dattri.py"}
LABELS = {"ours": "datavalue", "kronfluence": "Kronfluence", "dattri": "dattri"}
WEIGHT_DECAY = 1e-3


def _shifted(images: np.ndarray) -> np.ndarray:
    """Each 8x8 image and its 8 one-pixel shifts (zero fill): (9 n, 8, 8)."""
    out = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = np.zeros_like(images)
            ys = slice(max(dy, 0), 8 + min(dy, 0))
            yd = slice(max(-dy, 0), 8 + min(-dy, 0))
            xs = slice(max(dx, 0), 8 + min(dx, 0))
            xd = slice(max(-dx, 0), 8 + min(-dx, 0))
            s[:, ys, xs] = images[:, yd, xd]
            out.append(s)
    return np.stack(out, 1).reshape(-1, 8, 8)


def make_case(path: Path, quick: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(2)
    with np.load(SHARED_DATA / "digits.npz") as f:
        x, y = f["X"].reshape(-1, 8, 8).astype(np.float64) / 16.0, f["y"].astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:1300], perm[1300:]
    xtr, ytr = _shifted(x[tr]), np.repeat(y[tr], 9)
    xte, yte = _shifted(x[te]), np.repeat(y[te], 9)
    rng = np.random.default_rng(1)
    n_train, n_test = (1_000, 100) if quick else (10_000, 1_000)
    pick_tr = rng.choice(len(ytr), n_train, replace=False)
    pick_te = rng.choice(len(yte), n_test, replace=False)
    xtr, ytr = xtr[pick_tr][:, None], ytr[pick_tr]
    xte, yte = xte[pick_te][:, None], yte[pick_te]
    start = time.perf_counter()
    torch.manual_seed(0)
    net = cnn.build_cnn(torch.float32)
    x32, yt = torch.as_tensor(xtr, dtype=torch.float32), torch.as_tensor(ytr)

    def objective(model, xb, yb):
        return torch.nn.functional.cross_entropy(model(xb), yb) + WEIGHT_DECAY / 2 * sum(
            (p ** 2).sum() for p in model.parameters())

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3 if quick else 15):
        for rows in torch.randperm(len(yt), generator=gen).split(128):
            opt.zero_grad()
            objective(net, x32[rows], yt[rows]).backward()
            opt.step()
    net = net.double()
    x64 = torch.as_tensor(xtr)
    lbfgs = torch.optim.LBFGS(net.parameters(), max_iter=30 if quick else 150,
                              tolerance_grad=1e-9, tolerance_change=1e-14, history_size=30,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = objective(net, x64, yt)
        loss.backward()
        return loss

    lbfgs.step(closure)
    loss = closure()
    grad_norm = float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())
    with torch.no_grad():
        acc = float((net(torch.as_tensor(xte)).argmax(1).numpy() == yte).mean())
    meta = {"train_objective": float(loss.detach()), "objective_grad_norm": grad_norm,
            "test_accuracy": acc, "train_time_s": time.perf_counter() - start,
            "n_params": sum(p.numel() for p in net.parameters())}
    np.savez(path, kind="cnn", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             weight_decay=WEIGHT_DECAY, meta=json.dumps(meta),
             **{f"p:{k}": v.detach().numpy() for k, v in net.state_dict().items()})
    cnn.write_disk_files(path, xtr, ytr)
    return meta


@dataclass
class Job:
    impl: str
    solver: str
    params: dict[str, Any]
    label: str
    slow: bool = False  # minutes per run: run once, not --repeats times


@dataclass
class Result:
    job: Job
    status: str
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None
    pearson: float | None = None


def jobs(args) -> list[Job]:
    lam, t = args.damping, args.threads
    base = {"threads": t, "damping": lam}
    out = [
        Job("ours", "exact", dict(base), "exact (reference)", slow=True),
        Job("ours", "ekfac", dict(base), "ekfac"),
        Job("ours", "ekfac", {**base, "dtype": "float32"}, "ekfac [float32]"),
        Job("ours", "arnoldi", {**base, "options": {"rank": 100}}, "arnoldi (rank 100)",
            slow=True),
        Job("ours", "cg", {**base, "options": {"rtol": 1e-2}, "n_test": args.cg_test},
            f"cg (rtol 1e-2), {args.cg_test} test", slow=True),
        # EK-FAC refined by one step of conjugate gradients on the Gauss-Newton matrix.
        Job("ours", "cg", {**base, "options": {"preconditioner": "ekfac", "maxiter": 1,
                                               "rtol": 1e-12}, "n_test": args.cg_test},
            f"ekfac + 1 CG step, {args.cg_test} test"),
    ]
    n = args.n_train
    for size in (n // 4, n):
        out.append(Job("ours", "ekfac", {**base, "source": "disk", "max_memory": 32 * 2**20,
                                         "n_train": size},
                       f"ekfac, DataLoader from disk, n={size:,}"))
    if not args.no_peers:
        out.append(Job("kronfluence", "ekfac", dict(base), "ekfac"))
        out.append(Job("kronfluence", "ekfac", {**base, "defaults": True},
                       "ekfac [its defaults: float32]"))
        out.append(Job("dattri", "ekfac", dict(base), "ekfac"))
        out.append(Job("dattri", "arnoldi", {**base, "options": {"rank": 100}},
                       "arnoldi (rank 100)", slow=True))
        out.append(Job("dattri", "cg", {**base, "n_test": args.dattri_cg_test,
                                        "options": {"max_iter": args.dattri_cg_iter}},
                       f"cg ({args.dattri_cg_iter} it.), {args.dattri_cg_test} test", slow=True))
    return out


def run(job_list: list[Job], case_file: Path, args) -> list[Result]:
    from bench_influence import ensure_peer_env, peer_python

    results = []
    outcomes: dict[int, list[h.RunOutcome]] = {i: [] for i in range(len(job_list))}
    blocked: dict[int, str] = {}
    for rep in range(args.repeats):
        for i, job in enumerate(job_list):
            if i in blocked or (job.slow and rep > 0):
                continue
            if job.impl != "ours":
                problem = ensure_peer_env(job.impl)
                if problem:
                    blocked[i] = f"unavailable: {problem}"
                    continue
            print(f"  {LABELS[job.impl]} {job.label} (run {rep + 1}/{args.repeats}) ...",
                  end=" ", flush=True)
            out = CACHE_DIR / "runs" / f"{job.impl}-{job.solver}-{i}-{rep}.json"
            params = {**job.params, "n_jobs": args.threads}
            data = case_file
            if "n_train" in job.params and job.params["n_train"] < args.n_train:
                data = subset_case(case_file, job.params["n_train"])
            outcome = h.run_once(peer_python(job.impl), RUNNERS[job.impl], data, job.solver,
                                 params, out, timeout=args.timeout)
            if outcome.status == "ok":
                print(f"{outcome.time_s:.1f} s, {outcome.peak_mb:.0f} MB", flush=True)
            else:
                print(outcome.status, flush=True)
                blocked[i] = outcome.status
            outcomes[i].append(outcome)
    for i, job in enumerate(job_list):
        ok = [o for o in outcomes[i] if o.status == "ok"]
        if not ok:
            results.append(Result(job, blocked.get(i, "no run")))
            continue
        results.append(Result(job, "ok", [o.time_s for o in ok], max(o.peak_mb for o in ok),
                              ok[-1].info, ok[-1].values))
    return results


def subset_case(case_file: Path, n: int) -> Path:
    """The case with its first ``n`` training images (for the memory-against-n run)."""
    path = case_file.with_name(f"{case_file.stem}-first{n}.npz")
    if not path.exists():
        with np.load(case_file) as f:
            d = {k: f[k] for k in f.files}
        d["x_train"], d["y_train"] = d["x_train"][:n], d["y_train"][:n]
        np.savez(path, **d)
        cnn.write_disk_files(path, d["x_train"], d["y_train"])
    return path


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def table(results: list[Result], meta: dict[str, Any], n_train: int) -> str:
    ref = next((r for r in results if r.job.impl == "ours" and r.job.solver == "exact"
                and r.status == "ok"), None)
    def kron_for(r: Result) -> Result | None:
        """Kronfluence's run in the same precision (its float32 defaults for float32 rows)."""
        f32 = r.job.params.get("dtype") == "float32" or r.job.params.get("defaults")
        return next((k for k in results if k.job.impl == "kronfluence" and k.status == "ok"
                     and bool(k.job.params.get("defaults")) == bool(f32)), None)

    p = meta["n_params"]
    lines = [
        f"CNN on shifted digits: {n_train:,} train, {p:,} parameters; the n x p gradient "
        f"matrix is {n_train * p * 8 / 2**20:.0f} MB in float64. Pearson against our exact "
        "(Gauss-Newton) solve; time = fit + scores, median of runs; peak = process tree, "
        "including the interpreter and torch; added = our runner's high-water mark during "
        "fit + scores minus the one before (imports, test images, warm-up).",
        "",
        "| library | solver | test rows | time (s) | runs | vs Kronfluence | peak MB | "
        "added MB | Pearson vs exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {LABELS[r.job.impl]} | {r.job.label} | | {r.status[:70]} | | | | "
                         "| |")
            continue
        t = statistics.median(r.times)
        rows = r.scores.shape[0] if r.scores is not None else None
        if ref is not None and r.scores is not None and r.scores.shape[1] == ref.scores.shape[1]:
            r.pearson = pearson(r.scores, ref.scores[: r.scores.shape[0]])
        kron = kron_for(r)
        ratio = (t / statistics.median(kron.times)
                 if kron is not None and rows == kron.scores.shape[0] else None)
        added = r.info.get("added_mb")
        lines.append(
            f"| {LABELS[r.job.impl]} | {r.job.label} | {rows} | {t:.1f} | {len(r.times)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {r.peak_mb:.0f} | "
            f"{'-' if added is None else f'{added:.0f}'} | "
            f"{'-' if r.pearson is None else f'{r.pearson:.4f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--damping", type=float, default=0.01)
    parser.add_argument("--cg-test", type=int, default=100)
    parser.add_argument("--dattri-cg-iter", type=int, default=20)
    # dattri's CG solves each test point's system with exact Hessian-vector products over all
    # 10,000 images: on 100 test points it had not finished after 10 minutes.
    parser.add_argument("--dattri-cg-test", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    case_file = CACHE_DIR / ("case-quick.npz" if args.quick else "case.npz")
    if not case_file.exists() or not cnn.disk_files(case_file)[0].exists():
        print("training the CNN ...", flush=True)
        meta = make_case(case_file, args.quick)
    else:
        meta = json.loads(str(np.load(case_file)["meta"]))
    print(json.dumps(meta), flush=True)
    with np.load(case_file) as f:
        args.n_train = len(f["y_train"])
        if args.quick:
            args.cg_test = min(args.cg_test, 20)
            args.dattri_cg_test = min(args.dattri_cg_test, args.cg_test)
    results = run(jobs(args), case_file, args)
    md = table(results, meta, args.n_train)
    print()
    print(md)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(exist_ok=True)
    header = (f"# CNN influence benchmark {stamp}\n\n{platform.platform()}, "
              f"{args.threads} threads, damping {args.damping}, repeats {args.repeats}\n\n"
              f"case: {json.dumps(meta)}\n\n")
    (RESULTS_DIR / f"cnn-{stamp}.md").write_text(header + md + "\n")
    record = [{"impl": r.job.impl, "solver": r.job.solver, "label": r.job.label,
               "status": r.status, "times": r.times, "peak_mb": r.peak_mb, "pearson": r.pearson,
               "info": {k: v for k, v in r.info.items() if k != "values_path"}}
              for r in results]
    (RESULTS_DIR / f"cnn-{stamp}.json").write_text(json.dumps(
        {"meta": meta, "args": vars(args), "results": record}, indent=1, default=str))
    print(f"\nsaved benchmarks/results/cnn-{stamp}.md")


if __name__ == "__main__":
    main()
