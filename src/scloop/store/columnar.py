"""Columnar results: per-(unit, generation) records in compressed Parquet files, and the
expansion of such records into the tidy long table of ``scloop export``.

Why Parquet (pyarrow) and not DuckDB: a run's bulk data is written by one process, in whole
checkpoints, and never updated in place, so immutable files renamed into place give atomic
per-checkpoint commits without a second database engine; the run's metadata (units,
provenance, the list of valid files) stays in SQLite, which already serialises concurrent
writers (the generic engine's worker processes, several sweep processes).  DuckDB allows one
writing process per database file, which is the opposite of what those writers need, and it
would be a second 30+ MB native dependency for what pyarrow (already used for exports) does.

Layout of one record file (a "segment"), one row per (unit, generation)::

    unit int32, generation int32, status dict<str>, reason dict<str>, n_real int32,
    n_synthetic int64, provenance int32 (id in the run's SQLite ``provenance`` table),
    sample_seconds ... eval_seconds float64, then one float64 column ``m:<name>`` per metric
    (null where that record has no such metric; NaN where it has one whose value is NaN).

Rows are in the order they were written (the vectorised engine: by generation, then unit);
readers sort them by (unit, generation).  Values are float64, bit for bit; compressed with
zstd they take about 6 bytes each (their low mantissa bytes are random: neither sorting by
trajectory nor the byte-stream-split encoding shrink them further, measured).  Columns that
repeat along a generation (stage seconds, status, counts, provenance) are dictionary /
run-length encoded and cost almost nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from scloop.store.atomic import CorruptFile, atomic_target

STAGES = ("sample", "correct", "train", "eval")
STAGE_METRICS = tuple(f"{s}_seconds" for s in STAGES)
METRIC_PREFIX = "m:"
KEY_COLUMNS = ("unit", "generation", "status", "reason", "n_real", "n_synthetic", "provenance")
ZSTD_LEVEL = 3  # level 9 shrinks the float columns by ~1% for twice the CPU; level 1 saves 10% CPU for 1% more


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a core dependency
        raise ImportError("scloop's results store needs pyarrow (pip install pyarrow)") from exc
    return pa, pq


# ---------------------------------------------------------------------- strings as codes
@dataclass
class Coded:
    """A string column as integer codes into ``values`` (a dictionary array in numpy form)."""

    codes: np.ndarray  # (R,) intp
    values: list[str]

    def take(self, idx: np.ndarray) -> "Coded":
        return Coded(self.codes[idx], self.values)

    @staticmethod
    def concat(parts: Sequence["Coded"]) -> "Coded":
        vocab: dict[str, int] = {}
        out = []
        for p in parts:
            remap = np.array([vocab.setdefault(v, len(vocab)) for v in p.values] + [0], dtype=np.intp)
            out.append(remap[p.codes])
        return Coded(np.concatenate(out) if out else np.zeros(0, np.intp), list(vocab))

    @staticmethod
    def encode(strings: Iterable[str]) -> "Coded":
        vocab: dict[str, int] = {}
        codes = np.fromiter((vocab.setdefault(s, len(vocab)) for s in strings), dtype=np.intp)
        return Coded(codes, list(vocab))


# ---------------------------------------------------------------------- records in memory
@dataclass
class Records:
    """Records in columns (wide: one row per (unit, generation), one column per metric).

    ``metrics`` maps a metric name to ``(values float64 (R,), present bool (R,))``."""

    unit: np.ndarray
    generation: np.ndarray
    status: Coded
    reason: Coded
    n_real: np.ndarray
    n_synthetic: np.ndarray
    provenance: np.ndarray  # provenance ids
    seconds: dict[str, np.ndarray]  # stage -> (R,) float64
    metrics: dict[str, tuple[np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return len(self.unit)

    def take(self, idx: np.ndarray) -> "Records":
        return Records(self.unit[idx], self.generation[idx], self.status.take(idx), self.reason.take(idx),
                       self.n_real[idx], self.n_synthetic[idx], self.provenance[idx],
                       {k: v[idx] for k, v in self.seconds.items()},
                       {k: (v[idx], p[idx]) for k, (v, p) in self.metrics.items()})

    @staticmethod
    def empty() -> "Records":
        z = np.zeros(0, np.int64)
        return Records(z, z, Coded(np.zeros(0, np.intp), []), Coded(np.zeros(0, np.intp), []), z, z, z,
                       {s: np.zeros(0) for s in STAGES}, {})

    @staticmethod
    def concat(parts: Sequence["Records"]) -> "Records":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Records.empty()
        if len(parts) == 1:
            return parts[0]
        names = sorted({k for p in parts for k in p.metrics})
        metrics = {}
        for k in names:
            vals = [p.metrics[k][0] if k in p.metrics else np.full(len(p), np.nan) for p in parts]
            pres = [p.metrics[k][1] if k in p.metrics else np.zeros(len(p), bool) for p in parts]
            metrics[k] = (np.concatenate(vals), np.concatenate(pres))
        return Records(np.concatenate([p.unit for p in parts]), np.concatenate([p.generation for p in parts]),
                       Coded.concat([p.status for p in parts]), Coded.concat([p.reason for p in parts]),
                       np.concatenate([p.n_real for p in parts]), np.concatenate([p.n_synthetic for p in parts]),
                       np.concatenate([p.provenance for p in parts]),
                       {s: np.concatenate([p.seconds[s] for p in parts]) for s in STAGES}, metrics)

    def sorted(self) -> "Records":
        """Sorted by (unit, generation); of records with the same key the one that comes last
        wins (as ``INSERT OR REPLACE`` would)."""
        if not len(self):
            return self
        key = self.unit.astype(np.int64) * (int(self.generation.max()) + 2) + self.generation + 1
        order = np.argsort(key, kind="stable")
        k = key[order]
        last = np.ones(len(k), bool)
        last[:-1] = k[1:] != k[:-1]
        if last.all() and np.array_equal(order, np.arange(len(order))):
            return self
        return self.take(order[last])


class RecordBatch:
    """Records accumulated generation by generation (the vectorised engine's output), turned
    into one :class:`Records` when a checkpoint commits them.

    Each :meth:`add` is one generation of many units: ``unit`` (R,) ids; ``status``, ``reason``
    a string, a :class:`Coded` column or (R,) strings; ``n_real``, ``n_synthetic`` ints or (R,); ``provenance`` one JSON
    string; ``seconds`` stage -> float or (R,); ``metrics`` name -> (R,) float64."""

    def __init__(self) -> None:
        self._parts: list[tuple] = []
        self.n_rows = 0

    def __len__(self) -> int:
        return self.n_rows

    def clear(self) -> None:
        self._parts.clear()
        self.n_rows = 0

    def add(self, *, unit: np.ndarray, generation: int, status: Any, reason: Any, n_real: Any, n_synthetic: Any,
            provenance: str, seconds: Mapping[str, Any], metrics: Mapping[str, np.ndarray]) -> None:
        unit = np.asarray(unit, dtype=np.int64)
        if not len(unit):
            return
        self._parts.append((unit, int(generation), status, reason, n_real, n_synthetic, provenance, dict(seconds),
                            {k: np.asarray(v, dtype=float) for k, v in metrics.items()}))
        self.n_rows += len(unit)

    def provenances(self) -> set[str]:
        return {p[6] for p in self._parts}

    def records(self, prov_ids: Mapping[str, int]) -> Records:
        def coded(vals: list[Any]) -> Coded:
            vocab: dict[str, int] = {}
            out = []
            for v, r in vals:
                if isinstance(v, str):
                    out.append(np.full(r, vocab.setdefault(v, len(vocab)), np.intp))
                elif isinstance(v, Coded):
                    remap = np.array([vocab.setdefault(x, len(vocab)) for x in v.values] + [0], dtype=np.intp)
                    out.append(remap[np.asarray(v.codes, dtype=np.intp)])
                else:
                    out.append(np.fromiter((vocab.setdefault(s, len(vocab)) for s in v), np.intp, count=r))
            return Coded(np.concatenate(out), list(vocab))

        parts = self._parts
        if not parts:
            return Records.empty()
        lens = [len(p[0]) for p in parts]
        full = lambda i, dt: np.concatenate([np.broadcast_to(np.asarray(p[i], dtype=dt), (n,))  # noqa: E731
                                             for p, n in zip(parts, lens)])
        names = sorted({k for p in parts for k in p[8]})
        metrics = {}
        for k in names:
            vals = np.concatenate([p[8][k] if k in p[8] else np.full(n, np.nan) for p, n in zip(parts, lens)])
            pres = np.concatenate([np.full(n, k in p[8]) for p, n in zip(parts, lens)])
            metrics[k] = (vals, pres)
        return Records(
            unit=np.concatenate([p[0] for p in parts]),
            generation=np.concatenate([np.full(n, p[1], np.int64) for p, n in zip(parts, lens)]),
            status=coded([(p[2], n) for p, n in zip(parts, lens)]),
            reason=coded([(p[3], n) for p, n in zip(parts, lens)]),
            n_real=full(4, np.int64), n_synthetic=full(5, np.int64),
            provenance=np.concatenate([np.full(n, prov_ids[p[6]], np.int64) for p, n in zip(parts, lens)]),
            seconds={s: np.concatenate([np.broadcast_to(np.asarray(p[7].get(s, 0.0), float), (n,))
                                        for p, n in zip(parts, lens)]) for s in STAGES},
            metrics=metrics,
        )


# ---------------------------------------------------------------------- Parquet files
def _dict_array(c: Coded):
    pa, _ = _pa()
    return pa.DictionaryArray.from_arrays(pa.array(c.codes.astype(np.int32)), pa.array(c.values, pa.string()))


def records_table(rec: Records):
    """The Arrow table of a segment file (see the module docstring)."""
    pa, _ = _pa()
    cols: dict[str, Any] = {
        "unit": pa.array(rec.unit.astype(np.int32)),
        "generation": pa.array(rec.generation.astype(np.int32)),
        "status": _dict_array(rec.status),
        "reason": _dict_array(rec.reason),
        "n_real": pa.array(rec.n_real.astype(np.int32)),
        "n_synthetic": pa.array(rec.n_synthetic.astype(np.int64)),
        "provenance": pa.array(rec.provenance.astype(np.int32)),
    }
    for s in STAGES:
        cols[f"{s}_seconds"] = pa.array(rec.seconds[s].astype(float))
    for k, (v, p) in rec.metrics.items():
        cols[METRIC_PREFIX + k] = pa.array(v, mask=~p)
    return pa.table(cols)


def write_parquet(path: Path, table, *, float_columns: Sequence[str] = (), sync: bool = True) -> int:
    """Write ``table`` to ``path`` atomically (temporary file in the same directory, fsync,
    rename); returns the file size in bytes.  ``float_columns`` are stored plain (dictionary
    encoding cannot shrink random floats and costs time), the others dictionary-encoded."""
    _, pq = _pa()
    path = Path(path)
    floats = set(float_columns)
    with atomic_target(path, sync=sync) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=ZSTD_LEVEL,
                       use_dictionary=[c for c in table.column_names if c not in floats],
                       row_group_size=1 << 20, write_statistics=True)
    return path.stat().st_size


def read_parquet(path: Path, columns: Sequence[str] | None = None):
    """Read a Parquet file; an unreadable one raises :class:`CorruptFile` naming it."""
    _, pq = _pa()
    try:
        if columns is not None:
            names = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in names]
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise CorruptFile(f"{path}: a results file listed in the database is missing; rerun with --force to "
                          "recompute the run") from None
    except Exception as exc:  # ArrowInvalid, OSError ...
        raise CorruptFile(f"{path}: unreadable results file ({type(exc).__name__}: {exc}); rerun with --force "
                          "to recompute the run") from None


ARROW_COMPRESS_ABOVE = 1 << 20  # bytes of table: smaller ones are stored uncompressed


def write_arrow(path: Path, table, *, sync: bool = True) -> int:
    """Write ``table`` as an Arrow IPC file atomically; returns its size.  Used where a file is
    read far more often than written and many small files are read together (a sweep's
    results): it maps into memory with no decoding step.  Tables above
    :data:`ARROW_COMPRESS_ABOVE` bytes get zstd-compressed buffers (half the disk); smaller
    ones are left plain, which reads ten times faster (a 1,000-run sweep of small runs: 0.1 s
    instead of 0.9 s) for a few kB each."""
    pa, _ = _pa()
    import pyarrow.ipc as ipc

    path = Path(path)
    with atomic_target(path, sync=sync) as tmp, open(tmp, "wb") as fh:
        codec = "zstd" if table.nbytes > ARROW_COMPRESS_ABOVE else None
        with ipc.new_file(fh, table.schema, options=ipc.IpcWriteOptions(compression=codec)) as w:
            w.write_table(table)
    return path.stat().st_size


def read_arrow(path: Path, columns: Sequence[str] | None = None):
    """Read an Arrow IPC file written by :func:`write_arrow` (:class:`CorruptFile` if it
    cannot be)."""
    pa, _ = _pa()
    import pyarrow.ipc as ipc

    try:
        with pa.memory_map(str(path)) as src:
            t = ipc.open_file(src).read_all()
    except FileNotFoundError:
        raise CorruptFile(f"{path}: a results file listed in the database is missing; rerun with --force to "
                          "recompute it") from None
    except Exception as exc:
        raise CorruptFile(f"{path}: unreadable results file ({type(exc).__name__}: {exc}); rerun with --force "
                          "to recompute it") from None
    if columns is not None:
        t = t.select([c for c in columns if c in t.column_names])
    return t


def _coded_column(col) -> Coded:
    pa, _ = _pa()
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    return Coded(np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.intp),
                 [str(v) for v in col.dictionary.to_pylist()])


def records_from_table(t, metrics: Iterable[str] | None = None) -> Records:
    """The inverse of :func:`records_table` (``metrics``: only these metric columns)."""
    n = t.num_rows

    def ints(name: str) -> np.ndarray:
        return np.asarray(t.column(name).to_numpy(), dtype=np.int64) if name in t.column_names else np.zeros(n, np.int64)

    def coded(name: str) -> Coded:
        if name not in t.column_names:
            return Coded(np.zeros(n, np.intp), [""])
        return _coded_column(t.column(name))

    want = None if metrics is None else set(metrics)
    ms = {}
    for c in t.column_names:
        if c.startswith(METRIC_PREFIX) and (want is None or c[len(METRIC_PREFIX):] in want):
            col = t.column(c)
            pres = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            ms[c[len(METRIC_PREFIX):]] = (np.asarray(col.to_numpy(zero_copy_only=False), dtype=float), pres)
    secs = {s: (np.asarray(t.column(f"{s}_seconds").to_numpy(), dtype=float) if f"{s}_seconds" in t.column_names
                else np.zeros(n)) for s in STAGES}
    return Records(ints("unit"), ints("generation"), coded("status"), coded("reason"), ints("n_real"),
                   ints("n_synthetic"), ints("provenance"), secs, ms)


def new_segment_name() -> str:
    return f"seg-{uuid.uuid4().hex[:16]}.parquet"


# ---------------------------------------------------------------------- tidy expansion
@dataclass
class Tidy:
    """The tidy long table in columns (row-aligned arrays; strings coded)."""

    columns: dict[str, Any]  # name -> np.ndarray or Coded
    order: tuple[str, ...]

    def __len__(self) -> int:
        first = self.columns[self.order[0]]
        return len(first.codes) if isinstance(first, Coded) else len(first)

    def frame(self, str_columns: Iterable[str] = ()):
        """A pandas DataFrame with the dtypes pandas infers for the same rows given as tuples
        (``str`` for text, int64, float64)."""
        import pandas as pd

        pa, _ = _pa()
        data = {}
        for name in self.order:
            c = self.columns[name]
            if isinstance(c, Coded):
                arr = pa.DictionaryArray.from_arrays(pa.array(c.codes.astype(np.int32)),
                                                     pa.array(c.values or [""], pa.large_string()))
                data[name] = pd.array(arr.cast(pa.large_string()), dtype="str")
            else:
                data[name] = c
        return pd.DataFrame(data, columns=list(self.order))

    def rows(self, chunk: int = 65536):
        """The rows as tuples of Python values (NaN as None, as SQLite returns it)."""
        n = len(self)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            cols = []
            for name in self.order:
                c = self.columns[name]
                if isinstance(c, Coded):
                    cols.append(np.array(c.values + [""], dtype=object)[c.codes[a:b]].tolist())
                elif c.dtype.kind == "f":
                    v = c[a:b]
                    lst = v.tolist()
                    if np.isnan(v).any():
                        lst = [None if x != x else x for x in lst]
                    cols.append(lst)
                else:
                    cols.append(c[a:b].tolist())
            yield from zip(*cols)
