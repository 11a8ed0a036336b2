"""`scloop export` is unchanged by the columnar results store.

1. Runs regenerated from their configs export, byte for byte, what the SQLite-only store
   exported for them (SHA-256 of the CSV recorded with the code before the columnar store:
   the numbers of the engines and the text of the export are both pinned).
2. A run directory written by that code (rows in SQLite, ``tests/store/data/legacy-tiny``)
   still exports byte for byte what it exported then, timings included.
3. The same records exported from a record file and from SQLite rows give the same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
# recorded with numpy 2.4 on x86-64 Linux; the engines' numbers depend on LAPACK's rounding
PINNED_NUMPY = "2.4"

RUNS = {
    "golden-vectorized": (["--seeds", "3", "--set", "n_generations=60", "--set", "checkpoint_every=25"],
                          "4019c056283606e821576b6ebdc2bfa72aaf6f7b11b94987d82954399ac5db76", 15985),
    "golden-generic": (["--seeds", "2", "--set", "engine=generic", "--set", "n_generations=8", "--set", "gamma=[0,1]",
                        "--set", "checkpoint_every=3"],
                       "3d01d5da5d6dc608647d841e363f9baddb3db373ad7a74d490bdac5d63fcffb5", 377),
}
LEGACY_CSV = "b6621c085a42e5ab2a3c7e345413fee97222523f7401576a65fc14ec0c19eb9b"
LEGACY_JSON = "5ee3b922d1af6148a6eb4fce90458e0994872557f0e8cb501b098efc761c4fdf"


def _scloop(*args: str) -> bytes:
    res = subprocess.run([sys.executable, "-m", "scloop", *args], capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


@pytest.mark.skipif(".".join(np.__version__.split(".")[:2]) != PINNED_NUMPY,
                    reason=f"hashes recorded with numpy {PINNED_NUMPY}")
@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_regenerated_run_exports_the_same_bytes(tmp_path, run_id):
    args, digest, lines = RUNS[run_id]
    _scloop("run", "gaussian-paper", *args, "--run-id", run_id, "--out", str(tmp_path), "--quiet")
    out = _scloop("export", run_id, "--out", str(tmp_path), "--no-timing")
    assert out.count(b"\n") == lines
    assert hashlib.sha256(out).hexdigest() == digest


def test_run_written_by_the_sqlite_store_exports_the_same_bytes(tmp_path):
    shutil.copytree(DATA / "legacy-tiny", tmp_path / "legacy-tiny")
    csv = _scloop("export", "legacy-tiny", "--out", str(tmp_path))
    assert hashlib.sha256(csv).hexdigest() == LEGACY_CSV
    js = _scloop("export", "legacy-tiny", "--out", str(tmp_path), "--format", "json")
    assert hashlib.sha256(js).hexdigest() == LEGACY_JSON


def test_record_files_and_sqlite_rows_export_the_same(tmp_path, monkeypatch):
    """Copy a vectorised run's records into a second run directory as SQLite rows (the
    generic engine's format); both directories give the same table, rows and export."""
    import scloop
    import scloop.store.run_store as rs
    from scloop.store import RunStore

    monkeypatch.setattr(rs, "ROWWISE_BELOW", 0)  # this small run's records in files too

    run = scloop.run("gaussian-paper", seeds=2, overrides=["n_generations=12", "checkpoint_every=5"], out=tmp_path,
                     run_id="files")
    a = RunStore(run.path)
    assert a.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0  # all in record files
    rec = a.load_records()
    prov = dict(a.db.execute("SELECT id, parts FROM provenance").fetchall())
    shutil.copytree(run.path, tmp_path / "rows", ignore=shutil.ignore_patterns("records", "results.sqlite*"))
    b = RunStore(tmp_path / "rows")
    b.create(run.path.joinpath("config.yaml").read_text(), a.units())
    rows = []
    for i in range(len(rec)):
        metrics = {k: v[i] for k, (v, p) in rec.metrics.items() if p[i]}
        secs = {s: rec.seconds[s][i] for s in ("sample", "correct", "train", "eval")}
        rows.append((int(rec.unit[i]), int(rec.generation[i]), rec.status.values[rec.status.codes[i]],
                     rec.reason.values[rec.reason.codes[i]], int(rec.n_real[i]), int(rec.n_synthetic[i]),
                     prov[int(rec.provenance[i])], secs, metrics))
    b.write_records(rows)
    for kw in ({}, {"include_timing": False}, {"metric": "w2-gaussian", "generations": [0, 12]},
               {"metric": "sample_seconds"}, {"generations": [3]}):
        x, y = a.table(**kw), b.table(**kw)
        assert len(x) > 0, kw
        assert x.drop(columns="run_id").equals(y.drop(columns="run_id")), kw
    assert list(a.tidy_rows()) == [("files",) + r[1:] for r in b.tidy_rows()]
    ra, rb = a.records(), b.records()
    assert ra.equals(rb)
    a.close()
    b.close()
