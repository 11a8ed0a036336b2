"""Reader for the IDX format of the original MNIST files (LeCun et al.), gzipped or raw.

Format: a big-endian header ``0x00 0x00 <dtype code> <ndim>`` followed by ``ndim`` big-endian
int32 sizes and the row-major data.  MNIST uses dtype 0x08 (uint8): images have magic 2051
(ndim 3: n x 28 x 28), labels magic 2049 (ndim 1).  The reader checks the magic number, the
sizes against what the caller expects and the payload length (sizes multiplied exactly, so that
a forged header cannot overflow into a small size), so that a truncated, swapped or foreign
file fails with an :class:`IDXError` (a ``ValueError``) naming the file -- never a silently
short array.  An unreadable file or a corrupt gzip stream raises it too.

numpy has no IDX reader and the format is 20 lines, so it is written here rather than pulling a
dataset framework (torchvision) in for it.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

# dtype code -> numpy big-endian dtype (the IDX spec's table)
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """A file is not a valid IDX file of the expected kind."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IDXError(f"{path}: cannot read ({exc})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    return raw


def read_idx(path: str | Path, *, magic: int | None = None, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a native-endian array.

    ``magic``: the expected 4-byte magic number (2051 for MNIST images, 2049 for labels);
    ``shape``: expected sizes, ``None`` entries are free (e.g. ``(None, 28, 28)``).
    Raises :class:`IDXError` naming the file on any mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise IDXError(f"{path}: no such file")
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise IDXError(f"{path}: {len(buf)} bytes, too short for an IDX header")
    zero, code, ndim = int.from_bytes(buf[:2], "big"), buf[2], buf[3]
    got_magic = int.from_bytes(buf[:4], "big")
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise IDXError(f"{path}: bad IDX magic number 0x{got_magic:08x} (not an IDX file, or wrong byte order)")
    if magic is not None and got_magic != magic:
        raise IDXError(f"{path}: magic number {got_magic}, expected {magic}")
    head = 4 + 4 * ndim
    if len(buf) < head:
        raise IDXError(f"{path}: header truncated ({len(buf)} bytes, need {head})")
    dims = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if shape is not None:
        if len(shape) != ndim or any(e is not None and e != d for e, d in zip(shape, dims)):
            want = "x".join("*" if e is None else str(e) for e in shape)
            raise IDXError(f"{path}: shape {'x'.join(map(str, dims))}, expected {want}")
    dtype = np.dtype(_DTYPES[code])
    need = head + math.prod(dims) * dtype.itemsize  # exact: np.prod wraps around in int64
    if len(buf) != need:
        raise IDXError(f"{path}: payload is {len(buf) - head} bytes, the header says {need - head} "
                       f"({'truncated' if len(buf) < need else 'trailing bytes'})")
    return np.frombuffer(buf, dtype=dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))
