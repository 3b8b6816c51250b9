"""Test-wide settings: one torch thread per worker (pytest-xdist runs two), float64 where asked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

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


class _GlobalState(NamedTuple):
    """What one test could leave behind for the next one on the same worker."""

    torch_threads: int
    default_dtype: torch.dtype
    grad_mode: bool
    deterministic_algorithms: bool
    working_directory: str
    smoothlab_variables: dict[str, str]  # SMOOTHLAB_NATIVE, SMOOTHLAB_CACHE_DIR, ...

    @classmethod
    def now(cls) -> _GlobalState:
        return cls(
            torch.get_num_threads(),
            torch.get_default_dtype(),
            torch.is_grad_enabled(),
            torch.are_deterministic_algorithms_enabled(),
            os.getcwd(),
            {k: v for k, v in os.environ.items() if k.startswith("SMOOTHLAB_")},
        )

    def restore(self) -> None:
        torch.set_num_threads(self.torch_threads)
        torch.set_default_dtype(self.default_dtype)
        torch.set_grad_enabled(self.grad_mode)
        torch.use_deterministic_algorithms(self.deterministic_algorithms)
        os.chdir(self.working_directory)
        for key in [k for k in os.environ if k.startswith("SMOOTHLAB_")]:
            del os.environ[key]
        os.environ.update(self.smoothlab_variables)


@pytest.fixture(autouse=True)
def _order_proof() -> Iterator[None]:
    """Every test starts from the same global RNG state and leaves the process as it found it.

    Tests draw their data from fixed generators; seeding torch's global RNG too makes the draws
    a library API makes from it (``nn.Linear``'s initialisation, IVON's default generator) the
    same whichever tests ran before on this worker (pytest-randomly, when it is on, reseeds only
    ``random`` and numpy, which no test draws from). A test that changes the thread count, the default dtype, grad
    mode, the working directory or smoothlab's environment variables without restoring them
    fails, and the state is restored so that the tests after it do not inherit it.
    """
    torch.manual_seed(0)
    before = _GlobalState.now()
    yield
    after = _GlobalState.now()
    if after != before:
        before.restore()
        changed = {
            name: (old, new)
            for name, old, new in zip(before._fields, before, after, strict=True)
            if old != new
        }
        pytest.fail(f"the test left global state changed (before, after): {changed}")
