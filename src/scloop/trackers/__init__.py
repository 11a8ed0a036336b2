"""Experiment-tracker adapters: callbacks for :func:`scloop.run` that mirror each finished
generation into an external tracking tool.

Each tracker imports its tracking library only when it is constructed, so ``import
scloop.trackers`` costs nothing and needs no optional dependency::

    from scloop.trackers import TensorBoardTracker

    run = scloop.run("gaussian-paper", seeds=2, callbacks=[TensorBoardTracker()])
    # then: tensorboard --logdir runs/<run_id>/tensorboard

Available: :class:`TensorBoardTracker` (TensorBoard event files; ``pip install
'scloop[tensorboard]'``).
"""

from __future__ import annotations

from scloop.trackers.tensorboard import TensorBoardTracker, read_scalars, unit_tag

__all__ = ["TensorBoardTracker", "read_scalars", "unit_tag"]
