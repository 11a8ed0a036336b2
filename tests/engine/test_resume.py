"""Kill a run with SIGKILL at a random point, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scloop.store import RunStore


def _cmd(out: Path, engine: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "scloop", "run", "gaussian-paper", "--quiet", "--out", str(out),
            "--run-id", "r", "--workers", "1", "--set", f"engine={engine}", *extra]


def _n_records(db: Path) -> int:
    """Records committed so far: rows written one at a time plus those of the record files
    (the vectorised engine writes one per checkpoint)."""
    try:
        con = sqlite3.connect(db, timeout=1)
        n = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        has = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='segments'").fetchone()[0]
        if has:
            n += con.execute("SELECT COALESCE(SUM(n_rows), 0) FROM segments").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def _values(path: Path):
    store = RunStore(path)
    df = store.table(include_timing=False)
    store.close()
    return df.drop(columns=["run_id"]).sort_values(
        ["arm", "correction", "gamma", "seed", "generation", "metric"]).reset_index(drop=True)


@pytest.mark.parametrize(
    "engine, extra",
    [
        ("generic", ["--set", "n_generations=120", "--set", "checkpoint_every=1", "--set", "gamma=[0,1]"]),
        ("vectorized", ["--seeds", "20", "--set", "n_generations=400", "--set", "checkpoint_every=7"]),
        # 24,000 records per checkpoint: committed as record files (the one above: SQLite rows)
        ("vectorized", ["--seeds", "20", "--set", "n_generations=400", "--set", "checkpoint_every=150"]),
        # two cells (histogram, mixture) computed at once in two threads
        ("vectorized", ["--seeds", "20", "--set", "n_generations=400", "--set", "checkpoint_every=7",
                        "--workers", "2"]),
    ],
)
def test_kill_and_resume_is_bit_identical(tmp_path, engine, extra):
    rnd = random.Random()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    ref = subprocess.run(_cmd(tmp_path / "ref", engine, extra), capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr
    total = _n_records(tmp_path / "ref" / "r" / "results.sqlite")

    out = tmp_path / "killed"
    db = out / "r" / "results.sqlite"
    target = rnd.randint(total // 10, total // 2)  # kill somewhere in the first half
    proc = subprocess.Popen(_cmd(out, engine, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while _n_records(db) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"the run finished before it could be killed (at {_n_records(db)} of {total} records)")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _n_records(db)
    assert 0 < killed_at < total, (killed_at, total)

    # without --resume an incomplete run is refused (exit 1) and nothing is changed
    again = subprocess.run(_cmd(out, engine, extra), capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "--resume" in again.stderr
    assert _n_records(db) == killed_at

    res = subprocess.run(_cmd(out, engine, extra) + ["--resume"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    a, b = _values(tmp_path / "ref" / "r"), _values(out / "r")
    assert len(a) == len(b) > 0
    assert a.equals(b), "resumed run differs from the uninterrupted run"


class _Crash(RuntimeError):
    pass


class _CrashAfter:
    """Raises at the n-th generation event: the events of a checkpoint interval are dispatched
    after its record file is committed and before its checkpoint is written (the worst moment
    to be killed)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_generation_end(self, event) -> None:
        self.seen += 1
        if self.seen >= self.n:
            raise _Crash()


@pytest.mark.parametrize("crash_at, rows_below, threads", [(300, 0, 1), (1000, 0, 1), (700, None, 1), (700, 0, 2)])
def test_resume_across_seed_blocks_and_gamma_pieces_is_bit_identical(tmp_path, monkeypatch, crash_at, rows_below,
                                                                      threads):
    """Seed blocks of 4 and pieces of one gamma (a tiny memory budget): a run that fails
    midway and is resumed equals an uninterrupted one (records in files, which resuming
    rewrites; or, as small batches are, in SQLite rows)."""
    import scloop.store.run_store as rs
    import scloop.tasks.gaussian_ensemble as ens
    from scloop.core.config import load_spec
    from scloop.runner import run_experiment

    monkeypatch.setattr(ens, "SEED_BLOCK", 4)
    monkeypatch.setattr(ens, "MEMORY_BUDGET", 1)
    if rows_below is not None:
        monkeypatch.setattr(rs, "ROWWISE_BELOW", rows_below)
    spec = load_spec("gaussian-paper", ["n_generations=30", "checkpoint_every=4", "gamma=[0,1]"], seeds=10)
    run_experiment(spec, out=tmp_path / "ref", run_id="r")
    with pytest.raises(_Crash):
        run_experiment(spec, out=tmp_path / "cut", run_id="r", callbacks=[_CrashAfter(crash_at)], workers=threads)
    ck = sorted(p.name for p in (tmp_path / "cut" / "r" / "checkpoints").glob("cell-*.npz"))
    assert len(ck) >= 2  # cells of 4 seeds x 1 gamma, several done or started
    run_experiment(spec, out=tmp_path / "cut", run_id="r", resume=True, workers=threads)
    a, b = _values(tmp_path / "ref" / "r"), _values(tmp_path / "cut" / "r")
    assert len(a) == len(b) == 10 * 2 * 2 * 31 * 3 + 10 * 2 * 2 * 30 * 3 - 10 * 2 * 30
    assert a.equals(b)
