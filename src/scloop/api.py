"""The public Python API: run experiments and sweeps, read their results.

>>> import scloop
>>> run = scloop.run("gaussian-paper", seeds=3, overrides=["n_generations=20"], out="runs")
>>> run.table().query("metric == 'w2-gaussian'").head()      # the tidy table of `scloop export`
>>> fig = run.plot("w2-gaussian")                             # a matplotlib Figure
>>> run.report()                                              # runs/<id>/report/index.html

Every function here is what the ``scloop`` command line calls; the CLI adds only argument
parsing and printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from scloop.core.config import ExperimentSpec
from scloop.core.registry import ConfigError


def load_spec(config: str | Mapping[str, Any] | ExperimentSpec, overrides: Iterable[str] = (),
              **keys: Any) -> ExperimentSpec:
    """An :class:`ExperimentSpec` from a preset name, a YAML path, a mapping of config keys or a
    spec; ``overrides`` are ``key=value`` strings as for ``--set`` (``"gamma=[0,1]"``), ``keys``
    set config keys directly (``seeds=3``)."""
    from scloop.core.config import apply_overrides, load_spec as _load, spec_from_dict

    if isinstance(config, ExperimentSpec):
        raw = config.to_dict()
    elif isinstance(config, Mapping):
        raw = dict(config)
        if "base" in raw:
            from scloop.core.config import load_raw

            base = load_raw(raw.pop("base"))
            base.pop("name", None)
            base.update(raw)
            raw = base
    elif isinstance(config, (str, Path)):
        return _load(str(config), list(overrides), **{k: v for k, v in keys.items() if v is not None})
    else:
        raise ConfigError(f"config: got {type(config).__name__}; allowed: a preset name, a YAML path, a mapping or "
                          "an ExperimentSpec")
    raw = apply_overrides(raw, list(overrides))
    raw.update({k: v for k, v in keys.items() if v is not None})
    return spec_from_dict(raw)


def with_data_dir(spec: ExperimentSpec, data_dir: str | Path | None) -> ExperimentSpec:
    """Set ``task.data_dir`` for tasks that read files; other tasks ignore it."""
    if data_dir is None:
        return spec
    from scloop.core.config import spec_from_dict
    from scloop.core.registry import TASKS
    from scloop.plugins import load_plugins

    load_plugins(spec.plugins)
    if "data_dir" not in TASKS.options(spec.task.name):
        return spec
    p = Path(data_dir).expanduser()
    if not p.is_dir():
        raise ConfigError(f"--data-dir: got {str(data_dir)!r}; allowed: an existing folder")
    raw = spec.to_dict()
    task = raw["task"] if isinstance(raw["task"], dict) else {"name": raw["task"]}
    raw["task"] = {**task, "data_dir": str(p.resolve())}
    return spec_from_dict(raw)


@dataclass(frozen=True)
class Run:
    """A run directory: its spec, its tidy results table, figures and report."""

    path: Path
    skipped: bool = False
    engine: str = ""
    seconds: float = 0.0

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def spec(self) -> ExperimentSpec:
        import yaml

        from scloop.core.config import spec_from_dict

        return spec_from_dict(yaml.safe_load((self.path / "config.yaml").read_text()))

    def status(self) -> dict[str, Any]:
        from scloop.store.run_store import RunStore

        return RunStore(self.path).status()

    def provenance(self) -> dict[str, Any]:
        """Which code, libraries, machine and command produced the run (``provenance.json``)."""
        from scloop.store import provenance

        return provenance.read(self.path)

    def table(self, *, metric: str | None = None, include_timing: bool = True):
        """The tidy results (one row per unit, generation and metric) as a pandas DataFrame --
        the table of ``scloop export``."""
        from scloop.store.run_store import RunStore

        store = RunStore(self.path)
        try:
            return store.table(metric=metric, include_timing=include_timing)
        finally:
            store.close()

    def plot(self, metric: str, ax: Any = None):
        """Seed mean and band of ``metric`` per generation, one panel per (correction, lambda)
        (or into ``ax``); returns the matplotlib Figure and never changes the backend."""
        from scloop.plugins import load_plugins
        from scloop.report.figures import metric_vs_generation

        load_plugins(self.spec.plugins)  # a user metric's label and unit
        return metric_vs_generation(self.table(metric=metric), metric, ax=ax)

    def report(self) -> Path:
        """Write the static HTML report into ``RUN/report/index.html``; returns its path."""
        from scloop.report.html import write_report

        return write_report(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


@dataclass(frozen=True)
class Sweep:
    """A sweep directory: one run per grid point and one combined results table."""

    path: Path
    completed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec(self):
        from scloop.sweep.spec import load_sweep

        return load_sweep(str(self.path / "sweep.yaml"))

    def runs(self) -> list[Run]:
        return [Run(d) for d in sorted((self.path / "runs").iterdir()) if (d / "results.sqlite").exists()]

    def table(self, *, metric: str | None = None, include_timing: bool = True):
        """The tidy table of every run, with one column per swept key."""
        from scloop.store.sweep_store import SweepStore

        store = SweepStore(self.path)
        try:
            return store.table(metric=metric, include_timing=include_timing)
        finally:
            store.close()

    def report(self) -> Path:
        from scloop.report.html import write_report

        return write_report(self.path)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r})"


def run(config: str | Mapping[str, Any] | ExperimentSpec, *, seeds: int | None = None,
        overrides: Iterable[str] = (), out: str | Path = "runs", run_id: str | None = None, workers: int = 0,
        plugins: Iterable[str] = (), callbacks: Iterable[Any] = (), resume: bool = False, force: bool = False,
        quiet: bool = True, data_dir: str | Path | None = None) -> Run:
    """Run an experiment (every arm, lambda, correction, gamma and seed) into ``out/<run_id>``.

    ``config``: a preset name (``scloop presets``), a YAML path, a mapping of config keys or an
    ExperimentSpec.  ``overrides``: ``key=value`` strings (``"gamma=[0,1]"``).  ``workers``:
    worker processes for the generic engine (0 = one per CPU core; numbers do not depend on it).
    ``plugins``: plugin modules or ``.py`` files to import here and in every worker (plugins
    registered in ``__main__`` -- a notebook -- reach the workers without this).
    ``callbacks``: objects with ``on_generation_end(event)``.  A run id that exists is reused
    only for the same run (config, engine, plugin code); else :class:`scloop.runner.RunConflict`.
    """
    from scloop.plugins import load_plugins, resolve_ref
    from scloop.runner import run_experiment

    refs = [resolve_ref(r) for r in plugins]
    load_plugins(refs)
    spec = load_spec(config, overrides, seeds=seeds)
    spec = with_data_dir(spec, data_dir)
    summary = run_experiment(spec, out=out, run_id=run_id, resume=resume, force=force, quiet=quiet, workers=workers,
                             callbacks=callbacks, plugins=refs)
    return Run(Path(summary.path), summary.skipped, summary.engine, summary.seconds)


def sweep(config: str | Mapping[str, Any], *, out: str | Path = "runs", workers: int = 0, executor: str = "local",
          plugins: Iterable[str] = (), callbacks: Iterable[Any] = (), address: str | None = None,
          resume: bool = False, force: bool = False, quiet: bool = True, data_dir: str | Path | None = None,
          jobs: int | None = None) -> Sweep:
    """Run a sweep (a preset name, a sweep YAML path or a sweep mapping) into
    ``out/<sweep name>``: one run per point, ``workers`` at a time (0 = one per CPU core), in a
    local process pool or as Ray tasks (``executor="ray"``).  Complete runs whose identity
    matches are skipped, partial ones resumed.  ``callbacks`` receive each run's events in
    this process when the run ends (``on_run_start``, every ``on_generation_end``,
    ``on_run_end``).  ``jobs``: the old name of ``workers``."""
    import os

    from scloop.plugins import load_plugins, resolve_ref
    from scloop.sweep import load_sweep, run_sweep
    from scloop.sweep.spec import SweepSpec, sweep_from_dict

    refs = [resolve_ref(r) for r in plugins]
    load_plugins(refs)
    if data_dir is not None:
        p = Path(data_dir).expanduser()
        if not p.is_dir():
            raise ConfigError(f"--data-dir: got {str(data_dir)!r}; allowed: an existing folder")
        os.environ["SCLOOP_DATA_DIR"] = str(p.resolve())
    if isinstance(config, SweepSpec):
        spec = config
    elif isinstance(config, Mapping):
        spec = sweep_from_dict(config)
    else:
        spec = load_sweep(str(config))
    if jobs is not None:
        workers = jobs
    s = run_sweep(spec, out=out, executor=executor, jobs=workers, address=address, force=force, resume=resume,
                  quiet=quiet, plugins=refs, callbacks=callbacks)
    return Sweep(Path(s.path), s.completed, s.skipped, s.failed, s.seconds, tuple(s.failures))


def open_results(path: str | Path) -> Run | Sweep:
    """A finished (or partial) run or sweep directory, to read its table, plot and report."""
    from scloop.store.sweep_store import is_sweep_dir

    p = Path(path)
    if is_sweep_dir(p):
        return Sweep(p)
    if (p / "results.sqlite").exists():
        return Run(p)
    raise ConfigError(f"open_results: {str(path)!r} is neither a run directory (results.sqlite) nor a sweep "
                      "directory (sweep.sqlite)")
