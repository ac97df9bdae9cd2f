"""Cooperative games with known values, importable by subprocesses of the tests."""

from __future__ import annotations

import time

import numpy as np


class TableGame:
    """v(S) given by a table indexed by bitmask (bit i = player i)."""

    def __init__(self, table: np.ndarray, delay: float = 0.0) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.n_players = int(np.log2(len(self.table)))
        self.delay = delay

    def __call__(self, indices: np.ndarray) -> float:
        if self.delay:
            time.sleep(self.delay)
        return float(self.table[int(np.sum(1 << np.asarray(indices, dtype=np.int64)))])

    def empty_score(self) -> float:
        return float(self.table[0])


def table_from(n: int, fn) -> np.ndarray:
    """Table of v over all subsets, from fn(set of players)."""
    return np.array([fn({i for i in range(n) if m >> i & 1}) for m in range(2**n)], dtype=float)


def unanimity_game(n: int, carriers: set[int]) -> TableGame:
    """u_T(S) = 1 if T ⊆ S: Shapley value 1/|T| for i in T, Banzhaf 1/2^(|T|-1), 0 outside."""
    return TableGame(table_from(n, lambda s: float(carriers <= s)))


def additive_game(weights: np.ndarray) -> TableGame:
    n = len(weights)
    return TableGame(table_from(n, lambda s: float(sum(weights[i] for i in s))))


def random_game(n: int, seed: int) -> TableGame:
    rng = np.random.default_rng(seed)
    return TableGame(rng.normal(size=2**n))
