"""Reporting: paper-style figures and summary tables from tidy result frames.

The tidy frame has the columns ``run_id, task, arm, seed, lambda, gamma, n_real, policy,
correction, generation, metric, value`` (see :mod:`scloop.store`).

- :mod:`scloop.report.figures` -- :func:`~scloop.report.figures.metric_vs_generation`,
  :func:`~scloop.report.figures.theory_overlay`, :func:`~scloop.report.figures.final_table`
  and the :func:`~scloop.report.figures.ci95` helper.

Nothing heavy (matplotlib, scipy) is imported at package import time.
"""
