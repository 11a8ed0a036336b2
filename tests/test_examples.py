"""The examples/ folder works as its README says: each script, the YAML config with its plugin
file and worker processes, the sweep on Ray, and the notebook snippet (a plugin defined in
``__main__`` reaching spawned workers, and the cell run twice in one process)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1")
    return env


def _run(args: list[str], cwd: Path, timeout: float) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def _only_run(root: Path):
    import scloop

    dirs = [d for d in (root).iterdir() if (d / "results.sqlite").exists()]
    assert len(dirs) == 1, dirs
    return scloop.open_results(dirs[0])


def _last_means(run, metric: str):
    df = run.table(metric=metric, include_timing=False)
    last = df[df.generation == df.generation.max()]
    return last.groupby(["arm", "correction", "gamma"])["value"].mean(), df


def test_custom_correction_script(tmp_path):
    out = _run([str(EXAMPLES / "custom_correction.py")], tmp_path, timeout=120)
    assert "moment-match" in out and "W2 mean" in out
    means, df = _last_means(_only_run(tmp_path / "runs"), "w2-gaussian")
    gen0 = df[df.generation == 0]["value"].mean()
    worst = means[("no-correction", "none", 0.0)]
    assert worst > 2 * gen0  # the fully synthetic loop degrades without correction
    # at gamma = inf the corrected batch has exactly the real moments: generation-0 quality
    assert means[("correction", "moment-match", math.inf)] == pytest.approx(means[("baseline", "none", 0.0)])
    assert means[("correction", "moment-match", 1.0)] < worst


def test_custom_metric_script(tmp_path):
    out = _run([str(EXAMPLES / "custom_metric.py")], tmp_path, timeout=120)
    assert "'Held-out log-likelihood (nats/point)'" in out
    run = _only_run(tmp_path / "runs")
    assert (run.path / "figures" / "heldout-loglik.png").is_file()
    means, _ = _last_means(run, "heldout-loglik")
    assert means[("correction", "oracle-mixture", 3.0)] > means[("no-correction", "none", 0.0)]


def test_custom_model_script(tmp_path):
    pytest.importorskip("torch")
    out = _run([str(EXAMPLES / "custom_model.py")], tmp_path, timeout=240)
    assert "state_dict round trip: exact" in out
    run = _only_run(tmp_path / "runs")
    df = run.table(metric="sliced-wasserstein", include_timing=False)
    assert sorted(set(df.generation)) == list(range(6))
    assert df["value"].notna().all()


def test_yaml_with_plugin_file_and_workers(tmp_path):
    out = _run(["-m", "scloop", "run", str(EXAMPLES / "custom.yaml"), "--plugin", str(EXAMPLES / "my_plugins.py"),
                "--workers", "2", "--out", str(tmp_path)], ROOT, timeout=180)
    assert "engine=generic" in out
    run = _only_run(tmp_path)
    assert set(run.table(include_timing=False).metric) >= {"w2-gaussian", "heldout-loglik"}
    means, _ = _last_means(run, "w2-gaussian")
    assert means[("correction", "moment-match", math.inf)] == pytest.approx(means[("baseline", "none", 0.0)])


def test_yaml_finds_its_plugins_without_the_option(tmp_path):
    # plugins: [my_plugins.py] in the YAML is relative to the YAML file, whatever the working directory
    _run(["-m", "scloop", "run", str(EXAMPLES / "custom.yaml"), "--set", "n_generations=3", "--set", "seeds=1",
          "--workers", "1", "--out", str(tmp_path / "runs")], tmp_path, timeout=120)
    assert _only_run(tmp_path / "runs").table(metric="heldout-loglik").shape[0] > 0


def test_sweep_on_ray(tmp_path):
    pytest.importorskip("ray")
    out = _run(["-m", "scloop", "sweep", str(EXAMPLES / "custom-sweep.yaml"), "--executor", "ray", "--workers", "2",
                "--out", str(tmp_path)], ROOT, timeout=240)
    assert "2 ran" in out and "0 failed" in out
    import scloop

    sweep = scloop.open_results(tmp_path / "custom-sweep")
    table = sweep.table(metric="heldout-loglik", include_timing=False)
    assert set(table["n_real"]) == {25, 100}


def test_notebook_snippet_twice_in_one_process(tmp_path):
    snippet = EXAMPLES / "notebook_snippet.py"
    # logging at INFO shows the progress line, which names the number of worker processes
    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            f"src = open({str(snippet)!r}).read()\nexec(src)\nexec(src)\n")
    out = _run(["-c", code], tmp_path, timeout=240)
    assert "registered" not in out
    assert out.count("[2 workers]") == 2, "the snippet's units did not run in 2 worker processes:\n" + out
    assert out.count("no-correction") == 2  # the table was printed by both executions
    means, _ = _last_means(_only_run(tmp_path / "runs"), "mean_error")
    assert means[("correction", "mean-shift", math.inf)] < means[("no-correction", "none", 0.0)]


def test_readme_lists_every_example():
    text = (EXAMPLES / "README.md").read_text()
    for f in sorted(EXAMPLES.iterdir()):
        if f.suffix in (".py", ".yaml"):
            assert f.name in text, f"examples/README.md does not mention {f.name}"
