"""Motion corrections as engine plugins (domain ``motion``; docs/paper.md §3.3).

Data: ``x`` float32 (n, T, F) windows of the canonical representation
(:mod:`scloop.motion.representation`), ``y`` labels.  The task supplies, through
``CorrectionContext.meta``, the ``skeleton`` the features were encoded on and their ``fps``.
Each chosen window (probability t = gamma / (1 + gamma); gamma = inf: all) is decoded to a clip,
corrected, and encoded back:

- ``physics``: harnessed PD tracking in MuJoCo (:mod:`scloop.motion.physics.tracking`); the
  output is the *simulated* motion.  ``harness`` is the harness budget in body weights
  (0 = pure physics, large = kinematic replay) -- the physical correction strength.
- ``kinematic``: grounding and foot locking (:mod:`scloop.motion.kinematic`).
- ``physics+kinematic``: the chain (kinematic pass first, simulation last).

Diagnostics: ``displacement`` / ``fraction_changed`` (feature space), ``tracking_error_cm``
(corrected vs input joint positions), ``falls`` and ``harness_load`` (physics), and the mean
``penetration`` / ``floating`` / ``skating`` / ``jerk`` before and after
(:mod:`scloop.motion.metrics`).
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.core.types import Corrected, CorrectionContext, Data


class MotionCorrection:
    def __init__(self, *, kind: str, gamma: float = math.inf, harness: float = 1.0, processes: int = 1) -> None:
        self.kind, self.gamma, self.harness, self.processes = kind, gamma, harness, processes

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        from scloop.motion import metrics as M

        meta = context.meta or {}
        if "skeleton" not in meta or "fps" not in meta:
            raise ConfigError(f"correction {self.kind!r} needs a motion task (the task's meta must give the "
                              "skeleton and fps of its features)")
        self.skeleton_, self.fps_ = meta["skeleton"], float(meta["fps"])
        x = np.asarray(context.real.x)
        if x.ndim != 3:
            raise ConfigError(f"correction {self.kind!r}: real data must be (n, T, F) motion windows, got {x.shape}")
        self.feet_, self.clearance_ = M.contacts_from_windows(x, self.skeleton_, self.fps_)
        return self

    def _fix(self, clips: list) -> tuple[list, dict]:
        from scloop.motion.check import motion_fixes

        return motion_fixes(self.harness, self.processes)[self.kind](clips, self.clearance_)

    def __call__(self, data: Data, *, model: Any = None, rng: np.random.Generator) -> Corrected:
        """(n, T, F) -> (n, T, F), labels unchanged."""
        from scloop.corrections.base import displacement_diagnostics, mixing_weight
        from scloop.motion import metrics as M
        from scloop.motion.representation import decode, encode

        if not hasattr(self, "skeleton_"):
            raise ConfigError(f"correction {self.kind!r} is not prepared: call prepare(context, rng=...) first")
        x = np.asarray(data.x, dtype=np.float32)
        chosen = np.flatnonzero(rng.random(len(x)) < mixing_weight(self.gamma))
        out = x.copy()
        diag: dict[str, float] = {}
        if len(chosen):
            clips = [decode(x[i], self.skeleton_, fps=self.fps_) for i in chosen]
            fixed, info = self._fix(clips)
            for i, c in zip(chosen, fixed):
                out[i] = encode(c, fps=self.fps_)
            before = [M.all_metrics(c.positions(), self.fps_, self.feet_, self.clearance_) for c in clips]
            after = [M.all_metrics(c.positions(), self.fps_, self.feet_, self.clearance_) for c in fixed]
            for m in M.METRICS:
                diag[f"{m}_before"] = float(np.mean([b[m] for b in before]))
                diag[f"{m}_after"] = float(np.mean([a[m] for a in after]))
            diag["tracking_error_cm"] = float(np.mean(
                [100 * np.linalg.norm(f.positions() - c.positions(), axis=-1).mean() for f, c in zip(fixed, clips)]))
            diag.update({k: float(v) for k, v in info.items()})
        diag.update(displacement_diagnostics(x, out))
        return Corrected(Data(out, data.y), diag)


def _check(kind: str, gamma: float, harness: float, processes: int) -> MotionCorrection:
    from scloop.corrections.base import check_gamma

    if isinstance(harness, bool) or not isinstance(harness, (int, float)) or not harness >= 0:
        raise ConfigError(f"correction {kind!r}: harness: got {harness!r}; allowed: a number >= 0 (body weights)")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"correction {kind!r}: processes: got {processes!r}; allowed: an integer >= 1")
    return MotionCorrection(kind=kind, gamma=check_gamma(gamma), harness=float(harness), processes=processes)


@CORRECTIONS.register("physics", domain="motion")
def make_physics(*, gamma: float = math.inf, harness: float = 1.0, processes: int = 1) -> MotionCorrection:
    return _check("physics", gamma, harness, processes)


@CORRECTIONS.register("kinematic", domain="motion")
def make_kinematic(*, gamma: float = math.inf) -> MotionCorrection:
    return _check("kinematic", gamma, 1.0, 1)


@CORRECTIONS.register("physics+kinematic", domain="motion")
def make_physics_kinematic(*, gamma: float = math.inf, harness: float = 1.0, processes: int = 1) -> MotionCorrection:
    return _check("physics+kinematic", gamma, harness, processes)
