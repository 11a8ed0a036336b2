"""Noise-prediction networks eps_theta(x_t, t, c) for the class-conditional DDPM (:mod:`scloop.models.ddpm`).

Both networks map a noisy image ``x_t`` (B, C, H, W), integer timesteps ``t`` (B,) in 0..T-1 and
integer class labels ``c`` (B,) in 0..n_classes to a noise estimate of the same shape as ``x_t``.
Label ``n_classes`` is the *null* class: the "unconditional" branch of classifier-free guidance
(Ho & Salimans 2022) is the same network with the label replaced by it, so one network learns
both eps_theta(x_t, t, c) and eps_theta(x_t, t, null).

- :class:`ResidualMLP`: flattens the image; for tiny images (8x8 digits) this is faster than a
  convolutional net on CPU and was good enough in the digits probe (width 256,
  3 blocks, 0.76 M parameters).
- :class:`UNet`: diffusers' ``UNet2DModel`` with a class embedding (``num_class_embeds``), padded to
  a size its down/up-sampling path can invert and cropped back.

This module imports torch at top level; only :mod:`scloop.models.ddpm` imports it, and only
inside methods, so ``import scloop`` stays torch-free.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style timestep embedding (Vaswani et al. 2017; DDPM, Ho et al. 2020).

    ``t`` (B,) integer or float timesteps -> (B, dim) with
    ``[cos(t w_0), ..., cos(t w_{d/2-1}), sin(t w_0), ...]``, ``w_k = max_period^(-k/(d/2))``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _ResBlock(nn.Module):
    """Pre-norm residual MLP block with an additive conditioning shift:
    ``h + W2 SiLU(W1 SiLU(LN(h)) + P e)``, where ``e`` is the time + class embedding."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.cond = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.cond(emb)
        return h + self.fc2(F.silu(z))


class ResidualMLP(nn.Module):
    """Residual MLP denoiser on flattened images.

    Parameters
    ----------
    shape : (C, H, W) of the images.   n_classes : number of real classes (the embedding has
    ``n_classes + 1`` rows, the last one is the null class).   width : hidden width.
    blocks : number of residual blocks.

    Shapes: ``forward(x (B, C, H, W), t (B,), c (B,)) -> (B, C, H, W)``.
    """

    def __init__(self, shape: Sequence[int], n_classes: int, *, width: int = 256, blocks: int = 3) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        d = math.prod(self.shape)
        self.width = width
        self.inp = nn.Linear(d, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(n_classes + 1, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, d)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        emb = self.time(sinusoidal_embedding(t, self.width)) + self.label(c)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h))).view(x.shape)


class UNet(nn.Module):
    """Class-conditional ``diffusers.UNet2DModel`` that accepts any image size.

    The UNet halves the resolution ``len(channels) - 1`` times, so H and W are zero-padded (in the
    [-1, 1] data space the pad value 0 is mid-grey; the loss is taken on the cropped output only)
    up to a multiple of ``2^(len(channels) - 1)`` and the output is cropped back.  28x28 with three
    levels needs no padding (28 -> 14 -> 7); with four levels it is padded to 32x32.

    Parameters
    ----------
    shape : (C, H, W).   n_classes : real classes (embedding has ``n_classes + 1`` rows, last = null).
    channels : output channels per resolution level (``block_out_channels``).
    layers_per_block : ResNet layers per level.   attention : self-attention at the lowest resolution.

    Shapes: ``forward(x (B, C, H, W), t (B,), c (B,)) -> (B, C, H, W)``.
    """

    def __init__(
        self,
        shape: Sequence[int],
        n_classes: int,
        *,
        channels: Sequence[int] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = True,
    ) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        c, h, w = (int(s) for s in shape)
        self.shape = (c, h, w)
        m = 2 ** (len(channels) - 1)
        self.pad_h, self.pad_w = (-h) % m, (-w) % m
        levels = len(channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        # GroupNorm needs a group count dividing every channel count.
        groups = math.gcd(*channels) if len(channels) > 1 else channels[0]
        groups = math.gcd(groups, 32)
        self.net = UNet2DModel(
            sample_size=(h + self.pad_h, w + self.pad_w),
            in_channels=c,
            out_channels=c,
            block_out_channels=tuple(channels),
            layers_per_block=layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=groups,
            attention_head_dim=None if not attention else min(channels[-1], 32),
            add_attention=attention,
            num_class_embeds=n_classes + 1,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pad_h or self.pad_w:
            x = F.pad(x, (0, self.pad_w, 0, self.pad_h))
        out = self.net(x, t, class_labels=c).sample
        return out[..., :h, :w]
