"""The text plugins in scloop's loop, through the public API only (``scloop.run`` with
``plugins: [scloop.text]``): collapse under the fully synthetic loop, the oracle keeping KL at
its generation-0 level, exact resume, and the presets."""

from __future__ import annotations

import numpy as np
import pytest

import scloop

BASE = {
    "name": "text-loop-test",
    "plugins": ["scloop.text"],
    "task": {"name": "pcfg", "grammar": "english", "n_eval": 400},
    "model": {"name": "ngram", "order": 7, "discount": 0.1, "max_len": 80},
    "n_real": 400,
    "policy": "replace",
    "lambda": 1.0,
    "train": "scratch",
    "arms": ["no-correction", "correction"],
    "correction": "text-oracle-mixture",
    "gamma": [1.0, float("inf")],
    "metrics": ["kl", "rare-mass", "tail-kl", "tail-coverage", "distinct-2", "unique-fraction", "validity"],
    "n_generations": 8,
    "checkpoint_every": 4,
}


def _curves(run):
    df = run.table(include_timing=False)
    return df.groupby(["arm", "gamma", "metric", "generation"]).value.mean()


def test_collapse_visible_and_oracle_holds(tmp_path):
    run = scloop.run(BASE, seeds=2, out=tmp_path, workers=1, quiet=True)
    c = _curves(run)
    nc = c.loc["no-correction", 0.0]
    g = BASE["n_generations"]
    assert nc.loc["kl", g] > nc.loc["kl", 0] + 2.0  # KL(true || model) rises
    assert nc.loc["rare-mass", g] < nc.loc["rare-mass", 0]  # the tail is lost
    assert nc.loc["tail-kl", g] > nc.loc["tail-kl", 0] + 2.0
    assert nc.loc["unique-fraction", g] < nc.loc["unique-fraction", 0] - 0.05  # diversity falls
    assert nc.loc["distinct-2", g] < nc.loc["distinct-2", 0]
    rise = nc.loc["kl", g] - nc.loc["kl", 0]
    one, inf = c.loc["correction", 1.0], c.loc["correction", float("inf")]
    # the oracle mixture keeps KL near generation 0: at gamma = 1 a small fraction of the
    # uncorrected rise (its fixed point keeps some of the model's own error); at inf every
    # generation is a fresh fit to true draws (KL moves by the sampling noise of the fit only)
    assert one.loc["kl", g] - one.loc["kl", 0] < 0.2 * rise
    assert abs(inf.loc["kl", g] - inf.loc["kl", 0]) < 0.1 * rise


class _Stop(Exception):
    pass


class _StopAt:
    def __init__(self, generation: int) -> None:
        self.generation = generation

    def on_generation_end(self, event) -> None:
        if event.record.generation == self.generation:
            raise _Stop()


def test_resume_is_exact(tmp_path):
    cfg = {**BASE, "n_generations": 4, "checkpoint_every": 2, "arms": ["correction"],
           "correction": [{"name": "grammar", "mode": "resample"}, "top-likelihood"], "gamma": [1.0],
           "metrics": ["kl", "validity"]}
    full = scloop.run(cfg, seeds=1, out=tmp_path / "a", run_id="r", workers=1).table(include_timing=False)
    with pytest.raises(_Stop):
        scloop.run(cfg, seeds=1, out=tmp_path / "b", run_id="r", workers=1, callbacks=[_StopAt(3)])
    resumed = scloop.run(cfg, seeds=1, out=tmp_path / "b", run_id="r", workers=1, resume=True).table(include_timing=False)
    key = ["unit", "generation", "metric"] if "unit" in full.columns else ["correction", "generation", "metric"]
    a = full.sort_values(key).value.to_numpy()
    b = resumed.sort_values(key).value.to_numpy()
    np.testing.assert_array_equal(a, b)


def test_char_transformer_finetune_loop_on_arithmetic(tmp_path):
    cfg = {**BASE, "task": {"name": "arithmetic", "n_eval": 40},
           "model": {"name": "char-transformer", "layers": 1, "heads": 2, "dim": 16, "max_len": 16, "steps": 20,
                     "finetune_steps": 5, "threads": 1},
           "train": "finetune", "n_real": 100, "policy": "augment", "n_generations": 2,
           "correction": "checker", "gamma": [float("inf")], "metrics": ["kl", "validity", "answer-accuracy"]}
    df = scloop.run(cfg, seeds=1, out=tmp_path, workers=1).table(include_timing=False)
    assert set(df.metric) >= {"kl", "validity", "answer-accuracy", "correction_acceptance"}
    assert df.generation.max() == 2


def test_presets_validate():
    from scloop.core.config import ExperimentSpec  # noqa: F401
    from scloop.runner.run import validate

    for name in ("text-quick",):
        validate(scloop.load_spec(name))


def test_text_study_sweep_covers_the_grid():
    from scloop.runner.run import validate
    from scloop.sweep.spec import load_sweep

    pts = load_sweep("text-study").points()
    assert len(pts) == 12
    seen = set()
    for p in pts:
        spec = p.spec
        assert spec.seeds >= 5 and spec.n_generations >= 20
        assert set(spec.gammas) == {1.0, float("inf")}
        seen.add((spec.task.name, spec.policy.name, tuple(spec.lambdas)))
    for policy in ("replace", "augment", "accumulate"):
        for lam in (0.5, 1.0, 4.0):
            assert ("pcfg", policy, (lam,)) in seen
        assert ("python-stdlib", policy, (1.0,)) in seen
    validate(pts[0].spec)


@pytest.mark.slow
def test_text_quick_preset_small(tmp_path):
    run = scloop.run("text-quick", seeds=1, out=tmp_path, workers=1, quiet=True)
    df = run.table(include_timing=False)
    assert set(df.metric) >= {"kl", "validity", "rare-mass", "self-bleu"}
