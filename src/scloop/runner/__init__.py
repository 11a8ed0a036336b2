"""Transitional: forwards to the old single-module runner while the package is written."""
from scloop import runner_old as _old
from scloop.runner_old import *  # noqa: F401,F403
from scloop.runner_old import RunExists, RunSummary, build_units, validate, run_experiment, gen0_key, grid_path  # noqa: F401


def __getattr__(name):
    return getattr(_old, name)
