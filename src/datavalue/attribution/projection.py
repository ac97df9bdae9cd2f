"""Random projections of per-example gradients (Johnson-Lindenstrauss sketches).

``g -> P^T g`` with ``P`` a ``p x k`` matrix of i.i.d. entries ``N(0, 1/k)`` (Gaussian) or
``+-1/sqrt(k)`` (Rademacher), so that ``E[<P^T a, P^T b>] = <a, b>``: inner products of the
``k``-dimensional sketches estimate those of the gradients with a standard deviation of
``sqrt((||a||^2 ||b||^2 + <a, b>^2) / k)`` (Gaussian; a little less for Rademacher), which is
what TRAK (Park et al. 2023, Sec. 3.2) and projected TracIn (Pruthi et al. 2020, Sec. 3.3)
rely on.

``P`` is generated in chunks of parameter rows, each from its own seed derived from ``random_state`` and
the chunk's index: the matrix depends only on ``(random_state, n_params, proj_dim, kind)``, never on the
batch size or on how many examples were projected before, so the same seed gives the same
scores in any process. ``P`` is held when it fits ``max_memory`` bytes (one GEMM per block);
otherwise every chunk is regenerated for every block (the full matrix is never held: ``k``
columns per chunk of parameters only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from datavalue._core.exceptions import InvalidParameterError

__all__ = ["PROJECTIONS", "RandomProjection", "jl_tolerance"]

#: Kinds of projection matrices.
PROJECTIONS = ("rademacher", "gaussian")

#: Parameter rows per generated chunk of ``P``: the unit of generation (changing it would change
#: the matrix, so it is fixed).
CHUNK_ROWS = 4096


def jl_tolerance(k: int, z: float = 6.0) -> float:
    """A bound on ``|<P^T a, P^T b> - <a, b>| / (||a|| ||b||)`` for one pair: ``z`` standard
    deviations of the Gaussian sketch's error, ``z sqrt(2 / k)`` (for ``z = 6`` a pair exceeds
    it with probability below ``1e-8``)."""
    return float(z * np.sqrt(2.0 / k))


class RandomProjection:
    """``x -> x P`` for row blocks ``x`` of shape ``(b, n_params)``.

    Parameters
    ----------
    n_params : int
        Input dimension ``p``.
    proj_dim : int
        Output dimension ``k``.
    kind : {"rademacher", "gaussian"}
        Entries ``+-1/sqrt(k)`` (TRAK's default) or ``N(0, 1/k)``.
    random_state : int
        Seed of the matrix.
    dtype, device
        Of the projected output (the matrix is generated in float32 on the CPU, then cast).
    max_memory : float
        Bytes the held matrix may take; above it, chunks are regenerated per block.
    """

    def __init__(self, n_params: int, proj_dim: int, kind: str = "rademacher", random_state: int = 0,
                 *, dtype: Any = torch.float32, device: Any = None,
                 max_memory: float = 2**30) -> None:
        if kind not in PROJECTIONS:
            raise InvalidParameterError(
                f"The 'projection' parameter must be one of {', '.join(PROJECTIONS)}; got "
                f"{kind!r}.")
        self.n_params, self.proj_dim, self.kind, self.random_state = (
            int(n_params), int(proj_dim), kind, int(random_state))
        self.dtype, self.device = dtype, device
        itemsize = torch.empty((), dtype=dtype).element_size()
        self.held = self.n_params * self.proj_dim * itemsize <= max_memory
        self._matrix: Tensor | None = None

    def _chunk(self, index: int) -> Tensor:
        """Rows ``[index * CHUNK_ROWS, ...)`` of ``P``."""
        rows = min(CHUNK_ROWS, self.n_params - index * CHUNK_ROWS)
        state = np.random.SeedSequence([self.random_state, index]).generate_state(2, dtype=np.uint64)
        gen = torch.Generator(device="cpu").manual_seed(int(state[0] >> np.uint64(1)))
        if self.kind == "gaussian":
            block = torch.randn((rows, self.proj_dim), generator=gen, dtype=torch.float32)
        else:
            block = torch.randint(0, 2, (rows, self.proj_dim), generator=gen,
                                  dtype=torch.int8).to(torch.float32).mul_(2).sub_(1)
        block.mul_(1.0 / np.sqrt(self.proj_dim))
        return block.to(dtype=self.dtype, device=self.device)

    def _chunks(self) -> range:
        return range(-(-self.n_params // CHUNK_ROWS))

    def matrix(self) -> Tensor:
        """The whole ``(n_params, proj_dim)`` matrix (built once when it fits ``max_memory``)."""
        if self._matrix is not None:
            return self._matrix
        full = torch.cat([self._chunk(c) for c in self._chunks()])
        if self.held:
            self._matrix = full
        return full

    def __call__(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.n_params:
            raise InvalidParameterError(
                f"cannot project vectors of length {x.shape[-1]} with a projection made for "
                f"{self.n_params}.")
        x = x.to(self.dtype)
        if self.held:
            return x @ self.matrix()
        out = torch.zeros((x.shape[0], self.proj_dim), dtype=self.dtype, device=x.device)
        for c in self._chunks():
            start = c * CHUNK_ROWS
            chunk = self._chunk(c)
            out.addmm_(x[:, start:start + chunk.shape[0]], chunk)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "proj_dim": self.proj_dim, "random_state": self.random_state,
                "chunk_rows": CHUNK_ROWS}
