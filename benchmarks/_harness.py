"""Run implementations in fresh processes, measure them, and print the tables.

Every measurement is one fresh process: ``PYTHON RUNNER --data CASE.npz --method M --params JSON
--out OUT.json`` (see ``_runner.py``), where PYTHON is our ``.venv`` python for ours and the
floors, and ``benchmarks/.venvs/<peer>/bin/python`` for a peer library.

What is measured
----------------
time_s
    The runner's own timer around the valuation call only (not the interpreter start, imports,
    loading the arrays or converting them). The median over repeats.
peak_MB
    Peak memory of the whole process tree (the runner and any worker processes it starts), the
    largest over repeats. The harness polls ``/proc`` every 0.1-0.25 s and sums the proportional
    set size (PSS, from ``/proc/PID/smaps_rollup``; resident set size if that is unreadable) of
    the runner and all its descendants, so pages shared between workers are counted once. It
    also takes the kernel's high-water mark of the runner process itself (``VmHWM``, polled,
    and reported by the runner at its end) and reports the larger of the two. (Until
    2026-12-05 20:10 it used ``ru_maxrss`` from ``wait4``, which Linux carries over from the
    forked copy of this harness: runs late in a benchmark that keeps score matrices were
    charged the harness's memory too.) This includes the
    interpreter and the imported libraries (about 100 MB for numpy + scikit-learn, 400 MB more
    with torch). On systems without ``/proc`` only ``ru_maxrss`` is used.
AUC
    Detection of the flipped labels: ROC AUC of ``-values`` against the mask of flipped rows
    (a low value should mean "probably mislabeled"); 0.5 is chance, 1.0 perfect.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
VENVS_DIR = BENCH_DIR / ".venvs"
PEERS = ("pydvl", "opendataval")

# Which script runs each implementation, and the name printed in the tables.
RUNNERS = {
    "floor": BENCH_DIR / "impl_floor.py",
    "ours": BENCH_DIR / "impl_ours.py",
    "pydvl": BENCH_DIR / "peers" / "run_pydvl.py",
    "opendataval": BENCH_DIR / "peers" / "run_opendataval.py",
}
LABELS = {"floor": "floor", "ours": "datavalue", "pydvl": "pyDVL", "opendataval": "OpenDataVal"}


# --------------------------------------------------------------------------- peak memory
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children_by_parent() -> dict[int, list[int]]:
    """Map parent pid -> child pids, from /proc/PID/stat of every process."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (2nd field) is in parentheses and may contain spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    return children


def _process_memory(pid: int) -> int:
    """PSS of one process in bytes (RSS if smaps_rollup is unreadable); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def high_water(pid: int) -> int:
    """``VmHWM`` of one process in bytes (0 if unreadable): its peak resident set since it
    started its program. Not ``ru_maxrss`` from ``wait4``: Linux carries that over from the
    forked copy of the parent, so it counts the harness's own memory (the score matrices it
    holds) as the runner's; measured: a runner that sleeps reports 790 MB beside a harness
    holding 800 MB, and 8.7 MB of ``VmHWM``."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> int:
    """Summed memory (bytes) of ``root`` and all its descendants, right now."""
    children = _children_by_parent()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _process_memory(pid)
        stack.extend(children.get(pid, ()))
    return total


# --------------------------------------------------------------------------- one process
@dataclass
class RunOutcome:
    """One execution of a runner script."""

    status: str  # "ok", "unavailable: ...", "failed: ...", "timeout after ... s"
    time_s: float | None = None
    peak_mb: float | None = None
    values: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def run_env(n_jobs: int) -> tuple[dict[str, str], Any]:
    """Environment and pre-exec hook giving a run ``n_jobs`` cores.

    With all the machine's cores, the libraries keep their defaults (joblib gives each worker
    process cores // n_jobs BLAS/OpenMP threads, which is what a user gets). With fewer, the
    process tree is pinned to the first ``n_jobs`` cores (CPU affinity, inherited by workers)
    and the native thread pools are capped at ``n_jobs`` threads.
    """
    env = dict(os.environ)
    env["TQDM_DISABLE"] = "1"  # progress bars of the peers (tqdm >= 4.66 honours it)
    cores = os.cpu_count() or 1
    if n_jobs >= cores:
        return env, None
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(n_jobs)
    if not hasattr(os, "sched_setaffinity"):
        return env, None
    return env, lambda: os.sched_setaffinity(0, range(n_jobs))


def _follow(pid: int, timeout: float, *, track_memory: bool):
    """Wait for process ``pid``, sampling the memory of its tree.

    Returns ``(wait status, resource usage, peak tree memory in bytes)``, or None if it ran
    longer than ``timeout`` seconds. ``os.wait4`` rather than ``Popen.poll``, to also get the
    kernel's resource usage of the child.
    """
    started = time.monotonic()
    peak = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            return None
        if track_memory:
            peak = max(peak, tree_memory(pid), high_water(pid))
        time.sleep(0.1 if elapsed < 2.0 else 0.25)


def run_once(
    python: str | Path,
    runner: Path,
    data: Path,
    method: str,
    params: dict[str, Any],
    out: Path,
    *,
    timeout: float,
) -> RunOutcome:
    """Start the runner in a fresh process, follow its memory, and read its result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in (out, out.with_suffix(".npy")):
        stale.unlink(missing_ok=True)
    log = out.with_suffix(".log")
    cmd = [str(python), str(runner), "--data", str(data), "--method", method,
           "--params", json.dumps(params), "--out", str(out)]
    have_proc = Path("/proc/self/stat").exists()
    env, pin_cores = run_env(int(params.get("n_jobs", 1)))
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, preexec_fn=pin_cores,
            start_new_session=True,
        )
        followed = None
        try:
            followed = _follow(proc.pid, timeout, track_memory=have_proc)
        finally:
            # Stop what is left of the process group: everything after a timeout or Ctrl-C,
            # else the workers the runner did not wait for (joblib's loky pool).
            try:
                os.killpg(proc.pid, signal.SIGTERM if followed else signal.SIGKILL)
            except ProcessLookupError:
                pass
    if followed is None:
        os.waitpid(proc.pid, 0)
        proc.returncode = -signal.SIGKILL
        return RunOutcome(f"timeout after {timeout:.0f} s", info={"log": str(log)})
    status_code, usage, peak = followed
    proc.returncode = os.waitstatus_to_exitcode(status_code)
    if have_proc:
        # The polled tree memory and the runner's VmHWM (see high_water); ru_maxrss would
        # count this harness's memory at fork as the runner's.
        peak_mb = peak / 2**20
    else:
        peak_mb = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20

    if proc.returncode != 0 or not out.is_file():
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        reason = tail[-1].strip() if tail else f"exit code {proc.returncode}"
        return RunOutcome(f"failed: {reason[:200]}", info={"log": str(log)})
    record = json.loads(out.read_text())
    if "unavailable" in record:
        return RunOutcome(f"unavailable: {record['unavailable']}", info=record)
    # The runner's own VmHWM at its end, if it reports it: growth after the last poll.
    peak_mb = max(peak_mb, float(record.get("vm_hwm_mb") or 0.0))
    values = np.load(record["values_path"]) if record.get("values_path") else None
    return RunOutcome("ok", record["time_s"], peak_mb, values, record)


# --------------------------------------------------------------------------- peers
_peer_problems: dict[str, str | None] = {}


def peer_python(peer: str) -> Path:
    return VENVS_DIR / peer / "bin" / "python"


def ensure_peer(peer: str, *, install: bool = True) -> str | None:
    """Make sure the peer's environment exists (running ``peers/setup.sh`` once if not).

    Returns None if it is usable, else the reason it is not.
    """
    if peer in _peer_problems:
        return _peer_problems[peer]
    problem = None
    if not (VENVS_DIR / peer / ".ready").is_file():
        if not install:
            problem = f"no environment; run: bash benchmarks/peers/setup.sh {peer}"
        else:
            VENVS_DIR.mkdir(parents=True, exist_ok=True)
            log = VENVS_DIR / f"{peer}-setup.log"
            print(f"  installing {peer} into {VENVS_DIR / peer} (log: {log}) ...", flush=True)
            with open(log, "w") as f:
                code = subprocess.call(
                    ["bash", str(BENCH_DIR / "peers" / "setup.sh"), peer], stdout=f,
                    stderr=subprocess.STDOUT,
                )
            if code != 0:
                lines = [x for x in log.read_text().splitlines() if x.strip()]
                last = lines[-1] if lines else f"exit code {code}"
                problem = f"installation failed ({last[:150]}); see {log}"
    _peer_problems[peer] = problem
    return problem


# --------------------------------------------------------------------------- cases
@dataclass
class Row:
    """One line of a results table: one implementation on one case."""

    case: str
    method: str
    impl: str
    status: str
    n_jobs: int | None = None
    time_s: float | None = None
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    auc: float | None = None
    ratio_to_floor: float | None = None
    ratio_to_best_peer: float | None = None
    mem_ratio_to_floor: float | None = None
    version: str | None = None
    note: str | None = None


def detection_auc(values: np.ndarray, noisy_indices: np.ndarray) -> float | None:
    """ROC AUC of ``-values`` for finding the noisy rows (None if undefined)."""
    from sklearn.metrics import roc_auc_score

    mask = np.zeros(len(values), dtype=bool)
    mask[noisy_indices] = True
    if mask.all() or not mask.any() or not np.all(np.isfinite(values)):
        return None
    return float(roc_auc_score(mask, -values))


def run_case(
    name: str,
    method: str,
    data: Path,
    params: dict[str, Any],
    impls: list[str],
    *,
    repeats: int,
    timeout: float,
    workdir: Path,
) -> list[Row]:
    """Measure every implementation of one case, interleaving the repeats.

    Repeats go round-robin (floor, ours, peers, floor, ours, ...) so that a slow spell of the
    machine hits every implementation alike. An implementation that is unavailable or fails
    is not retried.
    """
    with np.load(data) as f:
        noisy = f["noisy_indices"]
    outcomes: dict[str, list[RunOutcome]] = {impl: [] for impl in impls}
    python = {impl: sys.executable for impl in ("ours", "floor")}
    blocked: dict[str, str] = {}
    for impl in impls:
        if impl in PEERS:
            problem = ensure_peer(impl)
            if problem:
                blocked[impl] = f"unavailable: {problem}"
            python[impl] = str(peer_python(impl))
    for rep in range(repeats):
        for impl in impls:
            if impl in blocked:
                continue
            print(f"  {name}: {LABELS[impl]} (run {rep + 1}/{repeats}) ...", end=" ", flush=True)
            out = workdir / name / f"{impl}-{rep}.json"
            outcome = run_once(python[impl], RUNNERS[impl], data, method, params, out,
                               timeout=timeout)
            print(f"{outcome.time_s:.2f} s" if outcome.status == "ok" else outcome.status,
                  flush=True)
            if outcome.status != "ok":
                blocked[impl] = outcome.status
            outcomes[impl].append(outcome)

    rows = []
    for impl in impls:
        ok = [o for o in outcomes[impl] if o.status == "ok"]
        if impl in blocked or not ok:
            rows.append(Row(name, method, LABELS[impl], blocked.get(impl, "no run")))
            continue
        info = ok[0].info
        values = ok[-1].values
        rows.append(Row(
            case=name, method=method, impl=LABELS[impl], status="ok",
            n_jobs=info.get("n_jobs"),
            time_s=statistics.median(o.time_s for o in ok),
            times=[o.time_s for o in ok],
            peak_mb=max(o.peak_mb for o in ok),
            auc=None if values is None else detection_auc(values, noisy),
            version=f"{info.get('library')} {info.get('version')}",
            note=info.get("note"),
        ))
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[Row]) -> None:
    floor = next((r for r in rows if r.impl == "floor" and r.status == "ok"), None)
    peer_times = [r.time_s for r in rows if r.impl in ("pyDVL", "OpenDataVal") and r.time_s]
    best_peer = min(peer_times) if peer_times else None
    for r in rows:
        if r.time_s is None:
            continue
        if floor is not None and floor.time_s:
            r.ratio_to_floor = r.time_s / floor.time_s
            r.mem_ratio_to_floor = r.peak_mb / floor.peak_mb
        if best_peer:
            r.ratio_to_best_peer = r.time_s / best_peer


# --------------------------------------------------------------------------- output
def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_table(rows: list[Row]) -> str:
    """A markdown table of one method's rows."""
    header = ("case", "impl", "n_jobs", "time_s", "ratio_to_floor", "ratio_to_best_peer",
              "peak_MB", "mem_ratio_to_floor", "AUC")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.status != "ok":
            cells = [r.case, r.impl, "-", r.status, "", "", "", "", ""]
        else:
            spec = ".3f" if r.time_s < 10 else ".1f"
            cells = [r.case, r.impl, _fmt(r.n_jobs, "d"), _fmt(r.time_s, spec),
                     _fmt(r.ratio_to_floor, ".2f"), _fmt(r.ratio_to_best_peer, ".2f"),
                     _fmt(r.peak_mb, ".0f"), _fmt(r.mem_ratio_to_floor, ".2f"),
                     _fmt(r.auc, ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_lines(rows: list[Row]) -> list[str]:
    """'ours / peer' time ratios and the AUCs, one line per peer."""
    ours = next((r for r in rows if r.impl == "datavalue" and r.status == "ok"), None)
    if ours is None:
        return []
    out = []
    for r in rows:
        if r.impl in ("pyDVL", "OpenDataVal") and r.status == "ok":
            out.append(
                f"{r.case}: datavalue / {r.impl} time = {ours.time_s / r.time_s:.3f} "
                f"({ours.time_s:.3g} s vs {r.time_s:.3g} s, n_jobs {ours.n_jobs} vs {r.n_jobs}); "
                f"AUC {_fmt(ours.auc, '.3f')} vs {_fmt(r.auc, '.3f')}"
            )
    return out


def save_results(path_stem: Path, markdown: str, record: dict[str, Any]) -> None:
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    path_stem.with_suffix(".md").write_text(markdown)
    path_stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Row):
        return asdict(x)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))
