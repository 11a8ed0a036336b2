"""Per-generation callbacks (:func:`scloop.run` ``callbacks=[...]``) and progress display.

A callback is any object with some of these methods; each is called in the process that
started the run, whatever the engine and the number of worker processes (records written by
workers are read back from the run's database and dispatched here)::

    class PrintFID:
        def on_run_start(self, run: RunInfo) -> None: ...
        def on_generation_end(self, event: GenerationEvent) -> None:
            print(event.unit.arm, event.record.generation, event.record.metrics.get("fid"))
        def on_run_end(self, run: RunInfo) -> None: ...

A resumed run dispatches the generations it recomputes (those after the checkpoint it resumes
from) again; a tracker should treat ``(run_id, unit, generation)`` as the key of a step.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

from scloop.core.types import GenerationRecord, Provenance
from scloop.store.columnar import STAGES
from scloop.store.run_store import RunStore, Unit

log = logging.getLogger("scloop")


@dataclass(frozen=True)
class RunInfo:
    """A run as callbacks see it: id, directory, spec and state (``running`` | ``complete`` |
    ``failed``)."""

    run_id: str
    path: Path
    spec: Any
    state: str


@dataclass(frozen=True)
class GenerationEvent:
    """One finished generation of one unit (arm x lambda x correction x gamma x seed)."""

    run_id: str
    unit: Unit
    record: GenerationRecord


@runtime_checkable
class Callback(Protocol):
    """Receives :class:`GenerationEvent` s (``on_run_start`` / ``on_run_end`` are optional)."""

    def on_generation_end(self, event: GenerationEvent) -> None: ...


class Dispatcher:
    """Reads the records added to a run's store since the last call (rows written one
    generation at a time, and record files written per checkpoint) and hands them to the
    callbacks, in the order they were written (within a record file: by generation, then
    unit)."""

    def __init__(self, store: RunStore, callbacks: Iterable[Any]) -> None:
        self.store = store
        self.callbacks = [c for c in callbacks if hasattr(c, "on_generation_end")]
        self._cursor = (0, 0)
        self._units: dict[int, Unit] = {}

    def start_from_now(self) -> None:
        self._cursor = self.store.cursor_now()

    def flush(self) -> None:
        if not self.callbacks:
            return
        parts, cursor = self.store.new_records(self._cursor)
        if parts and not self._units:
            self._units = {u.unit: u for u in self.store.units()}
        for rec in parts:
            names = sorted(rec.metrics)
            cols = [(k, rec.metrics[k][0].tolist(), rec.metrics[k][1].tolist()) for k in names]
            secs = {s: rec.seconds[s].tolist() for s in STAGES}
            status, reason = rec.status.values, rec.reason.values
            for i, (unit, gen) in enumerate(zip(rec.unit.tolist(), rec.generation.tolist())):
                # a NaN value reads back as None, as it always has from SQLite
                vals = {k: (None if v[i] != v[i] else v[i]) for k, v, p in cols if p[i]}
                rec_i = GenerationRecord(int(gen), vals, int(rec.n_real[i]), int(rec.n_synthetic[i]), Provenance(()),
                                         {s: secs[s][i] for s in STAGES}, status[rec.status.codes[i]],
                                         reason[rec.reason.codes[i]] or "")
                ev = GenerationEvent(self.store.run_id, self._units[unit], rec_i)
                for cb in self.callbacks:
                    cb.on_generation_end(ev)
        self._cursor = cursor


def call_all(callbacks: Iterable[Any], method: str, info: RunInfo) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(info)


# ---------------------------------------------------------------------- progress
class Progress:
    """A progress bar on stderr (rich) when stderr is a terminal and not ``quiet``; else a
    log line (``logging``, level INFO) at most every 5 s.  ``silent``: nothing at all."""

    def __init__(self, total: int, quiet: bool, label: str, silent: bool = False,
                 on_advance: Any = None) -> None:
        self.quiet, self.total, self.done, self.label, self.silent = quiet, total, 0, label, silent
        self.on_advance = on_advance
        self._bar = None
        self._last = 0.0
        if not quiet and not silent and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeRemainingColumn

            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=False, console=Console(stderr=True))
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, k: int = 1, note: str = "") -> None:
        self.done += k
        if self.on_advance is not None:
            self.on_advance()
        if self.silent:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=k, description=f"{self.label} {note}".strip())
        elif time.monotonic() - self._last > 5 or self.done >= self.total:
            self._last = time.monotonic()
            log.info("%s: %d/%d %s", self.label, self.done, self.total, note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
