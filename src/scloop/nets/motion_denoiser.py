"""The MDM-style transformer denoiser and the torch kinematics of its geometric losses.

Network (Tevet et al. 2023, "Human Motion Diffusion Model", the ``trans_enc`` variant; docs/paper.md
§3.3): every frame of a (normalised) window ``(B, T, F)`` is projected to ``latent`` dims; one
extra token in front carries ``MLP(sinusoid(t)) + Embedding(c)`` (diffusion step and condition;
the condition ``n_classes`` is the null condition of classifier-free guidance); sinusoidal
positional encodings are added to all ``T + 1`` tokens, which pass through a
``nn.TransformerEncoder`` (``layers`` layers, ``heads`` heads, feed-forward ``ff_size``, GELU,
``dropout``); the frame tokens are projected back to ``F`` features: the prediction of x0.

Kinematics for the geometric losses (MDM's ``lambda_rcxyz`` / ``lambda_vel`` / ``lambda_fc``): the
model only sees ``Data(x, y)``, not the task's skeleton, so :func:`infer_kinematics` recovers what
forward kinematics needs from the training windows of the canonical representation
(:mod:`scloop.motion.representation`): the layout ``F = 4 + 9 J + n_feet`` (``n_feet`` < 9), each
joint's parent (greedily, the already-placed joint whose frame makes ``G_p^T (P_j - P_p)``
constant over all frames -- exact for FK data) and bone offset (that constant), and the joint of
each contact channel (the joint whose own contact rule agrees best with the channel).  On real
Bandai windows this reproduces the positions block from the rotations to ~1e-6 m
(``tests/motion/test_mdm.py``).  :func:`fk_positions` is then forward kinematics in torch from the
6-D rotations, and :func:`foot_displacement` the per-frame world displacement of the contact
joints in the heading frame (root velocity, yaw rate and root-relative positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_FEET = 8  # F = 4 + 9 J + n_feet is read with n_feet = (F - 4) mod 9


def layout_from_features(n_features: int) -> dict[str, slice]:
    """The representation's slices for ``F`` features (``representation.feature_layout`` without a
    skeleton): ``J = (F - 4) // 9`` joints, ``n_feet = (F - 4) % 9`` contact channels."""
    if n_features < 13:
        raise ValueError(f"layout_from_features: F = {n_features} is too small for the motion representation")
    from scloop.motion.representation import layout

    return layout((n_features - 4) // 9, (n_features - 4) % 9)


# ----------------------------------------------------------------------------- kinematics (numpy)


@dataclass(frozen=True)
class Kinematics:
    parents: np.ndarray  # (J,) int, -1 for the root
    offsets: np.ndarray  # (J, 3) bone offsets (m)
    feet: np.ndarray  # (n_feet,) joint of each contact channel
    residual: float  # worst |FK(rotations) - positions| on the data it was inferred from (m)


def infer_kinematics(x: np.ndarray, fps: float = 20.0, max_frames: int = 4000) -> Kinematics:
    """Parents, offsets and contact joints from raw windows ``(n, T, F)`` (module docstring).
    Uses at most ``max_frames`` frames (evenly spaced); deterministic."""
    x = np.asarray(x, dtype=float)
    lay = layout_from_features(x.shape[-1])
    J = (lay["positions"].stop - lay["positions"].start) // 3
    flat = x.reshape(-1, x.shape[-1])
    idx = np.linspace(0, len(flat) - 1, min(len(flat), max_frames)).round().astype(int)
    f = flat[idx]
    from scloop.motion.representation import rotation_from_6d

    R = rotation_from_6d(f[:, lay["rotations"]].reshape(-1, J, 6))  # local; the root's is its heading-free world rotation
    P = f[:, lay["positions"]].reshape(-1, J, 3)
    parents = np.full(J, -1, dtype=np.int64)
    offsets = np.zeros((J, 3))
    G = {0: R[:, 0]}
    todo = set(range(1, J))
    while todo:
        best = None
        for j in sorted(todo):
            for p in sorted(G):
                local = np.einsum("tba,tb->ta", G[p], P[:, j] - P[:, p])  # G_p^T (P_j - P_p)
                err = float(np.abs(local - local.mean(0)).max())
                if best is None or err < best[0]:
                    best = (err, j, p, local.mean(0))
        _, j, p, off = best
        parents[j], offsets[j] = p, off
        G[j] = G[p] @ R[:, j]
        todo.remove(j)
    # positions from FK vs the positions block
    X = np.zeros_like(P)
    order = _topological(parents)
    Gw = np.zeros((len(f), J, 3, 3))
    for j in order:
        p = parents[j]
        if p < 0:
            Gw[:, j] = R[:, j]
        else:
            Gw[:, j] = Gw[:, p] @ R[:, j]
            X[:, j] = X[:, p] + np.einsum("tab,b->ta", Gw[:, p], offsets[j])
    residual = float(np.abs(X - P).max())
    feet = _contact_joints(x, lay, J, fps)
    return Kinematics(parents, offsets, feet, residual)


def _topological(parents: np.ndarray) -> list[int]:
    out, placed = [], set()
    while len(out) < len(parents):
        for j, p in enumerate(parents):
            if j not in placed and (p < 0 or p in placed):
                out.append(j)
                placed.add(j)
    return out


def _contact_joints(x: np.ndarray, lay: dict[str, slice], J: int, fps: float) -> np.ndarray:
    """For each contact channel, the joint whose contact rule (low within the window and slow,
    ``representation.foot_contacts`` on window-relative heights) agrees best with the channel."""
    from scloop.motion.representation import CONTACT_HEIGHT, CONTACT_SPEED

    nf = lay["contacts"].stop - lay["contacts"].start
    if nf == 0:
        return np.zeros(0, dtype=np.int64)
    n, T = x.shape[:2]
    P = x[..., lay["positions"]].reshape(n, T, J, 3)
    h = x[..., lay["root_height"]][..., None, 0] + P[..., 2]  # (n, T, J) world heights
    low = h - h.min(axis=1, keepdims=True) < CONTACT_HEIGHT
    disp = _foot_disp_np(x, lay, J, fps)  # (n, T, J, 3) per-frame world displacement, heading frame
    speed = np.linalg.norm(disp[..., :2], axis=-1) * fps
    rule = low & (speed < CONTACT_SPEED)
    c = x[..., lay["contacts"]] > 0.5  # (n, T, nf)
    agree = (rule[..., :, None] == c[..., None, :]).mean(axis=(0, 1))  # (J, nf)
    return np.argmax(agree, axis=0).astype(np.int64)


def _foot_disp_np(x: np.ndarray, lay: dict[str, slice], J: int, fps: float) -> np.ndarray:
    """numpy twin of :func:`foot_displacement` for all joints: (n, T, J, 3), m per frame."""
    n, T = x.shape[:2]
    P = x[..., lay["positions"]].reshape(n, T, J, 3)
    out = np.zeros((n, T, J, 3))
    return _disp(P, x[..., lay["root_velocity"]], x[..., lay["yaw_rate"]][..., 0], x[..., lay["root_height"]][..., 0],
                 out, np, fps)


def _disp(P, v, rate, hgt, out, xp, fps: float):
    # world displacement of every joint from frame t to t+1, in the heading frame of t:
    # [v_t / fps, h_{t+1} - h_t] + Rz(rate_t / fps) P_{t+1} - P_t; the last frame repeats.
    dyaw = rate[:, :-1] / fps
    c, s = xp.cos(dyaw)[..., None], xp.sin(dyaw)[..., None]
    Pn = P[:, 1:]
    rx = c * Pn[..., 0] - s * Pn[..., 1]
    ry = s * Pn[..., 0] + c * Pn[..., 1]
    rot = xp.stack([rx, ry, Pn[..., 2]], -1)
    root = xp.concatenate([v[:, :-1] / fps, (hgt[:, 1:] - hgt[:, :-1])[..., None]], -1)[:, :, None, :]
    d = root + rot - P[:, :-1]
    if xp is np:
        out[:, :-1] = d
        out[:, -1] = d[:, -1]
        return out
    return xp.cat([d, d[:, -1:]], 1)


# ----------------------------------------------------------------------------- kinematics (torch)


def rot6d_to_matrix(d6: "torch.Tensor") -> "torch.Tensor":
    """(..., 6) -> (..., 3, 3), Gram-Schmidt (columns b1, b2, b1 x b2), as ``rotation_from_6d``."""
    import torch

    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1, eps=1e-6)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-6)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def fk_positions(x: "torch.Tensor", kin: Kinematics, lay: dict[str, slice]) -> "torch.Tensor":
    """Raw windows (B, T, F) -> root-relative heading-frame joint positions (B, T, J, 3) by
    forward kinematics from the 6-D rotations (what the positions block stores)."""
    import torch

    B, T = x.shape[:2]
    J = len(kin.parents)
    R = rot6d_to_matrix(x[..., lay["rotations"]].reshape(B, T, J, 6))
    off = torch.as_tensor(kin.offsets, dtype=x.dtype, device=x.device)
    G: list = [None] * J
    X: list = [None] * J
    for j in _topological(kin.parents):
        p = int(kin.parents[j])
        if p < 0:
            G[j], X[j] = R[:, :, j], torch.zeros(B, T, 3, dtype=x.dtype, device=x.device)
        else:
            G[j] = G[p] @ R[:, :, j]
            X[j] = X[p] + G[p] @ off[j]
    return torch.stack(X, dim=2)


def foot_displacement(x: "torch.Tensor", P: "torch.Tensor", kin: Kinematics, lay: dict[str, slice],
                      fps: float) -> "torch.Tensor":
    """World displacement (m per frame, heading frame of t) of the contact joints from t to t+1:
    ``[v_t / fps, h_{t+1} - h_t] + Rz(rate_t / fps) P_{t+1} - P_t`` (B, T, n_feet, 3)."""
    import torch

    feet = torch.as_tensor(kin.feet, device=x.device)
    return _disp(P[:, :, feet], x[..., lay["root_velocity"]], x[..., lay["yaw_rate"]][..., 0],
                 x[..., lay["root_height"]][..., 0], None, torch, fps)


# ----------------------------------------------------------------------------- network


def _sinusoid(pos: "torch.Tensor", dim: int) -> "torch.Tensor":
    import torch

    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    ang = pos.float()[:, None] * freq[None]
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def build_transformer(n_features: int, n_classes: int, *, latent: int, layers: int, heads: int, ff_size: int,
                      dropout: float, max_len: int = 512):
    import torch
    import torch.nn as nn

    class MotionTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.latent, self.n_classes = latent, n_classes
            self.inp = nn.Linear(n_features, latent)
            self.time = nn.Sequential(nn.Linear(latent, latent), nn.SiLU(), nn.Linear(latent, latent))
            self.cond = nn.Embedding(n_classes + 1, latent)  # index n_classes = null condition
            layer = nn.TransformerEncoderLayer(latent, heads, ff_size, dropout, activation="gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.out = nn.Linear(latent, n_features)
            self.drop = nn.Dropout(dropout)
            self.register_buffer("pe", _sinusoid(torch.arange(max_len), latent), persistent=False)

        def forward(self, x, t, y):  # x (B, T, F) normalised x_t; t (B,) long; y (B,) long -> x0 (B, T, F)
            B, T, _ = x.shape
            tok = (self.time(_sinusoid(t, self.latent)) + self.cond(y))[:, None]
            h = torch.cat([tok, self.inp(x)], dim=1) + self.pe[: T + 1][None]
            h = self.encoder(self.drop(h))
            return self.out(h[:, 1:])

    return MotionTransformer()
