"""HumanML3D feature files: reader, a tiny writer (for tests and exports), and joint recovery.

Layout of a HumanML3D dataset folder (Guo et al., "Generating Diverse and Natural 3D Human Motions
from Text", CVPR 2022)::

    <root>/new_joint_vecs/<name>.npy   float (T, 263) features at 20 fps, 22 SMPL joints
    <root>/texts/<name>.txt            one caption per line: ``caption#tokens#start#end``

The 263-d vector per frame (T2M ``process_file``), Y up, metres::

    [0]       root yaw velocity  (rad/frame, in T2M's *half-angle* units, see below)
    [1:3]     root linear velocity (x, z) in the heading frame of the next frame (m/frame)
    [3]       root height y
    [4:67]    ric: joints 1..21 relative to the root's ground projection, heading removed (21 x 3)
    [67:193]  local joint rotations, 6-D (21 x 6)       -- unused here
    [193:259] joint velocities (22 x 3)                  -- unused here
    [259:263] foot contacts (l_ankle, l_foot, r_ankle, r_foot)

:func:`humanml3d_positions` is T2M's ``recover_from_ric`` in numpy: the root yaw angle is
``theta_t = sum_{k<t} f[k, 0]`` (``theta_0 = 0``) and enters as the quaternion
``(cos theta, 0, sin theta, 0)``, a rotation by ``2 theta`` about +Y (T2M derives the yaw velocity
from quaternion components, so the stored numbers are half-angles); the root's planar position is
``r_t = sum_{k<t} R_y(theta_{k+1})^{-1} [f[k, 1], 0, f[k, 2]]`` with ``r_0 = 0``, its height
``f[t, 3]``; joint ``j`` is ``R_y(theta_t)^{-1} ric_{t, j} + (r_t.x, 0, r_t.z)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.motion.bvh import Y_UP_TO_Z_UP
from scloop.motion.deepmimic import MotionFormatError

HUMANML3D_DIMS = 263
HUMANML3D_JOINTS = 22
HUMANML3D_FPS = 20.0


def _paths(root: str | Path, name: str) -> tuple[Path, Path]:
    root = Path(root)
    return root / "new_joint_vecs" / f"{name}.npy", root / "texts" / f"{name}.txt"


def read_humanml3d(root: str | Path, name: str) -> tuple[np.ndarray, list[str]]:
    """Features ``(T, 263)`` float32 and the captions (the text before the first ``#`` of each
    non-empty line) of motion ``name`` under dataset folder ``root``.

    Raises :class:`MotionFormatError` naming the file when a file is missing or unreadable, the
    array is not (T, 263) with T >= 1, holds NaN/inf, or the text file has no caption."""
    npy, txt = _paths(root, name)
    if not npy.is_file():
        raise MotionFormatError(f"{npy}: HumanML3D feature file not found")
    if not txt.is_file():
        raise MotionFormatError(f"{txt}: HumanML3D text file not found (every motion needs its captions)")
    try:
        feats = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MotionFormatError(f"{npy}: cannot read as .npy ({exc})") from None
    if feats.ndim != 2 or feats.shape[1] != HUMANML3D_DIMS or feats.shape[0] < 1:
        raise MotionFormatError(f"{npy}: shape {feats.shape}; HumanML3D features are (T, {HUMANML3D_DIMS}), T >= 1")
    if not np.issubdtype(feats.dtype, np.floating):
        raise MotionFormatError(f"{npy}: dtype {feats.dtype}; expected floating point")
    if not np.isfinite(feats).all():
        t = int(np.argwhere(~np.isfinite(feats))[0, 0])
        raise MotionFormatError(f"{npy}: NaN or infinite value (first at frame {t})")
    texts = []
    for line in txt.read_text(encoding="utf-8").splitlines():
        caption = line.split("#", 1)[0].strip()
        if caption:
            texts.append(caption)
    if not texts:
        raise MotionFormatError(f"{txt}: no caption (lines are 'caption#tokens#start#end')")
    return feats.astype(np.float32), texts


def write_humanml3d(root: str | Path, name: str, features: np.ndarray, texts: list[str]) -> None:
    """Write ``features`` (T, 263) and ``texts`` in the layout :func:`read_humanml3d` reads.
    Each caption becomes ``caption#<space-joined words>#0.0#0.0`` (tokens without POS tags; 0/0 =
    the whole motion).  Shapes are not checked, so tests can write broken files."""
    npy, txt = _paths(root, name)
    npy.parent.mkdir(parents=True, exist_ok=True)
    txt.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, np.asarray(features))
    txt.write_text("".join(f"{t}#{' '.join(t.split())}#0.0#0.0\n" for t in texts), encoding="utf-8")


def _rot_y(angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation by ``angle`` about +Y."""
    c, s = np.cos(angle), np.sin(angle)
    o, i = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, o, s], -1), np.stack([o, i, o], -1), np.stack([-s, o, c], -1)], -2)


def humanml3d_positions(features: np.ndarray, *, up: str = "z") -> np.ndarray:
    """Joint positions ``(T, 22, 3)`` (metres) from HumanML3D features ``(T, >= 67)`` (module
    docstring formula; T2M ``recover_from_ric``).  The motion starts at the origin with heading 0.
    ``up="z"`` (default) returns scloop's Z-up frame (``p' = C p``, ``C = Y_UP_TO_Z_UP``);
    ``up="y"`` returns HumanML3D's own Y-up frame."""
    f = np.asarray(features, dtype=float)
    if f.ndim != 2 or f.shape[1] < 4 + 3 * (HUMANML3D_JOINTS - 1):
        raise ValueError(f"features shape {f.shape}; need (T, {HUMANML3D_DIMS})")
    if up not in ("y", "z"):
        raise ValueError(f"up={up!r}; allowed: 'y', 'z'")
    T = len(f)
    theta = np.zeros(T)
    theta[1:] = np.cumsum(f[:-1, 0])
    # quaternion (cos th, 0, sin th, 0) = rotation by 2 th about +Y; its inverse rotates back
    r_inv = _rot_y(-2.0 * theta)
    step = np.zeros((T, 3))
    step[1:, [0, 2]] = f[:-1, 1:3]
    root = np.cumsum(np.einsum("tab,tb->ta", r_inv, step), axis=0)
    root[:, 1] = f[:, 3]
    ric = f[:, 4: 4 + 3 * (HUMANML3D_JOINTS - 1)].reshape(T, HUMANML3D_JOINTS - 1, 3)
    joints = np.einsum("tab,tjb->tja", r_inv, ric)
    joints[..., 0] += root[:, None, 0]
    joints[..., 2] += root[:, None, 2]
    pos = np.concatenate([root[:, None], joints], axis=1)
    return pos @ Y_UP_TO_Z_UP.T if up == "z" else pos
