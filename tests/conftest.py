"""Test-wide settings: one BLAS/OpenMP thread (EM fits are ~50x slower with 2 threads
competing on a 2-core machine) and Ray's auth off for offline local clusters."""

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
