"""``paper-histogram``: a faithful re-implementation of the official Gaussian toy's corrector.

docs/paper.md §3.1 and §4 (items 2 and 3).  Given the n synthetic points of a generation:

1. build a 10x10 histogram density of the points (``density=True``; bins span the sample
   range in each axis, zero outside);
2. draw n new points by rejection sampling from ``f(x) = (1 - t) hist(x) + t phi(x)``,
   ``t = gamma / (1 + gamma)``, with proposal ``phi = N(mu*, Sigma*)`` (the target) and envelope
   ``M = ((1 - t) max hist + t phi(mu*)) / phi(mu*)``; a candidate c is accepted when
   ``f(c) / (M phi(c)) > u``;
3. the accepted points *replace* the synthetic points.

Kept on purpose, as in the official code: the empirical part is the histogram, not the fitted
model, so gamma = 0 is not a pass-through; the envelope is too small away from mu* (the ratio
can exceed 1 and acceptance is silently clipped), which thins the tails towards the target
even at gamma = 0 -- this is what drives the official figure's collapse at gamma = 0; and the
candidate's bin index uses truncation toward zero (``int()``), so candidates up to one bin
width *below* the lowest edge land in bin 0.  Only 2-D data are supported (as the original).

Simplification: candidates are drawn in fixed blocks of ``block`` proposals (normals, then
uniforms) instead of one at a time; the first n accepted candidates in proposal order are
kept, which is the same sampler.  Diagnostic ``acceptance_rate`` = n / (candidates examined
up to the n-th acceptance).  Points in the histogram are binned by ``floor`` on the
``linspace`` edges (numpy's ``histogram2d`` uses a search on the same edges; the two can only
differ for a point lying exactly on an interior edge).
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np

from scloop.core.registry import CORRECTIONS, ConfigError
from scloop.core.types import Corrected, CorrectionContext, Data, Degenerate
from scloop.corrections.base import check_gamma, displacement_diagnostics, mixing_weight, require_target

MAX_BLOCKS = 20_000


class GaussianPdf:
    """Density of N(mean, cov), with the precision and normaliser computed once."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray) -> None:
        self.mean = mean
        self.prec = np.linalg.inv(cov)
        self.norm = math.sqrt((2 * math.pi) ** mean.shape[-1] * np.linalg.det(cov))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Density at x (..., d)."""
        diff = x - self.mean
        q = np.einsum("...i,ij,...j->...", diff, self.prec, diff)
        return np.exp(-0.5 * q) / self.norm


def histogram_density(x: np.ndarray, bins: int):
    """Batched 2-D histogram density of points x (..., n, 2).

    Returns lo (..., 2), width (..., 2), density (..., bins, bins), peak (...).
    """
    n = x.shape[-2]
    lo = x.min(axis=-2)
    hi = x.max(axis=-2)
    same = hi == lo  # numpy widens an empty range by +-0.5
    lo = np.where(same, lo - 0.5, lo)
    hi = np.where(same, hi + 0.5, hi)
    width = (hi - lo) / bins
    idx = np.clip(np.floor((x - lo[..., None, :]) / width[..., None, :]), 0, bins - 1).astype(np.int64)
    flat = idx[..., 0] * bins + idx[..., 1]  # (..., n)
    batch = int(np.prod(flat.shape[:-1], dtype=np.int64))
    offs = (np.arange(batch) * bins * bins).reshape(flat.shape[:-1] + (1,))
    counts = np.bincount((flat + offs).ravel(), minlength=batch * bins * bins)
    counts = counts.reshape(flat.shape[:-1] + (bins, bins))
    density = counts / (n * width[..., 0] * width[..., 1])[..., None, None]
    return lo, width, density, density.max(axis=(-1, -2))


def histogram_accept(c, u, t, lo, width, density, peak, phi_c, phi0):
    """Acceptance mask of candidates c (..., K, 2) with uniforms u (..., K) under the official
    envelope.  t, peak: (...); lo, width: (..., 2); density (..., bins, bins); phi_c (..., K)
    the target density at the candidates; phi0 the target density at its mean."""
    bins = density.shape[-1]
    t = np.asarray(t, dtype=float)
    # int() truncates toward zero, so trunc(v) lies in [0, bins) exactly when -1 < v < bins:
    # candidates within one bin below `lo` map to bin 0, as in the official code.
    v = (c - lo[..., None, :]) / width[..., None, :]
    vx, vy = v[..., 0], v[..., 1]
    inside = (vx > -1) & (vx < bins) & (vy > -1) & (vy < bins)
    ii = np.clip(v, 0, bins - 1).astype(np.intp)  # astype truncates toward zero
    flat_density = density.reshape(density.shape[:-2] + (bins * bins,))
    flat_idx = ii[..., 0] * bins + ii[..., 1]
    batch = np.broadcast_shapes(flat_density.shape[:-1], flat_idx.shape[:-1])
    flat_density = np.broadcast_to(flat_density, batch + flat_density.shape[-1:])
    emp = np.take_along_axis(flat_density, np.broadcast_to(flat_idx, batch + flat_idx.shape[-1:]), axis=-1)
    emp = np.where(inside, emp, 0.0)
    big_m = ((1 - t) * peak + t * phi0) / phi0
    f = (1 - t[..., None]) * emp + t[..., None] * phi_c
    return f / (big_m[..., None] * phi_c) > u


def collect_first(out, count, cand, accept):
    """Write the first accepted candidates into ``out`` (..., n, d) in proposal order.

    count (...) is the number already filled; cand (..., K, d); accept (..., K).  Returns the
    new count and the number of candidates examined (up to and including the one that filled
    ``out``, else all K; 0 where ``out`` was already full).  Batched so that the ensemble and
    the generic path share it.
    """
    n, k = out.shape[-2], accept.shape[-1]
    cand = np.broadcast_to(cand, accept.shape + cand.shape[-1:])
    rank = count[..., None] + np.cumsum(accept, axis=-1)  # 1-based slot of each acceptance
    take = accept & (rank <= n)
    where = np.nonzero(take)
    slots = rank[where] - 1
    out[where[:-1] + (slots,)] = cand[where]
    full = rank >= n
    examined = np.where(full[..., -1], np.argmax(full, axis=-1) + 1, k)
    return np.minimum(rank[..., -1], n), np.where(count >= n, 0, examined)


class PaperHistogramCorrection:
    """The official toy's histogram + rejection-sampling corrector (see module docstring)."""

    name = "paper-histogram"

    def __init__(self, *, gamma: float = 0.0, bins: int = 10, block: int = 256) -> None:
        self.gamma = gamma
        self.bins = bins
        self.block = block

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        target = require_target(context.target, self.name)
        if np.shape(target.mean) != (2,):
            raise ConfigError(
                f"correction 'paper-histogram' supports 2-D data only (the official toy); got dimension "
                f"{np.shape(target.mean)[0]}. Use oracle-mixture or oracle-ot for other dimensions."
            )
        self.target_ = target
        self.pdf_ = GaussianPdf(target.mean, target.cov)
        return self

    def __call__(self, data: Data, *, model=None, rng: np.random.Generator) -> Corrected:
        from scloop.models.gaussian import affine_sample

        x = np.asarray(data.x, dtype=float)
        n = len(x)
        t = np.asarray(mixing_weight(self.gamma))
        tg = self.target_
        lo, width, density, peak = histogram_density(x, self.bins)
        out = np.zeros_like(x)
        count = np.zeros((), dtype=np.int64)
        examined = 0
        for _ in range(MAX_BLOCKS):
            if count >= n:
                break
            z = rng.standard_normal((self.block, 2))
            u = rng.random(self.block)
            cand = affine_sample(tg.mean, tg.chol, z)
            acc = histogram_accept(cand, u, t, lo, width, density, peak, self.pdf_(cand), self.pdf_(tg.mean))
            count, used = collect_first(out, count, cand, acc)
            examined += int(used)
        else:
            raise Degenerate(f"paper-histogram: rejection sampling accepted {int(count)} of {n} points")
        diag = displacement_diagnostics(x, out)
        diag["acceptance_rate"] = n / examined if examined else 1.0
        return Corrected(Data(out, data.y), diag)


@CORRECTIONS.register("paper-histogram", capabilities=("gaussian-ensemble",))
def make_paper_histogram(*, gamma: float = 0.0, bins: int = 10, block: int = 256) -> PaperHistogramCorrection:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"correction.bins: got {bins!r}; allowed: an integer >= 1")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"correction.block: got {block!r}; allowed: an integer >= 1")
    return PaperHistogramCorrection(gamma=check_gamma(gamma), bins=bins, block=block)
