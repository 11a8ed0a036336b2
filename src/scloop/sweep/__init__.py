"""Sweeps: one command runs a grid of experiments (lambda x gamma x n x arm x seeds x any key)
on a local process pool or a Ray cluster, into one results table.

>>> from scloop.sweep import load_sweep, run_sweep
>>> summary = run_sweep(load_sweep("gaussian-phase"), out="runs", jobs=2)   # doctest: +SKIP
>>> from scloop.store import open_results
>>> df = open_results(summary.path)                                          # doctest: +SKIP
"""

from scloop.sweep.execute import EXECUTORS, SweepSummary, run_point, run_sweep
from scloop.sweep.spec import SweepPoint, SweepSpec, load_sweep, sweep_from_dict, sweep_preset_names

__all__ = [
    "EXECUTORS",
    "SweepPoint",
    "SweepSpec",
    "SweepSummary",
    "load_sweep",
    "run_point",
    "run_sweep",
    "sweep_from_dict",
    "sweep_preset_names",
]
