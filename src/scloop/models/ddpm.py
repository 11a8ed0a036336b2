"""Class-conditional DDPM with classifier-free guidance (PAPER_NOTES §3.2, the MNIST loop's model).

Forward process (Ho et al. 2020) with cumulative signal rate abar_t = prod_{s<=t} (1 - beta_s):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,        eps ~ N(0, I),  t ~ U{0, ..., T-1}.

Training minimises the epsilon-prediction loss with condition dropout (classifier-free guidance
training, Ho & Salimans 2022): with probability ``p_uncond`` the label c is replaced by the null
class ``n_classes``,

    L(theta) = E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c) ||^2.

Sampling runs diffusers' ancestral ``DDPMScheduler`` (or ``DDIMScheduler``) with the guided noise

    eps = (1 + w) eps_theta(x_t, t, c) - w eps_theta(x_t, t, null),

computed in one forward pass over a batch of 2B (conditional half, unconditional half).  With
``clip_sample`` the scheduler clips its x_0 estimate to [-1, 1] at every step; the digits probe
(DIGITS_PROBE.md) found that without it an 8x8 MLP DDPM produces saturated noise.

Paper settings (PAPER_NOTES §3.2): n_T = 400, linear betas 1e-4 -> 0.02, p_uncond 0.1, w = 0.5,
labels cycling 0..9; generation 0: 20 epochs, batch 256, Adam lr 1e-4 with linear decay
``lr (1 - ep/epochs)``; later generations: 1 epoch at constant ``lr / (lr_divisor * epochs)`` with the
same Adam object.  The defaults below follow the paper's training recipe but use T = 200 with a
cosine schedule (a linear 1e-4 -> 0.02 schedule with only 200 steps leaves abar_T ~ 0.13, i.e.
x_T is not pure noise); presets choose the paper's or the probe's values explicitly.

Data convention: images ``(n, C, H, W)`` float32 in [0, 1], labels int64 ``(n,)``.  The network
works in [-1, 1] (``2 x - 1``).  Torch and diffusers are imported inside methods only.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import TYPE_CHECKING, Any, Mapping, Self, Sequence

import numpy as np

from scloop.core.registry import MODELS, ConfigError
from scloop.core.types import Data, Degenerate
from scloop.nets import DEVICES

if TYPE_CHECKING:  # pragma: no cover
    import torch

DENOISERS = ("auto", "mlp", "unet")
SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SAMPLERS = ("ddpm", "ddim")
LR_DECAYS = ("linear", "constant")
FINETUNE_OPTIMIZERS = ("keep", "reset")
# "auto" picks the MLP up to this many pixels per image (8x8 digits), the UNet above (MNIST).
MLP_MAX_PIXELS = 256


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63 - 1))


class ConditionalDiffusion:
    """What the class-conditional diffusion models (``ddpm`` here, ``mdm`` for motion) share:
    the torch device, the fitted check, the label vector of :meth:`sample` and the chunked
    reverse-diffusion loop.  A subclass provides ``device``, ``sample_batch``, ``shape_``,
    ``net_`` and ``_sample_chunk(y, generator)``."""

    def _device(self) -> "torch.device":
        from scloop.nets import resolve_device

        return resolve_device(self.device)

    def _check_fitted(self, who: str) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__}.{who}: the model is not fitted; call fit() or "
                               "load_state_dict() first")

    def _sample_labels(self, n: int, conditions: np.ndarray | None, n_classes: int) -> np.ndarray:
        """``conditions`` (n,) checked against ``0..n_classes-1``; None -> ``arange(n) % n_classes``
        (class-balanced, as the official code)."""
        who = type(self).__name__
        if conditions is None:
            return np.arange(n, dtype=np.int64) % n_classes
        labels = np.asarray(conditions).astype(np.int64).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"{who}.sample: {len(labels)} conditions for n={n} samples")
        if n and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{who}.sample: conditions must lie in 0..{n_classes - 1}")
        return labels

    def _sample_all(self, labels: np.ndarray, rng: np.random.Generator) -> "torch.Tensor":
        """Reverse diffusion for every label, ``sample_batch`` at a time, from one
        ``torch.Generator`` seeded by ``rng``; the network's outputs concatenated on the CPU."""
        import torch

        dev = self._device()
        gen = torch.Generator(dev).manual_seed(_seed(rng))
        out = []
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, len(labels), self.sample_batch):
                yb = torch.as_tensor(labels[start : start + self.sample_batch], device=dev)
                out.append(self._sample_chunk(yb, gen).cpu())
        return torch.cat(out)


class DDPMModel(ConditionalDiffusion):
    """Class-conditional epsilon-prediction DDPM (see the module docstring for the equations).

    Constructor arguments are the factory options of ``make_ddpm`` (stored unchanged).  Learned
    state: ``net_`` (the denoiser, a ``torch.nn.Module``), ``opt_`` (Adam), ``shape_`` (C, H, W),
    ``denoiser_`` (resolved kind), plus diagnostics ``n_params_``, ``train_steps_`` (total optimiser
    steps so far), ``last_train_steps_``, ``last_train_loss_`` (mean loss of the last <= 50 steps of
    the last fit/update), ``first_train_loss_``, ``last_train_seconds_``, ``last_lr_``.
    """

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

    # ------------------------------------------------------------------ pieces

    def _kind(self, shape: tuple[int, int, int]) -> str:
        if self.denoiser != "auto":
            return self.denoiser
        return "mlp" if shape[1] * shape[2] <= MLP_MAX_PIXELS else "unet"

    def _build_net(self, shape: tuple[int, int, int], seed: int | None) -> "torch.nn.Module":
        """A fresh denoiser on the model's device.  With ``seed`` its initial weights come from a
        private CPU RNG stream (the global torch RNG state is restored afterwards)."""
        import torch

        from scloop.models.denoisers import ResidualMLP, UNet

        kind = self._kind(shape)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            if kind == "mlp":
                net = ResidualMLP(shape, self.n_classes, width=self.width, blocks=self.blocks)
            else:
                net = UNet(
                    shape,
                    self.n_classes,
                    channels=self.channels,
                    layers_per_block=self.layers_per_block,
                    attention=self.attention,
                )
        self.denoiser_ = kind
        return net.to(self._device())

    def _new_optimizer(self, lr: float) -> "torch.optim.Optimizer":
        import torch

        return torch.optim.Adam(self.net_.parameters(), lr=lr)

    def _scheduler(self, cls: Any, **extra: Any) -> Any:
        return cls(
            num_train_timesteps=self.timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=SCHEDULES[self.schedule],
            clip_sample=self.clip_sample,
            clip_sample_range=1.0,
            prediction_type="epsilon",
            **extra,
        )

    def _train_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        return self._scheduler(DDPMScheduler, variance_type="fixed_small")

    def _sample_scheduler(self) -> Any:
        """Ancestral DDPM (variance "fixed_small", diffusers' default) or DDIM."""
        from diffusers import DDIMScheduler, DDPMScheduler

        return self._scheduler(DDPMScheduler if self.sampler == "ddpm" else DDIMScheduler)

    def _tensors(self, data: Data, who: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Data in [0, 1] -> (x0 in [-1, 1] (n, C, H, W) float32, labels (n,) int64) on device."""
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
        dev = self._device()
        x0 = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev) * 2 - 1
        return x0, torch.as_tensor(y, device=dev)

    def _train(
        self, x0: "torch.Tensor", y: "torch.Tensor", *, epochs: int, steps: int | None, lr: float, decay: str, seed: int
    ) -> None:
        """Adam on the epsilon-prediction loss.  Batches come from one random permutation per epoch
        (the last batch of an epoch may be smaller, as a DataLoader without ``drop_last``).
        ``steps`` (if given) overrides ``epochs``.  Learning rate: ``decay == "linear"`` sets
        ``lr (1 - ep/epochs)`` at the start of epoch ep (the official MNIST loop), or
        ``lr (1 - s/steps)`` per step in steps mode; ``"constant"`` keeps ``lr``."""
        import torch

        dev = x0.device
        gen = torch.Generator(dev).manual_seed(seed)
        abar = self._train_scheduler().alphas_cumprod.to(dev, torch.float32)
        n, bs = len(x0), min(self.batch_size, len(x0))
        per_epoch = math.ceil(n / bs)
        total = steps if steps is not None else epochs * per_epoch
        null = self.n_classes
        losses = torch.zeros(total, device=dev)
        net, opt = self.net_, self.opt_
        net.train()
        t_start = time.perf_counter()
        s = 0
        while s < total:
            ep = s // per_epoch
            perm = torch.randperm(n, generator=gen, device=dev)
            for b in range(per_epoch):
                if s >= total:
                    break
                if decay == "linear":
                    frac = s / total if steps is not None else ep / epochs
                    rate = lr * (1 - frac)
                else:
                    rate = lr
                for group in opt.param_groups:
                    group["lr"] = rate
                idx = perm[b * bs : (b + 1) * bs]
                xb, yb = x0[idx], y[idx]
                t = torch.randint(0, self.timesteps, (len(idx),), generator=gen, device=dev)
                eps = torch.randn(xb.shape, generator=gen, device=dev)
                drop = torch.rand(len(idx), generator=gen, device=dev) < self.p_uncond
                yb = torch.where(drop, torch.full_like(yb, null), yb)
                a = abar[t].view(-1, *([1] * (xb.ndim - 1)))
                xt = a.sqrt() * xb + (1 - a).sqrt() * eps
                loss = torch.mean((net(xt, t, yb) - eps) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[s] = loss.detach()
                s += 1
        net.eval()
        hist = losses.cpu().numpy()
        self.last_train_seconds_ = time.perf_counter() - t_start
        self.last_train_steps_ = int(total)
        self.train_steps_ = int(getattr(self, "train_steps_", 0)) + int(total)
        self.last_lr_ = float(opt.param_groups[0]["lr"])
        self.first_train_loss_ = float(hist[0]) if total else math.nan
        self.last_train_loss_ = float(hist[-min(50, total) :].mean()) if total else math.nan
        if not np.all(np.isfinite(hist)):
            bad = int(np.argmin(np.isfinite(hist)))
            raise Degenerate(f"DDPM training loss became non-finite at step {bad}")

    # ------------------------------------------------------------------ protocol

    def fit(self, data: Data, *, rng: np.random.Generator) -> Self:
        """Build a fresh denoiser (initialised from ``rng``) and train it from scratch:
        ``steps`` steps (if set) else ``epochs`` epochs at batch ``batch_size``, Adam ``lr`` with
        ``lr_decay`` (PAPER_NOTES §3.2 generation 0)."""
        x0, y = self._tensors(data, "fit")
        self.shape_ = tuple(int(s) for s in x0.shape[1:])
        init_seed, train_seed = _seed(rng), _seed(rng)
        self.train_steps_ = 0
        self.net_ = self._build_net(self.shape_, init_seed)
        self.n_params_ = int(sum(p.numel() for p in self.net_.parameters()))
        self.opt_ = self._new_optimizer(self.lr)
        self._train(x0, y, epochs=self.epochs, steps=self.steps, lr=self.lr, decay=self.lr_decay, seed=train_seed)
        return self

    def finetune_rate(self) -> float:
        """Fine-tuning learning rate: ``finetune_lr``, else ``lr / (lr_divisor * epochs)``
        (PAPER_NOTES §3.2: 1e-4 / (20 * 20) = 2.5e-7)."""
        if self.finetune_lr is not None:
            return float(self.finetune_lr)
        return float(self.lr) / (float(self.lr_divisor) * self.epochs)

    def update(self, data: Data, *, rng: np.random.Generator) -> Self:
        """Continue training the current weights: ``finetune_steps`` steps (if set) else
        ``finetune_epochs`` epochs at the constant :meth:`finetune_rate`; the Adam object (and its
        moment estimates) is kept (``finetune_optimizer="keep"``, the official MNIST loop) or
        replaced by a fresh one (``"reset"``, the motion loop)."""
        self._check_fitted("update")
        x0, y = self._tensors(data, "update")
        if tuple(x0.shape[1:]) != tuple(self.shape_):
            raise ValueError(f"DDPMModel.update: images of shape {tuple(x0.shape[1:])}, model fitted on {self.shape_}")
        rate = self.finetune_rate()
        if self.finetune_optimizer == "reset":
            self.opt_ = self._new_optimizer(rate)
        self._train(
            x0, y, epochs=self.finetune_epochs, steps=self.finetune_steps, lr=rate, decay="constant", seed=_seed(rng)
        )
        return self

    def sample(self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None) -> Data:
        """Draw ``n`` images with classifier-free guidance.

        ``conditions`` (n,) int labels; None -> ``arange(n) % n_classes`` (class-balanced, as the
        official code).  Returns ``Data(x (n, C, H, W) float32 in [0, 1], y (n,) int64)``; with
        ``quantize = L`` pixels are rounded to ``k / (L - 1)``.  Raises :class:`Degenerate` if the
        network produces NaN/inf."""
        self._check_fitted("sample")
        labels = self._sample_labels(n, conditions, self.n_classes)
        if n == 0:
            return Data(np.zeros((0, *self.shape_), dtype=np.float32), labels)
        x = self._sample_all(labels, rng).numpy()
        if not np.all(np.isfinite(x)):
            raise Degenerate("DDPM sampling produced NaN/inf")
        x = np.clip((x + 1) / 2, 0.0, 1.0).astype(np.float32)
        if self.quantize is not None:
            levels = self.quantize - 1
            x = (np.round(x * levels) / levels).astype(np.float32)
        return Data(x, labels)

    def _sample_chunk(self, y: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
        """One reverse-diffusion run for labels ``y`` (B,): x_T ~ N(0, I) -> x_0 in [-1, 1]
        (B, C, H, W).  The cond and uncond noise estimates come from one forward of 2B."""
        import torch

        sched = self._sample_scheduler()
        steps = self.sample_steps
        if steps is None:
            steps = self.timesteps if self.sampler == "ddpm" else min(50, self.timesteps)
        sched.set_timesteps(steps, device=y.device)
        b, w = len(y), float(self.guidance)
        x = torch.randn((b, *self.shape_), generator=gen, device=y.device)
        y2 = torch.cat([y, torch.full_like(y, self.n_classes)])
        for t in sched.timesteps:
            if w == 0:  # plain conditional sampling: no unconditional half needed
                eps = self.net_(x, torch.full((b,), int(t), device=y.device, dtype=torch.long), y)
            else:
                tt = torch.full((2 * b,), int(t), device=y.device, dtype=torch.long)
                eps_c, eps_u = self.net_(torch.cat([x, x]), tt, y2).chunk(2)
                eps = (1 + w) * eps_c - w * eps_u
            x = sched.step(eps, t, x, generator=gen).prev_sample
        return x

    def denoising_loss(self, data: Data, *, rng: np.random.Generator, repeats: int = 1) -> float:
        """Mean conditional epsilon-prediction loss ||eps - eps_theta(x_t, t, c)||^2 over ``data``
        (``repeats`` draws of (t, eps) per image, from ``rng``); no condition dropout, no grad.
        A diagnostic: compare models on the same data and the same ``rng`` seed."""
        self._check_fitted("denoising_loss")
        import torch

        x0, y = self._tensors(data, "denoising_loss")
        dev = x0.device
        gen = torch.Generator(dev).manual_seed(_seed(rng))
        abar = self._train_scheduler().alphas_cumprod.to(dev, torch.float32)
        total, count = 0.0, 0
        self.net_.eval()
        with torch.no_grad():
            for _ in range(repeats):
                for start in range(0, len(x0), self.sample_batch):
                    xb, yb = x0[start : start + self.sample_batch], y[start : start + self.sample_batch]
                    t = torch.randint(0, self.timesteps, (len(xb),), generator=gen, device=dev)
                    eps = torch.randn(xb.shape, generator=gen, device=dev)
                    a = abar[t].view(-1, *([1] * (xb.ndim - 1)))
                    err = (self.net_(a.sqrt() * xb + (1 - a).sqrt() * eps, t, yb) - eps) ** 2
                    total += float(err.mean(dim=tuple(range(1, xb.ndim))).sum())
                    count += len(xb)
        return total / count

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat numeric arrays (``np.savez`` without pickle): ``net/<name>`` weights and buffers,
        ``opt/<param name>/{exp_avg, exp_avg_sq, step}`` Adam moments, ``opt/lr``,
        ``meta/shape`` (C, H, W) and ``meta/train_steps``."""
        self._check_fitted("state_dict")
        state: dict[str, np.ndarray] = {
            "meta/shape": np.asarray(self.shape_, dtype=np.int64),
            "meta/train_steps": np.asarray(getattr(self, "train_steps_", 0), dtype=np.int64),
            "opt/lr": np.asarray(self.opt_.param_groups[0]["lr"], dtype=np.float64),
        }
        for name, tensor in self.net_.state_dict().items():
            state[f"net/{name}"] = tensor.detach().cpu().numpy().copy()
        for name, p in self.net_.named_parameters():
            for key, value in self.opt_.state.get(p, {}).items():
                state[f"opt/{name}/{key}"] = np.asarray(value.detach().cpu().numpy()).copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self:
        """Restore weights and Adam state written by :meth:`state_dict` (same options)."""
        import torch

        self.shape_ = tuple(int(s) for s in np.asarray(state["meta/shape"]))
        self.train_steps_ = int(np.asarray(state["meta/train_steps"]))
        self.net_ = self._build_net(self.shape_, seed=None)
        dev = self._device()
        weights = {k[4:]: torch.as_tensor(np.asarray(v)) for k, v in state.items() if k.startswith("net/")}
        self.net_.load_state_dict(weights, strict=True)
        self.n_params_ = int(sum(p.numel() for p in self.net_.parameters()))
        self.opt_ = self._new_optimizer(float(np.asarray(state["opt/lr"])))
        for name, p in self.net_.named_parameters():
            slot = {}
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if f"opt/{name}/{key}" in state:
                    slot[key] = torch.as_tensor(np.array(state[f"opt/{name}/{key}"]), device=dev)
            if f"opt/{name}/step" in state:
                # torch keeps Adam's step as a scalar tensor on the CPU (non-capturable Adam); the
                # saved array keeps its dtype (float32, or float64 under a float64 default dtype).
                slot["step"] = torch.as_tensor(np.array(state[f"opt/{name}/step"]))
            if slot:
                self.opt_.state[p] = slot
        self.net_.eval()
        return self


# ---------------------------------------------------------------------- factory


def _int(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        extra = " or null" if optional else ""
        raise ConfigError(f"model.{name}: got {value!r}; allowed: an integer >= {minimum}{extra}")


def _number(name: str, value: Any, *, low: float = 0.0, strict: bool = False, high: float | None = None) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        rel = ">" if strict else ">="
        rng = f"a number {rel} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"model.{name}: got {value!r}; allowed: {rng}")


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"model.{name}: got {value!r}; allowed: {', '.join(allowed)}")


def _validated(o: dict[str, Any]) -> dict[str, Any]:
    """Check every option (ConfigError naming ``model.<option>``) and coerce numbers."""
    denoiser = o['denoiser']
    n_classes = o['n_classes']
    timesteps = o['timesteps']
    schedule = o['schedule']
    beta_start = o['beta_start']
    beta_end = o['beta_end']
    p_uncond = o['p_uncond']
    guidance = o['guidance']
    clip_sample = o['clip_sample']
    width = o['width']
    blocks = o['blocks']
    channels = o['channels']
    layers_per_block = o['layers_per_block']
    attention = o['attention']
    epochs = o['epochs']
    steps = o['steps']
    batch_size = o['batch_size']
    lr = o['lr']
    lr_decay = o['lr_decay']
    finetune_epochs = o['finetune_epochs']
    finetune_steps = o['finetune_steps']
    finetune_lr = o['finetune_lr']
    lr_divisor = o['lr_divisor']
    finetune_optimizer = o['finetune_optimizer']
    sampler = o['sampler']
    sample_steps = o['sample_steps']
    sample_batch = o['sample_batch']
    quantize = o['quantize']
    device = o['device']
    _choice("denoiser", denoiser, DENOISERS)
    _int("n_classes", n_classes, 1)
    _int("timesteps", timesteps, 2)
    _choice("schedule", schedule, tuple(SCHEDULES))
    _number("beta_start", beta_start, strict=True, high=1.0)
    _number("beta_end", beta_end, strict=True, high=1.0)
    if schedule == "linear" and beta_end < beta_start:
        raise ConfigError(f"model.beta_end: got {beta_end!r} < beta_start {beta_start!r}; allowed: >= beta_start")
    _number("p_uncond", p_uncond, high=1.0)
    _number("guidance", guidance)
    if not isinstance(clip_sample, bool):
        raise ConfigError(f"model.clip_sample: got {clip_sample!r}; allowed: true, false")
    _int("width", width, 1)
    _int("blocks", blocks, 0)
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise ConfigError(f"model.channels: got {channels!r}; allowed: a non-empty list of integers >= 1")
    for c in channels:
        _int("channels", c, 1)
    _int("layers_per_block", layers_per_block, 1)
    if not isinstance(attention, bool):
        raise ConfigError(f"model.attention: got {attention!r}; allowed: true, false")
    _int("epochs", epochs, 1)
    _int("steps", steps, 0, optional=True)
    _int("batch_size", batch_size, 1)
    _number("lr", lr, strict=True)
    _choice("lr_decay", lr_decay, LR_DECAYS)
    _int("finetune_epochs", finetune_epochs, 0)
    _int("finetune_steps", finetune_steps, 0, optional=True)
    if finetune_lr is not None:
        _number("finetune_lr", finetune_lr)
    _number("lr_divisor", lr_divisor, strict=True)
    _choice("finetune_optimizer", finetune_optimizer, FINETUNE_OPTIMIZERS)
    _choice("sampler", sampler, SAMPLERS)
    _int("sample_steps", sample_steps, 1, optional=True)
    if sample_steps is not None and sample_steps > timesteps:
        raise ConfigError(f"model.sample_steps: got {sample_steps!r}; allowed: <= timesteps ({timesteps})")
    _int("sample_batch", sample_batch, 1)
    _int("quantize", quantize, 2, optional=True)
    _choice("device", device, DEVICES)
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
    """Class-conditional DDPM (PAPER_NOTES §3.2).

    Network: ``denoiser`` auto (MLP for <= 256 pixels, else UNet) | mlp (``width``, ``blocks``) |
    unet (``channels`` per level, ``layers_per_block``, ``attention``).  Diffusion: ``timesteps``,
    ``schedule`` linear (``beta_start`` -> ``beta_end``) | cosine, ``p_uncond``, ``guidance`` w,
    ``clip_sample``.  Generation 0: ``steps`` (wins) or ``epochs``, ``batch_size``, ``lr``,
    ``lr_decay``.  Fine-tuning: ``finetune_steps`` (wins) or ``finetune_epochs``, ``finetune_lr``
    (None -> lr / (lr_divisor * epochs)), ``finetune_optimizer`` keep | reset.  Sampling:
    ``sampler`` ddpm | ddim, ``sample_steps`` (None -> timesteps for ddpm, 50 for ddim),
    ``sample_batch``, ``quantize`` (None or number of grey levels).
    """
    defaults = {k: p.default for k, p in inspect.signature(DDPMModel).parameters.items()}
    return DDPMModel(**_validated({**defaults, **options}))


# the registry reads the accepted options (and their defaults) from the signature: they are
# DDPMModel's keyword arguments, listed once
make_ddpm.__signature__ = inspect.signature(DDPMModel).replace(return_annotation="DDPMModel")  # type: ignore[attr-defined]
