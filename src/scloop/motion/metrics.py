"""Physical-plausibility metrics of a motion, computed on world joint positions.

Inputs: ``X`` (T, J, 3) metres, Z up, ground plane z = 0; ``fps``; ``feet``: indices of the
contact joints; ``clearance`` (len(feet),): the height of each contact joint above the ground
when the foot is flat on it (a joint is not the sole: Bandai's toe joints sit ~4 cm up).
``h[t, f] = X[t, feet[f], z] - clearance[f]`` is the gap between foot f and the ground, and
``g[t] = min_f h[t, f]`` the lowest gap at frame t.

- ``penetration`` (m): mean_t max(0, -g[t]) -- how deep the lowest foot is under the ground.
- ``floating`` (m): mean_t max(0, g[t] - tol) with tol = 2 cm -- how far the lowest foot hovers
  above the ground (flight phases of a run count too: compare clips of the same motion).
- ``skating`` (m/s): mean horizontal speed of foot joints over the (frame, foot) pairs in contact,
  contact = h < ``contact_height`` (3 cm); speed from central differences.  Feet planted on the
  ground should not move.
- ``jerk`` (m/s^3): mean over frames and joints of |third finite difference of X| * fps^3.
  Mocap noise and frame-to-frame jitter show up here.
(``harness_load`` -- mean root harness force / body weight -- is reported by the physics
correction, which is the only thing that simulates.)
"""

from __future__ import annotations

import numpy as np

CONTACT_HEIGHT = 0.03
FLOAT_TOLERANCE = 0.02
METRICS = ("penetration", "floating", "skating", "jerk")


def foot_gaps(X: np.ndarray, feet: list[int], clearance: np.ndarray | None = None) -> np.ndarray:
    """(T, F) gap between each contact joint and the ground (metres)."""
    c = np.zeros(len(feet)) if clearance is None else np.asarray(clearance, dtype=float)
    return X[:, feet, 2] - c


def penetration(X, feet, clearance=None) -> float:
    g = foot_gaps(X, feet, clearance).min(axis=1)
    return float(np.maximum(0.0, -g).mean())


def floating(X, feet, clearance=None, tol: float = FLOAT_TOLERANCE) -> float:
    g = foot_gaps(X, feet, clearance).min(axis=1)
    return float(np.maximum(0.0, g - tol).mean())


def skating(X, fps: float, feet, clearance=None, contact_height: float = CONTACT_HEIGHT) -> float:
    if len(X) < 3:
        return 0.0
    h = foot_gaps(X, feet, clearance)
    v = np.gradient(X[:, feet, :2], axis=0) * fps  # (T, F, 2)
    speed = np.linalg.norm(v, axis=-1)
    contact = h < contact_height
    return float(speed[contact].mean()) if contact.any() else 0.0


def jerk(X, fps: float) -> float:
    if len(X) < 4:
        return 0.0
    d3 = np.diff(X, n=3, axis=0) * fps**3
    return float(np.linalg.norm(d3, axis=-1).mean())


def all_metrics(X: np.ndarray, fps: float, feet: list[int], clearance=None) -> dict[str, float]:
    """The four metrics of the module docstring, as a dict."""
    return {
        "penetration": penetration(X, feet, clearance),
        "floating": floating(X, feet, clearance),
        "skating": skating(X, fps, feet, clearance),
        "jerk": jerk(X, fps),
    }


def estimate_clearance(clips, feet: list[int]) -> np.ndarray:
    """Per contact joint, its height when planted: the median over clips of the joint's 2nd
    percentile height (robust to a few frames of mocap penetration).  (F,) metres."""
    lows = np.array([[np.percentile(c.positions()[:, f, 2], 2) for f in feet] for c in clips])
    return np.median(lows, axis=0)


def contacts_from_windows(windows: np.ndarray, skeleton, fps: float, *, limit: int = 64) -> tuple[list[int], np.ndarray]:
    """Contact joints and their clearances for motion in the canonical representation: the first
    ``limit`` windows (n, T, F) are decoded on ``skeleton`` and :func:`estimate_clearance` is
    applied.  Returns (feet of the decoded skeleton, clearance (F,))."""
    from scloop.motion.representation import decode

    clips = [decode(w, skeleton, fps=fps) for w in np.asarray(windows)[:limit]]
    feet = clips[0].skeleton.foot_joints()
    return feet, estimate_clearance(clips, feet)
