"""`scloop report` on a sweep whose runs use user metric plugins (listed in the config): a fresh
process finds their orientation, draws verdicts in the declared direction, gives a metric of
unknown orientation neither a verdict nor a collapse diagram (and says so), survives a plugin
that no longer loads, and shows provenance when the directories hold it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from scloop.core.registry import METRICS
from scloop.report import ORIENTATION_UNKNOWN
from scloop.report.verdicts import NO_VERDICT

UP, FLAT = "t-e2e-negw2", "t-e2e-spread"

PLUGIN = f'''
import scloop
from scloop.core.registry import METRICS
from scloop.metrics.gaussian import make_w2


class _NegW2:
    """minus W2: the same information as w2-gaussian, with higher = better."""

    needs_samples = False

    def __init__(self, name):
        self.name = name
        self._w2 = make_w2()

    def __call__(self, ev):
        return -self._w2(ev)


@scloop.register_metric("{UP}", higher_is_better=True, label="minus W2", unit="au")
def make_up():
    return _NegW2("{UP}")


# declared without an orientation (register_metric insists on one; the registry allows None)
@METRICS.register("{FLAT}", higher_is_better=None)
def make_flat():
    return _NegW2("{FLAT}")
'''

BASE = f"""
task: {{name: gaussian, dim: 2}}
model: gaussian
correction: oracle-mixture
gamma: [0, 1]
n_real: 50
n_generations: 4
policy: augment
arms: [baseline, no-correction, correction]
metrics: [w2-gaussian, {UP}, {FLAT}]
seeds: 3
engine: generic
"""


def _report(sweep_dir: Path) -> subprocess.CompletedProcess:
    # a fresh interpreter: nothing registered but what the report loads itself
    return subprocess.run([sys.executable, "-m", "scloop", "report", str(sweep_dir)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from scloop.sweep import load_sweep, run_sweep

    root = tmp_path_factory.mktemp("plugins-report")
    plugin = root / "user_metrics.py"
    plugin.write_text(PLUGIN)
    spec = root / "spec"
    spec.mkdir()
    (spec / "base.yaml").write_text(BASE + f"plugins: [{plugin}]\n")
    (spec / "t-plug.yaml").write_text(textwrap.dedent("""\
        name: t-plug
        base: base.yaml
        grid:
          lambda: [0.5, 1.0]
        """))
    try:
        s = run_sweep(load_sweep(str(spec / "t-plug.yaml")), out=root / "out", jobs=1, quiet=True)
        yield s.path, plugin
    finally:
        for name in (UP, FLAT):
            METRICS.unregister(name)


def test_fresh_process_reads_the_user_metric_orientation(sweep):
    sweep_dir, _ = sweep
    configs = [p.read_text() for p in (sweep_dir / "runs").glob("*/config.yaml")]
    assert configs and all("user_metrics.py" in c for c in configs)  # the runs name their plugin
    r = _report(sweep_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = sweep_dir / "report"
    v = pd.read_csv(rep / "verdicts.csv")
    up, w2 = v[v.metric == UP].reset_index(drop=True), v[v.metric == "w2-gaussian"].reset_index(drop=True)
    assert len(up) == len(w2) > 0
    assert up["higher_is_better"].astype(bool).all() and not w2["higher_is_better"].astype(bool).any()
    # minus W2 with higher = better must reach the same verdicts as W2 with lower = better
    assert up["verdict"].tolist() == w2["verdict"].tolist()
    assert (up["mean_diff"] + w2["mean_diff"]).abs().max() < 1e-9
    # no orientation: no verdict, a visible note, and no collapse (first-crossing) diagram
    flat = v[v.metric == FLAT]
    assert len(flat) and set(flat["verdict"]) == {NO_VERDICT}
    html = (rep / "index.html").read_text()
    assert ORIENTATION_UNKNOWN in html and "orientation-unknown" in html
    figs = {p.name for p in (rep / "fig").iterdir()}
    assert any(n.startswith(f"phase-{FLAT}") for n in figs)
    assert not any(n.startswith(f"collapse-{FLAT}") for n in figs)
    assert any(n.startswith(f"collapse-{UP}") for n in figs)
    assert json.loads((rep / "report.json").read_text())["orientation_unknown"] == [FLAT]


def test_a_plugin_that_fails_to_load_is_reported_not_fatal(sweep):
    sweep_dir, plugin = sweep
    good = plugin.read_text()
    try:
        plugin.write_text("raise RuntimeError('plugin broke after the runs')\n")
        r = _report(sweep_dir)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "plugin broke after the runs" in r.stderr  # logged on the "scloop" logger
        html = (sweep_dir / "report" / "index.html").read_text()
        assert "failed to load" in html
        v = pd.read_csv(sweep_dir / "report" / "verdicts.csv")
        assert set(v.loc[v.metric == UP, "verdict"]) == {NO_VERDICT}  # unknown now, never guessed
    finally:
        plugin.write_text(good)


def test_provenance_section(sweep):
    from scloop.report.html import write_report

    sweep_dir, _ = sweep
    run_dirs = sorted(p for p in (sweep_dir / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    run_dir = run_dirs[0]
    saved = {d: (d / "provenance.json").read_text() if (d / "provenance.json").exists() else None
             for d in [sweep_dir, *run_dirs]}
    prov = {"scloop_version": "9.9.9", "git_commit": "abc123", "git_dirty": True, "python": "3.12.1",
            "packages": {"numpy": "2.0", "torch": "2.4"}, "device": "cpu", "started_at": "2025-01-01T00:00:00",
            "ended_at": "2025-01-01T00:01:00", "command": "scloop sweep <script>alert(1)</script>",
            "sessions": [{"started_at": "2024-12-31T00:00:00", "ended_at": None, "state": "interrupted",
                          "git_commit": "0123456789abcdef0"}]}
    try:
        (sweep_dir / "provenance.json").write_text(json.dumps(prov))
        (run_dir / "provenance.json").write_text(json.dumps({**prov, "git_commit": "def456"}))
        html = write_report(sweep_dir).read_text()
        assert "id='provenance'" in html and ">Provenance<" in html
        assert "abc123" in html and "def456" in html and "numpy 2.0, torch 2.4" in html
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "earlier starts" in html and "interrupted, 0123456789ab" in html
        # a single run shows its own
        one = write_report(run_dir).read_text()
        assert "def456" in one and "abc123" not in one
        # without the files the section is left out quietly
        for d in saved:
            (d / "provenance.json").unlink(missing_ok=True)
        assert "id='provenance'" not in write_report(sweep_dir).read_text()
    finally:
        for d, text in saved.items():
            if text is not None:
                (d / "provenance.json").write_text(text)
