"""``ot-real``: a distribution-preserving correction towards the real training data.

The paper's idealized corrector moves samples *towards* the data distribution without
collapsing them onto a few points (docs/paper.md §1.3).  ``kmeans`` and ``nearest-real`` are
projections: many synthetic images land on the same prototype, which removes diversity and
feeds back through the loop (docs/findings.md).  ``ot-real`` pairs the synthetic batch with an
equally sized sample of *distinct* real training items by an optimal assignment and moves
each synthetic item a fraction t of the way to its partner::

    x_i  <-  (1 - t) x_i + t r_sigma(i),      t = gamma / (1 + gamma)

(gamma = inf: x_i is replaced by its partner; gamma = 0: the identity).  This is the
displacement interpolation of the paper's first toy-example code (docs/paper.md §3.1, initial
commit: Hungarian assignment to fresh target samples, then ``x <- t y + (1 - t) x``) with the
real training data as the target sample.  Note the meaning of gamma differs from the image
projections (``kmeans``, ``nearest-real``, ``verifier``), which act on a random *share* t of
the images: here *every* image moves, by the *fraction* t.

Algorithm (per class when the real data are labelled, else on the whole batch):

1. Partners.  For a group of m synthetic items and k real items of the class, the partner
   multiset holds every real item floor(m / k) times plus a sample of m mod k further real
   items drawn *without replacement* (``rng.choice``).  So when m <= k (any lambda <= 1 with
   class-balanced labels) all m partners are distinct real items; when m > k (lambda > 1)
   every real item is used floor(m/k) or ceil(m/k) times -- the most even use possible.
2. Assignment.  Exact optimal assignment for the squared Euclidean cost between the flattened
   items (``solver="assignment"``: ``scipy.optimize.linear_sum_assignment``, the default, about
   2x faster than POT here; ``solver="emd"``: POT's exact network-simplex ``ot.emd`` with
   uniform weights, whose optimal plan for equal sizes is a permutation matrix).  The two give
   the same optimal cost; ties may be broken differently.
3. Minibatch OT when a group is large: with m > ``batch_size`` (default 2,048; a 2,048 x 2,048
   float64 cost matrix is 32 MB and solves in ~0.5 s) the synthetic items and the partner
   multiset are each shuffled (``rng.permutation``) and split into ceil(m / batch_size) equal
   chunks, and each chunk pair is solved exactly (minibatch OT, Fatras et al. 2020: an
   approximation of the full plan that keeps every real item's use count).  On 8x8 digits and on
   per-class MNIST at the paper's sizes (<= 1,800 images per class at lambda = 1.5) every group
   fits in one batch, so the assignment is exact.

Randomness: only the ``rng`` passed to ``__call__`` (partner sample, minibatch shuffles), class
by class in increasing label order; none when gamma = 0 or when m is a multiple of k and fits
one batch.

Diagnostics (floats): ``displacement`` and ``fraction_changed`` (as for every correction);
``distinct_before`` / ``distinct_after`` and ``pairwise_before`` / ``pairwise_after`` (as for the
image projections; one pooled class when unlabelled); ``partners_distinct`` (number of distinct
real items used as partners), ``partners_distinct_fraction`` (that number / batch size: 1.0
whenever every class has at least as many real items as synthetic ones); ``partner_distance``
(mean L2 distance between an item and its partner; ``displacement = t * partner_distance`` for
the items that moved); ``recall_before`` / ``recall_after`` (k-NN recall, k = 3, Kynkäänniemi et
al. 2019, *in the raw data space*: the share of real training items that lie inside the k-NN
ball of some synthetic item, before and after the correction; both sets are evenly spaced
subsamples of at most 1,000 items, so the numbers are comparable between corrections of batches
of the same size; NaN with <= 3 items).  With gamma = 0 nothing is paired: the partner
diagnostics are 0.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.core.types import Corrected, CorrectionContext, Data, Degenerate
from scloop.corrections.base import check_gamma, displacement_diagnostics, mixing_weight
from scloop.corrections.images import distinct_count, mean_within_class_pairwise

SOLVERS = ("assignment", "emd")
DEFAULT_BATCH_SIZE = 2048
RECALL_K = 3
RECALL_MAX = 1000  # evenly spaced subsample size for the raw-space recall diagnostic
EMD_MAX_ITER = 10_000_000


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).reshape(len(x), -1)


def _evenly(x: np.ndarray, max_n: int) -> np.ndarray:
    if len(x) <= max_n:
        return x
    return x[np.linspace(0, len(x) - 1, max_n).astype(int)]


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    d = pairwise_distances(x, x, metric="euclidean")
    return np.partition(d, k, axis=1)[:, k]  # k-th nearest *other* row (the row itself is at 0)


def raw_recall(real: np.ndarray, fake: np.ndarray, k: int = RECALL_K) -> float:
    """k-NN recall of ``fake`` (m, D) against ``real`` (n, D) in the raw space: the share of real
    rows inside the k-NN ball of some fake row.  NaN with <= k rows in either set."""
    from sklearn.metrics import pairwise_distances

    if len(fake) <= k or len(real) <= k:
        return float("nan")
    fake_radii = _knn_radii(fake, k)
    d = pairwise_distances(real, fake, metric="euclidean")  # (n, m)
    return float((d < fake_radii[None, :]).any(axis=1).mean())


def assign(cost: np.ndarray, solver: str) -> np.ndarray:
    """Optimal assignment of a square cost matrix (m, m): returns ``col`` with row i -> col[i]."""
    m = len(cost)
    if m == 0:
        return np.zeros(0, dtype=int)
    if solver == "assignment":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        out = np.empty(m, dtype=int)
        out[rows] = cols
        return out
    import ot

    w = np.full(m, 1.0 / m)
    plan = ot.emd(w, w, cost, numItermax=EMD_MAX_ITER)
    cols = plan.argmax(axis=1)
    # an optimal vertex of the Birkhoff polytope is a permutation matrix
    if len(np.unique(cols)) != m or not np.allclose(plan[np.arange(m), cols], 1.0 / m, rtol=1e-6, atol=0.0):
        raise RuntimeError("ot.emd did not return a permutation plan (did it stop at numItermax?)")
    return cols


class OTRealCorrection:
    """Move synthetic items a fraction t of the way to distinct real partners chosen by optimal
    assignment (module docstring).

    Parameters
    ----------
    gamma : strength; fraction t = gamma / (1 + gamma) of the way (inf: replace by the partner).
    solver : "assignment" (scipy, default) or "emd" (POT).
    batch_size : largest group solved as one assignment; larger groups use minibatch OT.

    Fitted state: ``real_`` (n, D) float64 flattened real items, ``event_shape_``,
    ``groups_`` {class: indices into real_} (one group ``None`` when the real data are
    unlabelled), ``recall_real_`` (the real subsample of the recall diagnostic).
    """

    name = "ot-real"

    def __init__(self, *, gamma: float = math.inf, solver: str = "assignment",
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.gamma = gamma
        self.solver = solver
        self.batch_size = batch_size

    # ------------------------------------------------------------------ prepare
    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        real = context.real
        x = np.asarray(real.x)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"correction 'ot-real': expected real data of shape (n, ...) with n >= 1, got {x.shape}")
        self.real_ = _flat(x)
        if not np.isfinite(self.real_).all():
            raise ValueError("correction 'ot-real': the real data contain non-finite values")
        self.event_shape_ = tuple(x.shape[1:])
        self.labelled_ = real.y is not None
        if self.labelled_:
            y = np.asarray(real.y)
            self.groups_ = {c.item(): np.flatnonzero(y == c) for c in np.unique(y)}
        else:
            self.groups_ = {None: np.arange(len(x))}
        self.recall_real_ = _evenly(self.real_, RECALL_MAX)
        return self

    # ------------------------------------------------------------------ pairing
    def _partners_of_group(self, flat: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices into ``real_`` of the partners of the rows of ``flat`` (m, D), drawn from
        ``pool`` (indices of the group's real items)."""
        m, k = len(flat), len(pool)
        reps, rem = divmod(m, k)
        multiset = np.concatenate([np.tile(np.arange(k), reps), rng.choice(k, size=rem, replace=False)])
        multiset = pool[multiset]  # (m,) indices into real_
        partners = np.empty(m, dtype=int)
        if m <= self.batch_size:
            chunks = [(np.arange(m), multiset)]
        else:  # minibatch OT: shuffle both sides, solve equal chunks exactly
            n_chunks = -(-m // self.batch_size)
            syn = np.array_split(rng.permutation(m), n_chunks)
            par = np.array_split(multiset[rng.permutation(m)], n_chunks)
            chunks = list(zip(syn, par))
        from scipy.spatial.distance import cdist

        for rows, cand in chunks:
            cost = cdist(flat[rows], self.real_[cand], "sqeuclidean")
            partners[rows] = cand[assign(cost, self.solver)]
        return partners

    def __call__(self, data: Data, *, model: Any = None, rng: np.random.Generator) -> Corrected:
        """data: x (n, ...) [, y (n,)] -> Corrected with the same shape, dtype and labels."""
        if not hasattr(self, "real_"):
            raise ConfigError("correction 'ot-real' is not prepared: call prepare(context, rng=...) first")
        x = np.asarray(data.x)
        if tuple(x.shape[1:]) != self.event_shape_:
            raise ValueError(
                f"correction 'ot-real': prepared on items of shape {self.event_shape_}, got {tuple(x.shape[1:])}"
            )
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        if self.labelled_:
            if data.y is None:
                raise ConfigError(
                    "correction 'ot-real': the real data are labelled, so it pairs per class and needs labelled "
                    "synthetic data (a class-conditional model); got none"
                )
            y = np.asarray(data.y)
            unknown = sorted(set(np.unique(y).tolist()) - set(self.groups_))
            if unknown:
                raise ConfigError(
                    f"correction 'ot-real': synthetic items of class(es) {unknown} but the real data have only "
                    f"classes {sorted(self.groups_)}"
                )
        else:
            y = None
        n = len(x)
        flat = _flat(x)
        if not np.isfinite(flat).all():
            raise Degenerate("correction 'ot-real': non-finite values in the synthetic data")
        t = mixing_weight(self.gamma)
        partners = np.full(n, -1, dtype=int)
        if t > 0 and n:
            groups = [(None, np.arange(n))] if y is None else [(c.item(), np.flatnonzero(y == c)) for c in np.unique(y)]
            for c, idx in groups:
                partners[idx] = self._partners_of_group(flat[idx], self.groups_[c], rng)
            target = self.real_[partners].reshape(x.shape)
            # (1 - t) x + t r: exactly x at t = 0 and exactly r at t = 1
            out = ((1.0 - t) * np.asarray(x, dtype=np.float64) + t * target).astype(dtype)
        else:
            out = np.array(x, dtype=dtype, copy=True)
        return Corrected(Data(out, data.y), self._diagnostics(x, out, y, flat, partners))

    # ------------------------------------------------------------------ diagnostics
    def _diagnostics(self, x, out, y, flat, partners) -> dict[str, float]:
        n = len(x)
        labels = np.zeros(n, dtype=int) if y is None else y
        diag = displacement_diagnostics(np.asarray(x, dtype=np.float64), np.asarray(out, dtype=np.float64))
        diag.update(
            distinct_before=float(distinct_count(x)),
            distinct_after=float(distinct_count(out)),
            pairwise_before=mean_within_class_pairwise(x, labels),
            pairwise_after=mean_within_class_pairwise(out, labels),
        )
        paired = partners >= 0
        n_distinct = len(np.unique(partners[paired]))
        diag["partners_distinct"] = float(n_distinct)
        diag["partners_distinct_fraction"] = float(n_distinct / n) if n and paired.any() else 0.0
        diag["partner_distance"] = (
            float(np.sqrt(((flat[paired] - self.real_[partners[paired]]) ** 2).sum(axis=1)).mean()) if paired.any() else 0.0
        )
        diag["recall_before"] = raw_recall(self.recall_real_, _evenly(flat, RECALL_MAX))
        diag["recall_after"] = raw_recall(self.recall_real_, _evenly(_flat(out), RECALL_MAX))
        return diag


@CORRECTIONS.register("ot-real", domain="any")
def make_ot_real(*, gamma: float = math.inf, solver: str = "assignment",
                 batch_size: int = DEFAULT_BATCH_SIZE) -> OTRealCorrection:
    if solver not in SOLVERS:
        raise ConfigError(f"solver: got {solver!r}; allowed: {', '.join(SOLVERS)}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size: got {batch_size!r}; allowed: an integer >= 1")
    return OTRealCorrection(gamma=check_gamma(gamma), solver=solver, batch_size=int(batch_size))
