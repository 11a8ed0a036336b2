"""Metric orientation in reports comes from the metric plugins (``register_metric(...,
higher_is_better=...)``), not from a list of names: a user metric gets verdicts in its own
direction, a metric of unknown orientation gets none (and no collapse threshold), and a run's
plugins are loaded from its config before reporting."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from scloop.core.registry import METRICS
from scloop.plugins import register_metric
from scloop.report import ORIENTATION_UNKNOWN, load_config_plugins, load_run_plugins, metric_facts
from scloop.report.html import phase_tables
from scloop.report.verdicts import NO_VERDICT, verdict_table
from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS

NOCORR = np.array([0.35, 0.33, 0.36, 0.34, 0.37])
LOWER = NOCORR - np.array([0.05, 0.04, 0.06, 0.05, 0.045])  # below the control in every seed
HIGHER = NOCORR + np.array([0.03, 0.025, 0.035, 0.03, 0.028])  # above it in every seed


def _rows(arm, corr, gamma, values, metric, lam=1.0):
    return [("r", "digits", arm, seed, lam, gamma, 100, "augment", corr, g, metric,
             v if g == 5 else 0.5, "ok", int(lam * 100))
            for seed, v in enumerate(values) for g in (0, 5)]


def _table(metric: str) -> pd.DataFrame:
    rows = _rows("no-correction", "none", 0.0, NOCORR, metric)
    rows += _rows("correction", "lower", math.inf, LOWER, metric)
    rows += _rows("correction", "higher", math.inf, HIGHER, metric)
    return pd.DataFrame(rows, columns=EXPORT_COLUMNS + EXTRA_COLUMNS)


@pytest.fixture
def metrics():
    """Test metrics registered as a user would; removed afterwards."""
    names = []

    def make(name, higher_is_better, **kw):
        def factory():  # pragma: no cover - the report never builds a metric
            raise AssertionError

        factory.__qualname__ = f"factory_{name.replace('-', '_')}"
        if higher_is_better is None:  # register_metric requires a bool; a plugin may still declare None
            METRICS.register(name, higher_is_better=None, **kw)(factory)
        else:
            register_metric(name, higher_is_better=higher_is_better, **kw)(factory)
        names.append(name)
        return name

    yield make
    for n in names:
        METRICS.unregister(n)


def test_user_metric_orientation_decides_the_verdict(metrics):
    up = metrics("t-up-score", True, label="Up score", unit="pts")
    down = metrics("t-down-score", False)
    assert metric_facts(up).higher_is_better is True and metric_facts(up).axis_label() == "Up score (pts)"
    by_up = verdict_table(_table(up), up).set_index("correction")
    assert by_up.loc["higher", "verdict"] == "helps" and by_up.loc["lower", "verdict"] == "hurts"
    assert by_up["higher_is_better"].tolist() == [True, True]
    by_down = verdict_table(_table(down), down).set_index("correction")
    assert by_down.loc["higher", "verdict"] == "hurts" and by_down.loc["lower", "verdict"] == "helps"
    # an explicit orientation still overrides the declaration
    forced = verdict_table(_table(up), up, higher_is_better=False).set_index("correction")
    assert forced.loc["higher", "verdict"] == "hurts"


def test_unknown_orientation_no_verdict_and_no_threshold(metrics):
    flat = metrics("t-flat-spread", None)
    assert metric_facts(flat).higher_is_better is None
    out = verdict_table(_table(flat), flat)
    assert set(out["verdict"]) == {NO_VERDICT}
    assert all(ORIENTATION_UNKNOWN in s for s in out["sentence"])
    # the same metric never gets a first-crossing threshold either (not even a given one)
    df = pd.concat([_table(flat).assign(gamma=g) for g in (1.0, 2.0)])
    for thr in (None, 0.4):
        for lams, gams, final, cross, last, used in phase_tables(df, flat, thr).values():
            assert cross is None and used == [] and np.isfinite(final).all()
    # with a known orientation the same data does get crossing matrices
    up = metrics("t-up-2", True)
    tabs = phase_tables(df.assign(metric=up), up)
    assert all(t[3] is not None and len(t[5]) for t in tabs.values())
    # (half of generation 0, 0.5 -> 0.25: "lower" never falls below it)
    assert all(np.isnan(t[3]).all() for t in tabs.values())


def test_builtin_orientation_is_declared_by_the_plugins():
    assert metric_facts("fid").higher_is_better is False
    assert metric_facts("recall").higher_is_better is True
    assert metric_facts("fid-paper-sd").higher_is_better is None  # a spread: no good side
    assert metric_facts("w2-gaussian").axis_label() == "W₂ to target"


PLUGIN = '''
import scloop

@scloop.register_metric("{name}", higher_is_better=True, label="From file")
def make():
    raise AssertionError
'''


def test_plugins_listed_in_a_config_are_loaded(tmp_path):
    name = "t-file-metric"
    f = tmp_path / "my_metric.py"
    f.write_text(PLUGIN.format(name=name))
    try:
        assert metric_facts(name).higher_is_better is None
        assert load_config_plugins([f"plugins: [{f}]\n"]) == []
        assert metric_facts(name).higher_is_better is True and metric_facts(name).label == "From file"
        METRICS.unregister(name)
        # a run directory: its config.yaml, relative paths taken from the run directory
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.yaml").write_text("plugins: [../my_metric.py]\n")
        f.write_text(PLUGIN.format(name=name) + "\n# edited\n")  # changed file: imported again
        assert load_run_plugins(run) == []
        assert metric_facts(name).higher_is_better is True
    finally:
        METRICS.unregister(name)


def test_a_failing_plugin_is_logged_and_its_metrics_unknown(tmp_path, caplog):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("raise RuntimeError('boom')\n")
    cfgs = [{"plugins": [str(bad)]}, {"plugins": [str(tmp_path / "missing.py"), "no_such_module_xyz"]}]
    with caplog.at_level(logging.WARNING, logger="scloop"):
        failed = load_config_plugins(cfgs)
    assert failed == [str(bad), str(tmp_path / "missing.py"), "no_such_module_xyz"]
    text = caplog.text
    assert "boom" in text and "missing.py" in text and "no_such_module_xyz" in text
    assert all(r.name == "scloop" for r in caplog.records)
