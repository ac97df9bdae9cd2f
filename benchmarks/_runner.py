"""What every runner script shares: read the case's arrays, time one call, write the result.

A runner script (``impl_ours.py``, ``impl_floor.py``, ``peers/run_pydvl.py``,
``peers/run_opendataval.py``) is started by the harness in a fresh process, possibly with the
python of another virtual environment, so this module uses only the standard library and numpy.

Contract of a runner script::

    python RUNNER --data CASE.npz --method METHOD --params '{"n_jobs": 2, ...}' --out OUT.json

It loads the arrays, runs ``METHOD`` once, timing only the computation (not imports, not loading
data, not converting arrays to the library's own types), and writes ``OUT.json``::

    {"time_s": 12.3, "values_path": "OUT.npy", "library": "pyDVL", "version": "0.10.0", ...}

or ``{"unavailable": "why"}`` when the library does not offer that method. The values (one per
training point, higher = more helpful) go to ``OUT.npy`` next to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS = ("x_train", "y_train", "x_valid", "y_valid")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with x_train, y_train, x_valid, y_valid")
    parser.add_argument("--method", required=True, help="data-oob, knn-shapley, loo, ...")
    parser.add_argument("--params", default="{}", help="JSON object of method parameters")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args()
    args.params = json.loads(args.params)
    return args


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The four arrays of a case (features float64, labels int64)."""
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in ARRAYS}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn()`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def own_peak_mb() -> float | None:
    """This process's peak resident set since it started its program (``VmHWM``), in MB; not
    ``ru_maxrss``, which Linux carries over from the parent's image at fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def write_result(
    out: str | os.PathLike,
    *,
    seconds: float,
    values: np.ndarray | None,
    library: str,
    version: str,
    **extra: Any,
) -> None:
    """Write ``out`` (JSON) and, if there are values, ``out`` with suffix ``.npy``."""
    out = Path(out)
    values_path = None
    if values is not None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values_path = out.with_suffix(".npy")
        np.save(values_path, values)
    record = {
        "time_s": seconds,
        "values_path": None if values_path is None else str(values_path),
        "library": library,
        "version": version,
        "vm_hwm_mb": own_peak_mb(),
        **extra,
    }
    out.write_text(json.dumps(record, indent=2))


def write_unavailable(out: str | os.PathLike, reason: str, **extra: Any) -> None:
    """Record that this implementation does not offer the requested method."""
    Path(out).write_text(json.dumps({"unavailable": reason, **extra}, indent=2))


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its reaped children (``os.times``) and its
    living descendants (from /proc): joblib's workers, alive or already stopped."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    if not Path("/proc/self/stat").exists():
        return total
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    parent_of: dict[int, int] = {}
    cpu_of: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parent_of[pid] = int(fields[1])
        cpu_of[pid] = (int(fields[11]) + int(fields[12])) / tick
    for pid, cpu in cpu_of.items():
        if pid == me:
            continue
        p = pid
        while p > 1 and p != me:
            p = parent_of.get(p, 0)
        if p == me:
            total += cpu
    return total
