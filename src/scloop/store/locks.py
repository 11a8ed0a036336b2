"""Cross-process file locks (``fcntl.flock``): released when the holder exits, even on kill -9.

Hand-written instead of the ``filelock`` package because the sweep needs to hand a lock that
was taken without blocking to the code that runs the locked run, and flock's semantics (the
lock dies with the process, no stale lock files to clean up) are what the resume logic relies
on.
"""

from __future__ import annotations

from pathlib import Path


class FileLock:
    """An exclusive advisory lock on ``path`` (a context manager).  Where fcntl does not exist
    (Windows) it does nothing: concurrent fits of the same generation 0 then both write the same
    file atomically, which is wasteful but correct."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh = None

    def __enter__(self) -> "FileLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (True), else return False at once."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None

    def __exit__(self, *exc) -> None:
        self.release()
