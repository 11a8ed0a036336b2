"""Test-wide settings: one BLAS/OpenMP thread (EM fits are ~50x slower with 2 threads
competing on a 2-core machine) and Ray's auth off for offline local clusters.

Shared data (``../shared/data`` beside the checkout): a test whose data file is missing skips
locally but FAILS under CI (environment variable ``CI`` set to anything but empty, ``0``,
``false`` or ``no``), where the data must be present.  Tests ask for it through the
``shared_data`` fixture (the folder) or ``require_data`` (one file or folder), both of which
go through :func:`missing_data`; a plain ``pytest.skip`` whose reason names a path under the
shared folder (a helper outside a fixture) is turned into a failure under CI as well.  Skips
for optional packages or the GPU are untouched; a test that needs a program asks
``require_tool`` (skip locally, fail under CI).
"""

import os
import shutil
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


def under_ci() -> bool:
    """Whether the suite runs under CI (``CI`` set and not empty/0/false/no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_data(reason: str) -> None:
    """Skip the test for missing shared data -- or fail it under CI, where the data must be there."""
    if under_ci():
        pytest.fail(f"{reason} (CI={os.environ.get('CI')!r}: shared data must be present under CI, "
                    "in ../shared/data beside the checkout)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require_tool():
    """``require_tool(name, *alternatives)``: the path of the first program found on PATH; none
    found: skip locally, fail under CI (where ``.ci/run`` installs the tools the tests need)."""

    def require(*names: str) -> str:
        for name in names:
            found = shutil.which(name)
            if found:
                return found
        reason = f"none of {', '.join(names)} found on PATH"
        if under_ci():
            pytest.fail(f"{reason} (CI={os.environ.get('CI')!r}: required under CI; .ci/run installs it)",
                        pytrace=False)
        pytest.skip(reason)

    return require


@pytest.fixture(scope="session")
def require_data():
    """``require_data(path)``: ``path`` if it exists, else :func:`missing_data` (skip; fail under CI)."""

    def require(path: str | Path, what: str = "shared data") -> Path:
        path = Path(path)
        if not path.exists():
            missing_data(f"{what} not found at {path}")
        return path

    return require


@pytest.fixture(scope="session")
def shared_data(require_data) -> Path:
    """The project's real data folder (``../shared/data`` beside the checkout; CI has it)."""
    require_data(SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", "shared data (MNIST test images)")
    return SHARED_DATA


def _names_shared_data(reason: str) -> bool:
    return str(SHARED_DATA) in reason or str(Path("shared") / "data") in reason


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a plain ``pytest.skip`` for a missing file under the shared folder is a failure."""
    rep = yield
    if (rep.skipped and under_ci() and not hasattr(rep, "wasxfail") and call.excinfo is not None
            and call.excinfo.errisinstance(pytest.skip.Exception)
            and _names_shared_data(str(call.excinfo.value.msg))):
        rep.outcome = "failed"
        rep.longrepr = (f"skipped for missing shared data, a failure under CI (CI={os.environ.get('CI')!r}): "
                        f"{call.excinfo.value.msg}")
    return rep
