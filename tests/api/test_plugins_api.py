"""Plugins from user code: decorators, keyword options, re-registration, discovery (entry
points, config ``plugins:``, ``plugins=``), worker processes and notebook-style ``exec``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import scloop
from scloop.core.registry import CORRECTIONS, METRICS, ConfigError, metric_facts

ENV_OK = {"RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}

PLUGIN_FILE = '''
import numpy as np
import scloop
from scloop import Corrected, Data


class Shrink:
    """Moves synthetic points toward the real mean by t * factor (t = gamma / (1 + gamma))."""

    def __init__(self, gamma=0.0, factor=0.9):
        self.gamma, self.factor = gamma, factor

    def prepare(self, context, *, rng):
        self.mu_ = context.real.x.mean(axis=0)
        return self

    def __call__(self, data, *, model, rng):
        t = self.gamma / (1.0 + self.gamma)
        return Corrected(Data(data.x + t * self.factor * (self.mu_ - data.x), data.y),
                         {"fraction_changed": 1.0 if t > 0 else 0.0})


@scloop.register_correction("%(name)s")
def make_shrink(gamma=0.0, factor=0.9):
    return Shrink(gamma, factor)


class Spread:
    name, needs_samples = "%(metric)s", True

    def __call__(self, ev):
        return float(np.mean(np.std(ev.samples.x, axis=0)))


@scloop.register_metric("%(metric)s", higher_is_better=True, label="Spread", unit="sd")
def make_spread():
    return Spread()
'''


def _cfg(corr: str, metric: str, **kw):
    return {"task": "gaussian", "correction": corr, "gamma": [0, 1], "n_generations": 3, "seeds": 2,
            "arms": ["no-correction", "correction"], "metrics": ["w2-gaussian", metric], **kw}


@pytest.fixture
def plugin_file(tmp_path: Path):
    """A plugin file with a unique correction and metric name (registries are process-wide)."""
    tag = tmp_path.name.replace("-", "_")[-20:]
    names = {"name": f"shrink_{tag}", "metric": f"spread_{tag}"}
    p = tmp_path / "my_plugins.py"
    p.write_text(PLUGIN_FILE % names)
    yield p, names
    CORRECTIONS.unregister(names["name"])
    METRICS.unregister(names["metric"])


def test_keyword_factory_options_and_errors():
    @scloop.register_correction("t-kw-options")
    def make(gamma=0.0, shrink=0.9):
        return ("made", gamma, shrink)

    try:
        assert CORRECTIONS.options("t-kw-options") == {"gamma": 0.0, "shrink": 0.9}
        assert CORRECTIONS.create("t-kw-options", gamma=1.0, shrink=0.5) == ("made", 1.0, 0.5)
        with pytest.raises(ConfigError, match=r"unknown option\(s\) 'shrinkk'.*accepted: gamma, shrink.*"
                                              r"Did you mean 'shrink'"):
            CORRECTIONS.create("t-kw-options", shrinkk=1)
    finally:
        CORRECTIONS.unregister("t-kw-options")


def test_a_class_is_a_factory_and_required_options_are_named():
    @scloop.register_model("t-class-model")
    class Model:
        def __init__(self, width, depth=2):
            self.width, self.depth = width, depth

    try:
        from scloop.core.registry import MODELS

        assert MODELS.required("t-class-model") == ["width"]
        assert MODELS.create("t-class-model", width=3).depth == 2
        with pytest.raises(ConfigError, match="needs option.*'width'"):
            MODELS.create("t-class-model")
    finally:
        MODELS.unregister("t-class-model")


def test_reregistering_same_origin_is_fine_another_plugin_is_an_error():
    src = "import scloop\n@scloop.register_correction('t-rerun')\ndef make(gamma=0.0):\n    return gamma\n"
    ns: dict = {"__name__": "__main__"}
    exec(src, ns)
    exec(src, ns)  # a re-run notebook cell
    exec(src.replace("return gamma", "return 2 * gamma"), ns)  # an edited cell replaces it
    assert CORRECTIONS.create("t-rerun", gamma=2.0) == 4.0
    other = {"__name__": "someone_else"}
    with pytest.raises(ConfigError, match=r"already registered by __main__:make; someone_else:make"):
        exec(src.replace("return gamma", "return -gamma"), other)
    with pytest.raises(ConfigError, match="already registered by scloop"):
        scloop.register_correction("oracle-mixture")(lambda gamma=0.0: None)
    CORRECTIONS.unregister("t-rerun")


def test_metric_orientation_is_required_and_read_from_the_plugin():
    with pytest.raises(TypeError):
        scloop.register_metric("t-no-orientation")  # type: ignore[call-arg]

    @scloop.register_metric("t-oriented", higher_is_better=True, label="Thing", unit="m")
    def make():
        return None

    try:
        facts = metric_facts("t-oriented")
        assert facts.higher_is_better is True and facts.axis_label() == "Thing (m)"
        assert metric_facts("fid").higher_is_better is False and metric_facts("recall").higher_is_better is True
        assert metric_facts("displacement").higher_is_better is None
    finally:
        METRICS.unregister("t-oriented")


def test_plugins_argument_loads_a_file_and_workers_see_it(plugin_file, tmp_path):
    path, names = plugin_file
    run = scloop.run(_cfg(names["name"], names["metric"]), plugins=[str(path)], out=tmp_path / "runs", workers=2)
    assert run.engine == "generic"
    df = run.table()
    assert set(df.metric) >= {"w2-gaussian", names["metric"]}
    spec = run.spec
    assert spec.plugins == (str(path.resolve()),)  # recorded, so a resume or a report finds it
    one = scloop.run(_cfg(names["name"], names["metric"]), plugins=[str(path)], out=tmp_path / "runs", workers=1,
                     run_id="one")
    cols = ["arm", "seed", "gamma", "generation", "metric"]
    a = df[~df.metric.str.endswith("_seconds")].sort_values(cols).value.to_numpy()
    b = one.table()[lambda d: ~d.metric.str.endswith("_seconds")].sort_values(cols).value.to_numpy()
    np.testing.assert_array_equal(a, b)  # numbers do not depend on the number of workers


def test_config_plugins_key_is_relative_to_the_config_file(plugin_file, tmp_path):
    path, names = plugin_file
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(textwrap.dedent(f"""
        task: gaussian
        correction: {names['name']}
        gamma: [1]
        n_generations: 2
        metrics: [w2-gaussian, {names['metric']}]
        plugins: [my_plugins.py]
    """))
    run = scloop.run(str(cfg), out=tmp_path / "runs", workers=1)
    assert names["metric"] in set(run.table().metric)


def test_entry_point_group_is_discovered(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "t_ep_plugins").mkdir(parents=True)
    (pkg / "t_ep_plugins" / "__init__.py").write_text(
        "import scloop\n@scloop.register_policy('t-ep-policy')\ndef make():\n    return None\n")
    dist = pkg / "t_ep_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: t-ep-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[scloop.plugins]\nmine = t_ep_plugins\n")
    monkeypatch.syspath_prepend(str(pkg))
    import scloop.plugins as plugins
    from scloop.core.registry import POLICIES

    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    plugins.load_plugins()
    try:
        assert "t-ep-policy" in POLICIES
    finally:
        POLICIES.unregister("t-ep-policy")


def test_a_broken_plugin_is_a_named_config_error(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"bad_plugin.py.*failed to import: RuntimeError: boom"):
        scloop.load_plugins([str(bad)])
    with pytest.raises(ConfigError, match="no such file"):
        scloop.load_plugins([str(tmp_path / "missing.py")])
    with pytest.raises(ConfigError, match="plugin module 'no_such_module_xyz' not found"):
        scloop.load_plugins(["no_such_module_xyz"])


NOTEBOOK = '''
import numpy as np, scloop
from scloop import Corrected, Data

class Half:
    def __init__(self, gamma=0.0):
        self.gamma = gamma
    def prepare(self, context, *, rng):
        self.mu_ = context.real.x.mean(0)
        return self
    def __call__(self, data, *, model, rng):
        t = self.gamma / (1 + self.gamma)
        return Corrected(Data(data.x + 0.5 * t * (self.mu_ - data.x), data.y), {})

@scloop.register_correction("nb-half")
def make_half(gamma=0.0):
    return Half(gamma)

run = scloop.run({"task": "gaussian", "correction": "nb-half", "gamma": [0, 1], "n_generations": 3, "seeds": 2,
                  "arms": ["no-correction", "correction"]}, out=OUT, workers=2, force=True, run_id="nb")
t = run.table(metric="w2-gaussian")
print("ROWS", len(t), "ENGINE", run.engine)
'''


def test_notebook_style_exec_with_two_workers_twice(tmp_path):
    """The spawned workers cannot import ``__main__`` of ``python -c``: they get the plugin by
    value.  Re-running the cell in the same process is fine."""
    code = f"OUT = {str(tmp_path / 'runs')!r}\n" + NOTEBOOK
    src = tmp_path / "cell.py"
    src.write_text(code)
    r = subprocess.run([sys.executable, "-c", f"exec(open({str(src)!r}).read()); exec(open({str(src)!r}).read())"],
                       capture_output=True, text=True, timeout=300, env={**__import__("os").environ, **ENV_OK})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("ROWS 24 ENGINE generic") == 2, r.stdout
