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
    try:
        con = sqlite3.connect(db, timeout=1)
        n = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
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
