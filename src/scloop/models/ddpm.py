"""Class-conditional DDPM with classifier-free guidance (docs/paper.md §3.2, the MNIST loop's model).

Forward process (Ho et al. 2020) with cumulative signal rate abar_t = prod_{s<=t} (1 - beta_s):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,        eps ~ N(0, I),  t ~ U{0, ..., T-1}.

Training minimises the epsilon-prediction loss with condition dropout (classifier-free guidance
training, Ho & Salimans 2022): with probability ``p_uncond`` the label c is replaced by the null
class ``n_classes``,

    L(theta) = E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c) ||^2.

Sampling runs diffusers' ancestral ``DDPMScheduler`` (or ``DDIMScheduler``) with the guided noise

    eps = (1 + w) eps_theta(x_t, t, c) - w eps_theta(x_t, t, null),

computed in one forward pass over a batch of 2B (conditional half, unconditional half).  With
``clip_sample`` the scheduler clips its x_0 estimate to [-1, 1] at every step; a digits probe
found that without it an 8x8 MLP DDPM produces saturated noise.

Paper settings (docs/paper.md §3.2): n_T = 400, linear betas 1e-4 -> 0.02, p_uncond 0.1, w = 0.5,
labels cycling 0..9; generation 0: 20 epochs, batch 256, Adam lr 1e-4 with linear decay
``lr (1 - ep/epochs)``; later generations: 1 epoch at constant ``lr / (lr_divisor * epochs)`` with the
same Adam object.  The defaults below follow the paper's training recipe but use T = 200 with a
cosine schedule (a linear 1e-4 -> 0.02 schedule with only 200 steps leaves abar_T ~ 0.13, i.e.
x_T is not pure noise); presets choose the paper's or the probe's values explicitly.

Data convention: images ``(n, C, H, W)`` float32 in [0, 1], labels int64 ``(n,)``.  The network
works in [-1, 1] (``2 x - 1``).  The training loop, sampler, checkpoints and option checks are
shared with the motion model (:mod:`scloop.models.diffusion`); this module holds the image-specific
parts: the denoiser, the [0, 1] <-> [-1, 1] mapping, quantisation and the epoch-based budgets.
Torch and diffusers are imported inside methods only.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from scloop.core.registry import MODELS, ConfigError
from scloop.core.types import Data, Degenerate
from scloop.models.diffusion import ConditionalDiffusion, _check_process, _check_sampler, _choice, _factory, _int, _number
from scloop.nets import DEVICES

if TYPE_CHECKING:  # pragma: no cover
    import torch

DENOISERS = ("auto", "mlp", "unet")
SAMPLERS = ("ddpm", "ddim")
LR_DECAYS = ("linear", "constant")
FINETUNE_OPTIMIZERS = ("keep", "reset")
# "auto" picks the MLP up to this many pixels per image (8x8 digits), the UNet above (MNIST).
MLP_MAX_PIXELS = 256


class DDPMModel(ConditionalDiffusion):
    """Class-conditional epsilon-prediction DDPM (see the module docstring for the equations).

    Constructor arguments are the factory options of ``make_ddpm`` (stored unchanged).  Learned
    state: ``net_`` (the denoiser, a ``torch.nn.Module``), ``opt_`` (Adam), ``shape_`` (C, H, W),
    ``denoiser_`` (resolved kind), plus the diagnostics of :class:`ConditionalDiffusion`
    (``n_params_``, ``train_steps_``, ``last_train_loss_``, ...).
    """

    NAME = "DDPM"
    PREDICTION = "epsilon"

    def __init__(
        self,
        *,
        denoiser: str = "auto",
        n_classes: int = 10,
        timesteps: int = 200,
        schedule: str = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        p_uncond: float = 0.1,
        guidance: float = 0.5,
        clip_sample: bool = True,
        width: int = 256,
        blocks: int = 3,
        channels: Sequence[int] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = True,
        epochs: int = 20,
        steps: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-4,
        lr_decay: str = "linear",
        finetune_epochs: int = 1,
        finetune_steps: int | None = None,
        finetune_lr: float | None = None,
        lr_divisor: float = 20.0,
        finetune_optimizer: str = "keep",
        sampler: str = "ddpm",
        sample_steps: int | None = None,
        sample_batch: int = 512,
        quantize: int | None = None,
        device: str = "auto",
    ) -> None:
        self.denoiser = denoiser
        self.n_classes = n_classes
        self.timesteps = timesteps
        self.schedule = schedule
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.p_uncond = p_uncond
        self.guidance = guidance
        self.clip_sample = clip_sample
        self.width = width
        self.blocks = blocks
        self.channels = tuple(channels)
        self.layers_per_block = layers_per_block
        self.attention = attention
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.finetune_epochs = finetune_epochs
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self.lr_divisor = lr_divisor
        self.finetune_optimizer = finetune_optimizer
        self.sampler = sampler
        self.sample_steps = sample_steps
        self.sample_batch = sample_batch
        self.quantize = quantize
        self.device = device

    # ------------------------------------------------------------------ model-specific parts

    @property
    def n_classes_(self) -> int:
        """The number of classes (fixed by the options); the null class of guidance is this index."""
        return self.n_classes

    def _kind(self, shape: tuple[int, int, int]) -> str:
        if self.denoiser != "auto":
            return self.denoiser
        return "mlp" if shape[1] * shape[2] <= MLP_MAX_PIXELS else "unet"

    def _make_net(self) -> "torch.nn.Module":
        from scloop.models.denoisers import ResidualMLP, UNet

        kind = self._kind(self.shape_)
        self.denoiser_ = kind
        if kind == "mlp":
            return ResidualMLP(self.shape_, self.n_classes, width=self.width, blocks=self.blocks)
        return UNet(self.shape_, self.n_classes, channels=self.channels, layers_per_block=self.layers_per_block,
                    attention=self.attention)

    def _new_optimizer(self, lr: float) -> "torch.optim.Optimizer":
        import torch

        return torch.optim.Adam(self.net_.parameters(), lr=lr)

    def _clip_sample(self) -> bool:
        return self.clip_sample

    def _budget(self, finetune: bool) -> tuple[int | None, int | None]:
        """Generation 0: ``steps`` (wins) or ``epochs``; fine-tuning: ``finetune_steps`` or
        ``finetune_epochs``.  With epochs, ``lr_decay="linear"`` decays per epoch (the official
        MNIST loop)."""
        if finetune:
            return self.finetune_steps, self.finetune_epochs
        return self.steps, self.epochs

    def finetune_rate(self) -> float:
        """Fine-tuning learning rate: ``finetune_lr``, else ``lr / (lr_divisor * epochs)``
        (docs/paper.md §3.2: 1e-4 / (20 * 20) = 2.5e-7)."""
        if self.finetune_lr is not None:
            return float(self.finetune_lr)
        return float(self.lr) / (float(self.lr_divisor) * self.epochs)

    def _prepare(self, data: Data, who: str) -> tuple["torch.Tensor", "torch.Tensor", None]:
        """Images in [0, 1] -> (x0 in [-1, 1] (n, C, H, W) float32, labels (n,) int64, None) on the
        device; ``fit`` takes ``shape_`` from them, ``update`` checks it."""
        import torch

        x = np.asarray(data.x)
        if x.ndim != 4:
            raise ValueError(f"DDPMModel.{who}: expected images of shape (n, C, H, W), got {x.shape}")
        if len(x) == 0:
            raise Degenerate(f"DDPMModel.{who}: no training images")
        if data.y is None:
            raise ValueError(f"DDPMModel.{who}: a class-conditional DDPM needs labels (Data.y)")
        y = np.asarray(data.y).astype(np.int64)
        if y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"DDPMModel.{who}: labels must lie in 0..{self.n_classes - 1}, got {y.min()}..{y.max()}")
        if not np.all(np.isfinite(x)):
            raise Degenerate(f"DDPMModel.{who}: training images contain NaN/inf")
        if who == "fit":
            self.shape_ = tuple(int(s) for s in x.shape[1:])
        elif who == "update" and tuple(x.shape[1:]) != tuple(self.shape_):
            raise ValueError(f"DDPMModel.update: images of shape {tuple(x.shape[1:])}, model fitted on {self.shape_}")
        dev = self._device()
        x0 = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) * 2 - 1
        return x0, torch.as_tensor(y, device=dev), None

    def _to_data(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [0, 1] float32; with ``quantize = L`` pixels rounded to ``k / (L - 1)``."""
        x = np.clip((x + 1) / 2, 0.0, 1.0).astype(np.float32)
        if self.quantize is not None:
            levels = self.quantize - 1
            x = (np.round(x * levels) / levels).astype(np.float32)
        return x


# ---------------------------------------------------------------------- factory


def _validated(o: dict[str, Any]) -> dict[str, Any]:
    """Check every option (ConfigError naming ``model.<option>``) and coerce numbers."""
    _choice("denoiser", o["denoiser"], DENOISERS)
    _int("n_classes", o["n_classes"], 1)
    _check_process(o)
    if not isinstance(o["clip_sample"], bool):
        raise ConfigError(f"model.clip_sample: got {o['clip_sample']!r}; allowed: true, false")
    _int("width", o["width"], 1)
    _int("blocks", o["blocks"], 0)
    channels = o["channels"]
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise ConfigError(f"model.channels: got {channels!r}; allowed: a non-empty list of integers >= 1")
    for c in channels:
        _int("channels", c, 1)
    _int("layers_per_block", o["layers_per_block"], 1)
    if not isinstance(o["attention"], bool):
        raise ConfigError(f"model.attention: got {o['attention']!r}; allowed: true, false")
    _int("epochs", o["epochs"], 1)
    _int("steps", o["steps"], 0, optional=True)
    _int("batch_size", o["batch_size"], 1)
    _number("lr", o["lr"], strict=True)
    _choice("lr_decay", o["lr_decay"], LR_DECAYS)
    _int("finetune_epochs", o["finetune_epochs"], 0)
    _int("finetune_steps", o["finetune_steps"], 0, optional=True)
    if o["finetune_lr"] is not None:
        _number("finetune_lr", o["finetune_lr"])
    _number("lr_divisor", o["lr_divisor"], strict=True)
    _choice("finetune_optimizer", o["finetune_optimizer"], FINETUNE_OPTIMIZERS)
    _check_sampler(o, SAMPLERS)
    _int("sample_batch", o["sample_batch"], 1)
    _int("quantize", o["quantize"], 2, optional=True)
    _choice("device", o["device"], DEVICES)
    o = dict(o)
    for k in ("n_classes", "timesteps", "width", "blocks", "layers_per_block", "epochs", "batch_size",
              "finetune_epochs", "sample_batch"):
        o[k] = int(o[k])
    for k in ("steps", "finetune_steps", "sample_steps", "quantize"):
        o[k] = None if o[k] is None else int(o[k])
    for k in ("beta_start", "beta_end", "p_uncond", "guidance", "lr", "lr_divisor"):
        o[k] = float(o[k])
    o["finetune_lr"] = None if o["finetune_lr"] is None else float(o["finetune_lr"])
    o["channels"] = tuple(int(c) for c in o["channels"])
    return o


@MODELS.register("ddpm", domain="image")
def make_ddpm(**options: Any) -> DDPMModel:
    """Class-conditional DDPM (docs/paper.md §3.2).

    Network: ``denoiser`` auto (MLP for <= 256 pixels, else UNet) | mlp (``width``, ``blocks``) |
    unet (``channels`` per level, ``layers_per_block``, ``attention``).  Diffusion: ``timesteps``,
    ``schedule`` linear (``beta_start`` -> ``beta_end``) | cosine, ``p_uncond``, ``guidance`` w,
    ``clip_sample``.  Generation 0: ``steps`` (wins) or ``epochs``, ``batch_size``, ``lr``,
    ``lr_decay``.  Fine-tuning: ``finetune_steps`` (wins) or ``finetune_epochs``, ``finetune_lr``
    (None -> lr / (lr_divisor * epochs)), ``finetune_optimizer`` keep | reset.  Sampling:
    ``sampler`` ddpm | ddim, ``sample_steps`` (None -> timesteps for ddpm, 50 for ddim),
    ``sample_batch``, ``quantize`` (None or number of grey levels).
    """
    return _factory(DDPMModel, _validated, options)


# the registry reads the accepted options (and their defaults) from the signature: they are
# DDPMModel's keyword arguments, listed once
make_ddpm.__signature__ = inspect.signature(DDPMModel).replace(return_annotation="DDPMModel")  # type: ignore[attr-defined]
