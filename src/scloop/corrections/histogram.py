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


# ---------------------------------------------------------------------- compiled kernels
# The vectorised Gaussian engine corrects thousands of trajectories per generation.  The numpy
# path above evaluates every candidate of a block for every trajectory still short of points
# (most of them are not needed: a trajectory stops at its m-th acceptance); these kernels scan
# each trajectory's candidates in proposal order and stop there.  They perform the same IEEE
# operations in the same order as the numpy functions (no fast-math, no fused multiply-add), so
# the accepted points, counts and acceptance rates are the same to the bit (tests compare
# them).  Compiled on first use (numba, cached on disk), so small runs never pay for it.
_KERNELS: dict | None = None


def compiled_kernels() -> dict:
    """``{"candidates", "density", "fill"}``: the numba kernels (compiled once per process,
    cached on disk across processes)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile_kernels()
    return _KERNELS


def _compile_kernels() -> dict:
    import numba

    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @jit
    def candidates(z, seeds, mean, chol, prec):
        """Proposals ``mean + chol z`` (as :func:`scloop.models.gaussian.affine_sample`) and
        their quadratic forms (x - mean)^T prec (x - mean) (as :class:`GaussianPdf`'s einsum,
        terms in (i, j) order), d = 2, for the listed seeds only.  z (S, K, 2), seeds (P,) ->
        cand (P, K, 2), q (P, K)."""
        K = z.shape[1]
        P = len(seeds)
        cand = np.empty((P, K, 2))
        q = np.empty((P, K))
        m0, m1 = mean[0], mean[1]
        l00, l01, l10, l11 = chol[0, 0], chol[0, 1], chol[1, 0], chol[1, 1]
        p00, p01, p10, p11 = prec[0, 0], prec[0, 1], prec[1, 0], prec[1, 1]
        for p in range(P):
            s = seeds[p]
            for k in range(K):
                z0, z1 = z[s, k, 0], z[s, k, 1]
                c0 = m0 + (z0 * l00 + z1 * l01)
                c1 = m1 + (z0 * l10 + z1 * l11)
                cand[p, k, 0] = c0
                cand[p, k, 1] = c1
                a0, a1 = c0 - m0, c1 - m1
                q[p, k] = a0 * p00 * a0 + a0 * p01 * a1 + a1 * p10 * a0 + a1 * p11 * a1
        return cand, q

    @jit
    def density(x, dead, bins):
        """:func:`histogram_density` of x (S, G, n, 2), with the trajectories marked in
        ``dead`` (S, G) treated as all-zero points."""
        S, G, n, _ = x.shape
        lo = np.empty((S, G, 2))
        width = np.empty((S, G, 2))
        dens = np.zeros((S, G, bins, bins))
        peak = np.empty((S, G))
        counts = np.zeros((bins, bins), dtype=np.int64)
        table = np.empty(n + 1)
        for s in range(S):
            for g in range(G):
                for a in range(2):
                    if dead[s, g]:
                        mn = 0.0
                        mx = 0.0
                    else:
                        mn = x[s, g, 0, a]
                        mx = x[s, g, 0, a]
                        for i in range(1, n):
                            v = x[s, g, i, a]
                            mn = min(mn, v)
                            mx = max(mx, v)
                    if mx == mn:
                        mn = mn - 0.5
                        mx = mx + 0.5
                    lo[s, g, a] = mn
                    width[s, g, a] = (mx - mn) / bins
                counts[:, :] = 0
                for i in range(n):
                    v0 = 0.0 if dead[s, g] else x[s, g, i, 0]
                    v1 = 0.0 if dead[s, g] else x[s, g, i, 1]
                    b0 = min(max(np.floor((v0 - lo[s, g, 0]) / width[s, g, 0]), 0.0), bins - 1.0)
                    b1 = min(max(np.floor((v1 - lo[s, g, 1]) / width[s, g, 1]), 0.0), bins - 1.0)
                    counts[int(b0), int(b1)] += 1
                denom = n * width[s, g, 0] * width[s, g, 1]
                # a bin's density is count / denom: one division per possible count, not per bin
                top = 0
                for c in range(n + 1):
                    table[c] = c / denom
                for i in range(bins):
                    for j in range(bins):
                        c = counts[i, j]
                        dens[s, g, i, j] = table[c]
                        top = max(top, c)
                peak[s, g] = table[top]  # division by denom > 0 preserves order: the max density
        return lo, width, dens, peak

    @jit
    def fill(out, count, examined, seeds, cand, u, phi, t, lo, width, dens, peak, phi0):
        """One block of candidates for every trajectory still short of points: scan them in
        proposal order, keep the accepted ones (as :func:`histogram_accept` +
        :func:`collect_first`), stop at the m-th.  out (S, G, m, 2), count (S, G) int64 and
        examined (S, G) float64 are updated in place; the candidates cand (P, K, 2) and their
        densities phi (P, K) of the seeds listed in ``seeds`` (P,), and the uniforms u (S, K),
        are shared by the G trajectories of a seed; t (G,)."""
        G, m = out.shape[1], out.shape[2]
        K = cand.shape[1]
        fb = float(dens.shape[-1])
        for p in range(len(seeds)):
            s = seeds[p]
            for g in range(G):
                c = count[s, g]
                if c >= m:
                    continue
                tt = t[g]
                big_m = ((1 - tt) * peak[s, g] + tt * phi0) / phi0
                lo0, lo1, w0, w1 = lo[s, g, 0], lo[s, g, 1], width[s, g, 0], width[s, g, 1]
                used = K
                for k in range(K):
                    c0, c1 = cand[p, k, 0], cand[p, k, 1]
                    v0 = (c0 - lo0) / w0
                    v1 = (c1 - lo1) / w1
                    inside = (v0 > -1) & (v0 < fb) & (v1 > -1) & (v1 < fb)
                    # truncation toward zero of the clipped index, as numpy's astype(intp)
                    i0 = int(min(max(v0, 0.0), fb - 1.0))
                    i1 = int(min(max(v1, 0.0), fb - 1.0))
                    emp = dens[s, g, i0, i1] if inside else 0.0
                    ph = phi[p, k]
                    f = (1 - tt) * emp + tt * ph
                    # branch-free keep: write the candidate at the next free slot, advance on
                    # acceptance (a rejected one is overwritten by the next)
                    out[s, g, c, 0] = c0
                    out[s, g, c, 1] = c1
                    c += f / (big_m * ph) > u[s, k]
                    if c >= m:
                        used = k + 1
                        break
                if c < m:
                    out[s, g, c, 0] = 0.0  # the slot stays empty, as in the numpy path
                    out[s, g, c, 1] = 0.0
                count[s, g] = c
                examined[s, g] += used

    return {"candidates": candidates, "density": density, "fill": fill}


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
