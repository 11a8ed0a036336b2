"""Sweep execution: same numbers on every executor and job count, generation 0 shared across
runs, failures isolated, concurrent writers lose nothing, a killed sweep resumes to the same table."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scloop.store import open_results
from scloop.sweep import load_sweep, run_sweep

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def _numbers(df: pd.DataFrame) -> pd.DataFrame:
    """The table without wall-clock rows, in a canonical order."""
    df = df[~df["metric"].str.endswith("_seconds")]
    keys = ["run_id", "arm", "seed", "lambda", "gamma", "correction", "generation", "metric"]
    return df.sort_values(keys).reset_index(drop=True)


def _main(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the configured metrics and the stage timings (corrections add diagnostic rows)."""
    return df[~df["metric"].str.startswith("correction_")]


def _expected_rows(sweep_path: Path) -> int:
    """Units x (generations + 1) x (metrics + 4 stage rows), summed over runs."""
    from scloop.runner import build_units

    n = 0
    for p in load_sweep(str(sweep_path)).points():
        n += len(build_units(p.spec)) * (p.spec.n_generations + 1) * (len(p.spec.metrics) + 4)
    return n


def test_local_jobs_give_identical_tables(tmp_path, sweep_file):
    a = run_sweep(load_sweep(str(sweep_file)), out=tmp_path / "a", jobs=1, quiet=True)
    b = run_sweep(load_sweep(str(sweep_file)), out=tmp_path / "b", jobs=2, quiet=True)
    assert (a.n_runs, a.completed, a.failed) == (4, 4, 0) and b.completed == 4
    ta, tb = open_results(a.path), open_results(b.path)
    assert len(_main(ta)) == _expected_rows(sweep_file)
    pd.testing.assert_frame_equal(_numbers(ta), _numbers(tb))
    # a second call skips every run and changes nothing
    c = run_sweep(load_sweep(str(sweep_file)), out=tmp_path / "a", jobs=2, quiet=True)
    assert (c.completed, c.skipped) == (0, 4)
    pd.testing.assert_frame_equal(_numbers(open_results(a.path)), _numbers(ta))
    assert {"n_real", "lambda"} <= set(ta.columns)


def test_generation0_is_fitted_once_per_key(tmp_path, sweep_file):
    s = run_sweep(load_sweep(str(sweep_file)), out=tmp_path, jobs=1, quiet=True)
    models = sorted((s.path / "runs" / ".cache" / "gen0").glob("*.npz"))
    assert len(models) == 2 * 2  # (n_real 50, 100) x 2 seeds; the 2 lambdas share them
    df = open_results(s.path)
    g0 = df[(df.generation == 0) & (df.metric == "w2-gaussian")]
    per_run = g0.groupby(["n_real", "seed", "run_id"])["value"].first().unstack("run_id")
    # both lambdas' runs report the same generation-0 numbers for every (n, seed)
    assert np.allclose(per_run.max(axis=1, skipna=True), per_run.min(axis=1, skipna=True))


def _register_failing_model():
    from scloop.core.registry import MODELS
    from scloop.plugins import load_plugins
    from scloop.models.gaussian import GaussianModel

    load_plugins()
    if "test-failing" in MODELS:
        return

    class Failing(GaussianModel):
        def fit(self, data, rng):
            raise RuntimeError("this model always fails")

    @MODELS.register("test-failing")
    def make(*, fail: bool = False):
        return Failing() if fail else GaussianModel()


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, make_sweep):
    _register_failing_model()
    spec = make_sweep(tmp_path / "spec", grid="model: [{name: test-failing, fail: false}, "
                                              "{name: test-failing, fail: true}]")
    s = run_sweep(load_sweep(str(spec)), out=tmp_path / "out", jobs=1, quiet=True)
    assert (s.n_runs, s.completed, s.failed) == (2, 1, 1)
    assert "always fails" in s.failures[0][1]
    from scloop.store import SweepStore

    st = SweepStore(s.path)
    states = {r["run_id"]: (r["state"], r["error"]) for r in st.run_rows()}
    st.close()
    failed = [v for v in states.values() if v[0] == "failed"]
    assert len(failed) == 1 and "RuntimeError: this model always fails" in failed[0][1]
    df = open_results(s.path)
    assert df["run_id"].nunique() == 1  # only the good run has rows
    again = run_sweep(load_sweep(str(spec)), out=tmp_path / "out", jobs=1, quiet=True)
    assert (again.skipped, again.failed) == (1, 1)


def test_cli_exit_code_and_bad_input(tmp_path, make_sweep):
    spec = make_sweep(tmp_path / "spec", grid="lambdaa: [1]")
    r = subprocess.run([sys.executable, "-m", "scloop", "sweep", str(spec), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "lambdaa" in r.stderr
    assert not (tmp_path / "out").exists()
    r = subprocess.run([sys.executable, "-m", "scloop", "sweep", str(spec), "--executor", "dask"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "--executor" in r.stderr


def test_four_concurrent_sweep_processes_lose_nothing(tmp_path, make_sweep):
    """Four `scloop sweep` processes on one sweep directory: each run is executed once (locks),
    all of them write to the one results table, and every expected row is there."""
    spec = make_sweep(tmp_path / "spec", gens=4, seeds=2,
                       grid="lambda: [0.25, 0.5, 1.0]\n  n_real: [30, 60]\n  policy: [augment, replace]")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "scloop", "sweep", str(spec), "--workers", "1", "--out", str(out)]  # per-run lines: INFO
    # the first one creates the directory; the others join it
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)]
    time.sleep(0.5)
    procs += [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    df = open_results(out / "t-sweep")
    assert len(_main(df)) == _expected_rows(spec)
    assert not df.duplicated(["run_id", "arm", "seed", "lambda", "gamma", "correction", "generation",
                              "metric"]).any()
    con = sqlite3.connect(out / "t-sweep" / "sweep.sqlite")
    attempts = [a for (a,) in con.execute("SELECT attempts FROM runs")]
    states = {s for (s,) in con.execute("SELECT state FROM runs")}
    con.close()
    assert states == {"complete"} and len(attempts) == 12
    assert all(a == 1 for a in attempts), attempts  # no run was executed twice
    ran = sum(o.count(" ok ") for o in outs)
    assert ran == 12, outs


def test_kill_9_midway_then_rerun_equals_uninterrupted(tmp_path, make_sweep):
    spec = make_sweep(tmp_path / "spec", gens=12, seeds=3,
                       grid="lambda: [0.25, 0.5, 1.0]\n  n_real: [40, 80]")
    ref = run_sweep(load_sweep(str(spec)), out=tmp_path / "ref", jobs=1, quiet=True)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "scloop", "sweep", str(spec), "--workers", "2", "--out", str(out), "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    db = out / "t-sweep" / "sweep.sqlite"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=5)
                done = con.execute("SELECT COUNT(*) FROM runs WHERE state='complete'").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                continue
            if done >= 2:
                break
    assert p.poll() is None, "the sweep finished before it could be killed; make it longer"
    os.kill(p.pid, signal.SIGKILL)  # the parent only: its workers must notice and stop
    p.wait()
    time.sleep(2.0)
    con = sqlite3.connect(db, timeout=5)
    states = [s for (s,) in con.execute("SELECT state FROM runs")]
    con.close()
    assert states.count("complete") < len(states)
    again = run_sweep(load_sweep(str(spec)), out=tmp_path / "killed", jobs=2, quiet=True)
    assert again.failed == 0 and again.skipped >= 2
    got, want = _numbers(open_results(again.path)), _numbers(open_results(ref.path))
    per_run = {"got": got.groupby("run_id").size().to_dict(), "want": want.groupby("run_id").size().to_dict()}
    assert len(got) == len(want), (per_run, states)
    pd.testing.assert_frame_equal(got, want)


def test_ray_executor_matches_local(tmp_path, sweep_file):
    pytest.importorskip("ray")
    a = run_sweep(load_sweep(str(sweep_file)), out=tmp_path / "local", jobs=2, quiet=True)
    b = run_sweep(load_sweep(str(sweep_file)), out=tmp_path / "ray", executor="ray", jobs=2, quiet=True)
    assert b.completed == 4 and b.failed == 0
    pd.testing.assert_frame_equal(_numbers(open_results(a.path)), _numbers(open_results(b.path)))


@pytest.mark.slow
def test_ray_scale_200_runs(tmp_path):
    """>= 200 Gaussian runs through a local Ray cluster; every row present."""
    pytest.importorskip("ray")
    spec = load_sweep("gaussian-ray-scale")
    s = run_sweep(spec, out=tmp_path, executor="ray", jobs=2, quiet=True)
    assert s.n_runs >= 200 and s.completed == s.n_runs and s.failed == 0
    from scloop.runner import build_units

    expected = sum(len(build_units(p.spec)) * (p.spec.n_generations + 1) * (len(p.spec.metrics) + 4)
                   for p in spec.points())
    assert len(_main(open_results(s.path))) == expected


def test_export_csv_and_parquet_round_trip(tmp_path, sweep_file):
    from scloop.store import SweepStore

    s = run_sweep(load_sweep(str(sweep_file)), out=tmp_path, jobs=1, quiet=True)
    st = SweepStore(s.path)
    df = st.table(include_timing=False)
    back_pq = pd.read_parquet(st.export(tmp_path / "t.parquet", include_timing=False))
    back_csv = pd.read_csv(st.export(tmp_path / "t.csv", include_timing=False))
    st.close()
    assert len(back_pq) == len(back_csv) == len(df) > 0
    assert np.allclose(back_pq["value"], df["value"]) and np.allclose(back_csv["value"], df["value"])
    assert list(back_pq.columns) == list(df.columns)
