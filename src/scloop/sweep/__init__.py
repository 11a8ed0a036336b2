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


# ``import scloop.sweep`` (this package) sets the attribute ``scloop.sweep`` to the package,
# shadowing the public function :func:`scloop.api.sweep` of the same name; calling the package
# calls that function, so ``scloop.sweep(...)`` works whatever was imported first.
import sys as _sys  # noqa: E402
import types as _types  # noqa: E402


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from scloop.api import sweep

        return sweep(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
