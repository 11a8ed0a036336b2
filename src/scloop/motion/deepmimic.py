"""Reader for DeepMimic ``humanoid3d`` motion files (JSON text, usually with a ``.txt`` extension).

Format (Peng et al., "DeepMimic", SIGGRAPH 2018; ``data/motions/*.txt`` of xbpeng/DeepMimic)::

    {"Loop": "none" | "wrap", "Frames": [[dt, root_pos (3), root_rot (4), chest (4), neck (4),
      right_hip (4), right_knee (1), right_ankle (4), right_shoulder (4), right_elbow (1),
      left_hip (4), left_knee (1), left_ankle (4), left_shoulder (4), left_elbow (1)], ...]}

44 numbers per frame.  ``dt`` is the duration of the frame in seconds (the last frame carries 0);
the root position is in metres in the world frame; quaternions are (w, x, y, z) -- the root's is
its world orientation, the others are local (parent frame); knees and elbows are revolute joints,
one angle in radians about the joint's local z axis.  DeepMimic's world is Y up and the character
faces +x with its right side at +z.

Skeleton: :func:`humanoid3d_skeleton`, the 15 joints of DeepMimic's character file
``data/characters/humanoid3d.txt`` (xbpeng/DeepMimic commit 3ca04d38, ``Skeleton.Joints``:
``Parent`` and ``AttachX/Y/Z``; all ``AttachTheta`` are 0).  It includes the two *fixed* wrist
joints of that file (identity rotation, never in the motion rows) so that hand positions exist.

Output (scloop convention): Z up, metres.  Positions map as ``p' = C p`` and every rotation as
``R' = C R C^T`` with ``C = Y_UP_TO_Z_UP`` ((x, y, z) -> (x, -z, y)); applied to the root and
to every local joint, so forward kinematics commutes with the change of axes.

Malformed files raise :class:`MotionFormatError` naming the file: not JSON, no ``Frames``, a row
of the wrong length, non-finite values, a non-positive frame duration, or a quaternion whose norm
is off 1 by more than ``QUAT_TOL`` (smaller deviations are renormalised).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from scloop.motion.bvh import Y_UP_TO_Z_UP
from scloop.motion.skeleton import PLAUSIBLE_BODY_HEIGHT_M, Clip, Skeleton, SkeletonError, body_height

FRAME_DIMS = 44
QUAT_TOL = 1e-2  # |norm - 1| above this is an error, below it the quaternion is renormalised

# humanoid3d.txt, Skeleton.Joints: (name, parent, AttachX, AttachY, AttachZ) in DeepMimic's
# Y-up frame, metres.  Joint order = the file's joint IDs.
_HUMANOID3D = (
    ("root", -1, 0.0, 0.0, 0.0),
    ("chest", 0, 0.0, 0.236151, 0.0),
    ("neck", 1, 0.0, 0.223894, 0.0),
    ("right_hip", 0, 0.0, 0.0, 0.084887),
    ("right_knee", 3, 0.0, -0.421546, 0.0),
    ("right_ankle", 4, 0.0, -0.409870, 0.0),
    ("right_shoulder", 1, -0.02405, 0.24350, 0.18311),
    ("right_elbow", 6, 0.0, -0.274788, 0.0),
    ("right_wrist", 7, 0.0, -0.258947, 0.0),
    ("left_hip", 0, 0.0, 0.0, -0.084887),
    ("left_knee", 9, 0.0, -0.421546, 0.0),
    ("left_ankle", 10, 0.0, -0.409870, 0.0),
    ("left_shoulder", 1, -0.02405, 0.24350, -0.18311),
    ("left_elbow", 12, 0.0, -0.274788, 0.0),
    ("left_wrist", 13, 0.0, -0.258947, 0.0),
)
HUMANOID3D_JOINTS = tuple(j[0] for j in _HUMANOID3D)

# Frame-row layout after dt and the root position: (joint name, column, kind) with kind
# "quat" (4 numbers, w x y z) or "hinge" (1 angle about local z).  Wrists are fixed joints.
_ROW = (
    ("root", 4, "quat"),
    ("chest", 8, "quat"),
    ("neck", 12, "quat"),
    ("right_hip", 16, "quat"),
    ("right_knee", 20, "hinge"),
    ("right_ankle", 21, "quat"),
    ("right_shoulder", 25, "quat"),
    ("right_elbow", 29, "hinge"),
    ("left_hip", 30, "quat"),
    ("left_knee", 34, "hinge"),
    ("left_ankle", 35, "quat"),
    ("left_shoulder", 39, "quat"),
    ("left_elbow", 43, "hinge"),
)


class MotionFormatError(ValueError):
    """A malformed motion file (DeepMimic JSON or HumanML3D arrays)."""


def humanoid3d_skeleton() -> Skeleton:
    """DeepMimic's humanoid3d (15 joints, wrists included), Z up, metres.  Standing root
    (pelvis) height in the data is about 0.86 m; hip-to-ankle length 0.831 m."""
    names = tuple(j[0] for j in _HUMANOID3D)
    parents = np.array([j[1] for j in _HUMANOID3D], dtype=int)
    offsets = np.array([j[2:] for j in _HUMANOID3D], dtype=float) @ Y_UP_TO_Z_UP.T
    return Skeleton(names, parents, offsets)


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, i = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def read_deepmimic(path: str | Path, *, skeleton: Skeleton | None = None,
                   labels: Mapping[str, str] | None = None) -> Clip:
    """Read a DeepMimic humanoid3d motion file into a :class:`Clip` (Z up, metres).

    ``skeleton``: bone offsets to use instead of :func:`humanoid3d_skeleton` (same 15 joint
    names in the same order, metres: a body outside the plausible human size of
    :func:`scloop.motion.skeleton.body_height` raises :class:`SkeletonError`).
    ``fps = 1 / dt`` from the frame durations (the last frame's 0 is
    DeepMimic's end marker and ignored); if the durations vary (by more than 1e-6 s) the median
    is used and a warning names the file -- no resampling is done.  ``labels`` are copied; the
    file's ``Loop`` value is added as ``labels["loop"]``.
    """
    path = Path(path)

    def err(msg: str) -> MotionFormatError:
        return MotionFormatError(f"{path}: {msg}")

    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise err(f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise err(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "Frames" not in doc:
        raise err("no 'Frames' key; a DeepMimic motion is {\"Loop\": ..., \"Frames\": [[...], ...]}")
    frames = doc["Frames"]
    if not isinstance(frames, list) or not frames:
        raise err("'Frames' must be a non-empty list of frame rows")
    for t, row in enumerate(frames):
        if not isinstance(row, list) or len(row) != FRAME_DIMS:
            n = len(row) if isinstance(row, list) else type(row).__name__
            raise err(f"frame {t} has {n} values, a humanoid3d frame has {FRAME_DIMS} "
                      "(dt, root position 3, 9 quaternions x 4, 4 hinge angles)")
    try:
        data = np.array(frames, dtype=float)
    except (TypeError, ValueError):
        raise err("non-numeric value in 'Frames'") from None
    if not np.isfinite(data).all():
        t, c = np.argwhere(~np.isfinite(data))[0]
        raise err(f"non-finite value {data[t, c]} at frame {t}, column {c}")

    # frame rate from the durations; the last frame's dt is 0 by convention
    dt = data[:-1, 0] if len(data) > 1 else data[:, 0]
    if len(data) > 1 and data[-1, 0] > 0:
        dt = data[:, 0]
    if (dt <= 0).any():
        t = int(np.flatnonzero(dt <= 0)[0])
        raise err(f"frame {t} has duration {dt[t]}; durations must be > 0 (only the last frame may be 0)")
    frame_time = float(np.median(dt))
    if dt.max() - dt.min() > 1e-6:
        warnings.warn(f"{path}: frame durations vary ({dt.min():.6g} to {dt.max():.6g} s); "
                      f"using the median {frame_time:.6g} s (fps {1 / frame_time:.4g}) without resampling",
                      stacklevel=2)

    skel = skeleton if skeleton is not None else humanoid3d_skeleton()
    if tuple(skel.names) != HUMANOID3D_JOINTS:
        raise SkeletonError(f"{path}: skeleton joints {skel.names} do not match humanoid3d {HUMANOID3D_JOINTS}")
    h = body_height(skel)
    lo, hi = PLAUSIBLE_BODY_HEIGHT_M
    if h is not None and not lo <= h <= hi:
        raise SkeletonError(f"{path}: the skeleton given measures {h:.3g} m from its highest joint to the ankles "
                            f"along the bones; allowed: {lo:g}-{hi:g} m (a human, metres; humanoid3d: 1.46 m)")
    T, J = len(data), skel.n_joints
    rots = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    for name, col, kind in _ROW:
        j = skel.index(name)
        if kind == "quat":
            q = data[:, col: col + 4]
            norm = np.linalg.norm(q, axis=1)
            bad = np.abs(norm - 1.0) > QUAT_TOL
            if bad.any():
                t = int(np.flatnonzero(bad)[0])
                raise err(f"frame {t}: {name} quaternion (columns {col}-{col + 3}) has norm {norm[t]:.6g}; "
                          f"allowed 1 +- {QUAT_TOL} (smaller deviations are renormalised)")
            rots[:, j] = _quat_to_matrix(q / norm[:, None])
        else:
            rots[:, j] = _rot_z(data[:, col])
    C = Y_UP_TO_Z_UP
    trans = np.broadcast_to(np.asarray(skel.offsets, float), (T, J, 3)).copy()
    trans[:, 0] = data[:, 1:4] @ C.T
    rots = C @ rots @ C.T
    lab = dict(labels or {})
    lab.setdefault("loop", str(doc.get("Loop", "none")))
    return Clip(skel, rots, trans, 1.0 / frame_time, name=path.stem, labels=lab)
