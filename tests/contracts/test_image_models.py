"""Contract tests for image-domain generative models (the class-conditional DDPM, docs/paper.md §3.2).

Tiny settings throughout (a few hundred 8x8 sklearn digits, 20 diffusion steps, width-32 MLP,
a two-level UNet on a small synthetic 28x28 set) so the file runs in well under a minute on one
thread.  These check the plugin contract, not sample quality.
"""

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

TINY = dict(steps=30, timesteps=20, width=32, blocks=2, batch_size=64, lr=1e-3, device="cpu")
UNET = dict(
    denoiser="unet", channels=(8, 16), steps=2, timesteps=10, batch_size=16, sample_steps=4, device="cpu"
)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def digits() -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:300] / 16.0).astype(np.float32)[:, None]
    return Data(x, d.target[:300].astype(np.int64))


@pytest.fixture(scope="module")
def small28() -> Data:
    r = _rng(0)
    x = np.zeros((40, 1, 28, 28), dtype=np.float32)
    x[:, :, 6:22, 10:18] = r.random((40, 1, 16, 8)).astype(np.float32)
    return Data(x, np.arange(40, dtype=np.int64) % 10)


@pytest.fixture(scope="module")
def fitted(digits):
    return MODELS.create("ddpm", quantize=17, **TINY).fit(digits, rng=_rng(0))


def test_registered_as_image_model():
    assert "ddpm" in MODELS.names("image")
    assert "ddpm" not in MODELS.names("vector")
    opts = MODELS.options("ddpm")
    for key in ("denoiser", "timesteps", "schedule", "guidance", "p_uncond", "sampler", "quantize", "device"):
        assert key in opts
    assert isinstance(MODELS.create("ddpm"), GenerativeModel)


def test_fit_and_sample_shapes(fitted):
    out = fitted.sample(23, rng=_rng(1))
    assert out.x.shape == (23, 1, 8, 8) and out.x.dtype == np.float32
    assert out.y.dtype == np.int64
    np.testing.assert_array_equal(out.y, np.arange(23) % 10)  # labels cycle 0..9
    assert out.x.min() >= 0.0 and out.x.max() <= 1.0
    assert fitted.denoiser_ == "mlp" and fitted.n_params_ > 0 and fitted.train_steps_ == 30


def test_quantisation_levels(fitted):
    x = fitted.sample(20, rng=_rng(2)).x
    k = x * 16
    np.testing.assert_allclose(k, np.round(k), atol=1e-5)
    raw = copy.deepcopy(fitted)
    raw.quantize = None
    assert not np.allclose(raw.sample(20, rng=_rng(2)).x * 16 % 1, 0)


def test_conditions_are_honoured(fitted):
    cond = np.array([3, 3, 7, 0, 9], dtype=np.int64)
    out = fitted.sample(5, rng=_rng(3), conditions=cond)
    np.testing.assert_array_equal(out.y, cond)
    other = fitted.sample(5, rng=_rng(3), conditions=np.array([1, 1, 1, 1, 1]))
    assert not np.array_equal(out.x, other.x)  # the label reaches the network
    with pytest.raises(ValueError):
        fitted.sample(3, rng=_rng(3), conditions=np.array([1, 2]))
    with pytest.raises(ValueError):
        fitted.sample(1, rng=_rng(3), conditions=np.array([10]))


def test_sample_zero(fitted):
    out = fitted.sample(0, rng=_rng(4))
    assert out.x.shape == (0, 1, 8, 8) and out.x.dtype == np.float32 and out.y.shape == (0,)


def test_determinism(digits, fitted):
    again = MODELS.create("ddpm", quantize=17, **TINY).fit(digits, rng=_rng(0))
    assert _same_state(fitted.state_dict(), again.state_dict())
    np.testing.assert_array_equal(fitted.sample(12, rng=_rng(5)).x, again.sample(12, rng=_rng(5)).x)
    assert not np.array_equal(fitted.sample(12, rng=_rng(5)).x, fitted.sample(12, rng=_rng(6)).x)
    other = MODELS.create("ddpm", quantize=17, **TINY).fit(digits, rng=_rng(1))
    assert not np.array_equal(fitted.state_dict()["net/inp.weight"], other.state_dict()["net/inp.weight"])


def test_chunked_sampling_matches_shapes(fitted):
    m = copy.deepcopy(fitted)
    m.sample_batch = 4
    out = m.sample(10, rng=_rng(7))
    assert out.x.shape == (10, 1, 8, 8)
    np.testing.assert_array_equal(out.y, np.arange(10) % 10)


def test_state_dict_round_trip(tmp_path, digits, fitted):
    state = fitted.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for v in state.values())
    assert any(k.startswith("opt/") and k.endswith("/exp_avg_sq") for k in state)
    np.savez(tmp_path / "ckpt.npz", **state)
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        loaded = MODELS.create("ddpm", quantize=17, **TINY).load_state_dict(dict(f))
    assert _same_state(state, loaded.state_dict())
    np.testing.assert_array_equal(fitted.sample(8, rng=_rng(8)).x, loaded.sample(8, rng=_rng(8)).x)
    original = copy.deepcopy(fitted)
    original.update(digits, rng=_rng(9))
    loaded.update(digits, rng=_rng(9))  # continues the restored Adam moments
    assert _same_state(original.state_dict(), loaded.state_dict())


def test_deepcopy_is_independent(digits, fitted):
    before = fitted.state_dict()
    twin = copy.deepcopy(fitted)
    assert twin.opt_.param_groups[0]["params"][0] is next(twin.net_.parameters())
    twin.update(digits, rng=_rng(10))
    assert _same_state(before, fitted.state_dict())
    assert not _same_state(before, twin.state_dict())


def test_update_keeps_or_resets_adam(digits):
    keep = MODELS.create("ddpm", **TINY, finetune_lr=1e-3).fit(digits, rng=_rng(0))
    reset = copy.deepcopy(keep)
    reset.finetune_optimizer = "reset"
    keep.update(digits, rng=_rng(1))
    reset.update(digits, rng=_rng(1))
    per_epoch = int(np.ceil(len(digits) / TINY["batch_size"]))
    assert keep.last_train_steps_ == per_epoch and keep.train_steps_ == 30 + per_epoch
    assert float(keep.state_dict()["opt/inp.weight/step"]) == 30 + per_epoch
    assert float(reset.state_dict()["opt/inp.weight/step"]) == per_epoch
    assert keep.last_lr_ == 1e-3


def test_learning_rate_schedules(digits):
    m = MODELS.create("ddpm", **{**TINY, "steps": None, "epochs": 2}).fit(digits, rng=_rng(0))
    assert m.train_steps_ == 2 * int(np.ceil(len(digits) / TINY["batch_size"]))
    assert m.last_lr_ == pytest.approx(1e-3 * (1 - 1 / 2))  # lr (1 - ep/epochs) at the last epoch
    assert m.finetune_rate() == pytest.approx(1e-3 / (20 * 2))  # lr / (lr_divisor * epochs)
    m.update(digits, rng=_rng(1))
    assert m.last_lr_ == pytest.approx(1e-3 / 40)


def test_update_and_sample_need_fit(digits):
    m = MODELS.create("ddpm", **TINY)
    with pytest.raises(RuntimeError, match="not fitted"):
        m.update(digits, rng=_rng(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        m.sample(3, rng=_rng(0))


def test_nan_network_is_degenerate(fitted):
    import torch

    broken = copy.deepcopy(fitted)
    with torch.no_grad():
        broken.net_.out.bias.fill_(float("nan"))
    with pytest.raises(Degenerate):
        broken.sample(4, rng=_rng(0))


def test_fit_rejects_unlabelled_data(digits):
    with pytest.raises(ValueError, match="labels"):
        MODELS.create("ddpm", **TINY).fit(Data(digits.x), rng=_rng(0))


@pytest.mark.parametrize(
    "options",
    [
        {"denoiser": "transformer"},
        {"guidance": -0.5},
        {"schedule": "sigmoid"},
        {"sampler": "euler"},
        {"timesteps": 1},
        {"p_uncond": 1.5},
        {"quantize": 1},
        {"channels": []},
        {"finetune_optimizer": "sgd"},
        {"lr_decay": "cosine"},
        {"device": "tpu"},
        {"sample_steps": 500},
    ],
)
def test_bad_options_raise(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        MODELS.create("ddpm", **options)


def test_unet_path(small28):
    m = MODELS.create("ddpm", sampler="ddim", quantize=256, **UNET).fit(small28, rng=_rng(0))
    assert m.denoiser_ == "unet"
    out = m.sample(6, rng=_rng(1))
    assert out.x.shape == (6, 1, 28, 28) and out.x.dtype == np.float32
    assert out.x.min() >= 0 and out.x.max() <= 1
    np.testing.assert_allclose(out.x * 255, np.round(out.x * 255), atol=1e-4)
    again = MODELS.create("ddpm", sampler="ddim", quantize=256, **UNET).fit(small28, rng=_rng(0))
    np.testing.assert_array_equal(out.x, again.sample(6, rng=_rng(1)).x)
    loaded = MODELS.create("ddpm", sampler="ddim", quantize=256, **UNET).load_state_dict(m.state_dict())
    np.testing.assert_array_equal(out.x, loaded.sample(6, rng=_rng(1)).x)


def test_unet_pads_sizes_it_cannot_halve(small28):
    # Three halvings need a multiple of 8: 28x28 is padded to 32x32 inside and cropped back.
    m = MODELS.create("ddpm", **{**UNET, "channels": (8, 8, 8, 8), "sampler": "ddpm"}).fit(small28, rng=_rng(0))
    assert m.net_.pad_h == 4
    assert m.sample(3, rng=_rng(2)).x.shape == (3, 1, 28, 28)


def test_auto_picks_unet_for_large_images(small28, digits):
    m = MODELS.create("ddpm", **{**UNET, "denoiser": "auto"}).fit(small28, rng=_rng(0))
    assert m.denoiser_ == "unet"


def test_short_training_reduces_denoising_loss(digits):
    """Sanity: 300 Adam steps bring the epsilon-prediction loss well below its value at init."""
    opts = {**TINY, "width": 64, "steps": 300, "timesteps": 50}
    init = MODELS.create("ddpm", **{**opts, "steps": 0}).fit(digits, rng=_rng(0))
    trained = MODELS.create("ddpm", **opts).fit(digits, rng=_rng(0))
    before = init.denoising_loss(digits, rng=_rng(1), repeats=4)
    after = trained.denoising_loss(digits, rng=_rng(1), repeats=4)
    assert after < 0.8 * before
    assert trained.last_train_loss_ < trained.first_train_loss_


# ---------------------------------------------------------------------- the shared diffusion base


def _vector_model(prediction: str):
    """A minimal third model on the shared base: 2-D points (n, 2), two classes, the residual MLP,
    AMSGrad Adam -- the hooks a new diffusion model has to provide, nothing more."""
    import torch

    from scloop.models.denoisers import ResidualMLP
    from scloop.models.diffusion import ConditionalDiffusion

    class Vector(ConditionalDiffusion):
        NAME = "Vector"
        PREDICTION = prediction

        def __init__(self):
            self.__dict__.update(device="cpu", timesteps=10, schedule="cosine", beta_start=1e-4, beta_end=0.02,
                                 p_uncond=0.2, guidance=1.0, steps=5, batch_size=16, lr=1e-2, lr_decay="linear",
                                 finetune_steps=2, finetune_optimizer="keep", sampler="ddim", sample_steps=4,
                                 sample_batch=3)
            self.n_classes_ = 2

        def _make_net(self):
            return ResidualMLP(self.shape_, self.n_classes_, width=16, blocks=1)

        def _new_optimizer(self, lr):
            return torch.optim.Adam(self.net_.parameters(), lr=lr, amsgrad=True)

        def finetune_rate(self):
            return self.lr / 10

        def _prepare(self, data, who):
            if who == "fit":
                self.shape_ = tuple(data.x.shape[1:])
            return torch.as_tensor(data.x), torch.as_tensor(data.y), None

    return Vector()


@pytest.fixture(scope="module")
def points() -> Data:
    r = _rng(0)
    y = np.arange(40, dtype=np.int64) % 2
    return Data((r.normal(size=(40, 2)) + 3 * y[:, None]).astype(np.float32), y)


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_shared_base_serves_a_new_model(points, prediction):
    m = _vector_model(prediction).fit(points, rng=_rng(0))
    assert m.train_steps_ == 5 and m.last_lr_ == pytest.approx(1e-2 * (1 - 4 / 5))  # lr (1 - s/steps)
    out = m.sample(7, rng=_rng(1))
    assert out.x.shape == (7, 2) and out.x.dtype == np.float32 and np.isfinite(out.x).all()
    np.testing.assert_array_equal(out.y, np.arange(7) % 2)
    np.testing.assert_array_equal(out.x, m.sample(7, rng=_rng(1)).x)  # 3 chunks, one generator
    again = _vector_model(prediction).fit(points, rng=_rng(0))
    assert _same_state(m.state_dict(), again.state_dict())
    # resume: a model restored from its state continues (AMSGrad's max moments included) exactly
    loaded = _vector_model(prediction).load_state_dict(m.state_dict())
    assert any(k.endswith("/max_exp_avg_sq") for k in m.state_dict())
    m.update(points, rng=_rng(2))
    loaded.update(points, rng=_rng(2))
    assert m.last_lr_ == 1e-3 and m.train_steps_ == 7
    assert _same_state(m.state_dict(), loaded.state_dict())
    np.testing.assert_array_equal(m.sample(4, rng=_rng(3)).x, loaded.sample(4, rng=_rng(3)).x)
    assert np.isfinite(m.denoising_loss(points, rng=_rng(4)))


def test_registered_models_share_the_base():
    from scloop.models.diffusion import ConditionalDiffusion
    from scloop.models.mdm import CACHE_VERSION

    for name in ("ddpm", "mdm"):
        assert isinstance(MODELS.create(name), ConditionalDiffusion)
    # generation-0 caches are keyed by the factory's cache_version: the DDPM declares none
    assert getattr(MODELS.get("ddpm"), "cache_version", None) is None
    assert MODELS.get("mdm").cache_version == CACHE_VERSION == "mdm-2"
