"""Contract tests for the motion corrections (domain ``motion``), on windows of real Bandai clips
encoded in the canonical representation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.types import CorrectionContext, Data

load_plugins()
# motion-specific corrections; plugins registered for ``any`` data (ot-real) also accept motion
# windows and get the generic checks in test_any_domain_corrections_on_windows
NAMES = [n for n in CORRECTIONS.names("motion") if CORRECTIONS.domain(n) == "motion"]
ANY_NAMES = [n for n in CORRECTIONS.names("motion") if CORRECTIONS.domain(n) == "any"]
FPS = 30.0


@pytest.fixture(scope="module")
def windows(shared_data):
    from scloop.motion.check import clean_clips
    from scloop.motion.representation import canonical_skeleton, encode, windows

    clips = clean_clips(shared_data, n_clips=3, max_frames=90)
    feats = [windows(encode(c, fps=FPS), 40, 40) for c in clips]
    x = np.concatenate(feats).astype(np.float32)
    return Data(x, np.arange(len(x)) % 3), canonical_skeleton(clips[0].skeleton)


def _prepared(name, windows, **kw):
    data, skel = windows
    c = CORRECTIONS.create(name, **kw)
    return c.prepare(CorrectionContext(data, meta={"skeleton": skel, "fps": FPS}), rng=np.random.default_rng(0))


def test_registered():
    assert set(NAMES) == {"physics", "kinematic", "physics+kinematic"}


@pytest.mark.parametrize("gamma", [0.0, 1.0, math.inf])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_labels_determinism(name, gamma, windows):
    data, _ = windows
    c = _prepared(name, windows, gamma=gamma)
    a = c(data, model=None, rng=np.random.default_rng(1))
    b = c(data, model=None, rng=np.random.default_rng(1))
    assert a.data.x.shape == data.x.shape and a.data.x.dtype == np.float32
    assert np.array_equal(a.data.y, data.y)
    assert np.array_equal(a.data.x, b.data.x)
    assert all(math.isfinite(v) for v in a.diagnostics.values())
    if gamma == 0.0:
        assert np.array_equal(a.data.x, data.x) and a.diagnostics["fraction_changed"] == 0.0
    if math.isinf(gamma):
        assert a.diagnostics["tracking_error_cm"] < 10


@pytest.mark.parametrize("gamma", [0.0, 1.0, math.inf])
@pytest.mark.parametrize("name", ANY_NAMES)
def test_any_domain_corrections_on_windows(name, gamma, windows):
    data, _ = windows
    real = data
    synth = Data(data.x[::-1] + np.float32(0.01), data.y[::-1])  # perturbed windows, another order
    c = CORRECTIONS.create(name, gamma=gamma).prepare(CorrectionContext(real), rng=np.random.default_rng(0))
    a = c(synth, model=None, rng=np.random.default_rng(1))
    b = c(synth, model=None, rng=np.random.default_rng(1))
    assert a.data.x.shape == synth.x.shape and a.data.x.dtype == np.float32
    assert np.array_equal(a.data.y, synth.y) and np.array_equal(a.data.x, b.data.x)
    assert {"displacement", "fraction_changed"} <= set(a.diagnostics)
    if gamma == 0.0:
        assert np.array_equal(a.data.x, synth.x) and a.diagnostics["fraction_changed"] == 0.0


def test_kinematic_grounds_floating_windows(windows):
    data, _ = windows
    # raise every window 10 cm: the root-height feature is the first column
    up = Data(data.x.copy(), data.y)
    up.x[:, :, 0] += 0.10
    out = _prepared("kinematic", windows)(up, model=None, rng=np.random.default_rng(0))
    d = out.diagnostics
    assert d["floating_after"] < 0.2 * d["floating_before"]


def test_needs_a_motion_task_and_bad_options(windows):
    data, _ = windows
    with pytest.raises(ConfigError, match="motion task"):
        CORRECTIONS.create("physics").prepare(CorrectionContext(data), rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="harness"):
        CORRECTIONS.create("physics", harness=-1)
    with pytest.raises(ConfigError, match="processes"):
        CORRECTIONS.create("physics", processes=0)
    with pytest.raises(ConfigError, match="not prepared"):
        CORRECTIONS.create("kinematic")(data, model=None, rng=np.random.default_rng(0))
