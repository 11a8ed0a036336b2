"""What the class-conditional diffusion models share: ``ddpm`` (images, :mod:`scloop.models.ddpm`)
and ``mdm`` (motion, :mod:`scloop.models.mdm`); docs/paper.md §3.2 and §3.3 describe both loops.

Forward process (Ho et al. 2020) with cumulative signal rate abar_t = prod_{s<=t} (1 - beta_s) of
diffusers' beta schedule (``linear`` ``beta_start`` -> ``beta_end``, or ``cosine``):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,        eps ~ N(0, I),  t ~ U{0, ..., T-1}.

The network f_theta(x_t, t, c) predicts ``PREDICTION``: the noise eps (``"epsilon"``, DDPM) or the
clean sample x_0 (``"sample"``, MDM).  Training minimises, with condition dropout (classifier-free
guidance training, Ho & Salimans 2022: with probability ``p_uncond`` the label c is replaced by the
null class ``n_classes_``),

    L(theta) = E || target - f_theta(x_t, t, c) ||^2  (+ a model's extra terms, :meth:`_extra_loss`),

by Adam(W) on batches from one random permutation of the data per epoch.  Sampling runs a diffusers
scheduler (ancestral DDPM, DDIM or DPM-Solver++) on the guided prediction

    f = (1 + w) f_theta(x_t, t, c) - w f_theta(x_t, t, null),

the two halves from one forward pass over a batch of 2B (w = 0: one conditional pass of B).

Every random draw comes from a private ``torch.Generator`` seeded from the caller's numpy ``rng``,
so the same seed gives the same weights and samples.  torch and diffusers are imported inside
functions only.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Self, Sequence

import numpy as np

from scloop.core.registry import ConfigError
from scloop.core.types import Data, Degenerate

if TYPE_CHECKING:  # pragma: no cover
    import torch

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # option -> diffusers beta_schedule
# sampling steps when ``sample_steps`` is None; the ancestral "ddpm" sampler runs every timestep
DEFAULT_SAMPLE_STEPS = {"ddim": 50, "dpm": 20}


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63 - 1))


def _n_params(net: "torch.nn.Module") -> int:
    return int(sum(p.numel() for p in net.parameters()))


class ConditionalDiffusion:
    """Base of the class-conditional diffusion models (module docstring for the equations).

    Implements the plugin protocol (``fit``, ``update``, ``sample``, ``state_dict``,
    ``load_state_dict``) plus ``denoising_loss``.  A subclass sets ``NAME`` (messages),
    ``PREDICTION`` (``"epsilon"`` or ``"sample"``) and ``SEEDS_DROPOUT`` (whether the network draws
    from the global torch RNG while training, e.g. dropout, which then runs on a private stream
    seeded per training call); stores the options ``device``, ``timesteps``, ``schedule``,
    ``beta_start``, ``beta_end``, ``p_uncond``, ``guidance``, ``steps``, ``batch_size``, ``lr``,
    ``lr_decay``, ``finetune_steps``, ``finetune_optimizer``, ``sampler``, ``sample_steps``,
    ``sample_batch``; has ``n_classes_`` once fitted (the null class is ``n_classes_``); and
    provides the hooks ``_make_net``, ``_new_optimizer``, ``_prepare``, ``finetune_rate``, and
    where it needs them ``_budget``, ``_extra_loss``, ``_clip_sample``, ``_from_network``,
    ``_to_data``, ``_meta_state`` / ``_load_meta``.

    Learned state: ``net_``, ``opt_``, ``shape_`` (one example's shape), plus diagnostics
    ``n_params_``, ``train_steps_`` (optimiser steps so far), ``last_train_steps_``,
    ``first_train_loss_``, ``last_train_loss_`` (mean of the last <= 50 steps of the last
    fit/update), ``last_train_seconds_``, ``last_lr_``, ``last_sample_seconds_``.
    """

    NAME = "diffusion"
    PREDICTION = "epsilon"
    SEEDS_DROPOUT = False

    # ------------------------------------------------------------------ hooks

    def _make_net(self) -> "torch.nn.Module":
        """A fresh network for examples of shape ``shape_`` (built on the CPU; the caller seeds)."""
        raise NotImplementedError

    def _new_optimizer(self, lr: float) -> "torch.optim.Optimizer":
        """An Adam-family optimiser over ``net_``'s parameters (checkpoints keep its ``step``,
        ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq``)."""
        raise NotImplementedError

    def _prepare(self, data: Data, who: str) -> tuple["torch.Tensor", "torch.Tensor", Any]:
        """Check ``data`` and return ``(x0 (n, *shape_) in network units, labels (n,) int64, aux)``
        on the device; ``aux`` is passed to :meth:`_extra_loss`.  With ``who == "fit"`` it first
        sets the data-dependent state (``shape_``, ``n_classes_``, ...)."""
        raise NotImplementedError

    def finetune_rate(self) -> float:
        """The constant learning rate of :meth:`update`."""
        raise NotImplementedError

    def _budget(self, finetune: bool) -> tuple[int | None, int | None]:
        """``(steps, epochs)`` of a fit (``finetune=False``) or an update; ``steps`` wins when set."""
        return (self.finetune_steps if finetune else self.steps), None

    def _extra_loss(self, pred: "torch.Tensor", idx: "torch.Tensor", aux: Any) -> "torch.Tensor":
        """Extra training loss for the batch ``idx`` given the prediction ``pred``; called only when
        :meth:`_prepare` returned an ``aux`` that is not None."""
        raise NotImplementedError

    def _clip_sample(self) -> bool:
        """Whether the DDPM/DDIM samplers clip their x_0 estimate to [-1, 1]."""
        return False

    def _from_network(self, x: "torch.Tensor") -> np.ndarray:
        """Sampled x_0 (n, *shape_) on the CPU, network units -> the array checked for NaN/inf."""
        return x.numpy()

    def _to_data(self, x: np.ndarray) -> np.ndarray:
        """The checked array of :meth:`_from_network` -> the returned samples."""
        return x

    def _meta_state(self) -> dict[str, np.ndarray]:
        """Model-specific checkpoint entries (besides ``meta/shape``, ``meta/train_steps``, ``opt/``
        and ``net/``)."""
        return {}

    def _load_meta(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_meta_state` wrote (before the network is rebuilt)."""

    # ------------------------------------------------------------------ pieces

    def _device(self) -> "torch.device":
        from scloop.nets import resolve_device

        return resolve_device(self.device)

    def _check_fitted(self, who: str) -> None:
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__}.{who}: the model is not fitted; call fit() or "
                               "load_state_dict() first")

    def _build_net(self, seed: int | None) -> "torch.nn.Module":
        """A fresh network on the model's device.  With ``seed`` its initial weights come from a
        private CPU RNG stream (the global torch RNG state is restored afterwards)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = self._make_net()
        return net.to(self._device())

    @contextlib.contextmanager
    def _training_rng(self, seed: int, dev: "torch.device") -> Iterator[None]:
        """With ``SEEDS_DROPOUT``: the global torch RNG (dropout masks) seeded with ``seed`` for the
        duration, and restored afterwards; otherwise nothing."""
        if not self.SEEDS_DROPOUT:
            yield
            return
        import torch

        with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
            torch.manual_seed(seed)
            yield

    def _scheduler_kwargs(self) -> dict[str, Any]:
        return dict(num_train_timesteps=self.timesteps, beta_start=self.beta_start, beta_end=self.beta_end,
                    beta_schedule=SCHEDULES[self.schedule], prediction_type=self.PREDICTION)

    def _alphas_cumprod(self) -> "torch.Tensor":
        """abar_t (T,) of the training schedule."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._scheduler_kwargs()).alphas_cumprod

    def _sample_scheduler(self) -> Any:
        """Ancestral DDPM (variance "fixed_small"), DDIM (eta 0) or DPM-Solver++ (2nd order)."""
        kw = self._scheduler_kwargs()
        clip = dict(clip_sample=self._clip_sample(), clip_sample_range=1.0)
        if self.sampler == "ddpm":
            from diffusers import DDPMScheduler

            return DDPMScheduler(**kw, **clip, variance_type="fixed_small")
        if self.sampler == "ddim":
            from diffusers import DDIMScheduler

            return DDIMScheduler(**kw, **clip, set_alpha_to_one=True)
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++", solver_order=2)

    def _n_sample_steps(self) -> int:
        if self.sample_steps is not None:
            return int(self.sample_steps)
        if self.sampler == "ddpm":
            return int(self.timesteps)
        return min(DEFAULT_SAMPLE_STEPS[self.sampler], self.timesteps)

    def _train(self, x0: "torch.Tensor", y: "torch.Tensor", aux: Any, *, steps: int | None, epochs: int | None,
               lr: float, decay: str, seed: int) -> None:
        """Optimise the training loss on ``x0`` (n, *shape_) with labels ``y`` (n,).

        Batches of ``batch_size`` come from one random permutation per epoch (the last batch of an
        epoch may be smaller, as a DataLoader without ``drop_last``); ``steps`` (if given)
        overrides ``epochs``.  Learning rate: ``decay == "linear"`` sets ``lr (1 - s/steps)`` per
        step in steps mode, or ``lr (1 - ep/epochs)`` at the start of epoch ep; ``"constant"``
        keeps ``lr``.  Permutations, t, eps and the dropped conditions come from one generator
        seeded with ``seed``.  Raises :class:`Degenerate` if a loss is NaN/inf."""
        import torch

        dev = x0.device
        gen = torch.Generator(dev).manual_seed(seed)
        abar = self._alphas_cumprod().to(dev, torch.float32)
        n, bs = len(x0), min(self.batch_size, len(x0))
        per_epoch = math.ceil(n / bs)
        total = steps if steps is not None else epochs * per_epoch
        losses = torch.zeros(total, device=dev)
        net, opt = self.net_, self.opt_
        net.train()
        t_start = time.perf_counter()
        s = 0
        with self._training_rng(seed, dev):
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
                    # the draw order (t, eps, dropout) is part of what a seed reproduces
                    t = torch.randint(0, self.timesteps, (len(idx),), generator=gen, device=dev)
                    eps = torch.randn(xb.shape, generator=gen, device=dev)
                    drop = torch.rand(len(idx), generator=gen, device=dev) < self.p_uncond
                    yb = torch.where(drop, torch.full_like(yb, self.n_classes_), yb)
                    a = abar[t].view(-1, *([1] * (xb.ndim - 1)))
                    pred = net(a.sqrt() * xb + (1 - a).sqrt() * eps, t, yb)
                    loss = torch.mean((pred - (eps if self.PREDICTION == "epsilon" else xb)) ** 2)
                    if aux is not None:
                        loss = loss + self._extra_loss(pred, idx, aux)
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
            raise Degenerate(f"{self.NAME} training loss became non-finite at step {bad}")

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
        ``torch.Generator`` seeded by ``rng``; the final x_0 (n, *shape_) concatenated on the CPU."""
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

    def _guided(self, x: "torch.Tensor", t: int, y: "torch.Tensor", y2: "torch.Tensor") -> "torch.Tensor":
        """(1 + w) f(x_t, t, c) - w f(x_t, t, null) for ``x`` (B, *shape_); ``y2`` is ``y`` followed
        by B null labels."""
        import torch

        b, w = len(y), float(self.guidance)
        if w == 0:  # plain conditional sampling: no unconditional half needed
            return self.net_(x, torch.full((b,), t, device=x.device, dtype=torch.long), y)
        tt = torch.full((2 * b,), t, device=x.device, dtype=torch.long)
        cond, uncond = self.net_(torch.cat([x, x]), tt, y2).chunk(2)
        return (1 + w) * cond - w * uncond

    def _sample_chunk(self, y: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
        """One reverse-diffusion run for labels ``y`` (B,): x_T ~ N(0, sigma_init^2 I) -> x_0
        (B, *shape_) in network units."""
        import torch

        sched = self._sample_scheduler()
        sched.set_timesteps(self._n_sample_steps(), device=y.device)
        x = torch.randn((len(y), *self.shape_), generator=gen, device=y.device) * float(sched.init_noise_sigma)
        y2 = torch.cat([y, torch.full_like(y, self.n_classes_)])
        for t in sched.timesteps:
            x = sched.step(self._guided(x, int(t), y, y2), t, x, generator=gen).prev_sample
        return x

    # ------------------------------------------------------------------ protocol

    def fit(self, data: Data, *, rng: np.random.Generator) -> Self:
        """Set the data-dependent state from ``data``, build a fresh network (initialised from
        ``rng``) and train it from scratch for the generation-0 budget (``steps``, or the model's
        epochs) at ``lr`` with ``lr_decay``."""
        x0, y, aux = self._prepare(data, "fit")
        init_seed, train_seed = _seed(rng), _seed(rng)
        self.train_steps_ = 0
        self.net_ = self._build_net(init_seed)
        self.n_params_ = _n_params(self.net_)
        self.opt_ = self._new_optimizer(self.lr)
        steps, epochs = self._budget(finetune=False)
        self._train(x0, y, aux, steps=steps, epochs=epochs, lr=self.lr, decay=self.lr_decay, seed=train_seed)
        return self

    def update(self, data: Data, *, rng: np.random.Generator) -> Self:
        """Continue training the current weights for the fine-tuning budget at the constant
        :meth:`finetune_rate`; the optimiser (and its moment estimates) is kept
        (``finetune_optimizer="keep"``) or replaced by a fresh one (``"reset"``)."""
        self._check_fitted("update")
        x0, y, aux = self._prepare(data, "update")
        rate = self.finetune_rate()
        if self.finetune_optimizer == "reset":
            self.opt_ = self._new_optimizer(rate)
        steps, epochs = self._budget(finetune=True)
        self._train(x0, y, aux, steps=steps, epochs=epochs, lr=rate, decay="constant", seed=_seed(rng))
        return self

    def sample(self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None) -> Data:
        """``n`` samples ``Data(x (n, *shape_) float32, y (n,) int64)`` with classifier-free guidance.

        ``conditions`` (n,) int labels; None -> ``arange(n) % n_classes_`` (class-balanced).  Raises
        :class:`Degenerate` if the network produces NaN/inf."""
        self._check_fitted("sample")
        labels = self._sample_labels(n, conditions, self.n_classes_)
        if n == 0:
            return Data(np.zeros((0, *self.shape_), dtype=np.float32), labels)
        t0 = time.perf_counter()
        x = self._from_network(self._sample_all(labels, rng))
        self.last_sample_seconds_ = time.perf_counter() - t0
        if not np.all(np.isfinite(x)):
            raise Degenerate(f"{self.NAME} sampling produced NaN/inf")
        return Data(self._to_data(x), labels)

    def denoising_loss(self, data: Data, *, rng: np.random.Generator, repeats: int = 1) -> float:
        """Mean conditional prediction loss ||target - f_theta(x_t, t, c)||^2 (network units) over
        ``data``, ``repeats`` draws of (t, eps) per example from ``rng``; no condition dropout, no
        grad, no extra loss terms.  A diagnostic: compare models on the same data and seed."""
        self._check_fitted("denoising_loss")
        import torch

        x0, y, _ = self._prepare(data, "denoising_loss")
        dev = x0.device
        gen = torch.Generator(dev).manual_seed(_seed(rng))
        abar = self._alphas_cumprod().to(dev, torch.float32)
        total, count = 0.0, 0
        self.net_.eval()
        with torch.no_grad():
            for _ in range(repeats):
                for start in range(0, len(x0), self.sample_batch):
                    xb, yb = x0[start : start + self.sample_batch], y[start : start + self.sample_batch]
                    t = torch.randint(0, self.timesteps, (len(xb),), generator=gen, device=dev)
                    eps = torch.randn(xb.shape, generator=gen, device=dev)
                    a = abar[t].view(-1, *([1] * (xb.ndim - 1)))
                    pred = self.net_(a.sqrt() * xb + (1 - a).sqrt() * eps, t, yb)
                    err = (pred - (eps if self.PREDICTION == "epsilon" else xb)) ** 2
                    total += float(err.mean(dim=tuple(range(1, xb.ndim))).sum())
                    count += len(xb)
        return total / count

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat numeric arrays (``np.savez`` without pickle): ``meta/shape``, the model's own
        entries (:meth:`_meta_state`), ``meta/train_steps``, ``opt/lr``, ``net/<name>`` weights and
        buffers and ``opt/<param name>/{exp_avg, exp_avg_sq, step}`` optimiser moments."""
        self._check_fitted("state_dict")
        state: dict[str, np.ndarray] = {
            "meta/shape": np.asarray(self.shape_, dtype=np.int64),
            **self._meta_state(),
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
        """Restore weights, the model's own state and the optimiser written by :meth:`state_dict`
        (same options): a restored model continues training exactly as the saved one would."""
        import torch

        self.shape_ = tuple(int(s) for s in np.asarray(state["meta/shape"]))
        self.train_steps_ = int(np.asarray(state["meta/train_steps"]))
        self._load_meta(state)
        self.net_ = self._build_net(seed=None)
        dev = self._device()
        weights = {k[4:]: torch.as_tensor(np.asarray(v)) for k, v in state.items() if k.startswith("net/")}
        self.net_.load_state_dict(weights, strict=True)
        self.n_params_ = _n_params(self.net_)
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


# ---------------------------------------------------------------------- option checks


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


def _check_process(o: Mapping[str, Any]) -> None:
    """The diffusion options: ``timesteps``, ``schedule``, ``beta_start``, ``beta_end``,
    ``p_uncond``, ``guidance``."""
    _int("timesteps", o["timesteps"], 2)
    _choice("schedule", o["schedule"], tuple(SCHEDULES))
    _number("beta_start", o["beta_start"], strict=True, high=1.0)
    _number("beta_end", o["beta_end"], strict=True, high=1.0)
    if o["schedule"] == "linear" and o["beta_end"] < o["beta_start"]:
        raise ConfigError(f"model.beta_end: got {o['beta_end']!r} < beta_start {o['beta_start']!r}; "
                          "allowed: >= beta_start")
    _number("p_uncond", o["p_uncond"], high=1.0)
    _number("guidance", o["guidance"])


def _check_sampler(o: Mapping[str, Any], samplers: Sequence[str]) -> None:
    """``sampler`` one of ``samplers``; ``sample_steps`` None or 1..timesteps."""
    _choice("sampler", o["sampler"], samplers)
    _int("sample_steps", o["sample_steps"], 1, optional=True)
    if o["sample_steps"] is not None and o["sample_steps"] > o["timesteps"]:
        raise ConfigError(f"model.sample_steps: got {o['sample_steps']!r}; allowed: <= timesteps ({o['timesteps']})")


def _factory(cls: type, validated: Callable[[dict[str, Any]], dict[str, Any]], options: Mapping[str, Any]) -> Any:
    """``cls`` built from its keyword defaults overridden by ``options``, checked by ``validated``."""
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    return cls(**validated({**defaults, **options}))
