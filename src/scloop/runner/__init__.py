"""Run one experiment spec into a run directory.

- :mod:`scloop.runner.run` -- :func:`run_experiment`, validation, run identity, safety;
- :mod:`scloop.runner.generic` -- the generic engine (units through ``run_loop``);
- :mod:`scloop.runner.vectorized` -- the vectorised Gaussian engine;
- :mod:`scloop.runner.gen0` -- the shared, content-addressed generation-0 cache;
- :mod:`scloop.runner.parallel` -- worker processes;
- :mod:`scloop.runner.hooks` -- callbacks and progress.
"""

from scloop.runner.artifacts import cache_dir_for, grid_path
from scloop.runner.gen0 import gen0_key
from scloop.runner.hooks import Callback, GenerationEvent, RunInfo
from scloop.runner.parallel import init_worker
from scloop.runner.run import (MARKER, RunConflict, RunExists, RunSummary, build_units, choose_engine,
                               default_run_id, remove_run_dir, run_experiment, run_identity, validate)

__all__ = [
    "MARKER", "Callback", "GenerationEvent", "RunConflict", "RunExists", "RunInfo", "RunSummary", "build_units",
    "cache_dir_for", "choose_engine", "default_run_id", "gen0_key", "grid_path", "init_worker", "remove_run_dir",
    "run_experiment", "run_identity", "validate",
]
