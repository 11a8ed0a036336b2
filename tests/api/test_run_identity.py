"""Runs never return stale numbers: a reused run id is checked against the stored config,
engine and plugin code; ``--force`` deletes only what scloop created; provenance; callbacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import scloop
from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.runner import RunConflict

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scloop", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


def test_stale_run_sequence_is_an_error_naming_the_first_key(tmp_path):
    out = str(tmp_path / "runs")
    r = _cli("run", "gaussian-paper", "--seeds", "1", "--set", "n_generations=20", "--run-id", "q", "--out", out)
    assert r.returncode == 0, r.stderr
    r = _cli("run", "gaussian-paper", "--seeds", "3", "--set", "n_generations=5", "--run-id", "q", "--out", out)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "n_generations" in r.stderr and "stored 20, now 5" in r.stderr and "--force" in r.stderr
    assert "already complete" not in r.stdout + r.stderr
    # the same config again is the same run: its numbers are reused
    r = _cli("run", "gaussian-paper", "--seeds", "1", "--set", "n_generations=20", "--run-id", "q", "--out", out)
    assert r.returncode == 0 and "already complete" in r.stdout + r.stderr


def test_engine_is_part_of_the_identity(tmp_path):
    base = {"task": "gaussian", "correction": "oracle-mixture", "gamma": [1], "n_generations": 2, "seeds": 2}
    scloop.run({**base, "engine": "vectorized"}, out=tmp_path, run_id="e")
    with pytest.raises(RunConflict, match="'engine'"):
        scloop.run({**base, "engine": "generic"}, out=tmp_path, run_id="e")
    # engine auto resolves to vectorized here: the same run
    assert scloop.run({**base, "engine": "auto"}, out=tmp_path, run_id="e").skipped
    from scloop.core.config import spec_from_dict

    assert spec_from_dict({**base, "engine": "generic"}).digest() != spec_from_dict({**base, "engine": "vectorized"}).digest()


def test_random_stream_layout_is_part_of_the_identity(tmp_path, monkeypatch):
    """Above one block of seeds the numbers depend on the block size: a run stored with another
    layout (or by a scloop from before seed blocks: no identity.json) is not reused."""
    import scloop.tasks.gaussian_ensemble as ens

    monkeypatch.setattr(ens, "SEED_BLOCK", 2)
    base = {"task": "gaussian", "correction": "oracle-mixture", "gamma": [1], "n_generations": 2}
    scloop.run({**base, "seeds": 3}, out=tmp_path, run_id="big")
    scloop.run({**base, "seeds": 2}, out=tmp_path, run_id="small")
    assert json.loads((tmp_path / "big" / "identity.json").read_text())["streams"] == "seed-blocks-2"
    monkeypatch.setattr(ens, "SEED_BLOCK", 4)
    with pytest.raises(RunConflict, match="random streams: stored 'seed-blocks-2', now 'seed-blocks-4'"):
        scloop.run({**base, "seeds": 3}, out=tmp_path, run_id="big")
    assert scloop.run({**base, "seeds": 2}, out=tmp_path, run_id="small").skipped  # one block: same numbers
    monkeypatch.setattr(ens, "SEED_BLOCK", 2)
    (tmp_path / "big" / "identity.json").unlink()  # as made before identities (one stream)
    with pytest.raises(RunConflict, match="one stream for all seeds"):
        scloop.run({**base, "seeds": 3}, out=tmp_path, run_id="big")


def test_edited_plugin_code_is_a_different_run(tmp_path):
    plugin = tmp_path / "edit_me.py"
    code = ("import scloop\nfrom scloop import Corrected, Data\n"
            "class C:\n    def __init__(self, gamma=0.0):\n        self.gamma = gamma\n"
            "    def prepare(self, context, *, rng):\n        return self\n"
            "    def __call__(self, data, *, model, rng):\n        return Corrected(Data(data.x * SCALE, data.y), {})\n"
            "@scloop.register_correction('t-edit-me')\ndef make(gamma=0.0):\n    return C(gamma)\n")
    plugin.write_text("SCALE = 1.0\n" + code)
    cfg = {"task": "gaussian", "correction": "t-edit-me", "gamma": [1], "n_generations": 2}
    try:
        scloop.run(cfg, plugins=[str(plugin)], out=tmp_path / "runs", run_id="p")
        assert scloop.run(cfg, plugins=[str(plugin)], out=tmp_path / "runs", run_id="p").skipped
        plugin.write_text("SCALE = 0.5\n" + code)
        with pytest.raises(RunConflict, match=r"plugin correction:t-edit-me: code changed"):
            scloop.run(cfg, plugins=[str(plugin)], out=tmp_path / "runs", run_id="p")
        fresh = scloop.run(cfg, plugins=[str(plugin)], out=tmp_path / "runs", run_id="p", force=True)
        assert not fresh.skipped
    finally:
        CORRECTIONS.unregister("t-edit-me")


def test_run_id_with_a_path_is_rejected_and_nothing_is_deleted(tmp_path):
    victim = tmp_path / "pt" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("user data")
    for bad in ("../victim", "/tmp/x", "..", ".", "a/b", ""):
        r = _cli("run", "gaussian-paper", "--out", str(tmp_path / "pt" / "runs"), "--run-id", bad, "--force")
        assert r.returncode == 2, (bad, r.stderr)
    assert (victim / "keep.txt").read_text() == "user data"
    assert not (tmp_path / "pt" / "runs").exists()


def test_force_deletes_only_a_directory_scloop_created(tmp_path):
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("not a run")
    cfg = {"task": "gaussian", "gamma": [1], "n_generations": 2}
    with pytest.raises(ConfigError, match="is not a scloop run"):
        scloop.run(cfg, out=tmp_path / "runs", run_id="mine")
    with pytest.raises(ConfigError, match="not created by scloop"):
        scloop.run(cfg, out=tmp_path / "runs", run_id="mine", force=True)
    assert (mine / "notes.txt").exists()
    run = scloop.run(cfg, out=tmp_path / "runs", run_id="ok")
    assert (run.path / ".scloop-run").exists()
    assert not scloop.run(cfg, out=tmp_path / "runs", run_id="ok", force=True).skipped


def test_outputs_are_readable_and_provenance_is_recorded(tmp_path):
    run = scloop.run({"task": "gaussian", "gamma": [1], "n_generations": 2}, out=tmp_path, run_id="pv")
    for name in ("config.yaml", "status.json", "provenance.json", "identity.json"):
        mode = stat.S_IMODE((run.path / name).stat().st_mode)
        assert mode & 0o044 == 0o044, (name, oct(mode))
    for ck in (run.path / "checkpoints").iterdir():
        assert stat.S_IMODE(ck.stat().st_mode) & 0o044 == 0o044
    prov = json.loads((run.path / "provenance.json").read_text())
    assert prov["scloop_version"] == scloop.__version__
    assert prov["state"] == "complete" and prov["started_at"] <= prov["ended_at"]
    assert {"numpy", "scipy"} <= set(prov["packages"]) and prov["python"].count(".") == 2
    assert "git_commit" in prov and "git_dirty" in prov and prov["device"] == "cpu" and prov["command"]
    assert run.provenance() == prov
    # the export stays a pure function of config and seeds
    again = scloop.run({"task": "gaussian", "gamma": [1], "n_generations": 2}, out=tmp_path / "b", run_id="pv")
    cols = ["arm", "seed", "gamma", "generation", "metric"]
    a, b = run.table(include_timing=False), again.table(include_timing=False)
    assert a.drop(columns="run_id").sort_values(cols).reset_index(drop=True).equals(
        b.drop(columns="run_id").sort_values(cols).reset_index(drop=True))


class _Collect:
    def __init__(self):
        self.events, self.calls = [], []

    def on_run_start(self, info):
        self.calls.append(("start", info.state))

    def on_generation_end(self, ev):
        self.events.append((ev.unit.unit, ev.record.generation, dict(ev.record.metrics)))

    def on_run_end(self, info):
        self.calls.append(("end", info.state))


@pytest.mark.parametrize("engine,workers", [("vectorized", 1), ("generic", 1), ("generic", 2)])
def test_callbacks_see_every_generation_of_every_unit(tmp_path, engine, workers):
    cb = _Collect()
    cfg = {"task": "gaussian", "correction": "oracle-mixture", "gamma": [0, 1], "n_generations": 3, "seeds": 2,
           "arms": ["baseline", "correction"], "engine": engine}
    run = scloop.run(cfg, out=tmp_path, callbacks=[cb], workers=workers)
    n_units = 2 * (1 + 2)
    assert cb.calls == [("start", "running"), ("end", "complete")]
    assert sorted((u, g) for u, g, _ in cb.events) == sorted((u, g) for u in range(n_units) for g in range(4))
    df = run.table(metric="w2-gaussian")
    got = {(u, g): m["w2-gaussian"] for u, g, m in cb.events}
    units = {(r.arm, r.seed, r.gamma): i for i, r in enumerate(
        __import__("scloop.store.run_store", fromlist=["RunStore"]).RunStore(run.path).units())}
    for r in df.itertuples():
        assert got[(units[(r.arm, r.seed, r.gamma)], r.generation)] == pytest.approx(r.value, rel=0, abs=0)


def test_run_handle_table_plot_report(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    run = scloop.run("gaussian-paper", seeds=2, overrides=["n_generations=4"], out=tmp_path)
    assert set(run.table().columns) >= {"run_id", "arm", "seed", "lambda", "gamma", "generation", "metric", "value"}
    fig = run.plot("w2-gaussian")
    assert type(fig).__name__ == "Figure" and matplotlib.get_backend() == backend
    assert run.report().name == "index.html"
    opened = scloop.open_results(run.path)
    assert opened.run_id == run.run_id and opened.spec == run.spec
    with pytest.raises(ConfigError, match="neither a run directory"):
        scloop.open_results(tmp_path / "nothing")


def test_sweep_callbacks_get_every_run_and_generation(tmp_path):
    (tmp_path / "base.yaml").write_text("task: gaussian\nn_generations: 3\nseeds: 2\ncorrection: oracle-mixture\n")
    (tmp_path / "sw.yaml").write_text("name: cbs\nbase: base.yaml\ngrid:\n  gamma: [0, 1, 2]\n")
    cb = _Collect()
    sw = scloop.sweep(str(tmp_path / "sw.yaml"), out=tmp_path / "out", workers=2, callbacks=[cb])
    assert sw.completed == 3
    assert cb.calls.count(("start", "running")) == 3 and cb.calls.count(("end", "complete")) == 3
    assert len(cb.events) == 3 * 2 * 4  # runs x seeds (one unit each) x generations 0..3
    again = _Collect()
    scloop.sweep(str(tmp_path / "sw.yaml"), out=tmp_path / "out", workers=2, callbacks=[again])
    assert again.events == []  # skipped runs are not replayed
