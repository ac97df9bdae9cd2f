"""Seeds and ordering: parallelism never changes what is computed."""

from __future__ import annotations

import numpy as np

from datavalue.parallel import parallel_map, spawn_seeds


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
