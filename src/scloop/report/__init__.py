"""Reporting: paper-style figures and summary tables from tidy result frames.

The tidy frame has the columns ``run_id, task, arm, seed, lambda, gamma, n_real, policy,
correction, generation, metric, value`` (see :mod:`scloop.store`).

- :mod:`scloop.report.figures` -- :func:`~scloop.report.figures.metric_vs_generation`,
  :func:`~scloop.report.figures.theory_overlay`, :func:`~scloop.report.figures.final_table`
  and the :func:`~scloop.report.figures.ci95` helper; every plotting function draws into a
  given matplotlib ``Axes`` or a new ``Figure`` (never through pyplot, never switching the
  backend) and returns the ``Figure``;
- :mod:`scloop.report.plots` -- :func:`~scloop.report.plots.save_figure` (PNG + SVG) and
  :func:`~scloop.report.plots.plot_run` (the files of ``scloop plot``);
- :mod:`scloop.report.verdicts` -- paired verdicts of each correction vs no correction;
- :mod:`scloop.report.html` -- the static HTML report of a run or a sweep.

How a metric is read (is higher better? its axis label) comes from its plugin's declaration
(:func:`scloop.plugins.register_metric`), through :func:`metric_facts`; a run's own plugins
(the ``plugins:`` list of its ``config.yaml``) are loaded first by :func:`load_config_plugins`.
A metric whose plugin declares no orientation (``higher_is_better=None``) gets no verdict and
no collapse threshold, never a guessed direction.

Nothing heavy (matplotlib, scipy) is imported at package import time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

#: The note shown wherever a metric's orientation is needed but unknown.
ORIENTATION_UNKNOWN = "orientation unknown: declare higher_is_better on the metric plugin"

_log = logging.getLogger("scloop")
_BUILTINS_READY = False


def _ensure_builtins() -> None:
    """scloop's own plugins and the installed entry points (idempotent; a failing entry point
    is logged, not raised: reporting must still work, with that plugin's metrics unknown)."""
    global _BUILTINS_READY
    if _BUILTINS_READY:
        return
    from scloop.plugins import load_plugins

    _BUILTINS_READY = True
    try:
        load_plugins()
    except Exception as exc:  # noqa: BLE001 - a broken entry point must not stop a report
        _log.warning("report: loading plugins failed (%s); their metrics have unknown orientation", exc)


def metric_facts(name: str):
    """:func:`scloop.core.registry.metric_facts` after scloop's own plugins are loaded:
    ``MetricFacts(name, higher_is_better, label, unit)``; ``higher_is_better`` is None for a
    name no plugin declares (or whose plugin failed to load)."""
    from scloop.core.registry import MetricFacts
    from scloop.core.registry import metric_facts as _facts

    _ensure_builtins()
    try:
        return _facts(name)
    except Exception:  # noqa: BLE001 - a label is never worth an exception
        return MetricFacts(str(name), None, str(name), "")


def _config_refs(config: Any) -> list[str]:
    if isinstance(config, str):
        import yaml

        try:
            config = yaml.safe_load(config) if config.strip() else {}
        except yaml.YAMLError:
            return []
    refs = (config or {}).get("plugins") if isinstance(config, dict) else None
    if isinstance(refs, str):
        refs = [refs]
    return [r for r in (refs or []) if isinstance(r, str) and r.strip()]


def _load_refs(pairs: Iterable[tuple[str, Path | None]]) -> list[str]:
    """Load each distinct (reference, base folder) once; log and return the failed ones."""
    from scloop.plugins import load_plugins, resolve_ref

    _ensure_builtins()
    failed: list[str] = []
    for ref, base in dict.fromkeys(pairs):
        try:
            load_plugins([resolve_ref(ref, base)])
        except Exception as exc:  # noqa: BLE001 - report what we can, say what we could not
            _log.warning("report: plugin %r failed to load (%s); its metrics have unknown orientation", ref, exc)
            if ref not in failed:
                failed.append(ref)
    return failed


def load_config_plugins(configs: Iterable[Any], base: Path | str | None = None) -> list[str]:
    """Load scloop's own plugins plus the union of the ``plugins:`` lists of ``configs``
    (YAML texts or dicts, e.g. the ``config.yaml`` of every run of a sweep), so that a user
    metric's orientation and label are known when its results are reported.  A relative
    ``.py`` path is taken relative to ``base`` (default: the working directory).  A plugin
    that fails to load is logged on the ``scloop`` logger (its metrics then have unknown
    orientation).  Returns the references that failed."""
    b = Path(base) if base is not None else None
    return _load_refs((r, b) for c in configs for r in _config_refs(c))


def load_run_plugins(path: Path | str) -> list[str]:
    """:func:`load_config_plugins` for a run directory (its ``config.yaml``) or a sweep
    directory (the ``config.yaml`` of each of its runs); relative paths are taken relative to
    the run directory.  Returns the references that failed."""
    path = Path(path)
    files = [path / "config.yaml"] if (path / "config.yaml").is_file() else sorted(path.glob("runs/*/config.yaml"))
    pairs: list[tuple[str, Path | None]] = []
    for f in files:
        try:
            pairs += [(r, f.parent) for r in _config_refs(f.read_text())]
        except OSError:
            continue
    return _load_refs(pairs)


__all__ = ["ORIENTATION_UNKNOWN", "load_config_plugins", "load_run_plugins", "metric_facts"]
