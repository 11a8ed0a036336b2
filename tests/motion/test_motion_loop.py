"""The motion loop end to end on tiny settings (real Bandai windows from the shared data): the
runner with the MDM model, the physics and kinematic corrections, every motion metric, the
motion windows kept for the GIFs, and the stick-figure GIFs of ``scloop plot``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from scloop.core.config import load_spec  # noqa: E402
from scloop.runner import run_experiment  # noqa: E402
from scloop.store import RunStore  # noqa: E402

METRICS = ["motion_fid", "motion_diversity", "motion_recognition", "motion_multimodality",
           "motion_penetration", "motion_floating", "motion_skating", "motion_jerk",
           # the evaluator's KID, spreads and reference points (tests/motion/test_motion_eval.py)
           "motion_kid", "motion_fid_sd", "motion_kid_sd", "motion_jerk_sd", "motion_fid_real", "motion_kid_real",
           "motion_recognition_heldout"]


def _tiny(data_dir) -> list[str]:
    return [
        # 8 short-listed clips (2 actions, 2 styles) keep the task's BVH parsing under a second
        f"task={{name: bandai, n_eval: 8, data_dir: {data_dir}, contents: [walk, wave-both-hands],"
        " styles: [normal, happy]}",
        "model={name: mdm, n_classes: 2, latent: 16, layers: 1, heads: 2, ff_size: 32, timesteps: 20, steps: 8,"
        " finetune_steps: 2, batch_size: 8, lr: 0.001, sampler: ddim, sample_steps: 3, device: cpu}",
        "correction=[physics, kinematic]",
        "gamma=.inf",
        "lambda=[0.25]",
        "n_real=16",
        "n_generations=2",
        "arms=[baseline, no-correction, correction]",
        f"metrics=[{', '.join(METRICS)}]",
    ]


def test_presets_load():
    quick = load_spec("motion-quick")
    paper = load_spec("motion-paper")
    assert quick.model.name == paper.model.name == "mdm"
    assert quick.n_generations >= 10 and paper.n_generations == 50
    assert sorted(paper.lambdas) == [0.25, 0.5, 0.75, 1.0]
    assert paper.model.kwargs["latent"] == 512 and paper.model.kwargs["layers"] == 8
    assert paper.model.kwargs["finetune_steps"] == 1000
    assert {c.name for c in quick.corrections} == {"physics", "kinematic"}


def test_motion_study_sweep_loads():
    """The motion study's grid: 13 runs -- baseline once, and at each lambda no correction and
    the three corrections -- 5 seeds, 10 generations, >= 500 evaluation windows, every metric
    with its spread."""
    from scloop.core.registry import metric_facts
    from scloop.plugins import load_plugins
    from scloop.sweep import load_sweep

    load_plugins()

    points = load_sweep("motion-study").points()
    assert len(points) == 13
    cells = {(p.spec.arms, tuple(c.label() for c in p.spec.corrections) if p.spec.arms == ("correction",) else (),
              p.spec.lambdas) for p in points}
    for lam in (0.25, 1.0, 2.0):
        assert (("no-correction",), (), (lam,)) in cells
        for corr in ("physics", "kinematic", "physics+kinematic"):
            assert (("correction",), (corr,), (lam,)) in cells
    assert sum(p.spec.arms == ("baseline",) for p in points) == 1
    for p in points:
        s = p.spec
        assert s.n_generations >= 10 and s.task.kwargs["n_eval"] >= 500 and s.gammas == (float("inf"),)
        assert s.task.kwargs["contents"] == "all" and s.task.kwargs["encoder_data"] == "split"
        with_sd = {m[: -len("_sd")] for m in s.metrics if m.endswith("_sd")}
        oriented = {m for m in s.metrics if metric_facts(m).higher_is_better is not None}
        assert oriented == with_sd and {"motion_fid", "motion_kid", "motion_jerk"} <= oriented
    assert {p.spec.seeds for p in points} == {5}


def test_tiny_motion_loop(tmp_path, shared_data):
    spec = load_spec("motion-quick", _tiny(shared_data), seeds=1)
    s = run_experiment(spec, out=tmp_path, run_id="m", workers=1)
    st = RunStore(s.path)
    df = st.table(include_timing=False)
    st.close()
    vals = df[df.metric.isin(METRICS)]
    assert set(vals.metric) == set(METRICS)
    assert set(vals.generation) == {0, 1, 2}
    assert set(vals.arm) == {"baseline", "no-correction", "correction"}
    assert set(vals[vals.arm == "correction"].correction) == {"physics", "kinematic"}
    assert np.isfinite(vals.value).all()
    g0 = vals[(vals.generation == 0) & (vals.metric == "motion_fid")].value.to_numpy()
    assert np.allclose(g0, g0[0])  # every arm starts from the seed's generation-0 model
    corr = df[df.metric == "correction_fraction_changed"]
    assert set(corr.arm) == {"correction"} and (corr.value == 1.0).all()
    # a few motion windows per generation and unit are kept for the GIFs
    kept = sorted((s.path / "samples").glob("unit*/gen*.npz"))
    assert len(kept) == 4 * 3
    with np.load(kept[0]) as a:
        assert a["x"].ndim == 3 and a["x"].dtype == np.float16 and len(a["x"]) == 2 * 2

    from scloop.report.motion import is_motion_run, write_motion_gifs

    assert is_motion_run(s.path)
    gifs = write_motion_gifs(s.path, generations=[2], stride=30, max_panels=2)
    assert len(gifs) == 4 and all(p.suffix == ".gif" and p.stat().st_size > 0 for p in gifs)
    assert gifs[0].parent.parent == s.path / "figures" / "motion"
