"""Killed workers and corrupt files: a run or sweep either goes on or says exactly what is
wrong, and never overwrites the damaged file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import scloop
from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.store.atomic import CorruptFile

KILLER = '''
import os, signal
from pathlib import Path
import scloop
from scloop import Corrected, Data

MARK = Path(%(mark)r)


class Killer:
    """The identity, except that the worker process SIGKILLs itself at generation 2 of the
    gamma == %(die_gamma)s units -- once (``once=True``, a marker file remembers) or always."""

    def __init__(self, gamma=0.0, once=True):
        self.gamma, self.once, self.calls = gamma, once, 0

    def prepare(self, context, *, rng):
        return self

    def __call__(self, data, *, model, rng):
        self.calls += 1
        if self.gamma == %(die_gamma)s and self.calls == 2 and os.getpid() != %(parent)d:
            if not (self.once and MARK.exists()):
                MARK.write_text("died")
                os.kill(os.getpid(), signal.SIGKILL)
        return Corrected(Data(data.x.copy(), data.y), {})


@scloop.register_correction("%(name)s")
def make(gamma=0.0, once=True):
    return Killer(gamma, once)
'''


@pytest.fixture
def killer(tmp_path):
    import os

    name = f"t-killer-{tmp_path.name[-12:]}"
    path = tmp_path / "killer.py"
    path.write_text(KILLER % {"mark": str(tmp_path / "died.txt"), "die_gamma": 7.0, "parent": os.getpid(),
                              "name": name})
    yield path, name
    CORRECTIONS.unregister(name)


def _cfg(name, **kw):
    return {"task": "gaussian", "correction": {"name": name, **kw}, "gamma": [1.0, 7.0], "n_generations": 4,
            "seeds": 2, "arms": ["correction"], "engine": "generic", "metrics": ["w2-gaussian"]}


def _values(run) -> np.ndarray:
    df = run.table(include_timing=False).sort_values(["arm", "seed", "gamma", "generation", "metric"])
    return df.value.to_numpy()


def test_a_worker_killed_once_is_resumed_to_the_same_numbers(tmp_path, killer):
    path, name = killer
    ref = scloop.run(_cfg(name), plugins=[str(path)], out=tmp_path / "ref", workers=1)  # never dies in-process
    run = scloop.run(_cfg(name), plugins=[str(path)], out=tmp_path / "runs", workers=2)
    assert (tmp_path / "died.txt").exists()  # a worker really was killed
    assert run.status()["state"] == "complete"
    np.testing.assert_array_equal(_values(run), _values(ref))


def test_a_worker_killed_every_time_fails_the_run_with_a_message(tmp_path, killer):
    path, name = killer
    with pytest.raises(RuntimeError, match="worker process died 3 times"):
        scloop.run(_cfg(name, once=False), plugins=[str(path)], out=tmp_path / "runs", workers=2, run_id="k")
    from scloop.store.run_store import RunStore

    st = RunStore(tmp_path / "runs" / "k").status()
    assert st["state"] == "failed" and "worker process died" in st["error"]


def test_a_sweep_goes_on_when_a_worker_dies(tmp_path, killer):
    path, name = killer
    (tmp_path / "base.yaml").write_text(textwrap.dedent(f"""
        task: gaussian
        correction: {{name: {name}, once: false}}
        n_generations: 4
        seeds: 1
        arms: [correction]
        metrics: [w2-gaussian]
        engine: generic
    """))
    (tmp_path / "sw.yaml").write_text("name: killsweep\nbase: base.yaml\ngrid:\n  gamma: [1.0, 7.0, 2.0]\n")
    sw = scloop.sweep(str(tmp_path / "sw.yaml"), out=tmp_path / "out", workers=2, plugins=[str(path)])
    assert (sw.completed, sw.failed) == (2, 1)
    assert "worker process died" in sw.failures[0][1]
    assert set(sw.table(include_timing=False).gamma) == {1.0, 2.0}


def test_corrupt_checkpoint_status_and_database_are_named_and_kept(tmp_path):
    cfg = {"task": "gaussian", "gamma": [1], "n_generations": 3, "engine": "generic", "seeds": 1}
    run = scloop.run(cfg, out=tmp_path, run_id="c")
    ck = next((run.path / "checkpoints").glob("unit*.npz"))
    ck.write_bytes(b"not a zip file")
    from scloop.store.run_store import RunStore

    store = RunStore(run.path)
    store.write_status(state="running")  # as if killed after generation 1: --resume reads the checkpoint
    store.truncate_after(1)
    store.close()
    with pytest.raises(CorruptFile, match=rf"{ck.name}: unreadable checkpoint"):
        scloop.run(cfg, out=tmp_path, run_id="c", resume=True)
    assert ck.read_bytes() == b"not a zip file"

    status = run.path / "status.json"
    status.write_text("{broken")
    with pytest.raises(CorruptFile, match="status.json: not valid JSON"):
        scloop.run(cfg, out=tmp_path, run_id="c")
    assert status.read_text() == "{broken"

    db = run.path / "results.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 100)
    status.write_text('{"state": "complete"}')
    with pytest.raises(CorruptFile, match="results.sqlite: not a readable results database"):
        scloop.open_results(run.path).table()
    assert db.read_bytes() == b"garbage" * 100


def test_corrupt_sweep_database_is_a_named_error(tmp_path):
    (tmp_path / "base.yaml").write_text("task: gaussian\nn_generations: 2\n")
    (tmp_path / "sw.yaml").write_text("name: cs\nbase: base.yaml\ngrid:\n  gamma: [0, 1]\n")
    sw = scloop.sweep(str(tmp_path / "sw.yaml"), out=tmp_path / "out", workers=1)
    db = sw.path / "sweep.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(b"x" * 4096)
    with pytest.raises(ConfigError, match="sweep.sqlite: not a readable sweep database"):
        scloop.sweep(str(tmp_path / "sw.yaml"), out=tmp_path / "out", workers=1)
    assert db.read_bytes() == b"x" * 4096


def test_a_run_killed_while_being_created_starts_afresh(tmp_path):
    """Killed between its database and its units/status: the next run (or --resume) must not
    take the empty run for a finished one."""
    cfg = {"task": "gaussian", "gamma": [1], "n_generations": 2, "seeds": 2}
    ref = scloop.run(cfg, out=tmp_path, run_id="ref")
    half = tmp_path / "half"
    half.mkdir()
    (half / ".scloop-run").write_text("created by scloop\n")
    (half / "config.yaml").write_text((ref.path / "config.yaml").read_text())
    import sqlite3

    sqlite3.connect(half / "results.sqlite").close()  # the database exists, nothing else does
    again = scloop.run(cfg, out=tmp_path, run_id="half", resume=True)
    assert len(again.table()) == len(ref.table()) > 0
