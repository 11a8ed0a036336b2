"""Atomic file writes (temp file in the same directory, fsync, rename) and pickle-free npz."""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from scloop.core.registry import ConfigError


class CorruptFile(ConfigError):
    """A stored file (checkpoint, status, database) that cannot be read; the message names it
    and says how to recover.  Nothing is overwritten when this is raised."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 made outputs unreadable to others


@contextmanager
def atomic_target(path: Path | str, *, sync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` (``.<name>.<random>.tmp``) to write to; on success it
    is fsynced (``sync``), given the mode ``open()`` would give, and renamed onto ``path``; on
    any error it is removed.  Every atomic write of the store goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays atomically; object arrays are refused so loading never unpickles."""
    buf = io.BytesIO()
    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"save_npz: {k!r} is an object array; only plain numeric/bool/str arrays are stored")
        clean[k] = a
    np.savez(buf, **clean)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an npz written by :func:`save_npz`; a truncated or foreign file raises
    :class:`CorruptFile` naming it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
        raise CorruptFile(f"{path}: unreadable checkpoint/array file ({type(exc).__name__}: {exc}); delete it to "
                          "recompute from the previous state, or rerun with --force") from None
