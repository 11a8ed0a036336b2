"""MDM-style motion diffusion model (docs/paper.md §3.3: Tevet et al. 2023, the paper's motion model).

Data: windows ``(n, T, F)`` float32 of the canonical motion representation
(:mod:`scloop.motion.representation`), labels ``y`` (n,) int (the task's condition: the action).
The model standardises the features with the per-feature mean and, with ``standardise: group``
(default), the per-*group* std of the data it is first fitted on (generation 0, real data) and keeps
them for every later generation: every feature of a group of the representation (root height, root
velocity, yaw rate, rotations, positions, contacts) is divided by the group's mean std, as in the
HumanML3D Mean/Std files MDM trains with (MDM recomputes them on its training subset).
``standardise: feature`` divides by each feature's own std, floored at 1e-3 -- which makes the
near-constant channels of exact hinge joints (std 0 - 0.01 on Bandai) the loudest ones: a
physics-corrected window's 0.1-degree elbow wobble then carried 90 % of its frame-to-frame
variance in the model's units (docs/motion.md, "Standardisation").

Diffusion: ``timesteps`` steps (paper 1,000), ``schedule`` cosine (paper) or linear, and the
network predicts **x0** (MDM), trained with

    L = E || x0 - f_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c) ||^2
        + lambda_pos L_pos + lambda_vel L_vel + lambda_foot L_foot

with condition dropout ``p_uncond`` (MDM ``cond_mask_prob`` 0.1).  The geometric terms (MDM's
``lambda_rcxyz`` / ``lambda_vel`` / ``lambda_fc``; all 0 in the paper, and by default) are computed
in metres on the un-normalised prediction: ``L_pos`` = mean squared error of the joint positions
obtained by forward kinematics from the predicted 6-D rotations against the target's positions,
``L_vel`` the same on their frame-to-frame differences, ``L_foot`` the squared world displacement
of each contact joint on frames whose target contact label is 1 (the kinematic tree, bone offsets
and contact joints are inferred from the training windows: :mod:`scloop.nets.motion_denoiser`).

Network: :func:`scloop.nets.motion_denoiser.build_transformer` (MDM ``trans_enc``: a condition +
time token in front of the frame tokens, ``layers`` x ``heads``, width ``latent``, feed-forward
``ff_size``, GELU, ``dropout``).  The paper's size is latent 512, 8 layers, 4 heads, ff 1024.

Sampling: guided x0 ``(1 + w) f(x_t, t, c) - w f(x_t, t, null)`` (``guidance`` w; w = 0 is the
paper's guidance scale 1.0, i.e. plain conditional sampling, one forward per step) through
diffusers' ancestral ``DDPMScheduler`` (variance "fixed_small", MDM's ``sigma_small``),
``DDIMScheduler`` (eta 0) or ``DPMSolverMultistepScheduler`` (DPM-Solver++, 2nd order), all with
``prediction_type="sample"``, in chunks of ``sample_batch``.

Training: AdamW (``lr``, ``weight_decay``; paper 1e-4, 0, batch 64, no annealing); generation 0
runs ``steps`` optimizer steps (paper 5,000 / 10,000 / 20,000 for n = 64 / 128 / 256), each later
generation ``finetune_steps`` (paper 1,000) at ``finetune_lr`` (None: ``lr``) with a fresh AdamW
(``finetune_optimizer="reset"``, the paper) or the kept one (``"keep"``).  Batches are drawn from
a random permutation per epoch.  Dropout and the diffusion noise are drawn from private torch
RNG streams seeded from ``rng``: same seed, same weights.  The training loop, samplers,
checkpoints and option checks are shared with the image DDPM (:mod:`scloop.models.diffusion`);
this module holds the motion-specific parts: the network, the standardisation, the geometric losses
and the kinematics state.  torch and diffusers are imported inside methods only.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from scloop.core.registry import MODELS, ConfigError
from scloop.core.types import Data, Degenerate
from scloop.models.diffusion import ConditionalDiffusion, _check_process, _check_sampler, _choice, _factory, _int, _number
from scloop.nets import DEVICES

if TYPE_CHECKING:  # pragma: no cover
    import torch

SAMPLERS = ("ddpm", "ddim", "dpm")
LR_DECAYS = ("constant", "linear")
FINETUNE_OPTIMIZERS = ("reset", "keep")
STD_FLOOR = 1e-3  # per-feature std floor of the standardisation (near-constant channels)
STANDARDISE = ("group", "feature")
# bumped when fitting changes what a stored generation-0 model holds: part of runner.gen0_key
CACHE_VERSION = "mdm-2"  # 2: per-group std by default


class MDMModel(ConditionalDiffusion):
    """Class-conditional x0-prediction motion diffusion (module docstring).

    Learned state: ``net_``, ``opt_`` (AdamW), ``shape_`` (T, F), ``n_classes_``, ``mean_`` /
    ``std_`` (F,), ``kin_`` (inferred kinematics, only with a geometric loss), plus the
    diagnostics of :class:`ConditionalDiffusion` (``n_params_``, ``train_steps_``,
    ``last_train_loss_``, ``last_sample_seconds_``, ...).
    """

    NAME = "MDM"
    PREDICTION = "sample"
    SEEDS_DROPOUT = True  # the transformer's dropout masks come from a private seeded stream

    def __init__(
        self,
        *,
        n_classes: int | None = None,
        fps: float = 20.0,
        latent: int = 256,
        layers: int = 4,
        heads: int = 4,
        ff_size: int = 1024,
        dropout: float = 0.1,
        timesteps: int = 1000,
        schedule: str = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        p_uncond: float = 0.1,
        guidance: float = 0.0,
        lambda_pos: float = 0.0,
        lambda_vel: float = 0.0,
        lambda_foot: float = 0.0,
        steps: int = 5000,
        batch_size: int = 64,
        lr: float = 1e-4,
        lr_decay: str = "constant",
        weight_decay: float = 0.0,
        finetune_steps: int = 1000,
        finetune_lr: float | None = None,
        finetune_optimizer: str = "reset",
        sampler: str = "ddpm",
        sample_steps: int | None = None,
        sample_batch: int = 256,
        device: str = "auto",
        standardise: str = "group",
    ) -> None:
        self.n_classes = n_classes
        self.fps = fps
        self.latent = latent
        self.layers = layers
        self.heads = heads
        self.ff_size = ff_size
        self.dropout = dropout
        self.timesteps = timesteps
        self.schedule = schedule
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.p_uncond = p_uncond
        self.guidance = guidance
        self.lambda_pos = lambda_pos
        self.lambda_vel = lambda_vel
        self.lambda_foot = lambda_foot
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.weight_decay = weight_decay
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self.finetune_optimizer = finetune_optimizer
        self.sampler = sampler
        self.sample_steps = sample_steps
        self.sample_batch = sample_batch
        self.standardise = standardise
        self.device = device

    # ------------------------------------------------------------------ model-specific parts

    @property
    def geometric(self) -> bool:
        return self.lambda_pos > 0 or self.lambda_vel > 0 or self.lambda_foot > 0

    def _make_net(self) -> "torch.nn.Module":
        from scloop.nets.motion_denoiser import build_transformer

        return build_transformer(self.shape_[1], self.n_classes_, latent=self.latent, layers=self.layers,
                                 heads=self.heads, ff_size=self.ff_size, dropout=self.dropout,
                                 max_len=self.shape_[0] + 1)

    def _new_optimizer(self, lr: float) -> "torch.optim.Optimizer":
        import torch

        return torch.optim.AdamW(self.net_.parameters(), lr=lr, weight_decay=self.weight_decay)

    def finetune_rate(self) -> float:
        return float(self.lr if self.finetune_lr is None else self.finetune_lr)

    def _check_data(self, data: Data, who: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(data.x)
        if x.ndim != 3:
            raise ValueError(f"MDMModel.{who}: expected motion windows of shape (n, T, F), got {x.shape}")
        if len(x) == 0:
            raise Degenerate(f"MDMModel.{who}: no training windows")
        if data.y is None:
            raise ValueError(f"MDMModel.{who}: a conditional motion model needs labels (Data.y)")
        y = np.asarray(data.y).astype(np.int64)
        if not np.all(np.isfinite(x)):
            raise Degenerate(f"MDMModel.{who}: training windows contain NaN/inf")
        return x, y

    def _fit_state(self, x: np.ndarray, y: np.ndarray) -> None:
        """Generation-0 state from windows ``x`` (n, T, F): shape, classes, standardisation and,
        with a geometric loss, the kinematics."""
        self.shape_ = tuple(int(s) for s in x.shape[1:])
        self.n_classes_ = int(self.n_classes) if self.n_classes is not None else int(y.max()) + 1
        self.mean_ = x.reshape(-1, x.shape[-1]).mean(0).astype(np.float32)
        if self.standardise == "group":
            from scloop.motion.representation import standardisation
            from scloop.nets.motion_denoiser import layout_from_features

            self.std_ = standardisation(x, list(layout_from_features(x.shape[-1]).values()))[1]
        else:
            self.std_ = np.maximum(x.reshape(-1, x.shape[-1]).std(0), STD_FLOOR).astype(np.float32)
        if self.geometric:
            from scloop.nets.motion_denoiser import infer_kinematics

            self.kin_ = infer_kinematics(x, fps=self.fps)

    def _prepare(self, data: Data, who: str) -> tuple["torch.Tensor", "torch.Tensor", Any]:
        """-> (standardised x0 (n, T, F), labels (n,), aux) on the device; ``aux`` is
        ``(raw x0, mean, std)`` for the geometric losses, None without them."""
        import torch

        x, y = self._check_data(data, who)
        if who == "fit":
            self._fit_state(x, y)
        if tuple(x.shape[1:]) != tuple(self.shape_):
            raise ValueError(f"MDMModel.{who}: windows of shape {tuple(x.shape[1:])}, model fitted on {self.shape_}")
        if y.min() < 0 or y.max() >= self.n_classes_:
            raise ValueError(f"MDMModel.{who}: labels must lie in 0..{self.n_classes_ - 1}, got {y.min()}..{y.max()}")
        if who == "update" and self.geometric and not hasattr(self, "kin_"):
            # a checkpoint fitted without geometric losses
            from scloop.nets.motion_denoiser import infer_kinematics

            self.kin_ = infer_kinematics(x, fps=self.fps)
        dev = self._device()
        raw = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev)
        mean, std = self._stats(dev)
        aux = (raw, mean, std) if self.geometric else None
        return (raw - mean) / std, torch.as_tensor(y, device=dev), aux

    def _stats(self, dev: "torch.device") -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        return (torch.as_tensor(self.mean_, dtype=torch.float32, device=dev),
                torch.as_tensor(self.std_, dtype=torch.float32, device=dev))

    def _extra_loss(self, pred: "torch.Tensor", idx: "torch.Tensor", aux: Any) -> "torch.Tensor":
        raw, mean, std = aux
        return self._geometric_loss(pred * std + mean, raw[idx])

    def _geometric_loss(self, pred: "torch.Tensor", raw: "torch.Tensor") -> "torch.Tensor":
        """lambda-weighted position, velocity and foot-contact losses (metres) on the
        un-normalised prediction ``pred`` against the raw target ``raw`` (B, T, F)."""
        import torch

        from scloop.nets.motion_denoiser import fk_positions, foot_displacement, layout_from_features

        lay = layout_from_features(self.shape_[1])
        J = len(self.kin_.parents)
        P_hat = fk_positions(pred, self.kin_, lay)
        P = raw[..., lay["positions"]].reshape(*raw.shape[:2], J, 3)
        loss = pred.new_zeros(())
        if self.lambda_pos > 0:
            loss = loss + self.lambda_pos * ((P_hat - P) ** 2).sum(-1).mean()
        if self.lambda_vel > 0:
            loss = loss + self.lambda_vel * ((P_hat.diff(dim=1) - P.diff(dim=1)) ** 2).sum(-1).mean()
        if self.lambda_foot > 0 and len(self.kin_.feet):
            d = foot_displacement(pred, P_hat, self.kin_, lay, float(self.fps))
            contact = (raw[..., lay["contacts"]] > 0.5).to(pred.dtype)  # (B, T, n_feet)
            loss = loss + self.lambda_foot * ((d ** 2).sum(-1) * contact).mean()
        return loss

    def _from_network(self, x: "torch.Tensor") -> np.ndarray:
        """Standardised samples -> the data's units, float32 (n, T, F)."""
        import torch

        mean, std = self._stats(torch.device("cpu"))
        return (x * std + mean).numpy().astype(np.float32)

    def _meta_state(self) -> dict[str, np.ndarray]:
        """``meta/{n_classes, mean, std}`` and, with a geometric loss, ``kin/{parents, offsets,
        feet, residual}``."""
        state = {
            "meta/n_classes": np.asarray(self.n_classes_, dtype=np.int64),
            "meta/mean": np.asarray(self.mean_, dtype=np.float32).copy(),
            "meta/std": np.asarray(self.std_, dtype=np.float32).copy(),
        }
        if hasattr(self, "kin_"):
            state.update({"kin/parents": self.kin_.parents.copy(), "kin/offsets": self.kin_.offsets.copy(),
                          "kin/feet": self.kin_.feet.copy(), "kin/residual": np.asarray(self.kin_.residual)})
        return state

    def _load_meta(self, state: Mapping[str, np.ndarray]) -> None:
        from scloop.nets.motion_denoiser import Kinematics

        self.n_classes_ = int(np.asarray(state["meta/n_classes"]))
        self.mean_ = np.array(state["meta/mean"], dtype=np.float32)
        self.std_ = np.array(state["meta/std"], dtype=np.float32)
        if "kin/parents" in state:
            self.kin_ = Kinematics(np.array(state["kin/parents"]), np.array(state["kin/offsets"]),
                                   np.array(state["kin/feet"]), float(np.asarray(state["kin/residual"])))


# ---------------------------------------------------------------------- factory


def _validated(o: dict[str, Any]) -> dict[str, Any]:
    """Check every option (ConfigError naming ``model.<option>``) and coerce numbers."""
    _int("n_classes", o["n_classes"], 1, optional=True)
    _number("fps", o["fps"], strict=True)
    for k in ("latent", "layers", "heads", "ff_size", "batch_size", "sample_batch"):
        _int(k, o[k], 1)
    if not isinstance(o["latent"], bool) and isinstance(o["latent"], int) and isinstance(o["heads"], int) \
            and o["latent"] % o["heads"]:
        raise ConfigError(f"model.heads: got {o['heads']!r}; allowed: a divisor of latent ({o['latent']})")
    _number("dropout", o["dropout"], high=0.99)
    _check_process(o)
    for k in ("lambda_pos", "lambda_vel", "lambda_foot"):
        _number(k, o[k])
    _int("steps", o["steps"], 0)
    _number("lr", o["lr"], strict=True)
    _choice("lr_decay", o["lr_decay"], LR_DECAYS)
    _number("weight_decay", o["weight_decay"])
    _int("finetune_steps", o["finetune_steps"], 0)
    if o["finetune_lr"] is not None:
        _number("finetune_lr", o["finetune_lr"])
    _choice("finetune_optimizer", o["finetune_optimizer"], FINETUNE_OPTIMIZERS)
    _check_sampler(o, SAMPLERS)
    _choice("device", o["device"], DEVICES)
    _choice("standardise", o["standardise"], STANDARDISE)
    o = dict(o)
    for k in ("latent", "layers", "heads", "ff_size", "timesteps", "steps", "batch_size", "finetune_steps",
              "sample_batch"):
        o[k] = int(o[k])
    for k in ("n_classes", "sample_steps"):
        o[k] = None if o[k] is None else int(o[k])
    for k in ("fps", "dropout", "beta_start", "beta_end", "p_uncond", "guidance", "lambda_pos", "lambda_vel",
              "lambda_foot", "lr", "weight_decay"):
        o[k] = float(o[k])
    o["finetune_lr"] = None if o["finetune_lr"] is None else float(o["finetune_lr"])
    return o


@MODELS.register("mdm", domain="motion")
def make_mdm(**options: Any) -> MDMModel:
    """MDM-style motion diffusion (docs/paper.md §3.3).

    Network: ``latent``, ``layers``, ``heads``, ``ff_size``, ``dropout`` (paper: 512, 8, 4, 1024,
    0.1).  Diffusion: ``timesteps``, ``schedule`` cosine | linear (``beta_start`` -> ``beta_end``),
    x0-prediction, ``p_uncond``, ``guidance`` w (0 = plain conditional).  Geometric losses:
    ``lambda_pos``, ``lambda_vel``, ``lambda_foot`` (paper: 0), at ``fps``.  Conditions:
    ``n_classes`` (None: max label + 1 of the generation-0 data).  Generation 0: ``steps``,
    ``batch_size``, ``lr``, ``lr_decay``, ``weight_decay`` (AdamW).  Later generations:
    ``finetune_steps``, ``finetune_lr`` (None: lr), ``finetune_optimizer`` reset | keep.
    Sampling: ``sampler`` ddpm | ddim | dpm, ``sample_steps`` (None: timesteps / 50 / 20),
    ``sample_batch``.  ``device`` auto | cpu | cuda.  ``standardise`` group | feature (module
    docstring).
    """
    return _factory(MDMModel, _validated, options)


make_mdm.cache_version = CACHE_VERSION  # type: ignore[attr-defined]


make_mdm.__signature__ = inspect.signature(MDMModel).replace(return_annotation="MDMModel")  # type: ignore[attr-defined]
