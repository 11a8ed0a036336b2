"""Physics metrics of generated motion windows (domain ``motion``; formulas and units in
:mod:`scloop.motion.metrics`).  Each generated window (n, T, F) is decoded on the task's skeleton
(``MetricContext.meta``) and the metric is averaged over windows.  Contact-joint clearances are
estimated from the real training windows in ``prepare``.  Lower is better for all four."""

from __future__ import annotations

import hashlib
from typing import Self

import numpy as np

from scloop.core.registry import METRICS, ConfigError
from scloop.core.types import Evaluation, MetricContext

# the four metrics share one decode per generation: the values of the last sample array
# evaluated, keyed on its content (shape, dtype, a digest of every byte) -- not on its identity,
# which survives an in-place edit -- and on the skeleton, frame rate and clearances
_LAST: dict[str, object] = {}


def _content_key(x: np.ndarray) -> tuple:
    """Shape, dtype and a BLAKE2b digest of all the bytes of ``x`` (about 1 GB/s: small next to
    decoding the windows; a strided or summed fingerprint would miss a local edit)."""
    flat = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
    return (x.shape, x.dtype.str, hashlib.blake2b(flat, digest_size=16).digest())


class MotionPhysicsMetric:
    needs_samples = True

    def __init__(self, which: str) -> None:
        self.which = which
        self.name = f"motion_{which}"

    def prepare(self, context: MetricContext) -> Self:
        from scloop.motion import metrics as M

        meta = context.meta or {}
        if "skeleton" not in meta or "fps" not in meta:
            raise ConfigError(f"metric {self.name!r} needs a motion task (meta with skeleton and fps)")
        self.skeleton_, self.fps_ = meta["skeleton"], float(meta["fps"])
        self.feet_, self.clearance_ = M.contacts_from_windows(context.real.x, self.skeleton_, self.fps_)
        return self

    def __call__(self, ev: Evaluation) -> float:
        from scloop.motion import metrics as M
        from scloop.motion.representation import decode

        if not hasattr(self, "skeleton_"):
            raise ConfigError(f"metric {self.name!r} is not prepared")
        x = np.asarray(ev.samples.x)
        if not np.isfinite(x).all():
            return float("nan")
        key = (_content_key(x), self.skeleton_, self.fps_, self.clearance_.tobytes(), tuple(self.feet_))
        last = _LAST.get("key")
        if last is None or not (last[1] is key[1] and last[0] == key[0] and last[2:] == key[2:]):
            vals = [M.all_metrics(decode(w, self.skeleton_, fps=self.fps_).positions(), self.fps_, self.feet_,
                                  self.clearance_) for w in x]
            _LAST["key"] = key
            _LAST["values"] = {m: float(np.mean([v[m] for v in vals])) for m in M.METRICS}
        return _LAST["values"][self.which]


_PHYSICS_FACTS = {"penetration": ("Foot penetration", "m"), "floating": ("Foot floating", "m"),
                  "skating": ("Foot skating", "m/s"), "jerk": ("Jerk", "m/s³")}


def _register(which: str) -> None:
    label, unit = _PHYSICS_FACTS[which]

    @METRICS.register(f"motion_{which}", domain="motion", higher_is_better=False, label=label, unit=unit)
    def make() -> MotionPhysicsMetric:
        return MotionPhysicsMetric(which)


for _w in ("penetration", "floating", "skating", "jerk"):
    _register(_w)


# ---------------------------------------------------------------------- learned feature space
from scloop.metrics.images import FID, ClassAccuracy, Diversity  # noqa: E402


class _MotionEncoderSpace:
    """The image metrics' logic in the embedding of the motion encoder
    (:mod:`scloop.nets.motion_encoder`), trained/loaded on the real training windows."""

    def _feature_network(self, context: MetricContext):
        from scloop.motion.representation import feature_layout
        from scloop.nets.motion_encoder import train_motion_encoder

        meta = context.meta or {}
        groups = list(feature_layout(meta["skeleton"]).values()) if "skeleton" in meta else None
        return train_motion_encoder(context.real, seed=0, cache_dir=context.cache_dir, groups=groups)


class MotionFID(_MotionEncoderSpace, FID):
    """Fréchet distance in the encoder's 128-d embedding, samples vs held-out windows (lower is better)."""


class MotionRecognition(_MotionEncoderSpace, ClassAccuracy):
    """Share of generated windows the encoder recognises as their conditioning action (higher is
    better; the R-precision analogue)."""


class MotionMultimodality(_MotionEncoderSpace, Diversity):
    """Mean distance between embeddings of samples of the same action, relative to the held-out
    windows (higher is better, 1 = real): the spread within one condition."""


class MotionDiversity(_MotionEncoderSpace, Diversity):
    """Mean pairwise embedding distance over all samples, relative to the held-out windows
    (higher is better, 1 = real)."""

    def _value(self, fake, real) -> float:
        from scipy.spatial.distance import pdist

        if len(fake.features) < 2 or len(real.features) < 2:
            return float("nan")
        ref = real.derived.get("pairwise")
        if ref is None:
            ref = real.derived["pairwise"] = float(pdist(real.features).mean())
        return float(pdist(fake.features).mean() / ref) if ref > 0 else float("nan")


@METRICS.register("motion_fid", domain="motion", higher_is_better=False, label="Motion FID (encoder embedding)")
def make_motion_fid() -> MotionFID:
    return MotionFID("motion_fid")


@METRICS.register("motion_recognition", domain="motion", higher_is_better=True, label="Action recognition accuracy")
def make_motion_recognition() -> MotionRecognition:
    return MotionRecognition("motion_recognition")


@METRICS.register("motion_multimodality", domain="motion", higher_is_better=True, label="Multimodality (relative to real)")
def make_motion_multimodality() -> MotionMultimodality:
    return MotionMultimodality("motion_multimodality")


@METRICS.register("motion_diversity", domain="motion", higher_is_better=True, label="Diversity (relative to real)")
def make_motion_diversity() -> MotionDiversity:
    return MotionDiversity("motion_diversity")
