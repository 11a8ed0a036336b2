"""Image metrics in the feature space of a LeNet-style digit classifier (docs/paper.md §3.2).

The paper measures FID in the 84-d sigmoid ``fc2`` layer of a LeNet-5 trained on MNIST.
Every metric here uses the same feature network: :func:`scloop.nets.classifier.train_classifier`
on the task's real training split with ``seed = FEATURE_SEED = 0``, cached in the run's cache
directory (so every arm and generation of a run is scored by the same network).  The
``verifier`` correction deliberately trains its own classifier with another seed.

Metrics (``ev.samples``: generated images with their conditioning labels; ``ev.reference``:
held-out real images, falling back to ``MetricContext.reference``):

* ``fid`` (lower is better): Fréchet distance between Gaussians fitted to the generated and the
  reference features, ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) (Heusel et al. 2017),
  computed by torchmetrics' ``FrechetInceptionDistance`` (float64 sums, eigenvalue form of the
  trace term).  The paper used 100 generated samples; use >= 1,000 (the 100-sample estimate
  has sd ~0.17 against between-arm gaps <= 0.05 on 8x8 digits).
* ``precision``, ``recall`` (higher is better): k-NN manifold precision/recall (Kynkäänniemi
  et al. 2019) -- the share of generated features inside some reference k-NN ball, and of
  reference features inside some generated k-NN ball; ``density``, ``coverage`` (higher is
  better) as in Naeem et al. 2020.  Option ``k`` (default 3).
* ``class_accuracy`` (higher is better): share of generated images the classifier assigns to
  their conditioning label (saturates near 1 on digits; kept as a sanity check).
* ``diversity`` (higher is better, 1 = as diverse as real): mean within-class pairwise L2
  feature distance of the samples divided by the same for the reference, both averaged over
  the classes present in the samples.
* ``fid-paper`` (lower is better) and ``fid-paper-sd``: the paper's metric and its spread.  The
  official code scores each generation by the FID of only 100 generated samples (docs/paper.md
  §3.2).  Here ``draws`` (20) class-balanced subsets of ``n`` (100) images -- 10 per class,
  drawn without replacement within each class -- are taken from the generation's evaluation
  samples, the FID of each against the full reference is computed as ``fid`` does, and
  ``fid-paper`` is the mean over the draws, ``fid-paper-sd`` their standard deviation (ddof 1):
  the spread one would see between two 100-sample evaluations of the same model.  Both names
  share one computation (memoised on the samples' features).  Subsets, not fresh samples:
  sampling dominates the cost of a generation (20 x 100 extra images would double it), and the
  evaluation samples are already independent draws from the model.  The subsets come from
  ``numpy.random.default_rng(seed)`` created afresh at each call (metrics get no random stream
  from the engine), so every arm and generation uses the same index subsets -- common random
  numbers, as the engine's streams -- and the value is a deterministic function of the samples.
  Drawing 100 of 1,000 without replacement understates the spread of truly independent
  100-sample evaluations slightly (finite-population factor ~sqrt(1 - 100/1000) = 0.95).
  Unlabelled samples (or option ``balanced: false``) are subsampled uniformly; a class with
  fewer evaluation images than its share also falls back to uniform draws.  Class balance
  matters: on 8x8 digits (1,200 real training images scored against the 597 held-out ones)
  balanced 100-image draws give 0.37 +- 0.03, uniform ones 0.90 +- 0.24 (the full set: 0.17);
  most of the spread of a uniform 100-sample FID is the random class mix.

Network: the paper's feature network is a LeNet-5 with sigmoid activations throughout, average
pooling, inputs resized to 32x32 and normalised with MNIST's mean/std, trained 10 epochs on the
full MNIST training set.  scloop's :mod:`scloop.nets.classifier` keeps the 84-d sigmoid fc2
features and the LeNet-5 layer sizes on 28x28 inputs, but uses ReLU hidden activations, max
pooling, no resize, a small two-conv block on 8x8 digits, and trains on the task's training
split; every image metric (``fid-paper`` included) uses this one network, so 100-sample and
1,000-sample FIDs are in the same feature space.  An earlier CPU probe (docs/images.md) found
that a reconstructed all-sigmoid LeNet-5 compresses FID values but ranks the arms the same way.

One forward pass per generation: a per-process :class:`FeatureSpace` (one per classifier
digest) memoises the features of the last few image arrays seen, keyed on the array object
itself plus a cheap checksum, so fid, precision, recall, ... on the same samples run the
network once; derived quantities (the PRDC counts, within-class distances) are memoised on the
same entries.  Features are bitwise reproducible for a fixed torch thread count (CPU
reductions are ordered differently with more threads).  Non-finite features make every metric
return NaN (the engine records the generation as ``degenerate``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from scloop.core.registry import METRICS, ConfigError
from scloop.core.types import Data, Evaluation, MetricContext

FEATURE_SEED = 0
MEMO_SIZE = 4
DIVERSITY_MAX_PER_CLASS = 1000  # pairwise distances are O(m^2): subsample larger classes
RADII_CHUNK = 2048
PAPER_N = 100  # the official code's evaluation size
PAPER_DRAWS = 20
PAPER_SEED = 0

_SERIAL = itertools.count()


def _checksum(x: np.ndarray) -> tuple:
    """Cheap fingerprint against in-place edits of a memoised array (shape, sum, strided bytes)."""
    step = max(1, len(x) // 64)
    strided = hash(np.ascontiguousarray(x[::step]).tobytes())
    return (x.shape, str(x.dtype), float(np.sum(x, dtype=np.float64)), strided)


@dataclass(eq=False)
class Embedded:
    """Features of one image array: ``features`` (n, 84), ``proba`` (n, n_classes), the
    array's labels, and a scratch dict for quantities derived from them."""

    x: np.ndarray
    checksum: tuple
    features: np.ndarray
    proba: np.ndarray
    y: np.ndarray | None
    serial: int = field(default_factory=lambda: next(_SERIAL))
    derived: dict = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.features).all())


def _same_labels(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


class FeatureSpace:
    """The features of one trained classifier, with a small memo of recent arrays."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self._memo: list[Embedded] = []

    def embed(self, data: Data) -> Embedded:
        x = data.x
        y = None if data.y is None else np.asarray(data.y)
        checksum = _checksum(x)
        for entry in self._memo:
            # holding a reference to x keeps its id from being reused while the entry lives
            if entry.x is x and entry.checksum == checksum:
                if _same_labels(entry.y, y):
                    return entry
                # same images with other labels: reuse the forward pass, not the derived values
                feats, proba = entry.features, entry.proba
                break
        else:
            feats, proba = self.handle.features_and_proba(x)
        entry = Embedded(x, checksum, feats, proba, y)
        self._memo = [entry] + self._memo[: MEMO_SIZE - 1]
        return entry


_SPACES: dict[str, FeatureSpace] = {}


def feature_space(handle) -> FeatureSpace:
    """The per-process :class:`FeatureSpace` of a classifier (keyed by its digest)."""
    space = _SPACES.get(handle.digest)
    if space is None:
        space = _SPACES[handle.digest] = FeatureSpace(handle)
    return space


# ---------------------------------------------------------------------- maths
def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of x (n, d) to its k-th nearest other row (prdc's
    ``compute_nearest_neighbour_distances``, computed in row chunks so that a 10,000-image
    reference needs no 10,000 x 10,000 matrix)."""
    from prdc.prdc import get_kth_value
    from sklearn.metrics import pairwise_distances

    out = np.empty(len(x))
    for start in range(0, len(x), RADII_CHUNK):
        d = pairwise_distances(x[start : start + RADII_CHUNK], x, metric="euclidean")
        out[start : start + RADII_CHUNK] = get_kth_value(d, k=k + 1, axis=-1)  # k+1: the row itself is at 0
    return out


def prdc_from_radii(real: np.ndarray, real_radii: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` (m, d) against ``real`` (n, d).

    The formulas are copied from ``prdc.compute_prdc`` (Naeem et al. 2020); the only change is
    that the real k-NN radii are passed in, computed once per reference instead of per call.
    """
    from sklearn.metrics import pairwise_distances

    fake_radii = knn_radii(fake, k)
    d = pairwise_distances(real, fake, metric="euclidean")  # (n, m)
    inside_real = d < real_radii[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_radii).mean()),
    }


def frechet_distance(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """FID between two feature sets (n, d) and (m, d), computed by torchmetrics."""
    fid = _fid_metric(real_features.shape[1])
    fid.update(_as_tensor(real_features), real=True)
    fid.update(_as_tensor(fake_features), real=False)
    return float(fid.compute())


def _as_tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _fid_metric(num_features: int):
    """torchmetrics FID whose "network" is the identity on precomputed features: the features
    come from the shared memo, so the classifier runs once per generation for all metrics."""
    from torch import nn
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Precomputed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_features = num_features

        def forward(self, f):
            return f  # (n, num_features) features, float64

    return FrechetInceptionDistance(feature=Precomputed(), normalize=True, reset_real_features=False)


def mean_within_class_distance(features: np.ndarray, labels: np.ndarray, classes) -> dict[int, float]:
    """Mean pairwise L2 distance within each class in ``classes`` that has >= 2 rows (classes
    larger than ``DIVERSITY_MAX_PER_CLASS`` use an evenly spaced subsample)."""
    from scipy.spatial.distance import pdist

    out = {}
    for c in classes:
        f = features[labels == c]
        if len(f) > DIVERSITY_MAX_PER_CLASS:
            f = f[np.linspace(0, len(f) - 1, DIVERSITY_MAX_PER_CLASS).astype(int)]
        if len(f) >= 2:
            out[int(c)] = float(pdist(f).mean())
    return out


# ---------------------------------------------------------------------- metrics
class ImageMetric:
    """Base of the feature-space metrics: ``prepare`` trains/loads the shared classifier and
    embeds the reference; ``__call__`` embeds the samples (memoised) and calls ``_value``."""

    needs_samples = True
    needs_labels = False

    def __init__(self, name: str) -> None:
        self.name = name

    def _feature_network(self, context: MetricContext):
        """The trained (or cached) network whose features the metric uses: here the LeNet-style
        image classifier; other domains override this (e.g. the motion encoder)."""
        from scloop.nets.classifier import train_classifier

        return train_classifier(context.real, seed=FEATURE_SEED, cache_dir=context.cache_dir, device=context.device)

    def fingerprint(self) -> str:
        """What the metric's values depend on beyond its name: the feature network's digest (its
        training data, architecture version and hyper-parameters).  Cached generation-0 records
        are keyed on it, so a changed network is never read from a stale record."""
        return self.classifier_.digest if hasattr(self, "classifier_") else ""

    def prepare(self, context: MetricContext) -> Self:
        self.classifier_ = self._feature_network(context)
        self.space_ = feature_space(self.classifier_)
        self.reference_ = context.reference
        if context.reference is not None:
            self.space_.embed(context.reference)
        return self

    def _embedded(self, ev: Evaluation) -> tuple[Embedded, Embedded]:
        if not hasattr(self, "space_"):
            raise ConfigError(
                f"metric {self.name!r} is not prepared: call prepare(MetricContext(real, reference, ...)) "
                "first (it trains or loads the feature classifier)"
            )
        if ev.samples is None:
            raise ValueError(f"metric {self.name!r} needs evaluation samples (ev.samples is None)")
        reference = ev.reference if ev.reference is not None else self.reference_
        if reference is None:
            raise ValueError(f"metric {self.name!r} needs a reference sample (held-out real images); got none")
        if self.needs_labels and (ev.samples.y is None or reference.y is None):
            which = "samples" if ev.samples.y is None else "reference images"
            raise ConfigError(
                f"metric {self.name!r} needs class labels on the {which} (a class-conditional model); got none"
            )
        return self.space_.embed(ev.samples), self.space_.embed(reference)

    def __call__(self, ev: Evaluation) -> float:
        fake, real = self._embedded(ev)
        if not (fake.finite and real.finite):
            return float("nan")
        return float(self._value(fake, real))

    def _value(self, fake: Embedded, real: Embedded) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class FID(ImageMetric):
    """Fréchet distance in the classifier's 84-d feature space (lower is better; module
    docstring).  NaN with fewer than 2 samples."""

    def _value(self, fake: Embedded, real: Embedded) -> float:
        if len(fake.features) < 2 or len(real.features) < 2:
            return float("nan")
        # the torchmetrics object keeps the reference statistics between calls
        # (reset_real_features=False); only the fake statistics are reset per call
        if getattr(self, "_fid_serial", None) != real.serial:
            self._fid = _fid_metric(real.features.shape[1])
            self._fid.update(_as_tensor(real.features), real=True)
            self._fid_serial = real.serial
        self._fid.reset()
        self._fid.update(_as_tensor(fake.features), real=False)
        return float(self._fid.compute())


class PRDC(ImageMetric):
    """One of precision / recall / density / coverage with ``k`` nearest neighbours (higher is
    better; Kynkäänniemi et al. 2019, Naeem et al. 2020).  NaN with <= k samples."""

    def __init__(self, name: str, k: int) -> None:
        super().__init__(name)
        self.k = k

    def _value(self, fake: Embedded, real: Embedded) -> float:
        k = self.k
        if len(fake.features) <= k or len(real.features) <= k:
            return float("nan")
        radii = real.derived.get(("radii", k))
        if radii is None:
            radii = real.derived[("radii", k)] = knn_radii(real.features, k)
        key = ("prdc", real.serial, k)
        if key not in fake.derived:
            fake.derived[key] = prdc_from_radii(real.features, radii, fake.features, k)
        return fake.derived[key][self.name]


class ClassAccuracy(ImageMetric):
    """Share of samples classified as their conditioning label (higher is better)."""

    needs_labels = True

    def _value(self, fake: Embedded, real: Embedded) -> float:
        if len(fake.proba) == 0:
            return float("nan")
        return float((fake.proba.argmax(axis=1) == fake.y).mean())


class Diversity(ImageMetric):
    """Within-class feature spread of the samples relative to the reference (higher is
    better, 1 = real).  NaN when no class has >= 2 samples and >= 2 reference images."""

    needs_labels = True

    def _value(self, fake: Embedded, real: Embedded) -> float:
        ref = real.derived.get("within")
        if ref is None:
            ref = real.derived["within"] = mean_within_class_distance(real.features, real.y, np.unique(real.y))
        gen = mean_within_class_distance(fake.features, fake.y, np.unique(fake.y))
        classes = sorted(set(gen) & set(ref))
        if not classes:
            return float("nan")
        denom = np.mean([ref[c] for c in classes])
        return float(np.mean([gen[c] for c in classes]) / denom) if denom > 0 else float("nan")


def paper_subsets(labels: np.ndarray | None, n_total: int, n: int, draws: int, rng: np.random.Generator,
                  balanced: bool = True) -> list[np.ndarray]:
    """``draws`` index arrays of ``n`` distinct rows of an array of ``n_total`` rows.

    With labels and ``balanced``: class-balanced, as the official code's samples (labels cycling 0..9): each class
    present gets n // C rows, the first n mod C classes (in label order) one more, drawn without
    replacement within the class; if a class has too few rows for its share, the draw is uniform
    over all rows instead.  Otherwise: uniform without replacement.  Rows are returned
    sorted.  Random draws: per subset, one ``rng.choice`` per class in label order (or one over
    all rows)."""
    if n > n_total:
        raise ValueError(f"fid-paper: {n} samples per draw but only {n_total} evaluation samples; raise task.n_eval")
    if labels is not None and balanced:
        classes, counts = np.unique(labels, return_counts=True)
        share = np.full(len(classes), n // len(classes))
        share[: n % len(classes)] += 1
        members = [np.flatnonzero(labels == c) for c in classes]
        stratified = bool((counts >= share).all())
    out = []
    for _ in range(draws):
        if labels is not None and balanced and stratified:
            idx = np.concatenate([rng.choice(m, size=s, replace=False) for m, s in zip(members, share)])
        else:
            idx = rng.choice(n_total, size=n, replace=False)
        out.append(np.sort(idx))
    return out


class PaperFID(ImageMetric):
    """The paper's 100-sample FID, repeated over ``draws`` subsets of the evaluation samples
    (module docstring): ``stat="mean"`` (``fid-paper``, lower is better) or ``"sd"``
    (``fid-paper-sd``, the spread across draws).  NaN when the features are non-finite."""

    def __init__(self, name: str, stat: str, n: int, draws: int, seed: int, balanced: bool = True) -> None:
        super().__init__(name)
        self.stat, self.n, self.draws, self.seed, self.balanced = stat, n, draws, seed, balanced

    def draw_values(self, fake: Embedded, real: Embedded) -> np.ndarray:
        """The FID of each draw (draws,), memoised on the samples' features (shared between
        ``fid-paper`` and ``fid-paper-sd``)."""
        key = ("fid-paper", real.serial, self.n, self.draws, self.seed, self.balanced)
        values = fake.derived.get(key)
        if values is None:
            rng = np.random.default_rng(self.seed)
            subsets = paper_subsets(fake.y, len(fake.features), self.n, self.draws, rng, self.balanced)
            fid = _fid_metric(real.features.shape[1])
            fid.update(_as_tensor(real.features), real=True)
            values = np.empty(len(subsets))
            for i, idx in enumerate(subsets):
                fid.reset()  # keeps the reference statistics (reset_real_features=False)
                fid.update(_as_tensor(fake.features[idx]), real=False)
                values[i] = float(fid.compute())
            fake.derived[key] = values
        return values

    def _value(self, fake: Embedded, real: Embedded) -> float:
        if len(real.features) < 2:
            return float("nan")
        values = self.draw_values(fake, real)
        return float(values.mean() if self.stat == "mean" else values.std(ddof=1))


def _check_k(k: Any) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k: got {k!r}; allowed: an integer >= 1 (nearest neighbours)")
    return int(k)


@METRICS.register("fid", domain="image", higher_is_better=False, label="FID")
def make_fid() -> FID:
    return FID("fid")


@METRICS.register("precision", domain="image", higher_is_better=True, label="Precision")
def make_precision(*, k: int = 3) -> PRDC:
    return PRDC("precision", _check_k(k))


@METRICS.register("recall", domain="image", higher_is_better=True, label="Recall")
def make_recall(*, k: int = 3) -> PRDC:
    return PRDC("recall", _check_k(k))


@METRICS.register("density", domain="image", higher_is_better=True, label="Density")
def make_density(*, k: int = 3) -> PRDC:
    return PRDC("density", _check_k(k))


@METRICS.register("coverage", domain="image", higher_is_better=True, label="Coverage")
def make_coverage(*, k: int = 3) -> PRDC:
    return PRDC("coverage", _check_k(k))


@METRICS.register("class_accuracy", domain="image", higher_is_better=True, label="Class accuracy")
def make_class_accuracy() -> ClassAccuracy:
    return ClassAccuracy("class_accuracy")


@METRICS.register("diversity", domain="image", higher_is_better=True, label="Diversity")
def make_diversity() -> Diversity:
    return Diversity("diversity")



def _paper_options(n: Any, draws: Any, seed: Any, balanced: Any) -> tuple[int, int, int, bool]:
    for key, value, low in (("n", n, 2), ("draws", draws, 2), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{key}: got {value!r}; allowed: an integer >= {low}")
    if not isinstance(balanced, bool):
        raise ConfigError(f"balanced: got {balanced!r}; allowed: true or false")
    return int(n), int(draws), int(seed), balanced


@METRICS.register("fid-paper", domain="image", higher_is_better=False, label="FID (paper protocol)")
def make_fid_paper(*, n: int = PAPER_N, draws: int = PAPER_DRAWS, seed: int = PAPER_SEED,
                   balanced: bool = True) -> PaperFID:
    return PaperFID("fid-paper", "mean", *_paper_options(n, draws, seed, balanced))


# a spread, not a quality: no orientation, so no verdict is drawn on it
@METRICS.register("fid-paper-sd", domain="image", higher_is_better=None, label="FID sd over draws (paper protocol)")
def make_fid_paper_sd(*, n: int = PAPER_N, draws: int = PAPER_DRAWS, seed: int = PAPER_SEED,
                      balanced: bool = True) -> PaperFID:
    return PaperFID("fid-paper-sd", "sd", *_paper_options(n, draws, seed, balanced))
