"""Which attribution should I trust for my network? Influence functions, TracIn, Grad-Dot,
Grad-Cos and TRAK judged by actual retraining (LOO correlation and LDS), datavalue against
dattri on the same models, data and ground truth.

    .venv/bin/python benchmarks/bench_tracing.py                  # both models (~40 min)
    .venv/bin/python benchmarks/bench_tracing.py --cases lr --quick
    .venv/bin/python benchmarks/bench_tracing.py --no-peers --repeats 1

The cases (dattri's MNIST benchmark, ``dattri/benchmark/datasets/mnist``, on the 8x8 digits
of ``../shared/data/digits.npz``: 1,000 training and 300 test images, pixels / 16 then
standardised)
    ``lr``: ``nn.Linear(64, 10)``, SGD lr 0.01, minibatches of 32, 20 epochs (dattri's
    ``train_mnist_lr``). ``mlp``: 64-128-64-10 with ReLU and dropout 0.1 (dattri's
    ``MLPMnist``), SGD lr 0.01 momentum 0.9, minibatches of 64, 50 epochs
    (``train_mnist_mlp``). Float32, as dattri trains them. TracIn's checkpoints: the model
    after every 4th (lr) / 10th (mlp) epoch, weight = the learning rate. TRAK's ensemble: 50
    models, each trained the same way on a random half of the training set (dattri's
    ``models_half``); TRAK-k uses the first k.

Ground truth (``datavalue.evaluate.retrain``, cached in ``benchmarks/.cache/tracing``)
    LDS: 50 random halves (alpha 0.5), each retrained with 3 seeds (outputs averaged), test
    loss as the output (dattri's LDS target is minus the loss); the mean over test images of
    the Spearman correlation. LOO: 100 random training images, each left out and the model
    retrained with the same 3 seeds as the full model; Pearson per test image, averaged
    (dattri's ``loo_corr``).

What runs: every method of each library in a fresh process (``_harness.run_once``: time of
fit + scores by the runner's timer, peak memory of the process tree); median of
``--repeats`` runs (1 for rows over a minute). Influence: damping 0.01 for both libraries.
Projections: dattri's default 512 dimensions for TracIn / Grad-Dot / Grad-Cos and TRAK (2,048
for TRAK on the MLP, both libraries); ours also without projection.

Results: a markdown table on stdout and ``benchmarks/results/tracing-<stamp>.md/.json``.
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
import _tracing_common as tc  # noqa: E402

CACHE_DIR = BENCH_DIR / ".cache" / "tracing"
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = BENCH_DIR.parent / ".." / "shared" / "data"
RUNNERS = {"ours": BENCH_DIR / "impl_tracing_ours.py",
           "dattri": BENCH_DIR / "peers" / "tracing_dattri.py"}
LABELS = {"ours": "datavalue", "dattri": "dattri"}
TRAIN = {"lr": dict(lr=0.01, momentum=0.0, batch=32, epochs=20, every=4),
         "mlp": dict(lr=0.01, momentum=0.9, batch=64, epochs=50, every=10)}
REG = 0.01


def train_dattri_style(module, x, y, *, kind: str, checkpoints: list | None = None):
    """dattri's ``train_mnist_lr`` / ``train_mnist_mlp``: SGD on the mean cross-entropy,
    shuffled minibatches (torch's seed set by the caller), the module in train mode."""
    import torch

    torch.set_num_threads(1)
    cfg = TRAIN[kind]
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    opt = torch.optim.SGD(module.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    module.train()
    for epoch in range(cfg["epochs"]):
        for rows in torch.randperm(len(yt)).split(cfg["batch"]):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xt[rows]), yt[rows]).backward()
            opt.step()
        if checkpoints is not None and (epoch + 1) % cfg["every"] == 0:
            checkpoints.append({k: v.detach().clone() for k, v in module.state_dict().items()})
    return module.eval()


class Trainer:
    """``train_fn`` for :class:`datavalue.Retrain` (a picklable class for the workers)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, module, x, y):
        return train_dattri_style(module, x, y, kind=self.kind)


def load_digits(quick: bool):
    with np.load(SHARED_DATA / "digits.npz") as f:
        x, y = f["X"].astype(np.float64) / 16.0, f["y"].astype(np.int64)
    x = ((x - x.mean()) / x.std()).astype(np.float32)  # dattri: Normalize(mean, std)
    perm = np.random.default_rng(0).permutation(len(y))
    n_train, n_test = (300, 100) if quick else (1000, 300)
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    return x[tr], y[tr], x[te], y[te]


def make_case(kind: str, path: Path, quick: bool, n_ensemble: int) -> dict[str, Any]:
    import torch

    import datavalue as dv

    xtr, ytr, xte, yte = load_digits(quick)
    start = time.perf_counter()
    arrays: dict[str, Any] = {"kind": kind, "x_train": xtr, "y_train": ytr, "x_test": xte,
                              "y_test": yte, "reg": REG}
    torch.manual_seed(0)
    ckpts: list = []
    final = train_dattri_style(tc.build(kind), xtr, ytr, kind=kind, checkpoints=ckpts)
    arrays.update({f"final:{k}": v.detach().numpy() for k, v in final.state_dict().items()})
    for c, sd in enumerate(ckpts):
        arrays.update({f"ckpt{c}:{k}": v.numpy() for k, v in sd.items()})
    arrays["lrs"] = np.full(len(ckpts), TRAIN[kind]["lr"])
    for s in range(n_ensemble):
        rng = np.random.default_rng(1000 + s)
        half = np.sort(rng.choice(len(ytr), len(ytr) // 2, replace=False))
        torch.manual_seed(1000 + s)
        member = train_dattri_style(tc.build(kind), xtr[half], ytr[half], kind=kind)
        arrays.update({f"ens{s}:{k}": v.detach().numpy() for k, v in member.state_dict().items()})
    import copy

    net64 = copy.deepcopy(final).double().eval()
    lissa = dv.InfluenceFunction(net64, torch.nn.CrossEntropyLoss(), solver="lissa",
                                 damping=REG, progress=False).fit(xtr.astype(np.float64), ytr)
    arrays["lissa_scale"] = float(lissa.solver_.info_["scale"])
    with torch.no_grad():
        acc = float((final(torch.as_tensor(xte)).argmax(1).numpy() == yte).mean())
    meta = {"kind": kind, "n_train": len(ytr), "n_test": len(yte), "test_accuracy": acc,
            "n_params": sum(q.numel() for q in final.parameters()), "n_checkpoints": len(ckpts),
            "n_ensemble": n_ensemble, "lissa_scale": arrays["lissa_scale"],
            "gradient_norm": float(lissa.gradient_norm_),
            "train_time_s": time.perf_counter() - start}
    arrays["meta"] = json.dumps(meta)
    np.savez(path, **arrays)
    return meta


def ground_truth(case_file: Path, args) -> tuple[Any, Any, float]:
    """LDS and LOO ground truth by retraining (cached next to the case)."""
    import torch

    import datavalue as dv
    from datavalue.evaluate.retrain import loo_outputs, subset_outputs

    case = tc.load_case(case_file)
    kind = case["kind"]
    retrain = dv.Retrain(tc.build(kind), case["x_train"], case["y_train"], case["x_test"],
                         case["y_test"], output="loss", train_fn=Trainer(kind),
                         loss=torch.nn.CrossEntropyLoss(reduction="none"))
    start = time.perf_counter()
    subsets = subset_outputs(retrain, alpha=0.5, n_subsets=args.lds_subsets,
                             n_seeds=args.seeds, random_state=0, n_jobs=args.threads,
                             cache=case_file.with_suffix(".lds.npz"), progress=True)
    n = len(case["y_train"])
    rows = np.sort(np.random.default_rng(0).choice(n, min(args.loo_points, n), replace=False))
    loo = loo_outputs(retrain, rows, n_seeds=args.seeds, random_state=0, n_jobs=args.threads,
                      cache=case_file.with_suffix(".loo.npz"), progress=True)
    return subsets, loo, time.perf_counter() - start


@dataclass
class Job:
    impl: str
    method: str
    params: dict[str, Any]
    label: str
    slow: bool = False
    timeout: float | None = None


@dataclass
class Result:
    job: Job
    status: str
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None
    lds: float | None = None
    loo: float | None = None


def jobs(kind: str, args) -> list[Job]:
    t = {"threads": args.threads}
    trak_proj = 2048 if kind == "mlp" else 512
    influence = [
        ("exact", {}, "exact", True),
        ("cg", {"rtol": 1e-4}, "CG (rtol 1e-4)", False),
        ("lissa", {"depth": 1000, "batch_size": 64}, "LiSSA (depth 1000, batch 64)", True),
        ("arnoldi", {"rank": 100}, "Arnoldi (rank 100)", False),
        ("ekfac", {}, "EK-FAC", False),
    ]
    dattri_opts = {"cg": {"max_iter": 20, "tol": 1e-4},
                   "lissa": {"depth": 1000, "batch_size": 64}, "arnoldi": {"rank": 100}}
    out = []
    for method, opts, label, slow in influence:
        out.append(Job("ours", method, {**t, "options": opts}, label, slow))
        if not args.no_peers:
            d_label = label if method != "cg" else "CG (20 it.)"
            # dattri's explicit inverse builds the full Hessian with torch.func.hessian: for
            # the MLP's 17,226 parameters it is given 10 minutes.
            out.append(Job("dattri", method, {**t, "options": dattri_opts.get(method, {})},
                           d_label, slow, timeout=600 if method in ("exact", "lissa") else None))
    for method, label in (("tracin", "TracIn (%d ckpts)"), ("grad-dot", "Grad-Dot"),
                          ("grad-cos", "Grad-Cos")):
        name = label % args.n_ckpt if "%d" in label else label
        out.append(Job("ours", method, dict(t), f"{name}, exact"))
        out.append(Job("ours", method, {**t, "proj_dim": 512}, f"{name}, proj 512"))
        if not args.no_peers:
            out.append(Job("dattri", method, {**t, "proj_dim": 512}, f"{name}, proj 512"))
    for k in args.trak_models:
        out.append(Job("ours", "trak", {**t, "n_models": k, "proj_dim": trak_proj},
                       f"TRAK-{k}, proj {trak_proj}", slow=k >= 50))
        if not args.no_peers:
            out.append(Job("dattri", "trak", {**t, "n_models": k, "proj_dim": trak_proj},
                           f"TRAK-{k}, proj {trak_proj}", slow=k >= 50))
    return out


def run(job_list: list[Job], case_file: Path, args) -> list[Result]:
    from bench_influence import ensure_peer_env, peer_python

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
            out = CACHE_DIR / "runs" / f"{case_file.stem}-{job.impl}-{job.method}-{i}-{rep}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            # n_jobs: the harness gives the run that many cores (and BLAS/OpenMP threads).
            outcome = h.run_once(peer_python(job.impl), RUNNERS[job.impl], case_file,
                                 job.method, {**job.params, "n_jobs": args.threads}, out,
                                 timeout=min(args.timeout, job.timeout or args.timeout))
            if outcome.status == "ok":
                print(f"{outcome.time_s:.2f} s, {outcome.peak_mb:.0f} MB", flush=True)
                if outcome.time_s > 60:
                    job.slow = True
            else:
                print(outcome.status, flush=True)
                blocked[i] = outcome.status
            outcomes[i].append(outcome)
    results = []
    for i, job in enumerate(job_list):
        ok = [o for o in outcomes[i] if o.status == "ok"]
        if not ok:
            results.append(Result(job, blocked.get(i, "no run")))
            continue
        results.append(Result(job, "ok", [o.time_s for o in ok], max(o.peak_mb for o in ok),
                              ok[-1].info, ok[-1].values))
    return results


def score(results: list[Result], subsets: Any, loo: Any) -> None:
    from datavalue.evaluate import lds, loo_correlation

    for r in results:
        if r.status != "ok" or r.scores is None:
            continue
        s = np.asarray(r.scores, dtype=np.float64)
        if not np.all(np.isfinite(s)):
            r.status = f"non-finite scores ({int((~np.isfinite(s)).sum())})"
            continue
        r.lds = lds(s, subsets)["lds"]
        r.loo = loo_correlation(s, loo)["pearson"]


def table(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        f"{meta['kind']}: {meta['n_params']:,} parameters, {meta['n_train']:,} train / "
        f"{meta['n_test']} test digits, test accuracy {meta['test_accuracy']:.3f}. LOO: Pearson "
        "with leave-one-out retraining (100 rows, 3 seeds), mean over test images; LDS: "
        "Spearman over 50 random halves (3 seeds each), mean over test images. Time = fit + "
        "scores (median of runs); vs dattri = time / dattri's time for the same row.",
        "",
        "| method | library | time (s) | runs | vs dattri | peak MB | LOO | LDS | "
        "LDS per CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.job.label} | {LABELS[r.job.impl]} | {r.status[:60]} | | | | | "
                         "| |")
            continue
        t = statistics.median(r.times)
        peer = next((p for p in results if p.job.impl == "dattri" and p.status == "ok"
                     and p.job.label == r.job.label and p.job.method == r.job.method), None)
        ratio = "-" if peer is None or r.job.impl == "dattri" else \
            f"{t / statistics.median(peer.times):.2f}"
        per_s = r.lds / (t * r.info.get("threads", 1)) if r.lds is not None else None
        lines.append(
            f"| {r.job.label} | {LABELS[r.job.impl]} | {t:.2f} | {len(r.times)} | {ratio} | "
            f"{r.peak_mb:.0f} | {r.loo:.3f} | {r.lds:.3f} | "
            f"{'-' if per_s is None else f'{per_s:.3f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lr,mlp")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lds-subsets", type=int, default=50)
    parser.add_argument("--loo-points", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trak-models", default="1,10,50")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    args.trak_models = [int(k) for k in args.trak_models.split(",")]
    if args.quick:
        args.lds_subsets, args.loo_points, args.seeds = 10, 10, 1
        args.trak_models = [1, 4]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = [f"# Attribution benchmark {stamp}\n", f"{platform.platform()}, {args.threads} "
              f"threads, repeats {args.repeats}\n"]
    record: dict[str, Any] = {"args": vars(args), "cases": {}}
    for kind in args.cases.split(","):
        suffix = "-quick" if args.quick else ""
        case_file = CACHE_DIR / f"{kind}{suffix}.npz"
        n_ensemble = max(args.trak_models)
        if not case_file.exists():
            print(f"training the {kind} models ...", flush=True)
            meta = make_case(kind, case_file, args.quick, n_ensemble)
        else:
            meta = json.loads(str(np.load(case_file)["meta"]))
        meta["n_checkpoints"] = int(meta["n_checkpoints"])
        args.n_ckpt = meta["n_checkpoints"]
        print(json.dumps(meta), flush=True)
        print("ground truth (retraining) ...", flush=True)
        subsets, loo, gt_s = ground_truth(case_file, args)
        meta["ground_truth_s"] = gt_s
        results = run(jobs(kind, args), case_file, args)
        score(results, subsets, loo)
        md = table(results, meta)
        print()
        print(md, flush=True)
        report += [f"\n## {kind}\n", f"case: {json.dumps(meta)}\n", md, ""]
        record["cases"][kind] = {"meta": meta, "results": [
            {"impl": r.job.impl, "method": r.job.method, "label": r.job.label,
             "params": r.job.params, "status": r.status, "times": r.times,
             "peak_mb": r.peak_mb, "lds": r.lds, "loo": r.loo,
             "info": {k: v for k, v in r.info.items() if k != "values_path"}}
            for r in results]}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"tracing-{stamp}.md").write_text("\n".join(report) + "\n")
    (RESULTS_DIR / f"tracing-{stamp}.json").write_text(json.dumps(record, indent=1,
                                                                   default=str))
    print(f"\nsaved benchmarks/results/tracing-{stamp}.md")


if __name__ == "__main__":
    main()
