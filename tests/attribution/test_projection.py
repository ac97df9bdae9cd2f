"""Seeded random projections: the Johnson-Lindenstrauss guarantee, and one matrix per seed
whether it is held or regenerated chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from datavalue import InvalidParameterError  # noqa: E402
from datavalue.attribution import RandomProjection  # noqa: E402
from datavalue.attribution.projection import jl_tolerance  # noqa: E402


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projection_preserves_inner_products_within_the_jl_tolerance(kind):
    # <P^T a, P^T b> estimates <a, b> with standard deviation <= sqrt(2 / k) ||a|| ||b||; the
    # bound checked is 6 of them (a pair exceeds it with probability < 1e-8; 190 pairs).
    rng = np.random.default_rng(0)
    p, k = 9_000, 512  # p spans three generated chunks
    a = torch.as_tensor(rng.normal(size=(20, p)) * rng.uniform(0.1, 10, size=(20, 1)))
    a[1] = a[0] + 0.1 * a[1]  # correlated pairs too
    proj = RandomProjection(p, k, kind, random_state=4, dtype=torch.float64)
    pa = proj(a)
    exact = (a @ a.T).numpy()
    approx = (pa @ pa.T).numpy()
    norms = np.linalg.norm(a.numpy(), axis=1)
    rel = np.abs(approx - exact) / np.outer(norms, norms)
    assert rel.max() <= jl_tolerance(k)
    # and the errors are centred: no bias in the mean over pairs (6 sigma of the mean)
    assert abs((approx - exact)[np.triu_indices(20, 1)].mean() /
               np.outer(norms, norms)[np.triu_indices(20, 1)].mean()) < jl_tolerance(k)


def test_projection_is_the_same_matrix_held_or_regenerated_and_per_seed():
    rng = np.random.default_rng(1)
    g = torch.as_tensor(rng.normal(size=(9, 5000)))
    held = RandomProjection(5000, 64, random_state=3, dtype=torch.float64)
    streamed = RandomProjection(5000, 64, random_state=3, dtype=torch.float64, max_memory=0)
    assert held.held and not streamed.held
    np.testing.assert_allclose(held(g).numpy(), streamed(g).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(held(g[:4]).numpy(), held(g).numpy()[:4])
    other = RandomProjection(5000, 64, random_state=4, dtype=torch.float64)
    assert not np.allclose(other(g).numpy(), held(g).numpy())
    with pytest.raises(InvalidParameterError, match="projection"):
        RandomProjection(10, 4, "sparse")
