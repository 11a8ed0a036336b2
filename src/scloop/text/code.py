"""The real-text corpus: Python source of the running interpreter's standard library.

Every ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` (``site-packages`` and
``__pycache__`` excluded) that decodes as UTF-8 and parses is a *document*.  The split is by
file and decided by the file's path relative to the stdlib root alone: a file is held out
when ``sha256(relative path) mod 10_000 < holdout * 10_000``.  So the split does not depend
on the listing order, the machine or the interpreter version (a file keeps its side when
other files come and go), and no file is in both halves.

Units (``unit`` option):

- ``line``: logical lines -- every simple statement (``x = f(a,\\n b)``, ``return y``,
  ``import os`` ...; not the headers of compound statements), its source text as written,
  continuation lines included;
- ``function``: every ``def`` / ``async def`` (decorators excluded), dedented.

A unit is kept when it is ASCII over the models' vocabulary (tab, newline, printable), at
most ``max_len`` characters long, at least ``min_len``, and valid by :func:`is_valid_unit`
(so the real data are 100% valid by construction).

The corpus is built once per (interpreter, unit, max_len, min_len) and cached in
``$SCLOOP_TEXT_CACHE`` (default ``~/.cache/scloop/text``) as one npz of bytes and offsets.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
import textwrap
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from scloop.text.encoding import in_vocab

UNITS = ("line", "function")
CORPUS_VERSION = 1


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[str]:
    """Relative paths (posix) of the stdlib's ``.py`` files, sorted."""
    root = Path(root or stdlib_root())
    out = []
    for dp, dn, fn in os.walk(root):
        dn[:] = sorted(d for d in dn if d not in ("site-packages", "__pycache__", "dist-packages"))
        for f in fn:
            if f.endswith(".py"):
                out.append(Path(dp, f).relative_to(root).as_posix())
    return sorted(out)


def is_heldout(rel_path: str, holdout: float) -> bool:
    h = int.from_bytes(hashlib.sha256(rel_path.encode()).digest()[:8], "big") % 10_000
    return h < int(round(holdout * 10_000))


def _check(src: str, unit: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if unit == "function":
                compile(src, "<unit>", "exec", dont_inherit=True)
            else:
                ast.parse(src)
        except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
            return False
    return True


def is_valid_unit(s: str, unit: str) -> bool:
    """A line is valid when ``ast.parse`` accepts it as a module; a function when
    ``compile(..., "exec")`` does (which also checks e.g. ``return`` placement), and it is
    one ``def`` statement."""
    if not s.strip():
        return False
    if not _check(s, unit):
        return False
    if unit == "function":
        try:
            body = ast.parse(s).body
        except (SyntaxError, ValueError, RecursionError):
            return False
        return len(body) == 1 and isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef))
    return True


def extract_units(src: str, unit: str) -> list[str]:
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True)
    starts = np.concatenate([[0], np.cumsum([len(x.encode("utf-8")) for x in lines])]).astype(np.int64)
    raw = src.encode("utf-8")
    out = []
    for node in ast.walk(tree):
        if unit == "function":
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                text = "".join(lines[node.lineno - 1: node.end_lineno])
                out.append(textwrap.dedent(text).rstrip("\n"))
        elif isinstance(node, ast.stmt) and not any(hasattr(node, f) for f in ("body", "cases")):
            if node.end_lineno is None or node.end_col_offset is None:
                continue
            a = starts[node.lineno - 1] + node.col_offset  # ast offsets are in UTF-8 bytes
            b = starts[node.end_lineno - 1] + node.end_col_offset
            out.append(raw[a:b].decode("utf-8", errors="replace"))
    return out


def _cache_dir() -> Path:
    return Path(os.environ.get("SCLOOP_TEXT_CACHE", Path.home() / ".cache" / "scloop" / "text"))


@lru_cache(maxsize=8)
def corpus(unit: str, max_len: int, min_len: int, holdout: float) -> dict[str, object]:
    """``{"train": list[str], "heldout": list[str], "train_files": [...], "heldout_files": [...],
    "n_files": int}`` -- units in file order then source order."""
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r}: allowed {UNITS}")
    root = stdlib_root()
    key = hashlib.sha256(repr((CORPUS_VERSION, sys.version, str(root), unit, max_len, min_len)).encode()).hexdigest()[:16]
    path = _cache_dir() / f"python-stdlib-{unit}-{key}.npz"
    docs = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                blob, offs, fidx, files = z["blob"].tobytes(), z["offsets"], z["file_index"], list(z["files"])
            texts = [blob[offs[i]:offs[i + 1]].decode("ascii") for i in range(len(offs) - 1)]
            docs = (files, fidx, texts)
        except (OSError, ValueError, KeyError):
            docs = None
    if docs is None:
        files, fidx_l, texts = [], [], []
        for rel in stdlib_files(root):
            try:
                src = (root / rel).read_text(encoding="utf-8")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    units = extract_units(src, unit)
            except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError, OSError):
                continue
            fi = len(files)
            files.append(rel)
            for u in units:
                if min_len <= len(u) <= max_len and in_vocab(u) and is_valid_unit(u, unit):
                    texts.append(u)
                    fidx_l.append(fi)
        fidx = np.array(fidx_l, dtype=np.int32)
        enc = [t.encode("ascii") for t in texts]
        offs = np.concatenate([[0], np.cumsum([len(b) for b in enc])]).astype(np.int64)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, blob=np.frombuffer(b"".join(enc), dtype=np.uint8), offsets=offs, file_index=fidx,
                     files=np.array(files, dtype=str))
            os.replace(tmp, path)
        except OSError:
            pass
        docs = (files, fidx, texts)
    files, fidx, texts = docs
    held_file = np.array([is_heldout(f, holdout) for f in files], dtype=bool)
    held_unit = held_file[np.asarray(fidx, dtype=np.int64)] if len(fidx) else np.zeros(0, bool)
    return {
        "train": [t for t, h in zip(texts, held_unit) if not h],
        "heldout": [t for t, h in zip(texts, held_unit) if h],
        "train_files": [f for f, h in zip(files, held_file) if not h],
        "heldout_files": [f for f, h in zip(files, held_file) if h],
        "n_files": len(files),
    }


def longest_valid_prefix(s: str, unit: str) -> str | None:
    """The longest prefix of ``s`` that is a valid unit: whole-line prefixes first (longest
    first), then, for a one-line string, character prefixes.  None if there is none."""
    lines = s.split("\n")
    for k in range(len(lines), 0, -1):
        cand = "\n".join(lines[:k]).rstrip()
        if cand and is_valid_unit(cand, unit):
            return cand
    if unit == "line":
        first = lines[0]
        for k in range(len(first) - 1, 0, -1):
            cand = first[:k].rstrip()
            if cand and is_valid_unit(cand, unit):
                return cand
    return None
