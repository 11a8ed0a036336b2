"""Contract tests for the motion-domain generative models (every name in ``MODELS.names("motion")``:
the MDM-style motion diffusion, docs/paper.md §3.3), plus the MDM's own pieces: samplers, the
standardisation, and the kinematics behind its geometric losses.

Tiny settings (a width-16 one-layer transformer, 20 diffusion steps, a few optimiser steps) on
synthetic windows of the representation's shape, so the contract part runs in seconds; the
kinematics tests use real Bandai windows (``shared_data``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from scloop.core.registry import MODELS, ConfigError  # noqa: E402
from scloop.plugins import load_plugins  # noqa: E402
from scloop.core.types import Data, Degenerate, GenerativeModel  # noqa: E402

load_plugins()
NAMES = MODELS.names("motion")
TINY = dict(latent=16, layers=1, heads=2, ff_size=32, timesteps=20, steps=6, finetune_steps=3, batch_size=8,
            lr=1e-3, sampler="ddim", sample_steps=4, device="cpu")
T, F = 12, 197  # Bandai: 21 joints, 4 contact channels


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _make(name: str, **kw):
    return MODELS.create(name, **{**TINY, **kw})


@pytest.fixture(scope="module")
def windows() -> Data:
    r = _rng(0)
    x = (r.normal(size=(24, T, F)) * np.linspace(0.1, 2.0, F) + np.linspace(-1, 1, F)).astype(np.float32)
    return Data(x, np.arange(24, dtype=np.int64) % 3)


@pytest.fixture(scope="module", params=NAMES)
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def fitted(name, windows):
    return _make(name).fit(windows, rng=_rng(0))


def test_mdm_registered_as_motion_model():
    assert "mdm" in NAMES
    assert "mdm" not in MODELS.names("vector") and "mdm" not in MODELS.names("image")
    opts = MODELS.options("mdm")
    for key in ("latent", "layers", "heads", "timesteps", "schedule", "guidance", "p_uncond", "steps",
                "finetune_steps", "finetune_optimizer", "sampler", "sample_steps", "sample_batch", "device",
                "lambda_pos", "lambda_vel", "lambda_foot"):
        assert key in opts
    assert isinstance(MODELS.create("mdm"), GenerativeModel)


def test_fit_and_sample_shapes(name, fitted):
    out = fitted.sample(7, rng=_rng(1))
    assert out.x.shape == (7, T, F) and out.x.dtype == np.float32 and np.isfinite(out.x).all()
    np.testing.assert_array_equal(out.y, np.arange(7) % 3)  # n_classes from the data, balanced
    assert fitted.n_params_ > 0 and fitted.train_steps_ == TINY["steps"]
    zero = fitted.sample(0, rng=_rng(1))
    assert zero.x.shape == (0, T, F) and zero.y.shape == (0,)


def test_conditions_are_honoured(fitted):
    cond = np.array([2, 2, 0, 1], dtype=np.int64)
    out = fitted.sample(4, rng=_rng(3), conditions=cond)
    np.testing.assert_array_equal(out.y, cond)
    other = fitted.sample(4, rng=_rng(3), conditions=np.array([1, 1, 1, 1]))
    assert not np.array_equal(out.x, other.x)  # the label reaches the network
    with pytest.raises(ValueError):
        fitted.sample(3, rng=_rng(3), conditions=np.array([1, 2]))
    with pytest.raises(ValueError):
        fitted.sample(1, rng=_rng(3), conditions=np.array([3]))


def test_determinism(name, windows, fitted):
    again = _make(name).fit(windows, rng=_rng(0))
    assert _same_state(fitted.state_dict(), again.state_dict())  # dropout and noise from rng only
    np.testing.assert_array_equal(fitted.sample(5, rng=_rng(5)).x, again.sample(5, rng=_rng(5)).x)
    assert not np.array_equal(fitted.sample(5, rng=_rng(5)).x, fitted.sample(5, rng=_rng(6)).x)
    other = _make(name).fit(windows, rng=_rng(1))
    assert not _same_state(fitted.state_dict(), other.state_dict())


def test_chunked_sampling_is_the_same_distribution_call(fitted):
    m = copy.deepcopy(fitted)
    m.sample_batch = 2
    out = m.sample(5, rng=_rng(7))
    assert out.x.shape == (5, T, F)
    np.testing.assert_array_equal(out.y, np.arange(5) % 3)


def test_state_dict_round_trip(tmp_path, name, windows, fitted):
    state = fitted.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for v in state.values())
    np.savez(tmp_path / "ckpt.npz", **state)
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        loaded = _make(name).load_state_dict(dict(f))
    assert _same_state(state, loaded.state_dict())
    np.testing.assert_array_equal(fitted.sample(4, rng=_rng(8)).x, loaded.sample(4, rng=_rng(8)).x)
    original = copy.deepcopy(fitted)
    original.update(windows, rng=_rng(9))
    loaded.update(windows, rng=_rng(9))
    assert _same_state(original.state_dict(), loaded.state_dict())


def test_deepcopy_is_independent(windows, fitted):
    before = fitted.state_dict()
    twin = copy.deepcopy(fitted)
    twin.update(windows, rng=_rng(10))
    assert _same_state(before, fitted.state_dict())
    assert not _same_state(before, twin.state_dict())


def test_update_resets_or_keeps_adamw(windows):
    reset = _make("mdm").fit(windows, rng=_rng(0))
    keep = copy.deepcopy(reset)
    keep.finetune_optimizer = "keep"
    reset.update(windows, rng=_rng(1))
    keep.update(windows, rng=_rng(1))
    key = "opt/inp.weight/step"
    assert float(reset.state_dict()[key]) == TINY["finetune_steps"]  # fresh AdamW (the paper)
    assert float(keep.state_dict()[key]) == TINY["steps"] + TINY["finetune_steps"]
    assert reset.train_steps_ == keep.train_steps_ == TINY["steps"] + TINY["finetune_steps"]
    assert reset.last_lr_ == TINY["lr"]
    m = copy.deepcopy(reset)
    m.finetune_lr = 1e-5
    m.update(windows, rng=_rng(2))
    assert m.last_lr_ == 1e-5


def test_standardisation_is_kept_from_generation_0(windows):
    m = _make("mdm").fit(windows, rng=_rng(0))
    mean = m.mean_.copy()
    np.testing.assert_allclose(mean, windows.x.reshape(-1, F).mean(0), rtol=1e-5, atol=1e-5)
    shifted = Data(windows.x + 5.0, windows.y)
    m.update(shifted, rng=_rng(1))
    np.testing.assert_array_equal(m.mean_, mean)
    with pytest.raises(ValueError, match="shape"):
        m.update(Data(windows.x[:, :5], windows.y), rng=_rng(1))


def test_standardisation_groups(windows):
    """Default: one std per feature group (HumanML3D convention); ``feature``: each feature's own
    std floored at 1e-3 (the old behaviour)."""
    from scloop.nets.motion_denoiser import layout_from_features

    x = windows.x.copy()
    x[:, :, 10] = 0.25  # a constant rotation entry, as an exact hinge joint has
    data = Data(x, windows.y)
    sd = x.reshape(-1, F).std(0)
    g = _make("mdm").fit(data, rng=_rng(0))
    for sl in layout_from_features(F).values():
        np.testing.assert_allclose(g.std_[sl], sd[sl].mean(), rtol=1e-5)
    assert g.std_[10] > 0.5  # the constant channel is not blown up
    f = _make("mdm", standardise="feature").fit(data, rng=_rng(0))
    np.testing.assert_allclose(f.std_, np.maximum(sd, 1e-3), rtol=1e-5)
    assert f.std_[10] == pytest.approx(1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_samplers_and_guidance(windows, sampler):
    m = _make("mdm", sampler=sampler, sample_steps=5 if sampler != "ddpm" else None, guidance=1.5)
    m.fit(windows, rng=_rng(0))
    out = m.sample(3, rng=_rng(1))
    assert out.x.shape == (3, T, F) and np.isfinite(out.x).all()
    np.testing.assert_array_equal(out.x, m.sample(3, rng=_rng(1)).x)


def test_update_and_sample_need_fit(windows):
    m = _make("mdm")
    with pytest.raises(RuntimeError, match="not fitted"):
        m.update(windows, rng=_rng(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        m.sample(2, rng=_rng(0))


def test_nan_network_is_degenerate(fitted):
    import torch

    broken = copy.deepcopy(fitted)
    with torch.no_grad():
        broken.net_.out.bias.fill_(float("nan"))
    with pytest.raises(Degenerate):
        broken.sample(2, rng=_rng(0))


def test_fit_rejects_bad_data(windows):
    with pytest.raises(ValueError, match="labels"):
        _make("mdm").fit(Data(windows.x), rng=_rng(0))
    with pytest.raises(ValueError, match=r"\(n, T, F\)"):
        _make("mdm").fit(Data(windows.x[:, 0], windows.y), rng=_rng(0))
    with pytest.raises(ValueError, match="labels must lie"):
        _make("mdm", n_classes=2).fit(windows, rng=_rng(0))


@pytest.mark.parametrize(
    "options",
    [{"heads": 3}, {"guidance": -1.0}, {"schedule": "sigmoid"}, {"sampler": "euler"}, {"timesteps": 1},
     {"p_uncond": 1.5}, {"finetune_optimizer": "sgd"}, {"lr_decay": "cosine"}, {"device": "tpu"},
     {"sample_steps": 5000}, {"lambda_foot": -1}, {"latent": 0}, {"dropout": 1.0}, {"standardise": "zscore"}],
)
def test_bad_options_raise(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        MODELS.create("mdm", **options)


def test_training_reduces_denoising_loss(windows):
    opts = {**TINY, "latent": 32, "steps": 150, "dropout": 0.0}
    init = MODELS.create("mdm", **{**opts, "steps": 0}).fit(windows, rng=_rng(0))
    trained = MODELS.create("mdm", **opts).fit(windows, rng=_rng(0))
    before = init.denoising_loss(windows, rng=_rng(1), repeats=2)
    assert trained.denoising_loss(windows, rng=_rng(1), repeats=2) < 0.8 * before


# ---------------------------------------------------------------------- kinematics (real windows)


@pytest.fixture(scope="module")
def bandai(shared_data):
    from scloop.core.registry import TASKS

    # 8 short-listed clips keep the BVH parsing under a second
    task = TASKS.create("bandai", data_dir=str(shared_data), contents=("walk", "wave-both-hands"),
                        styles=("normal", "happy"))
    return task, task.real_data(32)


def test_inferred_kinematics_match_the_skeleton(bandai):
    from scloop.nets.motion_denoiser import infer_kinematics

    task, data = bandai
    skel = task.meta["skeleton"]
    kin = infer_kinematics(data.x, fps=task.meta["fps"])
    np.testing.assert_array_equal(kin.parents, skel.parents)
    np.testing.assert_allclose(kin.offsets[1:], np.asarray(skel.offsets)[1:], atol=1e-5)
    assert list(kin.feet) == skel.foot_joints()
    assert kin.residual < 1e-4


def test_torch_fk_and_foot_displacement_reproduce_the_representation(bandai):
    import torch

    from scloop.motion.representation import decode
    from scloop.nets.motion_denoiser import fk_positions, foot_displacement, infer_kinematics, layout_from_features

    task, data = bandai
    fps, skel = task.meta["fps"], task.meta["skeleton"]
    kin = infer_kinematics(data.x, fps=fps)
    lay = layout_from_features(data.x.shape[-1])
    x = torch.as_tensor(data.x[:4], dtype=torch.float64)
    P = fk_positions(x, kin, lay)
    np.testing.assert_allclose(P.numpy().reshape(4, -1, 63), data.x[:4, :, lay["positions"]], atol=1e-4)
    d = foot_displacement(x, P, kin, lay, fps).numpy()  # (4, T, n_feet, 3)
    world = decode(data.x[0], skel, fps=fps).positions()[:, skel.foot_joints()]
    step = np.linalg.norm(np.diff(world, axis=0), axis=-1)
    np.testing.assert_allclose(np.linalg.norm(d[0, :-1], axis=-1), step, atol=1e-4)


def test_geometric_losses_train_and_round_trip(bandai):
    _, data = bandai
    opts = {**TINY, "steps": 3, "lambda_pos": 1.0, "lambda_vel": 1.0, "lambda_foot": 1.0, "fps": 20.0}
    m = MODELS.create("mdm", **opts).fit(data, rng=_rng(0))
    assert np.isfinite(m.last_train_loss_) and m.kin_.residual < 1e-4
    plain = MODELS.create("mdm", **TINY).fit(data, rng=_rng(0))
    assert m.first_train_loss_ > plain.first_train_loss_  # the geometric terms add to the loss
    loaded = MODELS.create("mdm", **opts).load_state_dict(m.state_dict())
    np.testing.assert_array_equal(loaded.kin_.parents, m.kin_.parents)
    a, b = copy.deepcopy(m), loaded
    a.update(data, rng=_rng(1))
    b.update(data, rng=_rng(1))
    assert _same_state(a.state_dict(), b.state_dict())
