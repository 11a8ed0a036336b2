"""Helpers shared by corrections: the mixing weight and displacement diagnostics."""

from __future__ import annotations

import math

import numpy as np

from scloop.core.registry import ConfigError


def mixing_weight(gamma: float) -> float:
    """t = gamma / (1 + gamma): pi_gamma p = (1 - t) p_theta + t p_target (docs/paper.md §1.3).
    gamma = inf gives t = 1."""
    if gamma < 0 or math.isnan(gamma):
        raise ConfigError(f"gamma: got {gamma!r}; allowed: a number >= 0 (or .inf)")
    return 1.0 if math.isinf(gamma) else gamma / (1.0 + gamma)


def check_gamma(gamma: float) -> float:
    mixing_weight(float(gamma))
    return float(gamma)


def displacement_diagnostics(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """``displacement``: mean L2 distance moved by the points that changed (0 if none);
    ``fraction_changed``: share of points that changed.  Shapes (n, ...)."""
    if len(before) == 0:
        return {"displacement": 0.0, "fraction_changed": 0.0}
    d = np.sqrt(((after - before).reshape(len(before), -1) ** 2).sum(axis=1))
    changed = d > 0
    return {
        "displacement": float(d[changed].mean()) if changed.any() else 0.0,
        "fraction_changed": float(changed.mean()),
    }


def require_target(target, name: str):
    if target is None or not hasattr(target, "sample"):
        raise ConfigError(
            f"correction {name!r} needs a task with a known target distribution "
            "(e.g. task: gaussian); this task has none"
        )
    return target
