"""Training-set attack success rates (Koh & Liang 2017, Sec. 5.2) on digits, against random
perturbations of the same size.

    .venv/bin/python benchmarks/bench_attack.py            # ~30 min on 2 cores
    .venv/bin/python benchmarks/bench_attack.py --quick    # 2 targets per model, ~2 min

Data: ``shared/data/digits.npz`` split as ``datavalue attack`` splits it (seed 0: 1,079 training
and 359 test digits, standardized pixels). Targets: test digits the model classifies correctly,
drawn at random (seeded). For each target and each count n in 1, 2, 5, 10:

* **attack** (:func:`datavalue.attribution.training_set_attack`): the n training digits with the
  largest ``|I_pert,loss|`` move by signed steps of 0.2 grey levels, at most 2 of the 16 grey
  levels per pixel (``--epsilon 0.125``, the command's default) and inside 0..16, the model
  re-fitted after every step, for at most 20 steps;
* **random** (:func:`datavalue.attribution.random_perturbation`): n random training digits, every
  pixel moved by +-2 grey levels (random signs, clipped), one re-fit.

Success rate: the share of targets whose prediction changed. Models: the command's
``logreg`` (L2 logistic regression, lbfgs to tol 1e-8, exact re-fits) and ``torch-mlp``
(64-32-10 tanh network, weight decay 1e-2, warm-started L-BFGS re-fits, conjugate-gradient
influence with the Gauss-Newton curvature: the exact Hessian was indefinite at its optimum). Time: median seconds per attack (successful or not), and the
part spent re-fitting, the floor no attack avoids. No peer library implements the attack
(Koh & Liang's own code is TensorFlow 1 research code, not a package), so the floor and the
random baseline are the comparisons.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
COUNTS = (1, 2, 5, 10)


def run_model(name: str, n_targets: int, max_steps: int, counts: tuple[int, ...]) -> dict:
    import datavalue as dv
    from datavalue.attribution.applications.attack import random_perturbation, training_set_attack
    from datavalue.cli.attack import _box, _train_model

    ds = dv.load_dataset("digits", random_state=0)
    t0 = time.perf_counter()
    model, extra = _train_model(name, ds, 0)
    train_s = time.perf_counter() - t0
    if name == "logreg":
        pred = model.predict(ds.x_test)
    else:
        import torch

        with torch.no_grad():
            pred = model(torch.as_tensor(ds.x_test)).argmax(1).numpy()
    correct = np.flatnonzero(pred == ds.y_test)
    targets = np.sort(np.random.default_rng(0).choice(correct, n_targets, replace=False))
    eps, bounds = _box(ds, 0.125)
    base_kw = {k: v for k, v in extra.items() if k in ("loss", "refit")}
    runs = []
    for i, t in enumerate(targets):
        for n in counts:
            a = training_set_attack(model, ds.x_train, ds.y_train, ds.x_test[t], ds.y_test[t],
                                    n_train=n, epsilon=eps, bounds=bounds, max_steps=max_steps,
                                    **extra)
            r = random_perturbation(model, ds.x_train, ds.y_train, ds.x_test[t], ds.y_test[t],
                                    n_train=n, epsilon=eps, bounds=bounds,
                                    random_state=int(t), **base_kw)
            runs.append({"target": int(t), "n_train": n, "flipped": a.flipped, "steps": a.steps,
                         "seconds": a.seconds, "refit_seconds": a.refit_seconds,
                         "loss_before": a.test_loss[0], "loss_after": a.test_loss[-1],
                         "random_flipped": r.flipped, "random_loss_after": r.test_loss[-1],
                         "random_seconds": r.seconds})
        print(f"  {name}: target {i + 1}/{len(targets)} (test row {t}): "
              + ", ".join(f"n={x['n_train']} {'flip' if x['flipped'] else '-'}"
                          f"/{'flip' if x['random_flipped'] else '-'}"
                          for x in runs[-len(counts):]), flush=True)
    return {"model": name, "train_seconds": train_s, "test_accuracy": float(np.mean(
        pred == ds.y_test)), "targets": targets.tolist(), "runs": runs}


def table(results: list[dict], counts: tuple[int, ...], max_steps: int) -> str:
    lines = ["| model | moved | attack: success | random: success | median steps (flipped) | "
             "median test loss after / before, attack / random | median time per attack (s) | of which "
             "re-fits (floor, s) | time / floor |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        for n in counts:
            rows = [r for r in res["runs"] if r["n_train"] == n]
            k = len(rows)
            hit = sum(r["flipped"] for r in rows)
            rnd = sum(r["random_flipped"] for r in rows)
            steps = [r["steps"] for r in rows if r["flipped"]]
            rise = statistics.median(r["loss_after"] / r["loss_before"] for r in rows)
            rise_r = statistics.median(r["random_loss_after"] / r["loss_before"] for r in rows)
            sec = statistics.median(r["seconds"] for r in rows)
            floor = statistics.median(r["refit_seconds"] for r in rows)
            lines.append(
                f"| {res['model']} | {n} | {hit}/{k} ({100 * hit / k:.0f}%) | {rnd}/{k} "
                f"({100 * rnd / k:.0f}%) | {statistics.median(steps) if steps else '-'} | "
                f"{rise:.2f}x / {rise_r:.3f}x | {sec:.2f} | {floor:.2f} | "
                f"{sec / floor:.1f}x |")
    return "\n".join(lines) + (f"\n\nAt most {max_steps} steps; every pixel moves by at most 2 "
                               "of 16 grey levels. The floor is the attack's own re-fits.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 targets per model, counts 1 and 5.")
    p.add_argument("--targets", type=int, default=40, help="targets for logreg (default 40).")
    p.add_argument("--targets-mlp", type=int, default=12,
                   help="targets for the torch network (default 12).")
    p.add_argument("--models", default="logreg,torch-mlp")
    p.add_argument("--max-steps", type=int, default=20)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    counts = (1, 5) if args.quick else COUNTS
    results = []
    for name in args.models.split(","):
        n_targets = 2 if args.quick else (args.targets if name == "logreg" else args.targets_mlp)
        start = time.perf_counter()
        res = run_model(name, n_targets, 3 if args.quick else args.max_steps, counts)
        res["wall_seconds"] = time.perf_counter() - start
        results.append(res)
        partial = BENCH_DIR / "results" / f"attack-partial-{name}.json"
        partial.parent.mkdir(exist_ok=True)
        partial.write_text(json.dumps(res, indent=1) + "\n")  # kept if a later model fails
    md = table(results, counts, 3 if args.quick else args.max_steps)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    head = (f"# Training-set attack on digits ({stamp}{', quick' if args.quick else ''})\n\n"
            + "\n".join(f"- {r['model']}: test accuracy {r['test_accuracy']:.3f}, trained in "
                        f"{r['train_seconds']:.1f} s, {len(r['targets'])} targets, whole run "
                        f"{r['wall_seconds'] / 60:.1f} min" for r in results) + "\n\n")
    print()
    print(head + md)
    out = BENCH_DIR / "results" / f"attack-{stamp}{'-quick' if args.quick else ''}"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".md").write_text(head + md + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten: {out}.md / .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
