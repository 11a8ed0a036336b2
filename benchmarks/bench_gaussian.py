"""Benchmarks of the Gaussian reproduction (figures printed, not asserted).

1. compute of `gaussian-paper` with 1 seed (8 gammas x 2 correctors x 500 generations), the
   vectorised ensemble alone (no store);                              goal < 0.25 s
2. the whole command `scloop run gaussian-paper --seeds 1`, start-up, store and all; goal < 2 s
   (the official script takes ~250 s for one corrector on this machine, docs/paper.md §3.1).
3. cost growth: `scloop run gaussian-paper --seeds N` for N = 1, 10, 100, 1,000, 10,000, and a
   (lambda x gamma) grid of 1, 10 and 100 cells (oracle-mixture, 100 seeds, 200 generations):
   wall seconds, CPU seconds, peak resident memory and bytes on disk of each run, and the
   growth exponent k of each curve between consecutive sizes (cost ~ size^k): 1 is linear,
   and a regression shows as a larger number.  Goals at 1,000 seeds: < 30 s, < 300 MB on disk.

``BENCH_SEEDS=1,10,100`` (and ``BENCH_GRID=1,10``) restrict the sizes; ``BENCH_KEEP=DIR``
keeps the run directories.  The machine's load average is printed: on a shared machine the wall
times measure it too (the CPU seconds less so).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRIDS = {1: ([0.5], [1.0]), 10: ([0.25, 0.5], [0, 0.3, 1, 3, 10]),
         100: ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [0, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10])}


def compute_seconds(seeds: int) -> float:
    from scloop.core.config import load_spec
    from scloop.core.registry import TASKS
    from scloop.plugins import load_plugins
    from scloop.tasks.gaussian_ensemble import GaussianEnsemble, Group, run_ensemble

    load_plugins()
    spec = load_spec("gaussian-paper", seeds=seeds)
    task = TASKS.create(spec.task.name, **spec.task.kwargs)
    t0 = time.perf_counter()
    for c in spec.corrections:
        ens = GaussianEnsemble(task=task, group=Group("correction", spec.lambdas[0], c.name, c.kwargs, spec.gammas),
                               n_real=spec.n_real, n_seeds=seeds, base_seed=spec.seed, policy=spec.policy.name,
                               policy_options=spec.policy.kwargs, metrics=spec.metrics, init_offset=0.0,
                               reg_covar=spec.model.kwargs.get("reg_covar", 0.0))
        run_ensemble(ens, spec.n_generations, state=None, on_step=lambda r: None)
    return time.perf_counter() - t0


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(args: list[str], out: Path) -> dict[str, float]:
    """Run `scloop run ...` in a child process: wall and CPU seconds, peak RSS (bytes) and the
    run directory's size (bytes)."""
    exe = Path(sys.executable).with_name("scloop")
    cmd = [str(exe), "run", *args, "--quiet", "--out", str(out), "--run-id", "b"]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (peak RSS, CPU)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read().decode()}")
    res = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024.0,
           "disk": float(_disk_bytes(out / "b"))}
    return res


def _exp(a: float, b: float, na: float, nb: float) -> str:
    if a <= 0 or b <= 0:
        return "   -"
    return f"{math.log(b / a) / math.log(nb / na):4.2f}"


def growth_table(title: str, unit: str, rows: list[tuple[int, dict[str, float]]]) -> None:
    print(f"\n{title}")
    print(f"  {unit:>8}  {'wall s':>8}  {'cpu s':>8}  {'peak RSS':>9}  {'disk':>9}   "
          f"k(wall)  k(cpu)  k(RSS)  k(disk)   (cost ~ {unit}^k from the previous row)")
    prev = None
    for n, r in rows:
        ks = "       -       -       -        -" if prev is None else (
            f"   {_exp(prev[1]['wall'], r['wall'], prev[0], n)}    {_exp(prev[1]['cpu'], r['cpu'], prev[0], n)}"
            f"    {_exp(prev[1]['rss'], r['rss'], prev[0], n)}     {_exp(prev[1]['disk'], r['disk'], prev[0], n)}")
        print(f"  {n:>8}  {r['wall']:8.2f}  {r['cpu']:8.2f}  {r['rss'] / 2**20:6.0f} MB  {r['disk'] / 2**20:6.1f} MB"
              f"  {ks}")
        prev = (n, r)


def _sizes(var: str, default: list[int]) -> list[int]:
    v = os.environ.get(var)
    return [int(x) for x in v.split(",")] if v else default


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    compute_seconds(1)  # warm imports
    one = min(compute_seconds(1) for _ in range(3))
    print(f"gaussian-paper compute, 1 seed (16 trajectories x 500 generations): {one:.3f} s   (goal < 0.25 s)")
    keep = os.environ.get("BENCH_KEEP")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="scloop-bench-"))
    try:
        cmd = min(measure(["gaussian-paper", "--seeds", "1"], root / f"one{i}")["wall"] for i in range(3))
        print(f"`scloop run gaussian-paper --seeds 1`, whole command:             {cmd:.2f} s   (goal < 2 s)")
        rows = []
        for s in _sizes("BENCH_SEEDS", [1, 10, 100, 1000, 10000]):
            rows.append((s, measure(["gaussian-paper", "--seeds", str(s)], root / f"seeds{s}")))
            if not keep:
                shutil.rmtree(root / f"seeds{s}")
        growth_table("`scloop run gaussian-paper --seeds N` (2 correctors x 8 gammas x 500 generations per seed; "
                     "goals at 1,000: < 30 s, < 300 MB)", "seeds", rows)
        rows = []
        for cells in _sizes("BENCH_GRID", [1, 10, 100]):
            lams, gams = GRIDS[cells]
            args = ["gaussian-paper", "--seeds", "100", "--set", "correction=oracle-mixture", "--set",
                    "n_generations=200", "--set", f"lambda=[{','.join(map(str, lams))}]", "--set",
                    f"gamma=[{','.join(map(str, gams))}]"]
            rows.append((cells, measure(args, root / f"grid{cells}")))
            if not keep:
                shutil.rmtree(root / f"grid{cells}")
        growth_table("(lambda x gamma) grid in one run: oracle-mixture, 100 seeds, 200 generations per cell",
                     "cells", rows)
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
