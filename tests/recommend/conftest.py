"""A small real ratings log (MovieLens users sampled with a fixed seed) and a model fitted on it."""

from __future__ import annotations

import pytest

import datavalue as dv


@pytest.fixture(scope="session")
def movielens_file(shared_data):
    return shared_data / "movielens.npz"


@pytest.fixture(scope="session")
def small_split(movielens_file):
    # 60 users (seeded) and the movies rated at least 3 times among them: 5,692 training
    # ratings, so that one retraining takes a fraction of a second.
    r = dv.load_ratings(movielens_file, n_users=60, min_item_ratings=3, random_state=1)
    return r.split("latest", n_per_user=2)


@pytest.fixture(scope="session")
def small_model(small_split):
    train, _ = small_split
    return dv.MatrixFactorization(n_factors=6, reg=10.0, tol=1e-10).fit(train)


def tiny_ratings(seed: int = 0, n_users: int = 7, n_items: int = 9, density: float = 0.6):
    """A random small ratings log with string ids (for dense checks)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < density]
    users = [f"u{u}" for u, _ in pairs]
    items = [f"m{i}" for _, i in pairs]
    ratings = rng.integers(1, 11, len(pairs)) / 2
    return dv.Ratings.from_arrays(users, items, ratings, scale=(0.5, 5.0))
