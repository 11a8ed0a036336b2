"""The cheap ``kinematic`` correction of a motion clip (no simulation).

1. Ground: shift the whole clip vertically so that its lowest-foot gap g[t] (see
   :mod:`scloop.motion.metrics`) has a low percentile (10th) of 0 -- a clip that floats or sinks
   as a whole comes back onto the ground -- then lift the frames still under the ground by their
   depth (smoothed over +-2 frames so no step appears).
2. Feet locked while in contact: the support point of a frame (its lowest contact joint) is
   planted when its gap is below the contact height and it moves slower than ``lock_speed``; while the same joint stays planted, the
   root's horizontal velocity is corrected by minus that joint's horizontal velocity, so planted
   feet stop sliding (a drifting root is pulled back).  Frames without contact keep their
   velocity.
3. Bone lengths: the clip is edited through the root translation only and rebuilt by forward
   kinematics from joint rotations, so every bone keeps the skeleton's length (an edit of joint
   *positions* would need step 3 of re-fitting lengths; here it holds by construction).

Not attempted: inverse kinematics of the legs (which would lock each foot independently) and
smoothing of the joint rotations (jitter stays: that is what the physics correction removes).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scloop.motion.metrics import CONTACT_HEIGHT, foot_gaps
from scloop.motion.skeleton import Clip


def _root_joint(clip: Clip) -> int:
    """The joint carrying the world translation (the first joint whose translation moves)."""
    tr = clip.translations
    moving = np.flatnonzero(np.ptp(tr, axis=0).max(axis=1) > 1e-9)
    return int(moving[0]) if len(moving) else 0


def kinematic_correct(clip: Clip, *, feet: list[int] | None = None, clearance=None,
                      contact_height: float = CONTACT_HEIGHT, lock_speed: float = 1.0, lock_feet: bool = True) -> Clip:
    """Return the corrected clip (same skeleton, length and rotations; new root translation)."""
    feet = clip.skeleton.foot_joints() if feet is None else feet
    r = _root_joint(clip)
    tr = clip.translations.copy()
    X = clip.positions()
    g = foot_gaps(X, feet, clearance).min(axis=1)
    # 1. ground the clip as a whole, then lift remaining penetration
    dz = -np.percentile(g, 10)
    g = g + dz
    lift = np.maximum(0.0, -g)
    if lift.any():
        from scipy.ndimage import gaussian_filter1d, maximum_filter1d

        # widen, then smooth: every penetrating frame is lifted at least by its depth, and the
        # lift ramps in and out over a few frames
        lift = gaussian_filter1d(maximum_filter1d(lift, size=7, mode="nearest"), sigma=2.0, mode="nearest")
    tr[:, r, 2] += dz + lift
    out = replace(clip, translations=tr)
    if not lock_feet or clip.n_frames < 3:
        return out
    # 2. planted feet must not slide: cancel their mean horizontal velocity through the root
    from scipy.ndimage import gaussian_filter1d

    # contacts and foot drift are read from foot trajectories smoothed over +-2 frames: per-frame
    # noise (jitter) would otherwise break contacts into pieces and its unmatched ends would add
    # up to a random walk of the root
    Xf = gaussian_filter1d(out.positions()[:, feet], sigma=2.0, axis=0, mode="nearest")  # (T, F, 3)
    c = np.zeros(len(feet)) if clearance is None else np.asarray(clearance, dtype=float)
    h = Xf[:, :, 2] - c
    # the support point of a frame is its lowest contact joint (the stance toe during toe-off,
    # the heel at heel strike); it is planted when it is within contact_height of the ground
    # and stays the support point into the next frame
    low = h.argmin(axis=1)
    rows = np.arange(len(h))
    speed = np.linalg.norm(np.gradient(Xf[:, :, :2], axis=0), axis=-1)[rows, low] * clip.fps
    # a support point moving faster than lock_speed (1 m/s) is a foot sweeping low over the
    # ground in swing, not a planted one (a skating planted foot moves far slower)
    planted = (h[rows, low] < contact_height) & (speed < lock_speed)
    keep = planted[1:] & planted[:-1] & (low[1:] == low[:-1])
    idx = np.arange(len(h) - 1)
    step = Xf[idx + 1, low[:-1], :2] - Xf[idx, low[:-1], :2]  # (T-1, 2)
    drift = np.where(keep[:, None], step, 0.0)
    # spread each frame's correction over a few frames (Gaussian, sigma 2 frames): switching the
    # lock on and off must not add velocity steps, which would show up as jerk
    drift = gaussian_filter1d(drift, sigma=2.0, axis=0, mode="nearest")
    shift = np.concatenate([np.zeros((1, 2)), -np.cumsum(drift, axis=0)])
    # the root's parent chain above r does not rotate in practice (a static root joint), so a
    # world shift of joint r equals a shift of its local translation when r's parents are identity
    tr = out.translations.copy()
    tr[:, r, :2] += shift
    return replace(out, translations=tr)
