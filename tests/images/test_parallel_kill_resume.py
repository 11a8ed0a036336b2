"""Kill -9 a run with 2 worker processes mid-way: the workers stop with their parent, and
--resume reproduces the uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from scloop.store import RunStore

from .test_image_loop import TINY


def _cmd(out, run_id):
    args = [a for s in TINY for a in ("--set", s)]
    return [sys.executable, "-m", "scloop", "run", "digits-quick", "--quiet", "--out", str(out), "--run-id", run_id,
            "--seeds", "2", "--workers", "2", *args, "--set", "n_generations=4"]


def _count(db):
    try:
        con = sqlite3.connect(db, timeout=1)
        n = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def _values(path):
    st = RunStore(path)
    df = st.table(include_timing=False).sort_values(["arm", "seed", "lambda", "gamma", "generation", "metric"])
    st.close()
    return df.value.to_numpy()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_kill_parent_stops_workers_and_resume_reproduces(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(_cmd(tmp_path, "ref"), capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr
    total = _count(tmp_path / "ref" / "results.sqlite")
    proc = subprocess.Popen(_cmd(tmp_path, "cut"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    db = tmp_path / "cut" / "results.sqlite"
    deadline = time.monotonic() + 300
    while _count(db) < total // 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < _count(db) < total
    # orphaned workers notice their parent is gone at the next generation boundary
    deadline = time.monotonic() + 60
    while any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2] != "Z" for w in workers):
        assert time.monotonic() < deadline, "worker processes outlived their parent"
        time.sleep(0.2)
    res = subprocess.run(_cmd(tmp_path, "cut") + ["--resume"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(_values(tmp_path / "cut"), _values(tmp_path / "ref"), rtol=1e-6, atol=1e-9)
