"""Motion metrics (domain ``motion``): physics metrics of decoded windows and distribution
metrics in the embedding of scloop's motion encoder (:mod:`scloop.nets.motion_encoder`).

Physics (formulas and units in :mod:`scloop.motion.metrics`; lower is better):
``motion_penetration``, ``motion_floating``, ``motion_skating``, ``motion_jerk``.  Each generated
window (n, T, F) is decoded on the task's skeleton (``MetricContext.meta``) and the metric is
averaged over windows.  Contact-joint clearances are estimated from the real training windows in
``prepare``.

Encoder space: ``motion_fid`` (Fréchet distance, lower is better), ``motion_kid`` (kernel
inception distance, lower is better: the unbiased estimate of the squared MMD with the cubic
polynomial kernel k(a, b) = (a.b / d + 1)^3 of Bińkowski et al. 2018 over all generated and all
reference windows, on embeddings standardised with the reference's per-dimension mean and std
(a fixed affine map per run; without it the encoder's uncentred ReLU features make a.b / d ~ 10^2
and the cubic kernel's values ~ 10^6, so that KID's variance swamped every difference),

    KID = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(r_i, r_j) / (n (n-1)) - 2 sum_ij k(x_i, r_j) / (m n),

which has expectation MMD^2 at every sample size -- unlike FID, whose small-sample bias grows as
the sample shrinks), ``motion_recognition`` (share of windows recognised as their conditioning
action), ``motion_diversity`` / ``motion_multimodality`` (spread relative to the reference).  The
encoder is trained on ``meta["encoder_train"]`` when the task provides it (task option
``encoder_data: split``: every training window), else on the loop's real windows.

Reference points (``higher_is_better=None``: properties of the evaluator, the same in every arm and
generation, no verdict is drawn on them):

* ``motion_fid_real`` / ``motion_kid_real``: FID / KID of ``meta["real_eval"]`` -- real *training*
  windows, as many as the task's ``n_eval`` -- against the reference.  Real data from other clips
  of the same distribution: what a perfect model would score at this evaluation size (FID's
  small-sample bias plus the train/held-out clip difference).
* ``motion_recognition_heldout``: the encoder's accuracy on the held-out reference windows (the
  ceiling of ``motion_recognition``).

Spreads over repeated draws (``<metric>_sd`` for each metric above, ``higher_is_better=None``):
the standard deviation (ddof 1) of the metric over ``SPREAD_DRAWS`` (20) random halves of the
generated windows (``floor(n/2)`` drawn without replacement, reference fixed; the same index
subsets for every arm and generation, from ``numpy.random.default_rng(SPREAD_SEED)`` created
afresh at each call).  Why halves: for a metric that is a mean over windows (the physics metrics,
recognition), a half drawn without replacement from n has variance (S^2 / (n/2)) (1 - 1/2) = S^2 / n
-- exactly the variance of an independent evaluation on n fresh windows -- so the half-sample sd
estimates the draw-to-draw spread of the full-size metric without sampling more; for FID, KID and
the spreads it holds to first order.  Compare it with the gaps between arms: a gap below ~2 sd of
a single evaluation is within evaluation noise (seed-to-seed variation adds the model's own).
"""

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

SPREAD_DRAWS = 20
SPREAD_SEED = 0


def spread_subsets(n: int, draws: int = SPREAD_DRAWS, seed: int = SPREAD_SEED) -> list[np.ndarray]:
    """``draws`` sorted index arrays of ``n // 2`` distinct rows of ``n`` (module docstring)."""
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=n // 2, replace=False)) for _ in range(draws)]


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
            _LAST["per_window"] = {m: np.array([v[m] for v in vals], dtype=float) for m in M.METRICS}
        return _LAST["values"][self.which]

    def per_window(self, ev: Evaluation) -> np.ndarray:
        """The metric of each generated window (n,) (NaN-filled when a window is non-finite)."""
        x = np.asarray(ev.samples.x)
        if not np.isfinite(x).all():
            return np.full(len(x), np.nan)
        MotionPhysicsMetric.__call__(self, ev)  # fills the shared cache for these samples
        return _LAST["per_window"][self.which]


class MotionPhysicsSpread(MotionPhysicsMetric):
    """Half-sample sd of a physics metric (module docstring)."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.name = f"motion_{which}_sd"

    def __call__(self, ev: Evaluation) -> float:
        v = self.per_window(ev)
        if len(v) < 4 or not np.isfinite(v).all():
            return float("nan")
        return float(np.std([v[idx].mean() for idx in spread_subsets(len(v))], ddof=1))


_PHYSICS_FACTS = {"penetration": ("Foot penetration", "m"), "floating": ("Foot floating", "m"),
                  "skating": ("Foot skating", "m/s"), "jerk": ("Jerk", "m/s³")}


def _register(which: str) -> None:
    label, unit = _PHYSICS_FACTS[which]

    @METRICS.register(f"motion_{which}", domain="motion", higher_is_better=False, label=label, unit=unit)
    def make() -> MotionPhysicsMetric:
        return MotionPhysicsMetric(which)

    @METRICS.register(f"motion_{which}_sd", domain="motion", higher_is_better=None,
                      label=f"{label}: sd over draws", unit=unit)
    def make_sd() -> MotionPhysicsSpread:
        return MotionPhysicsSpread(which)


for _w in ("penetration", "floating", "skating", "jerk"):
    _register(_w)


# ---------------------------------------------------------------------- learned feature space
from scloop.metrics.images import FID, ClassAccuracy, Diversity, Embedded, ImageMetric  # noqa: E402


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a, b) = (a.b / d + 1)^3 for every pair of rows (the KID kernel)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid_standardise(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's per-dimension mean and std (floored at 1e-3 x their mean) of the KID's
    feature standardisation."""
    mu, sd = real.mean(axis=0), real.std(axis=0)
    return mu, np.maximum(sd, 1e-3 * max(float(sd.mean()), 1e-12))


def kid(fake: np.ndarray, real: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel between feature sets (m, d), (n, d),
    both standardised with ``real``'s statistics (module docstring); NaN with fewer than 2 rows
    on a side."""
    m, n = len(fake), len(real)
    if m < 2 or n < 2:
        return float("nan")
    mu, sd = kid_standardise(real)
    fake, real = (fake - mu) / sd, (real - mu) / sd
    kxx, kyy = _poly_kernel(fake, fake), _poly_kernel(real, real)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * _poly_kernel(fake, real).mean())


class _MotionEncoderSpace:
    """The image metrics' logic in the embedding of the motion encoder
    (:mod:`scloop.nets.motion_encoder`), trained/loaded on ``meta["encoder_train"]`` when the task
    gives it, else on the loop's real training windows."""

    def _feature_network(self, context: MetricContext):
        from scloop.motion.representation import feature_layout
        from scloop.nets.motion_encoder import train_motion_encoder

        meta = context.meta or {}
        groups = list(feature_layout(meta["skeleton"]).values()) if "skeleton" in meta else None
        data = meta.get("encoder_train", context.real)
        return train_motion_encoder(data, seed=0, cache_dir=context.cache_dir, groups=groups)


class MotionFID(_MotionEncoderSpace, FID):
    """Fréchet distance in the encoder's 128-d embedding, samples vs held-out windows (lower is better)."""


class MotionKID(_MotionEncoderSpace, ImageMetric):
    """Unbiased polynomial-kernel MMD^2 in the encoder's embedding, samples vs held-out windows
    (lower is better; module docstring).  The reference's kernel term and the samples' kernel
    matrices are memoised, so the spread's subsets cost index sums only."""

    def _terms(self, fake: Embedded, real: Embedded) -> tuple[tuple, np.ndarray, np.ndarray]:
        ref = real.derived.get("kid-ref")
        if ref is None:
            n = len(real.features)
            mu, sd = kid_standardise(real.features)
            r = (real.features - mu) / sd
            kyy = _poly_kernel(r, r)
            ref = real.derived["kid-ref"] = (float((kyy.sum() - np.trace(kyy)) / (n * (n - 1))), mu, sd, r)
        key = ("kid", real.serial)
        if key not in fake.derived:
            f = (fake.features - ref[1]) / ref[2]
            fake.derived[key] = (_poly_kernel(f, f), _poly_kernel(f, ref[3]).mean(axis=1))
        kxx, kxy = fake.derived[key]
        return ref, kxx, kxy

    def _kid_at(self, fake: Embedded, real: Embedded, idx: np.ndarray) -> float:
        ref, kxx, kxy = self._terms(fake, real)
        sub = kxx[np.ix_(idx, idx)]
        m = len(idx)
        return float((sub.sum() - np.trace(sub)) / (m * (m - 1)) + ref[0] - 2.0 * kxy[idx].mean())

    def _value(self, fake: Embedded, real: Embedded) -> float:
        if len(fake.features) < 2 or len(real.features) < 2:
            return float("nan")
        return self._kid_at(fake, real, np.arange(len(fake.features)))


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


def _subset(e: Embedded, idx: np.ndarray) -> Embedded:
    return Embedded(e.x[idx], ("subset", e.serial, idx.tobytes()), e.features[idx], e.proba[idx],
                    None if e.y is None else e.y[idx])


def _spread(base: type) -> type:
    """The half-sample sd of an encoder-space metric class (module docstring)."""

    class Spread(base):
        def _value(self, fake: Embedded, real: Embedded) -> float:
            n = len(fake.features)
            if n < 4:
                return float("nan")
            key = (self.name, real.serial)
            if key not in fake.derived:
                if base is MotionKID:
                    vals = [self._kid_at(fake, real, idx) for idx in spread_subsets(n)]
                else:
                    vals = [base._value(self, _subset(fake, idx), real) for idx in spread_subsets(n)]
                fake.derived[key] = float(np.std(vals, ddof=1))
            return fake.derived[key]

    Spread.__name__ = Spread.__qualname__ = f"{base.__name__}Spread"
    Spread.__doc__ = f"Half-sample sd over draws of {base.__name__} (module docstring)."
    return Spread


class MotionRealReference(_MotionEncoderSpace, ImageMetric):
    """FID or KID of the task's ``real_eval`` training windows against the reference (module
    docstring): the score of real data at the evaluation size.  Needs no samples."""

    needs_samples = False

    def __init__(self, name: str, stat: str) -> None:
        super().__init__(name)
        self.stat = stat

    def prepare(self, context: MetricContext) -> Self:
        meta = context.meta or {}
        if "real_eval" not in meta:
            raise ConfigError(f"metric {self.name!r} needs a motion task that gives real evaluation windows "
                              "(meta['real_eval']; the bandai and cmu-deepmimic tasks do)")
        self.real_eval_ = meta["real_eval"]
        return super().prepare(context)

    def __call__(self, ev: Evaluation) -> float:
        if not hasattr(self, "space_"):
            raise ConfigError(f"metric {self.name!r} is not prepared")
        reference = ev.reference if ev.reference is not None else self.reference_
        if reference is None:
            raise ValueError(f"metric {self.name!r} needs a reference sample (held-out real windows); got none")
        fake, real = self.space_.embed(self.real_eval_), self.space_.embed(reference)
        if not (fake.finite and real.finite):
            return float("nan")
        key = (self.name, real.serial)
        if key not in fake.derived:
            if self.stat == "fid":
                from scloop.metrics.images import frechet_distance

                fake.derived[key] = frechet_distance(real.features, fake.features)
            else:
                fake.derived[key] = kid(fake.features, real.features)
        return fake.derived[key]


class MotionHeldoutRecognition(_MotionEncoderSpace, ImageMetric):
    """The encoder's action-recognition accuracy on the held-out reference windows (its ceiling
    for ``motion_recognition``).  Needs no samples."""

    needs_samples = False
    needs_labels = True

    def __call__(self, ev: Evaluation) -> float:
        if not hasattr(self, "space_"):
            raise ConfigError(f"metric {self.name!r} is not prepared")
        reference = ev.reference if ev.reference is not None else self.reference_
        if reference is None or reference.y is None:
            raise ValueError(f"metric {self.name!r} needs labelled held-out windows; got none")
        real = self.space_.embed(reference)
        return float((real.proba.argmax(axis=1) == real.y).mean()) if len(real.y) else float("nan")


@METRICS.register("motion_fid", domain="motion", higher_is_better=False, label="Motion FID (encoder embedding)")
def make_motion_fid() -> MotionFID:
    return MotionFID("motion_fid")


@METRICS.register("motion_kid", domain="motion", higher_is_better=False, label="Motion KID (encoder embedding)")
def make_motion_kid() -> MotionKID:
    return MotionKID("motion_kid")


@METRICS.register("motion_recognition", domain="motion", higher_is_better=True, label="Action recognition accuracy")
def make_motion_recognition() -> MotionRecognition:
    return MotionRecognition("motion_recognition")


@METRICS.register("motion_multimodality", domain="motion", higher_is_better=True, label="Multimodality (relative to real)")
def make_motion_multimodality() -> MotionMultimodality:
    return MotionMultimodality("motion_multimodality")


@METRICS.register("motion_diversity", domain="motion", higher_is_better=True, label="Diversity (relative to real)")
def make_motion_diversity() -> MotionDiversity:
    return MotionDiversity("motion_diversity")


# the evaluator's reference points and spreads: no orientation, so no verdict is drawn on them
@METRICS.register("motion_fid_real", domain="motion", higher_is_better=None,
                  label="Motion FID of real training windows (same count)")
def make_motion_fid_real() -> MotionRealReference:
    return MotionRealReference("motion_fid_real", "fid")


@METRICS.register("motion_kid_real", domain="motion", higher_is_better=None,
                  label="Motion KID of real training windows (same count)")
def make_motion_kid_real() -> MotionRealReference:
    return MotionRealReference("motion_kid_real", "kid")


@METRICS.register("motion_recognition_heldout", domain="motion", higher_is_better=None,
                  label="Action recognition accuracy on held-out real windows")
def make_motion_recognition_heldout() -> MotionHeldoutRecognition:
    return MotionHeldoutRecognition("motion_recognition_heldout")


def _register_spread(name: str, base: type, label: str) -> None:
    cls = _spread(base)

    @METRICS.register(f"{name}_sd", domain="motion", higher_is_better=None, label=f"{label}: sd over draws")
    def make():
        return cls(f"{name}_sd")


for _name, _base, _label in (("motion_fid", MotionFID, "Motion FID"), ("motion_kid", MotionKID, "Motion KID"),
                             ("motion_recognition", MotionRecognition, "Action recognition accuracy"),
                             ("motion_multimodality", MotionMultimodality, "Multimodality"),
                             ("motion_diversity", MotionDiversity, "Diversity")):
    _register_spread(_name, _base, _label)


# ---------------------------------------------------------------------- evaluator calibration
def real_draws(task, *, counts=(88, 128, 256, 512), draws: int = 20, seed: int = 5, cache_dir=None):
    """How the distribution metrics score *real* data: for each count m, ``draws`` random sets of m
    training windows (without replacement) against the task's held-out reference -- FID's
    small-sample bias (its mean falls with m although the data are real) and KID's lack of it,
    with the draw-to-draw sd.  Also the half-sample sds (module docstring) of ``meta["real_eval"]``
    and the encoder's held-out recognition.  Returns a list of dict rows."""
    from scloop.metrics.images import frechet_distance

    train = task.real_data(task.n_available)
    ctx = MetricContext(train, task.reference(), cache_dir=cache_dir, meta=task.meta)
    fid = make_motion_fid().prepare(ctx)
    tr, rf = fid.space_.embed(train).features, fid.space_.embed(task.reference()).features
    rng = np.random.default_rng(seed)
    rows = []
    for m in counts:
        if m > len(tr):
            continue
        f, k = [], []
        for _ in range(draws):
            idx = rng.choice(len(tr), size=m, replace=False)
            f.append(frechet_distance(rf, tr[idx]))
            k.append(kid(tr[idx], rf))
        rows.append({"windows": m, "fid": float(np.mean(f)), "fid_sd": float(np.std(f, ddof=1)),
                     "kid": float(np.mean(k)), "kid_sd": float(np.std(k, ddof=1)),
                     "share_of_training_split": m / len(tr)})
    ev = Evaluation(None, task.meta["real_eval"], task.reference())
    names = ["motion_fid_sd", "motion_kid_sd", "motion_jerk", "motion_jerk_sd", "motion_skating",
             "motion_skating_sd", "motion_recognition_heldout"]
    half = {n: float(METRICS.create(n).prepare(ctx)(ev)) for n in names}
    rows.append({"windows": len(task.meta["real_eval"]), "half_sample": half})
    return rows


def calibrate(data_dir: str, cache: str | None = None, n_eval: int = 512, task: str = "bandai") -> list[dict]:
    """Print and return :func:`real_draws` on the motion-study task (``bandai``: the whole
    Bandai set, split by clip) or on ``cmu-deepmimic`` (held-out windows at stride 5, counts 32 /
    64 / 128)::

        python -c "from scloop.metrics.motion import calibrate; calibrate('DATA_DIR')"
        python -c "from scloop.metrics.motion import calibrate; calibrate('DATA_DIR', n_eval=128, task='cmu-deepmimic')"
    """
    import json

    from scloop.core.registry import TASKS
    from scloop.plugins import load_plugins

    load_plugins()
    if task == "bandai":
        t = TASKS.create("bandai", data_dir=data_dir, contents="all", dataset="all", holdout=3, ref_stride=5,
                         order="random", encoder_data="split", n_eval=n_eval)
        counts = (88, 128, 256, 512)
    else:
        t = TASKS.create(task, data_dir=data_dir, ref_stride=5, encoder_data="split", n_eval=n_eval)
        counts = (32, 64, 128)
    print(f"{task}: {len(t.contents)} actions {list(t.contents)}; clips train / held-out {t.n_clips}; "
          f"windows train {t.n_available}, reference {len(t.reference())}")
    rows = real_draws(t, counts=counts, cache_dir=cache)
    for row in rows:
        print(json.dumps(row))
    return rows
