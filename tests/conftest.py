"""Shared fixtures: the real data sets in ../shared/data (beside the repository root)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DATAVALUE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the shared .npz data sets; skips the test when it is absent (CI has it)."""
    if not (SHARED_DATA / "adult.npz").is_file():
        pytest.skip(f"shared data sets not found in {SHARED_DATA}")
    return SHARED_DATA
