"""The motion evaluator with known small-sample behaviour: the whole-set / CMU splits by clip,
KID (unbiased polynomial-kernel MMD), the real-vs-held-out reference points, held-out
recognition and the half-sample spreads of every motion metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.core.registry import METRICS, TASKS, ConfigError, metric_facts
from scloop.core.types import Data, Evaluation, MetricContext
from scloop.plugins import load_plugins

load_plugins()

BASE = ["motion_fid", "motion_kid", "motion_recognition", "motion_diversity", "motion_multimodality",
        "motion_penetration", "motion_floating", "motion_skating", "motion_jerk"]
REFS = ["motion_fid_real", "motion_kid_real", "motion_recognition_heldout"]


@pytest.fixture(scope="module")
def task(shared_data):
    return TASKS.create("bandai", data_dir=str(shared_data), contents=["walk", "wave-both-hands"], window=40,
                        stride=20, ref_stride=10, order="random", encoder_data="split", n_eval=24)


@pytest.fixture(scope="module")
def metrics(task, tmp_path_factory):
    ctx = MetricContext(task.real_data(16), task.reference(), cache_dir=tmp_path_factory.mktemp("enc"),
                        meta=task.meta)
    names = BASE + [f"{n}_sd" for n in BASE] + REFS
    return {n: METRICS.create(n).prepare(ctx) for n in names}


def test_orientation_declared():
    higher = {"motion_recognition", "motion_diversity", "motion_multimodality"}
    for n in BASE:
        assert metric_facts(n).higher_is_better is (n in higher)
    for n in [f"{b}_sd" for b in BASE] + REFS:
        assert n in METRICS and metric_facts(n).higher_is_better is None  # spreads / reference points: no verdict


def test_split_by_clip_and_eval_sets(task, shared_data):
    train, ref = task.real_data(task.n_available), task.reference()
    assert not ({w.tobytes() for w in train.x} & {w.tobytes() for w in ref.x})
    # ref_stride 10 < stride 20: about twice the held-out windows of the default stride
    plain = TASKS.create("bandai", data_dir=str(shared_data), contents=["walk", "wave-both-hands"], window=40,
                         stride=20)
    assert len(ref) > 1.6 * len(plain.reference()) and plain.n_clips == task.n_clips
    # order random: a permutation of the same training windows; the same for every call
    assert sorted(w.tobytes() for w in train.x) == sorted(w.tobytes() for w in plain.real_data(plain.n_available).x)
    assert np.array_equal(task.real_data(8).x, task.real_data(8).x)
    real_eval = task.meta["real_eval"]
    assert len(real_eval) == 24 and {w.tobytes() for w in real_eval.x} <= {w.tobytes() for w in train.x}
    assert task.meta["encoder_train"] is task._train and "encoder_train" not in plain.meta
    with pytest.raises(ConfigError, match="order"):
        TASKS.create("bandai", data_dir=str(shared_data), contents=["walk"], order="sorted")
    with pytest.raises(ConfigError, match="encoder_data"):
        TASKS.create("bandai", data_dir=str(shared_data), contents=["walk"], encoder_data="all")
    with pytest.raises(ConfigError, match="dataset"):
        TASKS.create("bandai", data_dir=str(shared_data), contents=["walk"], dataset="dataset-3")


def test_contents_all(shared_data):
    t = TASKS.create("bandai", data_dir=str(shared_data), contents="all", dataset="dataset-2", window=60, stride=40,
                     holdout=3)
    assert len(t.contents) == 10 and "walk-turn-left" in t.contents  # dataset-2's ten actions, 35 clips each
    assert set(np.unique(t.reference().y)) == set(range(10))
    assert t.n_clips[1] > 50


def test_cmu_task(shared_data):
    from scloop.tasks.motion import cmu_action

    assert [cmu_action(d) for d in ("run/jog, veer left", "Get Up Face Down", "cartwheels", "soccer - kick ball",
                                    "forward jump", "slow walk", "basketball - sideways dribble")] == \
        ["run", "get-up", "acrobatic", "kick", "jump", "walk", "other"]
    t = TASKS.create("cmu-deepmimic", data_dir=str(shared_data), ref_stride=5)
    train, ref = t.real_data(t.n_available), t.reference()
    assert train.x.shape[1:] == ref.x.shape[1:] and train.x.shape[1] == 40
    assert not ({w.tobytes() for w in train.x} & {w.tobytes() for w in ref.x})
    assert "run" in t.contents and t.n_clips[1] >= 10 and len(ref) > 100
    assert 4 + 9 * t.meta["skeleton"].n_joints < train.x.shape[2]  # F = 4 + 9 J + feet
    with pytest.raises(ConfigError, match="contents"):
        TASKS.create("cmu-deepmimic", data_dir=str(shared_data), contents=["swim"])


def test_kid_unbiased_and_sensitive():
    from scloop.metrics.motion import kid

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 8))
    same = [kid(rng.normal(size=(30, 8)), ref) for _ in range(200)]
    # unbiased: the mean over draws of 30 is ~0 although each draw is small (FID would be > 0)
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(len(same))
    shifted = [kid(rng.normal(0.5, 1.0, size=(30, 8)), ref) for _ in range(20)]
    assert np.mean(shifted) > np.mean(same) + 5 * np.std(same) / math.sqrt(20)
    # the formula on standardised features
    a, b = rng.normal(size=(5, 3)), rng.normal(1, 2, size=(7, 3))
    mu, sd = b.mean(0), b.std(0)
    za, zb = (a - mu) / sd, (b - mu) / sd
    k = lambda x, y: (x @ y.T / 3 + 1) ** 3  # noqa: E731
    want = ((k(za, za).sum() - np.trace(k(za, za))) / 20 + (k(zb, zb).sum() - np.trace(k(zb, zb))) / 42
            - 2 * k(za, zb).mean())
    assert kid(a, b) == pytest.approx(want, rel=1e-12)


def test_half_sample_spread_is_the_standard_error():
    from scloop.metrics.motion import spread_subsets

    rng = np.random.default_rng(1)
    v = rng.exponential(size=400)
    subsets = spread_subsets(400, draws=400)
    assert all(len(s) == 200 and len(np.unique(s)) == 200 for s in subsets)
    sd = np.std([v[s].mean() for s in subsets], ddof=1)
    assert sd == pytest.approx(v.std(ddof=1) / math.sqrt(400), rel=0.12)
    assert all(np.array_equal(a, b) for a, b in zip(spread_subsets(50), spread_subsets(50)))  # common subsets


def test_evaluator_on_real_windows(task, metrics):
    ref, real_eval = task.reference(), task.meta["real_eval"]
    held = {n: m(Evaluation(None, ref, ref)) for n, m in metrics.items()}
    # identical sets: FID 0; the unbiased KID is slightly negative (the cross term keeps k(r_i, r_i))
    assert held["motion_fid"] < 1e-6 and -0.2 < held["motion_kid"] < 0
    assert held["motion_recognition"] == pytest.approx(held["motion_recognition_heldout"])
    assert held["motion_recognition_heldout"] > 0.8  # walk vs wave on held-out clips
    ev = Evaluation(None, real_eval, ref)
    vals = {n: m(ev) for n, m in metrics.items()}
    assert all(math.isfinite(v) for v in vals.values()), vals
    # the reference points score real_eval: the same numbers as fid / kid of those windows
    assert vals["motion_fid_real"] == pytest.approx(vals["motion_fid"], rel=1e-9)
    assert vals["motion_kid_real"] == pytest.approx(vals["motion_kid"], rel=1e-9, abs=1e-12)
    for n in BASE:
        assert vals[f"{n}_sd"] >= 0
    assert vals["motion_jerk_sd"] > 0 and vals["motion_fid_sd"] > 0 and vals["motion_kid_sd"] > 0
    # deterministic (common subsets), and the reference points need no samples
    assert metrics["motion_fid_sd"](ev) == vals["motion_fid_sd"]
    assert metrics["motion_jerk_sd"](ev) == vals["motion_jerk_sd"]
    assert not metrics["motion_fid_real"].needs_samples
    assert metrics["motion_kid_real"](Evaluation(None, None, ref)) == vals["motion_kid_real"]
    # another distribution (one action only, as many windows) scores worse on FID and KID
    train = task.real_data(task.n_available)
    walk = train.take(np.flatnonzero(train.y == 0)[: len(real_eval)])
    bad = Evaluation(None, walk, ref)
    assert metrics["motion_kid"](bad) > vals["motion_kid"] + 2 * vals["motion_kid_sd"]
    assert metrics["motion_fid"](bad) > vals["motion_fid"] + 2 * vals["motion_fid_sd"]
    swapped = Evaluation(None, Data(real_eval.x, 1 - real_eval.y), ref)
    assert metrics["motion_recognition"](swapped) < 0.2


def test_encoder_trains_on_the_split(task, tmp_path):
    """encoder_data: split trains the encoder on every training window, not the loop's n_real."""
    a = METRICS.create("motion_fid").prepare(MetricContext(task.real_data(16), task.reference(), cache_dir=tmp_path,
                                                           meta=task.meta))
    b = METRICS.create("motion_fid").prepare(MetricContext(task.real_data(32), task.reference(), cache_dir=tmp_path,
                                                           meta=task.meta))
    assert a.fingerprint() == b.fingerprint()
    meta = {k: v for k, v in task.meta.items() if k != "encoder_train"}
    c = METRICS.create("motion_fid").prepare(MetricContext(task.real_data(16), task.reference(), cache_dir=tmp_path,
                                                           meta=meta))
    assert c.fingerprint() != a.fingerprint()
    no_eval = {k: v for k, v in meta.items() if k != "real_eval"}
    with pytest.raises(ConfigError, match="real_eval"):
        METRICS.create("motion_fid_real").prepare(MetricContext(task.real_data(16), task.reference(), meta=no_eval))


def test_real_draws_calibration(task, tmp_path):
    from scloop.metrics.motion import real_draws

    rows = real_draws(task, counts=(16, 64), draws=4, cache_dir=tmp_path)
    assert [r["windows"] for r in rows[:2]] == [16, 64]
    assert all(r["fid"] > 0 and r["fid_sd"] > 0 and math.isfinite(r["kid"]) for r in rows[:2])
    half = rows[-1]["half_sample"]
    assert half["motion_recognition_heldout"] > 0.8 and half["motion_jerk_sd"] > 0
