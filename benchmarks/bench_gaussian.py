"""Benchmarks of the Gaussian reproduction (figures printed, not asserted).

1. compute of `gaussian-paper` with 1 seed (8 gammas x 2 correctors x 500 generations), the
   vectorised ensemble alone (no store);                              goal < 0.25 s
2. the same with 1,000 seeds;                                          goal < 30 s
3. the whole command `scloop run gaussian-paper --seeds 1`, start-up, store and all;  goal < 2.5 s
   (the official script takes ~250 s for one corrector on this machine, docs/paper.md §3.1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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


def command_seconds() -> float:
    out = Path(tempfile.mkdtemp())
    exe = Path(sys.executable).with_name("scloop")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "run", "gaussian-paper", "--seeds", "1", "--quiet", "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    shutil.rmtree(out)
    return dt


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    compute_seconds(1)  # warm imports
    one = min(compute_seconds(1) for _ in range(3))
    print(f"gaussian-paper compute, 1 seed (16 trajectories x 500 generations): {one:.3f} s   (goal < 0.25 s)")
    thousand = compute_seconds(1000)
    print(f"gaussian-paper compute, 1000 seeds (16,000 trajectories):          {thousand:.2f} s   (goal < 30 s)")
    cmd = min(command_seconds() for _ in range(3))
    print(f"`scloop run gaussian-paper --seeds 1`, whole command:             {cmd:.2f} s   (goal < 2.5 s)")
    print(f"ratio 1000 seeds / 1 seed: {thousand / one:.0f}x for 1000x the work")


if __name__ == "__main__":
    main()
