"""The image loop end to end on tiny settings: the runner with the ddpm model, image
corrections and feature metrics; worker processes, generation-0 sharing, resume, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.core.config import load_spec
from scloop.core.registry import ConfigError
from scloop.runner import run_experiment
from scloop.store import RunStore

TINY = [
    "task={name: digits, n_eval: 60}",
    "model={name: ddpm, denoiser: mlp, width: 32, blocks: 1, timesteps: 10, steps: 30, batch_size: 64,"
    " lr: 0.002, finetune_steps: 4, finetune_lr: 0.001, quantize: 17, sample_batch: 256}",
    "correction={name: kmeans, k: 4, seed: 0}",
    "gamma=.inf",
    "lambda=[0.5]",
    "n_real=200",
    "n_generations=2",
    "policy=augment",
    "train=finetune",
    "arms=[baseline, no-correction, correction]",
    "metrics=[fid, class_accuracy, diversity, precision]",
]


def _spec(extra=(), seeds=1):
    return load_spec("digits-quick", [*TINY, *extra], seeds=seeds)


def _values(path):
    st = RunStore(path)
    df = st.table(include_timing=False).sort_values(["arm", "seed", "lambda", "gamma", "generation", "metric"])
    st.close()
    return df


def test_tiny_image_run(tmp_path):
    s = run_experiment(_spec(), out=tmp_path, run_id="a")
    df = _values(s.path)
    fid = df[df.metric == "fid"]
    assert sorted(set(fid.arm)) == ["baseline", "correction", "no-correction"]
    assert set(fid.generation) == {0, 1, 2} and np.isfinite(fid.value).all()
    # all arms start from the same generation-0 model and evaluation stream
    g0 = fid[fid.generation == 0].value.to_numpy()
    assert np.allclose(g0, g0[0])
    # correction diagnostics are recorded for the corrected arm only
    corr = df[df.metric.str.startswith("correction_")]
    assert set(corr.arm) == {"correction"}
    assert {"correction_fraction_changed", "correction_distinct_after"} <= set(corr.metric)
    assert (corr[corr.metric == "correction_fraction_changed"].value == 1.0).all()  # gamma = inf
    # k = 4 per class: at most 40 distinct corrected images
    assert (corr[corr.metric == "correction_distinct_after"].value <= 40).all()
    # grids of every generation of every unit, and the feature net in the shared cache
    assert len(list((s.path / "samples").glob("unit*/gen*.npz"))) == 3 * 3
    assert len(list((tmp_path / ".cache").glob("classifier-*.pt"))) == 1
    from scloop.report.plots import plot_run

    paths = plot_run(s.path)
    assert any(p.name == "fid.png" for p in paths) and any(p.name == "grid_evolution.png" for p in paths)
    assert len(list((s.path / "figures" / "grids").glob("*/gen*.png"))) == 9


def test_workers_give_the_same_numbers(tmp_path):
    a = _values(run_experiment(_spec(seeds=2), out=tmp_path, run_id="w1").path)
    b = _values(run_experiment(_spec(seeds=2), out=tmp_path, run_id="w2", workers=2).path)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-6, atol=1e-9)


def test_resume_after_interrupt_reproduces(tmp_path, monkeypatch):
    ref = _values(run_experiment(_spec(), out=tmp_path, run_id="full").path)
    import scloop.runner.generic as runner

    orig = runner._StoreHook.on_generation_end
    calls = {"n": 0}

    def boom(self, record, state):
        orig(self, record, state)
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the second unit
            raise KeyboardInterrupt

    monkeypatch.setattr(runner._StoreHook, "on_generation_end", boom)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_spec(), out=tmp_path, run_id="cut")
    monkeypatch.setattr(runner._StoreHook, "on_generation_end", orig)
    res = _values(run_experiment(_spec(), out=tmp_path, run_id="cut", resume=True).path)
    assert len(res) == len(ref)
    np.testing.assert_allclose(res.value.to_numpy(), ref.value.to_numpy(), rtol=1e-6, atol=1e-9)


def test_verifier_run_records_acceptance(tmp_path):
    spec = _spec(["correction={name: verifier, tau: 0.5, on_reject: drop}", "arms=[correction]"])
    df = _values(run_experiment(spec, out=tmp_path, run_id="v").path)
    acc = df[df.metric == "correction_acceptance_rate"].value
    assert len(acc) == 2 and ((acc >= 0) & (acc <= 1)).all()
    n_syn = RunStore(tmp_path / "v").records()
    kept = df[df.metric == "correction_kept_fraction"].value.to_numpy()
    assert np.allclose(n_syn[n_syn.generation > 0].n_synthetic.to_numpy(), np.floor(kept * 100 + 1e-9))


@pytest.mark.parametrize(
    "extra, match",
    [
        (["model={name: gaussian}"], "model.*gaussian.*vector data.*image data"),
        (["metrics=[w2-gaussian]"], "metrics.*w2-gaussian"),
        (["correction={name: oracle-ot}"], "correction.*oracle-ot"),
        (["n_real=5000"], "n_real.*5000"),
        (["model={name: ddpm, denoiser: transformer}"], "denoiser"),
    ],
)
def test_bad_image_configs_fail_before_writing(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        run_experiment(_spec(extra), out=tmp_path, run_id="bad")
    assert not (tmp_path / "bad").exists()


def test_cli_data_dir_must_exist(tmp_path):
    from typer.testing import CliRunner

    from scloop.cli import app

    r = CliRunner().invoke(app, ["run", "mnist-paper", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--data-dir" in r.output
    assert not any(p.name != ".cache" for p in tmp_path.iterdir())


def test_cli_mnist_without_files_names_the_folder(tmp_path):
    from typer.testing import CliRunner

    from scloop.cli import app

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["run", "mnist-paper", "--data-dir", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "runs")])
    assert r.exit_code == 2 and "t10k-images" in r.output and str(tmp_path / "empty") in r.output
    assert not (tmp_path / "runs").exists()


def test_presets_resolve():
    for name in ("digits-quick", "digits-verifier"):
        spec = load_spec(name)
        assert spec.task.name == "digits" and spec.model.name == "ddpm" and spec.n_generations >= 20
        assert set(spec.arms) == {"baseline", "no-correction", "correction"} and spec.lambdas == (0.5, 1.0)
    m = load_spec("mnist-paper")
    assert m.lambdas == (0.2, 0.5, 1.0, 1.5) and m.n_generations == 50 and m.n_real == 12000
    assert m.model.kwargs["timesteps"] == 400 and m.model.kwargs["guidance"] == 0.5
    assert dict(m.corrections[0].kwargs)["k"] == 16 and math.isinf(m.gammas[0])


def test_mnist_size_option_pools_blocks_on_the_grey_grid(shared_data):
    import scloop.tasks  # noqa: F401 - registers the tasks
    from scloop.core.registry import TASKS

    full = TASKS.get("mnist")(data_dir=str(shared_data))
    small = TASKS.get("mnist")(data_dir=str(shared_data), size=14)
    assert full.image_shape == (1, 28, 28) and small.image_shape == (1, 14, 14)
    x28, x14 = full.real_data(50).x, small.real_data(50).x
    block = x28[:, :, :2, :2].mean(axis=(2, 3))  # top-left 2x2 block of every image
    np.testing.assert_allclose(x14[:, :, 0, 0], block, atol=0.5 / 255 + 1e-6)
    assert np.allclose(x14 * 255, np.round(x14 * 255), atol=1e-4)  # still on the 256-level grid
    assert np.array_equal(small.real_data(50).y, full.real_data(50).y)
    assert len(small.reference()) == len(full.reference())
    for bad in (13, 0, True, "14"):
        with pytest.raises(ConfigError, match="task.size"):
            TASKS.get("mnist")(data_dir=str(shared_data), size=bad)
