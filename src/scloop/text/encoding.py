"""Strings as arrays, and the character vocabulary shared by the text models.

A batch of strings is a numpy fixed-width unicode array of shape ``(n,)`` (dtype ``<U{w}``):
``Data.x`` of every text task.  Such arrays concatenate, index and round-trip through
``np.savez`` without pickles, which is what scloop's checkpoints need.

The models are character level over a fixed vocabulary: the 95 printable ASCII characters
plus tab and newline (97 symbols).  Output id 0 is end-of-string (EOS), ids 1..97 are the
characters; input id 98 is the begin-of-string pad (BOS).  Tasks only produce strings over
this vocabulary (the code task drops the few non-ASCII units of the standard library).
"""

from __future__ import annotations

import string
from typing import Iterable, Sequence

import numpy as np

CHARS = "".join(c for c in string.printable if c not in "\r\x0b\x0c")  # 97 characters
EOS = 0
BOS = len(CHARS) + 1  # 98
N_OUT = len(CHARS) + 1  # 98 output symbols (EOS + characters)
N_IN = len(CHARS) + 2  # 99 input symbols (+ BOS)

_LUT = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(CHARS):
    _LUT[ord(_c)] = _i + 1
_BYTES = np.zeros(N_IN, dtype=np.uint8)
for _i, _c in enumerate(CHARS):
    _BYTES[_i + 1] = ord(_c)


def as_strings(values: Iterable[str] | np.ndarray) -> np.ndarray:
    """A ``(n,)`` unicode array (width at least 1) from strings."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return values.reshape(-1)
    vals = list(values)
    width = max([len(v) for v in vals] + [1])
    return np.array(vals, dtype=f"<U{width}").reshape(-1)


def to_list(x: np.ndarray | Sequence[str]) -> list[str]:
    return [str(s) for s in np.asarray(x).reshape(-1)]


def in_vocab(s: str) -> bool:
    return all(0 <= ord(c) < 256 and _LUT[ord(c)] > 0 for c in s)


def encode(x: np.ndarray | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, lengths)``: ids ``(n, w)`` int16 (character ids 1..97, 0 after the end),
    lengths ``(n,)``.  A character outside the vocabulary gets id -1."""
    x = as_strings(x)
    n = len(x)
    lengths = np.char.str_len(x).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    w = int(lengths.max()) if n else 0
    if w == 0:
        return np.zeros((n, 0), dtype=np.int16), lengths
    codes = x.astype(f"<U{w}").view(np.uint32).reshape(n, w)  # code points, 0 padding
    ids = np.where(codes < 256, _LUT[np.minimum(codes, 255)], -1).astype(np.int16)
    ids[np.arange(w)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def decode(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Strings from character ids ``(n, w)`` (1..97) and lengths."""
    n = len(ids)
    w = ids.shape[1] if ids.ndim == 2 else 0
    if n == 0 or w == 0:
        return np.array([""] * n, dtype="<U1")
    b = _BYTES[np.clip(ids, 0, N_IN - 1)]
    b[np.arange(w)[None, :] >= np.asarray(lengths)[:, None]] = 0
    out = np.ascontiguousarray(b).view(f"S{w}").reshape(n).astype(f"<U{w}")
    return as_strings(out)
