"""Controlled corruptions of a clean clip, one per physical violation (the check of docs/motion.md):

- ``floating``: root raised by 10 cm for the whole clip;
- ``penetration``: root lowered by 8 cm;
- ``sliding``: the root drifts horizontally at 0.4 m/s in a random direction while the poses (and
  so the planted feet) stay as they were -- feet skate;
- ``jitter``: independent per-frame noise on every joint's local rotation (rotation vectors with
  2 degrees standard deviation per axis) -- shows as jerk.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scloop.motion.kinematic import _root_joint
from scloop.motion.skeleton import Clip

KINDS = ("floating", "penetration", "sliding", "jitter")
# which metric each corruption violates
VIOLATION = {"floating": "floating", "penetration": "penetration", "sliding": "skating", "jitter": "jerk"}


def corrupt(clip: Clip, kind: str, *, rng: np.random.Generator, float_m: float = 0.10, sink_m: float = 0.08,
            drift_m_s: float = 0.4, jitter_deg: float = 2.0) -> Clip:
    """One corrupted copy of ``clip`` (module docstring)."""
    r = _root_joint(clip)
    tr = clip.translations.copy()
    if kind == "floating":
        tr[:, r, 2] += float_m
        return replace(clip, translations=tr)
    if kind == "penetration":
        tr[:, r, 2] -= sink_m
        return replace(clip, translations=tr)
    if kind == "sliding":
        a = rng.uniform(0, 2 * np.pi)
        t = np.arange(clip.n_frames) / clip.fps
        tr[:, r, :2] += drift_m_s * t[:, None] * np.array([np.cos(a), np.sin(a)])
        return replace(clip, translations=tr)
    if kind == "jitter":
        from scipy.spatial.transform import Rotation

        T, J = clip.rotations.shape[:2]
        noise = Rotation.from_rotvec(np.deg2rad(jitter_deg) * rng.standard_normal((T * J, 3))).as_matrix()
        rots = clip.rotations @ noise.reshape(T, J, 3, 3)
        return replace(clip, rotations=rots)
    raise ValueError(f"corruption {kind!r}; allowed: {', '.join(KINDS)}")
