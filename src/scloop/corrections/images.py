"""Corrections for class-conditional image samples (n, 1, H, W) in [0, 1] with labels y (n,).

Each has a strength gamma >= 0 (default ``inf``) and acts on a random share
t = gamma / (1 + gamma) of the batch (each image independently, one uniform draw per image
from the correction stream); gamma = inf touches every image, gamma = 0 none.

* ``kmeans`` -- the paper's MNIST correction (docs/paper.md §3.2): per class, sklearn
  ``KMeans(n_clusters=k, random_state=seed, n_init=n_init)`` on the flattened real images of
  that class; a chosen synthetic image is replaced by the nearest centroid of its own class.
  At gamma = inf this is the paper's hard projection onto at most ``k x n_classes``
  prototypes.  k is capped at the number of *distinct* real images of the class (so k-means
  never has to invent empty clusters, and sklearn does not warn).  The centroids are returned
  as they are (float, not re-quantised: the paper's uint8 rounding is the loop's business).
* ``nearest-real`` -- the limit k = n of ``kmeans``: a chosen image is replaced by the nearest
  real training image of its class (memorisation as a correction).
* ``verifier`` -- synthetic-data verification (Feng et al. 2024, "Beyond model collapse:
  scaling up with synthesized data requires verification"): a classifier trained on the real
  data accepts an image when p(intended label | image) >= tau.  Rejected images are replaced
  by fresh samples of the same label from the model, for up to ``max_rounds`` rounds, and the
  ones still rejected are dropped (``on_reject="resample"``), or they are dropped at once
  (``"drop"``).  The output may therefore be smaller than the input.  With gamma finite only
  the chosen share t of the batch is verified; the rest passes unverified.  The classifier is
  trained with ``classifier_seed = 1`` -- deliberately not the seed (0) of the metrics' feature
  network, so that the verifier does not optimise the evaluation network directly (both
  still see the same real data, so they are correlated; say so when reporting).

Diagnostics (floats): ``displacement`` and ``fraction_changed`` (over the output rows, each
compared with the input row it came from), ``distinct_before`` / ``distinct_after`` (number of
distinct images), ``pairwise_before`` / ``pairwise_after`` (mean within-class pairwise pixel
L2 distance on an evenly spaced subsample of <= 500 images; 0 when no class has two images),
and for the verifier ``acceptance_rate`` (first-round accepted share of the verified images),
``kept_fraction`` (output size / input size), ``rounds`` (resampling rounds run) and
``resampled`` (fresh images drawn).
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.core.types import Corrected, CorrectionContext, Data, Degenerate
from scloop.corrections.base import check_gamma, displacement_diagnostics, mixing_weight

PAIRWISE_SUBSAMPLE = 500
ON_REJECT = ("resample", "drop")


# ---------------------------------------------------------------------- helpers
def _labelled_images(data: Data, who: str) -> tuple[np.ndarray, np.ndarray]:
    """x as float32 (n, 1, H, W) and y as int64 (n,); raises if the shape is wrong or y is missing."""
    x = np.asarray(data.x)
    if x.ndim != 4:
        raise ValueError(f"correction {who!r}: expected images of shape (n, C, H, W), got {x.shape}")
    if data.y is None:
        raise ConfigError(
            f"correction {who!r} works per class and needs labelled images (a class-conditional model); got none"
        )
    return np.asarray(x, dtype=np.float32), np.asarray(data.y, dtype=np.int64)


def distinct_count(x: np.ndarray) -> int:
    """Number of distinct images in x (n, ...)."""
    if len(x) == 0:
        return 0
    return int(len(np.unique(np.ascontiguousarray(x).reshape(len(x), int(np.prod(x.shape[1:]))), axis=0)))


def mean_within_class_pairwise(x: np.ndarray, y: np.ndarray, max_n: int = PAIRWISE_SUBSAMPLE) -> float:
    """Mean pairwise pixel L2 distance within classes, averaged over classes with >= 2 images,
    on an evenly spaced subsample of at most ``max_n`` images (0 if no class has two)."""
    from scipy.spatial.distance import pdist

    if len(x) > max_n:
        idx = np.linspace(0, len(x) - 1, max_n).astype(int)
        x, y = x[idx], y[idx]
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), int(np.prod(x.shape[1:])))
    means = [pdist(flat[y == c]).mean() for c in np.unique(y) if (y == c).sum() >= 2]
    return float(np.mean(means)) if means else 0.0


def image_diagnostics(
    x_before: np.ndarray, y_before: np.ndarray, x_after: np.ndarray, y_after: np.ndarray
) -> dict[str, float]:
    return {
        "distinct_before": float(distinct_count(x_before)),
        "distinct_after": float(distinct_count(x_after)),
        "pairwise_before": mean_within_class_pairwise(x_before, y_before),
        "pairwise_after": mean_within_class_pairwise(x_after, y_after),
    }


def _check_int(key: str, value: Any, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key}: got {value!r}; allowed: an integer >= {low}")
    return int(value)


# ---------------------------------------------------------------------- prototype projections
class PrototypeProjection:
    """Replace each chosen image (share t = gamma / (1 + gamma)) by the nearest prototype of its
    class.  Subclasses define the prototypes of one class in ``_prototypes``.

    Fitted state: ``prototypes_`` {class: (m_c, C*H*W) float32}, ``image_shape_`` (C, H, W).
    """

    name = "prototype"

    def __init__(self, *, gamma: float = math.inf) -> None:
        self.gamma = gamma

    def _prototypes(self, flat: np.ndarray, seed: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _seed(self, rng: np.random.Generator | None) -> int:
        return 0

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        x, y = _labelled_images(context.real, self.name)
        flat = x.reshape(len(x), int(np.prod(x.shape[1:])))
        seed = self._seed(rng)
        self.image_shape_ = tuple(x.shape[1:])
        self.prototypes_ = {int(c): self._prototypes(flat[y == c], seed) for c in np.unique(y)}
        return self

    def __call__(self, data: Data, *, model: Any = None, rng: np.random.Generator) -> Corrected:
        """data: x (n, C, H, W), y (n,) -> Corrected with the same shape, dtype float32."""
        from sklearn.metrics import pairwise_distances_argmin

        if not hasattr(self, "prototypes_"):
            raise ConfigError(f"correction {self.name!r} is not prepared: call prepare(context, rng=...) first")
        x, y = _labelled_images(data, self.name)
        if tuple(x.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"correction {self.name!r}: prepared on images {self.image_shape_}, got {tuple(x.shape[1:])}"
            )
        unknown = sorted(set(np.unique(y).tolist()) - set(self.prototypes_))
        if unknown:
            raise ConfigError(
                f"correction {self.name!r}: synthetic images of class(es) {unknown} but the real data "
                f"have only classes {sorted(self.prototypes_)}"
            )
        # 1. choose the images to replace: each with probability t
        chosen = rng.random(len(x)) < mixing_weight(self.gamma)
        out = x.copy()
        flat_out = out.reshape(len(out), int(np.prod(out.shape[1:])))  # a view: writing to it writes to out
        # 2. one distance computation per class: nearest prototype of the same class
        for c in np.unique(y[chosen]):
            idx = np.flatnonzero(chosen & (y == c))
            batch = flat_out[idx]
            if not np.isfinite(batch).all():
                raise Degenerate(f"correction {self.name!r}: non-finite pixels in synthetic images of class {c}")
            protos = self.prototypes_[int(c)]
            flat_out[idx] = protos[pairwise_distances_argmin(batch, protos)]
        diag = displacement_diagnostics(x, out)
        diag.update(image_diagnostics(x, y, out, y))
        return Corrected(Data(out, y), diag)


class KMeansCorrection(PrototypeProjection):
    """Per-class k-means prototypes (the paper's MNIST correction; module docstring).

    Parameters
    ----------
    k : centroids per class (capped at the number of distinct real images of the class).
    gamma : strength; share t = gamma / (1 + gamma) of the images is projected.
    n_init : sklearn's ``n_init`` ("auto" or an integer >= 1).
    seed : k-means ``random_state`` (the paper uses 0); None draws it from prepare's rng.
    """

    name = "kmeans"

    def __init__(
        self, *, k: int = 16, gamma: float = math.inf, n_init: int | str = "auto", seed: int | None = None
    ) -> None:
        super().__init__(gamma=gamma)
        self.k = k
        self.n_init = n_init
        self.seed = seed

    def _seed(self, rng: np.random.Generator | None) -> int:
        if self.seed is not None:
            return int(self.seed)
        if rng is None:
            raise ValueError("kmeans correction: seed is None, so prepare needs an rng to draw it from")
        return int(rng.integers(2**31 - 1))

    def _prototypes(self, flat: np.ndarray, seed: int) -> np.ndarray:
        from sklearn.cluster import KMeans

        n_clusters = min(self.k, distinct_count(flat))
        km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=self.n_init).fit(flat)
        # centroids are averages of [0, 1] pixels; the clip only removes float round-off
        return np.clip(km.cluster_centers_, 0.0, 1.0).astype(np.float32)  # (k_c, C*H*W)


class NearestRealCorrection(PrototypeProjection):
    """Replace chosen images by the nearest real training image of the same class (k = n)."""

    name = "nearest-real"

    def _prototypes(self, flat: np.ndarray, seed: int) -> np.ndarray:
        return np.ascontiguousarray(flat, dtype=np.float32)


# ---------------------------------------------------------------------- verifier
class VerifierCorrection:
    """Classifier verification of synthetic images (Feng et al. 2024; module docstring).

    Parameters
    ----------
    tau : accept when p(intended label | image) >= tau.
    on_reject : "resample" (ask the model for replacements, up to ``max_rounds`` rounds, then
        drop) or "drop".
    max_rounds : resampling rounds (>= 0).
    classifier_seed : training seed of the verifier classifier (1, not the metrics' 0).
    gamma : strength; share t = gamma / (1 + gamma) of the images is verified.

    Fitted state: ``classifier_`` (a :class:`scloop.nets.classifier.ClassifierHandle`).
    """

    name = "verifier"

    def __init__(
        self,
        *,
        tau: float = 0.9,
        on_reject: str = "resample",
        max_rounds: int = 5,
        classifier_seed: int = 1,
        gamma: float = math.inf,
    ) -> None:
        self.tau = tau
        self.on_reject = on_reject
        self.max_rounds = max_rounds
        self.classifier_seed = classifier_seed
        self.gamma = gamma

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        from scloop.nets.classifier import train_classifier

        _labelled_images(context.real, self.name)
        self.classifier_ = train_classifier(
            context.real, seed=self.classifier_seed, cache_dir=context.cache_dir, device=context.device
        )
        return self

    def _accept(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) bool: p(y_i | x_i) >= tau (NaN images are rejected)."""
        if len(x) == 0:
            return np.zeros(0, dtype=bool)
        if y.max() >= self.classifier_.n_classes:
            raise ConfigError(
                f"correction 'verifier': label {int(y.max())} but the verifier knows only "
                f"{self.classifier_.n_classes} classes"
            )
        p = self.classifier_.predict_proba(x)[np.arange(len(x)), y]
        return p >= self.tau

    def __call__(self, data: Data, *, model: Any = None, rng: np.random.Generator) -> Corrected:
        """data: x (n, C, H, W), y (n,) -> Corrected with <= n images (float32), labels aligned."""
        if not hasattr(self, "classifier_"):
            raise ConfigError("correction 'verifier' is not prepared: call prepare(context, rng=...) first")
        x, y = _labelled_images(data, self.name)
        n = len(x)
        # 1. choose the images to verify (share t) and verify them
        chosen = np.flatnonzero(rng.random(n) < mixing_weight(self.gamma))
        accepted = self._accept(x[chosen], y[chosen])
        acceptance_rate = float(accepted.mean()) if len(chosen) else 1.0
        pending = chosen[~accepted]  # indices of rejected images
        out = x.copy()
        rounds = resampled = 0
        # 2. resample the rejected slots from the model, same labels, until accepted
        if self.on_reject == "resample" and len(pending) and self.max_rounds > 0:
            if model is None or not hasattr(model, "sample"):
                raise ConfigError(
                    "correction 'verifier' with on_reject='resample' needs the model to draw replacements"
                )
            while len(pending) and rounds < self.max_rounds:
                rounds += 1
                fresh = np.asarray(model.sample(len(pending), rng=rng, conditions=y[pending]).x, dtype=np.float32)
                expected = (len(pending),) + x.shape[1:]
                if fresh.shape != expected:
                    raise ValueError(f"correction 'verifier': model returned images {fresh.shape}, expected {expected}")
                resampled += len(pending)
                ok = self._accept(fresh, y[pending])
                out[pending[ok]] = fresh[ok]
                pending = pending[~ok]
        # 3. drop what is still rejected
        keep = np.ones(n, dtype=bool)
        keep[pending] = False
        x_out, y_out = out[keep], y[keep]
        diag = displacement_diagnostics(x[keep], x_out)
        diag.update(image_diagnostics(x, y, x_out, y_out))
        diag.update(
            acceptance_rate=acceptance_rate,
            kept_fraction=float(keep.mean()) if n else 1.0,
            rounds=float(rounds),
            resampled=float(resampled),
        )
        return Corrected(Data(x_out, y_out), diag)


# ---------------------------------------------------------------------- registration
@CORRECTIONS.register("kmeans", domain="image")
def make_kmeans(
    *, k: int = 16, gamma: float = math.inf, n_init: int | str = "auto", seed: int | None = None
) -> KMeansCorrection:
    _check_int("k", k, 1)
    if n_init != "auto":
        _check_int("n_init", n_init, 1)
    if seed is not None:
        _check_int("seed", seed, 0)
    return KMeansCorrection(k=k, gamma=check_gamma(gamma), n_init=n_init, seed=seed)


@CORRECTIONS.register("nearest-real", domain="image")
def make_nearest_real(*, gamma: float = math.inf) -> NearestRealCorrection:
    return NearestRealCorrection(gamma=check_gamma(gamma))


@CORRECTIONS.register("verifier", domain="image")
def make_verifier(
    *,
    tau: float = 0.9,
    on_reject: str = "resample",
    max_rounds: int = 5,
    classifier_seed: int = 1,
    gamma: float = math.inf,
) -> VerifierCorrection:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0:
        raise ConfigError(f"tau: got {tau!r}; allowed: a probability in [0, 1]")
    if on_reject not in ON_REJECT:
        raise ConfigError(f"on_reject: got {on_reject!r}; allowed: {', '.join(ON_REJECT)}")
    _check_int("max_rounds", max_rounds, 0)
    _check_int("classifier_seed", classifier_seed, 0)
    return VerifierCorrection(
        tau=float(tau),
        on_reject=on_reject,
        max_rounds=max_rounds,
        classifier_seed=classifier_seed,
        gamma=check_gamma(gamma),
    )
