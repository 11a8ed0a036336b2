"""TensorBoard tracker: every finished generation becomes scalars in TensorBoard event files.

Use it as a callback of :func:`scloop.run`::

    from scloop.trackers import TensorBoardTracker

    scloop.run("gaussian-paper", seeds=2, callbacks=[TensorBoardTracker()])
    # tensorboard --logdir runs/<run_id>/tensorboard

What is written, for each unit (arm x lambda x correction x gamma x seed) with step =
generation (see :func:`unit_tag` for ``<unit>``):

- ``<metric>/<unit>`` for every metric of the run, e.g.
  ``w2-gaussian/correction_lam0.5_oracle-mixture_g1_seed0``;
- ``seconds/<stage>/<unit>`` for the stages ``sample``, ``correct``, ``train``, ``eval``;
- ``n_synthetic/<unit>``, the number of synthetic points trained on;
- ``diagnostics/<key>/<unit>`` for correction diagnostics, when a record carries them;
- a text entry ``status/<unit>`` with the reason when a generation is ``degenerate``;
- a text entry ``config`` (the run's resolved ``config.yaml``) once, at step 0.

Where: by default ``<run dir>/tensorboard/``.  With an explicit ``log_dir`` each run gets
its own sub-folder ``<log_dir>/<run_id>/``, so one tracker passed to several runs shows them
side by side under ``tensorboard --logdir <log_dir>``.

Resumed runs: a resumed run dispatches the generations it recomputes again.  When the
tracker finds event files already in a run's folder it starts its new file with a
TensorBoard *purge* marker at the first generation it receives, so TensorBoard (and
:func:`read_scalars`) drop the old points from that step on instead of showing two.

Writing uses the ``tensorboardX`` package (a pure-Python event-file writer that needs
neither TensorFlow nor the TensorBoard server); it is imported when a tracker is constructed.
Install it with ``pip install 'scloop[tensorboard]'``.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import struct
import threading
from pathlib import Path
from typing import Any, Mapping

EXTRA = "tensorboard"
STAGES = ("sample", "correct", "train", "eval")
_EVENT_GLOB = "events.out.tfevents.*"
_BAD_TAG_CHARS = re.compile(r"[^-\w.]")
_file_counter = itertools.count()


def _require_tensorboardx() -> Any:
    try:
        import tensorboardX
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in the tests
        raise ImportError(
            "TensorBoardTracker needs the optional 'tensorboard' extra (the tensorboardX package): "
            f"pip install 'scloop[{EXTRA}]'  ({exc})"
        ) from exc
    return tensorboardX


def _clean(part: str) -> str:
    """A tag component TensorBoard accepts unchanged: letters, digits, ``_ - .``.  Option
    lists such as ``kmeans(k=16,seed=0)`` become ``kmeans_k-16_seed-0``."""
    s = str(part).replace("(", "_").replace(")", "").replace("=", "-").replace(",", "_")
    return _BAD_TAG_CHARS.sub("_", s) or "_"


def _num(x: float) -> str:
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def unit_tag(unit: Any) -> str:
    """The name of one unit in tags: ``<arm>_lam<lambda>_<correction>_g<gamma>_seed<seed>``,
    e.g. ``correction_lam0.5_oracle-mixture_g1_seed0`` or ``baseline_lam0_none_g0_seed3``
    (the baseline records lambda 0 and correction ``none``)."""
    return (f"{_clean(unit.arm)}_lam{_num(unit.lam)}_{_clean(unit.correction)}_g{_num(unit.gamma)}"
            f"_seed{int(unit.seed)}")


def _value(v: Any) -> float:
    """A scalar to log; missing values (SQLite stores NaN as NULL) become NaN."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


class TensorBoardTracker:
    """A :func:`scloop.run` callback writing TensorBoard event files (see the module doc).

    Parameters
    ----------
    log_dir : str or Path, optional
        Root folder; each run is written to ``<log_dir>/<run_id>/``.  Default: the run's own
        directory, ``<run dir>/tensorboard/``.
    flush_secs : float
        How often the background writer flushes to disk while a run is going (everything is
        flushed and closed when the run ends, and by :meth:`close`).
    log_seconds : bool
        Also log the per-stage wall-clock seconds (``seconds/<stage>/<unit>``).
    log_config : bool
        Write the run's ``config.yaml`` as a text entry ``config``.

    Raises
    ------
    ImportError
        If ``tensorboardX`` is not installed; the message names the extra to install.
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, *, flush_secs: float = 10.0,
                 log_seconds: bool = True, log_config: bool = True) -> None:
        self._tbx = _require_tensorboardx()
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.flush_secs = flush_secs
        self.log_seconds = log_seconds
        self.log_config = log_config
        self._dirs: dict[str, Path] = {}          # run_id -> folder of its event files
        self._config: dict[str, str] = {}         # run_id -> config text not yet written
        self._writers: dict[str, Any] = {}        # run_id -> open SummaryWriter
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ where
    def run_dir(self, run_id: str) -> Path:
        """The folder the event files of run ``run_id`` go to."""
        if run_id in self._dirs:
            return self._dirs[run_id]
        if self.log_dir is not None:
            return self.log_dir / run_id
        raise ValueError(
            f"TensorBoardTracker: got an event of run {run_id!r} before its on_run_start, and no log_dir; "
            "pass it to scloop.run(..., callbacks=[tracker]) or give TensorBoardTracker(log_dir=...)"
        )

    def _writer(self, run_id: str, first_step: int) -> Any:
        w = self._writers.get(run_id)
        if w is not None:
            return w
        folder = self.run_dir(run_id)
        resumed = folder.is_dir() and any(folder.glob(_EVENT_GLOB))
        folder.mkdir(parents=True, exist_ok=True)
        # A unique suffix: two writers opened in the same second (a quick resume) must not
        # share a file name, which is only the second and the host name otherwise.
        suffix = f".{os.getpid()}.{next(_file_counter)}"
        w = self._tbx.SummaryWriter(logdir=str(folder), flush_secs=max(1, int(round(self.flush_secs))),
                                    filename_suffix=suffix, purge_step=int(first_step) if resumed else None)
        self._writers[run_id] = w
        text = self._config.pop(run_id, None)
        if text and not resumed:
            w.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)
        return w

    # ------------------------------------------------------------------ callbacks
    def on_run_start(self, info: Any) -> None:
        with self._lock:
            self._close_run(info.run_id)
            self._dirs[info.run_id] = (Path(info.path) / "tensorboard" if self.log_dir is None
                                       else self.log_dir / info.run_id)
            if self.log_config:
                cfg = Path(info.path) / "config.yaml"
                if cfg.is_file():
                    self._config[info.run_id] = cfg.read_text()

    def on_generation_end(self, event: Any) -> None:
        rec, unit = event.record, event.unit
        step = int(rec.generation)
        tag = unit_tag(unit)
        with self._lock:
            w = self._writer(event.run_id, step)
            for name, value in sorted(rec.metrics.items()):
                w.add_scalar(f"{_clean(name)}/{tag}", _value(value), step)
            if self.log_seconds:
                secs: Mapping[str, Any] = rec.seconds or {}
                for stage in STAGES:
                    if stage in secs:
                        w.add_scalar(f"seconds/{stage}/{tag}", _value(secs[stage]), step)
            w.add_scalar(f"n_synthetic/{tag}", float(rec.n_synthetic), step)
            for key, value in sorted((rec.diagnostics or {}).items()):
                w.add_scalar(f"diagnostics/{_clean(key)}/{tag}", _value(value), step)
            if rec.status != "ok":
                w.add_text(f"status/{tag}", f"{rec.status}: {rec.reason}".strip(), step)

    def on_run_end(self, info: Any) -> None:
        with self._lock:
            self._close_run(info.run_id)

    # ------------------------------------------------------------------ closing
    def _close_run(self, run_id: str) -> None:
        w = self._writers.pop(run_id, None)
        if w is not None:
            w.flush()
            w.close()

    def flush(self) -> None:
        """Write everything logged so far to disk."""
        with self._lock:
            for w in self._writers.values():
                w.flush()

    def close(self) -> None:
        """Flush and close every open event file (a run's file is closed at its end anyway)."""
        with self._lock:
            for run_id in list(self._writers):
                self._close_run(run_id)

    def __enter__(self) -> "TensorBoardTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "<run dir>/tensorboard" if self.log_dir is None else str(self.log_dir)
        return f"TensorBoardTracker(log_dir={where!r})"


# ---------------------------------------------------------------------- reading back
def _records(path: Path):
    """The serialized records of one TFRecord file (length, masked CRC, data, masked CRC);
    a truncated last record (a file still being written) ends the file."""
    with open(path, "rb") as fh:
        while True:
            header = fh.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = fh.read(length)
            if len(data) < length or len(fh.read(4)) < 4:
                return
            yield data


def read_scalars(log_dir: str | os.PathLike[str]):
    """The scalars in the event files under ``log_dir`` (searched recursively), as a pandas
    DataFrame with columns ``run`` (the folder relative to ``log_dir``, ``"."`` for
    ``log_dir`` itself), ``tag``, ``step``, ``value``, ``wall_time``, sorted by run, tag and
    step.  Works offline and without the TensorBoard server; it applies TensorBoard's purge
    markers (points at or after a restart's step logged before the restart are dropped), so
    it shows what TensorBoard shows.  Needs ``tensorboardX`` (for the event message type)."""
    import pandas as pd

    _require_tensorboardx()
    from tensorboardX.proto import event_pb2
    root = Path(log_dir)
    files: dict[str, list[tuple[float, str, Path]]] = {}
    for f in root.rglob(_EVENT_GLOB):
        run = str(f.parent.relative_to(root)) if f.parent != root else "."
        first = next(_records(f), None)
        t0 = event_pb2.Event.FromString(first).wall_time if first else 0.0
        files.setdefault(run, []).append((t0, f.name, f))
    rows: list[tuple[str, str, int, float, float]] = []
    for run, flist in files.items():
        points: list[tuple[str, int, float, float]] = []
        for _, _, f in sorted(flist):
            for raw in _records(f):
                ev = event_pb2.Event.FromString(raw)
                if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
                    points = [p for p in points if p[1] < ev.step]
                    continue
                if not ev.HasField("summary"):
                    continue
                for v in ev.summary.value:
                    if v.HasField("simple_value"):
                        points.append((v.tag, int(ev.step), float(v.simple_value), float(ev.wall_time)))
                    elif v.HasField("tensor") and v.tensor.float_val:
                        points.append((v.tag, int(ev.step), float(v.tensor.float_val[0]), float(ev.wall_time)))
        rows.extend((run, *p) for p in points)
    df = pd.DataFrame(rows, columns=["run", "tag", "step", "value", "wall_time"])
    return df.sort_values(["run", "tag", "step"], kind="stable").reset_index(drop=True)
