"""Seeds and ordering: parallelism never changes what is computed."""

from __future__ import annotations

import numpy as np
import pytest

from datavalue._core.parallel import parallel_map, spawn_seeds


def test_spawned_seeds_depend_only_on_seed_and_position():
    a = spawn_seeds(0, 10)
    assert a == spawn_seeds(0, 10)
    assert a[:4] == spawn_seeds(0, 4)  # prefix-stable: more tasks do not change earlier ones
    assert len(set(a)) == 10
    assert a != spawn_seeds(1, 10)


def _draw(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).random(size)


def test_parallel_map_keeps_task_order_for_any_n_jobs():
    tasks = [(s, 5) for s in spawn_seeds(3, 12)]
    one = parallel_map(_draw, tasks, n_jobs=1, progress=False)
    two = parallel_map(_draw, tasks, n_jobs=2, progress=False)
    for x, y in zip(one, two, strict=True):
        np.testing.assert_array_equal(x, y)


_ORPHAN_SCRIPT = """
import os, sys, time
from datavalue._core.parallel import parallel_map

def pid(_):
    time.sleep(0.3)
    return os.getpid()

print(" ".join(map(str, sorted(set(parallel_map(pid, list(range(6)), n_jobs=2,
                                                 progress=False))))), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_workers_exit_when_their_parent_is_killed(tmp_path):
    """kill -9 of a run leaves no joblib worker behind holding memory (loky's own idle timeout
    is 300 s); the workers notice within a second or two."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "orphans.py"
    script.write_text(_ORPHAN_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert pids and proc.pid not in pids

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie (already exited, not yet reaped) counts as gone
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 15
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
