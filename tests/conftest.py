"""Test-wide settings: one BLAS/OpenMP thread (EM fits are ~50x slower with 2 threads
competing on a 2-core machine) and Ray's auth off for offline local clusters."""

import os
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# torch reads this when it starts: one intra-op thread, like every scloop worker process
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's real data folder (``../shared/data`` beside the checkout; CI has it)."""
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
