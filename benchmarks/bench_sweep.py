"""Benchmarks of the sweep layer (figures printed, not asserted).

1. `gaussian-phase` (8 runs: lambda x gamma x 50 seeds x 2 policies, 100 generations) with the
   local executor and with Ray, 2 jobs each: wall seconds, and whether the tables are identical.
2. `gaussian-ray-scale` (200 tiny runs) through a local Ray cluster and the local pool, 2 jobs:
   wall seconds, runs per second, executor overhead per run (wall x jobs / runs minus the mean
   in-run seconds), and whether every expected row is present.
"""

from __future__ import annotations

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
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
