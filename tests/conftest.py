"""Test-wide settings: one torch thread per worker (pytest-xdist runs two), float64 where asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """The offline copies of the real datasets (``../shared/datasets``), or skip."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(
            f"real datasets not found at {SHARED_DATASETS} (see ../shared/datasets/README.md)"
        )
    return SHARED_DATASETS
