"""The bandai motion task and the motion physics metrics (domain motion)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.core.registry import METRICS, TASKS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.types import Data, Evaluation, MetricContext

load_plugins()


@pytest.fixture(scope="module")
def task(shared_data):
    return TASKS.create("bandai", data_dir=str(shared_data), contents=["walk", "wave-both-hands"], window=40,
                        stride=20)


def test_windows_split_by_clip_and_labels(task):
    real, ref = task.real_data(32), task.reference()
    assert real.x.shape == (32, 40, 197) and real.x.dtype == np.float32
    assert set(np.unique(task.real_data(task.n_available).y)) == {0, 1}
    assert len(ref) > 0 and task.meta["fps"] == 20.0 and task.meta["skeleton"].n_joints == 21
    # no held-out window equals a training window (the split is by clip)
    train = {w.tobytes() for w in task.real_data(task.n_available).x}
    assert not any(w.tobytes() in train for w in ref.x)
    with pytest.raises(ConfigError, match="n_real"):
        task.real_data(10**6)


def test_task_errors(shared_data, tmp_path):
    with pytest.raises(ConfigError, match="data_dir"):
        TASKS.create("bandai", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="window"):
        TASKS.create("bandai", data_dir=str(shared_data), window=2)


def test_motion_metrics(task):
    names = ["motion_penetration", "motion_floating", "motion_skating", "motion_jerk"]
    ctx = MetricContext(task.real_data(task.n_available), task.reference(), meta=task.meta)
    ms = {n: METRICS.create(n).prepare(ctx) for n in names}
    ref = task.reference()
    clean = {n: m(Evaluation(None, ref, ref)) for n, m in ms.items()}
    assert all(math.isfinite(v) and v >= 0 for v in clean.values())
    up = Data(ref.x.copy(), ref.y)
    up.x[:, :, 0] += 0.10  # root height feature: the whole body 10 cm up
    floated = {n: m(Evaluation(None, up, ref)) for n, m in ms.items()}
    assert floated["motion_floating"] > clean["motion_floating"] + 0.05
    with pytest.raises(ConfigError, match="motion task"):
        METRICS.create("motion_jerk").prepare(MetricContext(ref))


def test_learned_motion_metrics(task, tmp_path):
    names = ["motion_fid", "motion_recognition", "motion_multimodality", "motion_diversity"]
    real, ref = task.real_data(task.n_available), task.reference()
    ctx = MetricContext(real, ref, cache_dir=tmp_path, meta=task.meta)
    ms = {n: METRICS.create(n).prepare(ctx) for n in names}
    assert len(list(tmp_path.glob("motion-encoder-*.pt"))) == 1  # one encoder, cached
    held = {n: m(Evaluation(None, ref, ref)) for n, m in ms.items()}
    assert held["motion_fid"] < 1e-6 and held["motion_diversity"] == pytest.approx(1.0)
    assert held["motion_recognition"] > 0.8  # walk vs wave on held-out clips
    train = {n: m(Evaluation(None, real, ref)) for n, m in ms.items()}
    # frozen motion: every window holds its first frame (no movement at all)
    frozen = Data(np.repeat(real.x[:, :1], real.x.shape[1], axis=1), real.y)
    assert ms["motion_fid"](Evaluation(None, frozen, ref)) > 3 * train["motion_fid"]
    same = Data(np.repeat(real.x[:1], 20, axis=0), np.repeat(real.y[:1], 20))
    assert ms["motion_diversity"](Evaluation(None, same, ref)) == pytest.approx(0.0, abs=1e-9)


def test_motion_fid_ignores_invisible_noise(task, tmp_path):
    """Joints that are exact hinges in the data have rotation entries with std 0; a 1e-3
    deviation there is invisible, and must not count as hundreds of standard deviations (it did
    with a per-feature std: FID x 3,500 on real windows).  A visible change still counts."""
    from scloop.motion.representation import feature_layout
    from scloop.motion.representation import standardisation

    real, ref = task.real_data(task.n_available), task.reference()
    groups = list(feature_layout(task.meta["skeleton"]).values())
    _, std = standardisation(real.x, groups)
    per_feature = real.x.reshape(-1, real.x.shape[-1]).std(axis=0)
    assert (per_feature < 1e-4).any()  # the data has such channels; the encoder does not divide by them
    ctx = MetricContext(real, ref, cache_dir=tmp_path, meta=task.meta)
    fid = METRICS.create("motion_fid").prepare(ctx)
    base = fid(Evaluation(None, real, ref))
    rng = np.random.default_rng(0)
    noisy = Data(real.x + rng.normal(0, 1e-3, real.x.shape).astype(np.float32), real.y)
    assert abs(fid(Evaluation(None, noisy, ref)) - base) < 0.02 * base
    lifted = Data(real.x.copy(), real.y)
    lifted.x[:, :, groups[4]] += 0.05  # every joint position 5 cm off
    assert fid(Evaluation(None, lifted, ref)) > 1.5 * base
