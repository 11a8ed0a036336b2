"""Benchmarks of the sweep layer (figures printed, not asserted).

1. `gaussian-phase` (8 runs: lambda x gamma x 50 seeds x 2 policies, 100 generations) with the
   local executor and with Ray, 2 jobs each: wall seconds, and whether the tables are identical.
2. `gaussian-ray-scale` (200 tiny runs) through a local Ray cluster and the local pool, 2 jobs:
   wall seconds, runs per second, executor overhead per run (wall x jobs / runs minus the mean
   in-run seconds), and whether every expected row is present.
3. the results store at sweep scale: rows and bytes on disk of `gaussian-phase`, and reading
   a 1,000-run sweep (runs the size of `gaussian-ray-scale`'s: 5 seeds x 20 generations) into
   one DataFrame;                                                    goal < 2 s
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _numbers(df):
    df = df[~df["metric"].str.endswith("_seconds")]
    keys = ["run_id", "arm", "seed", "lambda", "gamma", "correction", "generation", "metric"]
    return df.sort_values(keys).reset_index(drop=True)


def _sweep(name: str, executor: str, out: Path, jobs: int = 2):
    from scloop.sweep import load_sweep, run_sweep

    t0 = time.perf_counter()
    s = run_sweep(load_sweep(name), out=out, executor=executor, jobs=jobs, quiet=True)
    return s, time.perf_counter() - t0


def main() -> None:
    import io
    import contextlib

    from scloop.runner import build_units
    from scloop.store import SweepStore, open_results
    from scloop.sweep import load_sweep

    have_ray = True
    try:
        import ray  # noqa: F401
    except ImportError:
        have_ray = False
    root = Path(tempfile.mkdtemp(prefix="scloop-bench-sweep-"))
    try:
        print("== gaussian-phase: 8 runs (6 gammas x 3 arms x 50 seeds x 100 generations each), 2 jobs")
        with contextlib.redirect_stdout(io.StringIO()):
            a, ta = _sweep("gaussian-phase", "local", root / "local")
        print(f"  local executor: {ta:6.1f} s")
        if have_ray:
            with contextlib.redirect_stdout(io.StringIO()):
                b, tb = _sweep("gaussian-phase", "ray", root / "ray")
            same = _numbers(open_results(a.path)).equals(_numbers(open_results(b.path)))
            print(f"  ray executor:   {tb:6.1f} s   (ray / local = {tb / ta:.2f}x); identical tables: {same}")
        print("== gaussian-ray-scale: 200 tiny runs, 2 jobs")
        spec = load_sweep("gaussian-ray-scale")
        expected = sum(len(build_units(p.spec)) * (p.spec.n_generations + 1) * (len(p.spec.metrics) + 4)
                       for p in spec.points())
        for executor in (["ray"] if have_ray else []) + ["local"]:
            with contextlib.redirect_stdout(io.StringIO()):
                s, t = _sweep("gaussian-ray-scale", executor, root / f"scale-{executor}")
            df = open_results(s.path)
            rows = int((~df["metric"].str.startswith("correction_")).sum())
            st = SweepStore(s.path)
            in_run = sum(r["seconds"] or 0.0 for r in st.run_rows()) / max(s.n_runs, 1)
            st.close()
            overhead = t * 2 / s.n_runs - in_run
            print(f"  {executor:<6}: {s.n_runs} runs in {t:6.1f} s = {s.n_runs / t:5.1f} runs/s; "
                  f"mean in-run {in_run:.2f} s, executor overhead ~{overhead:.2f} s/run; "
                  f"rows {rows}/{expected} {'(all present)' if rows == expected else '(MISSING)'}; failed {s.failed}")
        print("== results store")
        df = open_results(a.path)
        disk = sum(p.stat().st_size for p in (a.path / "results").rglob("*") if p.is_file())
        db = sum(p.stat().st_size for p in a.path.glob("sweep.sqlite*"))
        print(f"  gaussian-phase: {len(df):,} tidy rows; results files {disk / 2**20:.1f} MB, sweep.sqlite "
              f"{db / 2**20:.2f} MB")
        n, rows, secs = read_big_sweep(root / "big")
        print(f"  a {n}-run sweep ({rows:,} tidy rows): open_results -> DataFrame in {secs:.2f} s   (goal < 2 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def read_big_sweep(root: Path, n_runs: int = 1000) -> tuple[int, int, float]:
    """A sweep of ``n_runs`` completed runs (each a copy of one small run: 5 seeds x 20
    generations of oracle-mixture), ingested as a sweep ingests them; the seconds
    ``open_results`` takes to return its table (the best of 3)."""
    from scloop.core.config import load_spec
    from scloop.runner import run_experiment
    from scloop.store import SweepStore, open_results

    spec = load_spec("gaussian-paper", ["correction=oracle-mixture", "gamma=[1]", "n_generations=20",
                                        "metrics=[w2-gaussian, mean_error]"], seeds=5)
    template = run_experiment(spec, out=root / "template", run_id="t").path
    sw = SweepStore(root / "sweep")
    ids = [f"run-{i:04d}" for i in range(n_runs)]
    sw.register([(rid, {"i": i}, "task: gaussian\n") for i, rid in enumerate(ids)])
    sw.runs_dir.mkdir(parents=True, exist_ok=True)
    for rid in ids:
        (sw.runs_dir / rid).symlink_to(template)
        sw.ingest(rid)
    sw.close()
    best, rows = math.inf, 0
    for _ in range(3):
        t0 = time.perf_counter()
        df = open_results(root / "sweep")
        best = min(best, time.perf_counter() - t0)
        rows = len(df)
    return n_runs, rows, best


if __name__ == "__main__":
    main()
