"""Vectorised Gaussian loop: S seeds x all gamma values of one (arm, lambda, correction)
group as one array computation, using sufficient statistics.

Why a second path: the official toy takes ~250 s for 8 gammas x 500 generations; here the
whole group advances one generation with a handful of numpy calls on arrays of shape
``(S, n_gamma, ...)``, so 1,000 seeds cost about what one seed costs in the generic engine.

Exactness contract (tested): with S = 1 this path consumes the same random streams, in the
same order and shapes, as the generic engine (:func:`scloop.loop.engine.run_loop` with
``GaussianModel`` and the same correction and policy), and it calls the same batched kernels
(sampling, corrections, metrics).  The only difference is how the MLE sums are accumulated
(running sufficient statistics here, a fresh sum over the training set there), so the two agree
to floating-point rounding (relative differences ~1e-12).

Randomness: seeds are computed in blocks of :data:`SEED_BLOCK` (1,000).  Seed s is slice
``s % 1000`` of arrays with a leading axis of the block's size, drawn from the streams of seed
index ``s // 1000`` (``scloop.core.rng``); all gammas share the draws (common random numbers).
A run of up to 1,000 seeds is one block drawing from the streams of seed index 0, exactly as
before blocks existed.  Every computation is per trajectory, so how a block's gammas are
split further to fit in memory (:func:`gamma_chunk`) does not change any number.

Cost per generation by policy (m = floor(lambda n) synthetic points, d = dimension):
``augment``/``replace``: O(m d^2); ``accumulate``: O(m d^2) (running sums);
``paper-toy``: O(m d^2) amortised -- the running sums drop exactly the points whose generation
loses them (floor(m j / G) only ever decreases, at most m times per generation over the run),
which is the least work that reads every kept point once; ``accumulate-subsample``: O(budget d^2)
plus drawing the keys, O(pool).

Memory: ``paper-toy`` keeps only the points it will still subtract before the run's last
generation N (point k of batch j leaves at generation floor(m j / (k + 1)) + 1, so the first
floor(m j / N) points of batch j stay to the end and only their sums are needed): at most ~3 N
points per trajectory at once instead of m N / 2 (``_PaperToyPoints``).
``accumulate-subsample`` keeps every point (it may draw any of them).

Kernels: when a block has at least :data:`COMPILED_FROM` trajectories (and numba is
installed) the hot loops run compiled -- the paper-histogram rejection sampler
(:func:`scloop.corrections.histogram.compiled_kernels`: each trajectory scans its candidates in
order and stops at its m-th acceptance; candidates are computed only for seeds still short of
points), sampling, sufficient statistics, displacements and the random draws
(:func:`compiled_kernels`) -- and the next generation's random numbers are drawn on a worker
thread while this one is computed (not in a process of a worker pool: ``OMP_NUM_THREADS=1``).
Small blocks use numpy and no thread (nothing to compile or import).  Every path gives the same
numbers to the bit (tests/engine/test_compiled_kernels.py).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from scloop.core.rng import stream
from scloop.corrections.base import mixing_weight
from scloop.corrections.histogram import MAX_BLOCKS, GaussianPdf, collect_first, histogram_accept, histogram_density
from scloop.corrections.oracle import mixture_kernel, ot_pairing
from scloop.loop.policies import paper_toy_counts
from scloop.metrics.gaussian import cov_error, mean_error, psd_sqrt, w2_gaussian
from scloop.models.gaussian import affine_sample, cholesky_or_nan, moments_from_sums, sums

CAPABILITY = "gaussian-ensemble"  # declared at registration by the plugins this engine has kernels for
SEED_BLOCK = 1000  # seeds per block of random streams (numbers depend on it: see the module docstring)
COMPILED_FROM = 512  # trajectories per block from which the compiled kernels are used
MEMORY_BUDGET = int(os.environ.get("SCLOOP_ENSEMBLE_MEMORY_MB", "1024")) << 20  # bytes per block of trajectories


@dataclass(frozen=True)
class Group:
    """One vectorised batch: an arm at one lambda with one correction and its gammas."""

    arm: str
    lam: float
    correction: str
    correction_options: dict
    gammas: tuple[float, ...]


@dataclass
class StepResult:
    generation: int
    metrics: dict[str, np.ndarray]  # (S, G)
    diagnostics: dict[str, np.ndarray]  # (S, G)
    status_bad: np.ndarray  # (S, G) newly degenerate at this generation
    reason: str  # why, for all of them ("; "-joined when there are several causes)
    seconds: dict[str, float]  # batch wall seconds per stage
    provenance: tuple[tuple[int, bool, int], ...]
    n_real: int
    n_synthetic: int
    failed: np.ndarray | None = None  # (S, G) newly degenerate because the correction failed
    reasons: tuple[str, str] = ("", "")  # (the correction's failure, a singular covariance)

    def reason_of(self) -> np.ndarray:
        """(S, G) the reason of each newly degenerate trajectory ('' elsewhere): its own cause."""
        out = np.full(self.status_bad.shape, "", dtype=object)
        failed = self.failed if self.failed is not None else np.zeros_like(self.status_bad)
        out[self.status_bad & failed] = self.reasons[0]
        out[self.status_bad & ~failed] = self.reasons[1]
        return out


def seed_blocks(n_seeds: int) -> list[tuple[int, int]]:
    """[(first seed, end)] of the random-stream blocks; block k draws from seed index k."""
    return [(a, min(a + SEED_BLOCK, n_seeds)) for a in range(0, n_seeds, SEED_BLOCK)]


def _batched_displacement(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((after - before) ** 2).sum(axis=-1))  # (..., m)
    changed = d > 0
    nchg = changed.sum(axis=-1)
    disp = np.where(nchg > 0, (d * changed).sum(axis=-1) / np.maximum(nchg, 1), 0.0)
    return disp, changed.mean(axis=-1)


def _chunks(block: int, first: int = 32) -> list[tuple[int, int]]:
    """Doubling chunks covering [0, block): (0, 32), (32, 64), (64, 128), ..."""
    edges, e = [0], first
    while e < block:
        edges.append(e)
        e *= 2
    edges.append(block)
    return list(zip(edges[:-1], edges[1:]))


# ---------------------------------------------------------------------- compiled kernels
# The per-generation array work of a large block, compiled (numba).  Each kernel performs the
# operations of the numpy function it replaces in the same order -- affine_sample's
# left-to-right products, the sequential sums numpy's reductions over a non-contiguous axis and
# einsum make, numpy's pairwise summation along a contiguous axis -- so both paths give the
# same numbers to the bit (tested for every policy and correction); the linear algebra
# (eigenvalues, Cholesky) and exp stay in numpy.
_KERNELS: dict | None = None


def compiled_kernels() -> dict:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile_kernels()
    return _KERNELS


@functools.lru_cache(maxsize=1)
def have_numba() -> bool:
    """Whether the compiled kernels can be used (without numba the numpy ones run: same
    numbers, slower for large blocks)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def single_threaded() -> bool:
    """Whether this process is one of a pool of workers (scloop's run and sweep workers set
    OMP_NUM_THREADS=1): then it draws random numbers on its own thread, not on a second one."""
    return os.environ.get("OMP_NUM_THREADS") == "1"



def _compile_kernels() -> dict:
    from scloop.tasks import _gaussian_kernels as k

    return {"affine": k.affine, "sums": k.batch_sums, "displacement": k.displacement,
            "normals": k.normals, "uniforms": k.uniforms}


# ---------------------------------------------------------------------- stored points
class _PaperToyPoints:
    """The synthetic points ``paper-toy`` will still subtract from its running sums.

    At generation g the policy keeps the first floor(m j / g) points of batch j; that count
    only decreases, so point k of batch j leaves at generation floor(m j / (k + 1)) + 1 and the
    first ``lo_j`` = floor(m j / N) points of batch j are kept until the last generation N:
    only their sums matter.  Stored per batch j: points [lo_j, hi_j(g)) as an array
    (S, G, hi - lo, d), float64, exactly as sampled; hi_j(g) = floor(m j / g) after step g."""

    def __init__(self, m: int, horizon: int) -> None:
        self.m, self.horizon = m, horizon
        self.lo = paper_toy_counts(m, horizon) if horizon > 0 else np.zeros(0, np.int64)  # lo[j - 1]
        self.parts: dict[int, np.ndarray] = {}
        self._alloc: dict[int, int] = {}  # points allocated for batch j (the view may be shorter)

    def live(self, generation: int) -> np.ndarray:
        """(generation,) points stored per batch j = 1..generation after step ``generation``."""
        if generation <= 0:
            return np.zeros(0, np.int64)
        return paper_toy_counts(self.m, generation) - self.lo[:generation]

    def add(self, j: int, x: np.ndarray) -> None:
        lo = int(self.lo[j - 1])
        if lo < self.m:
            self.parts[j] = x[:, :, lo:].copy()
            self._alloc[j] = self.m - lo

    def take(self, j: int, a: int, b: int) -> np.ndarray:
        """Points [a, b) of batch j, (S, G, b - a, d)."""
        lo = int(self.lo[j - 1])
        return self.parts[j][:, :, a - lo:b - lo]

    def shrink(self, j: int, hi: int) -> None:
        """Batch j now keeps points [0, hi): forget those above."""
        n = hi - int(self.lo[j - 1])
        if n <= 0:
            self.parts.pop(j, None)
            self._alloc.pop(j, None)
        elif 2 * n <= self._alloc[j]:  # copy when half is unused: O(1) amortised, memory <= 2x live
            self.parts[j] = self.parts[j][:, :, :n].copy()
            self._alloc[j] = n
        else:
            self.parts[j] = self.parts[j][:, :, :n]

    # checkpoints: the stored points of batches j0 < j <= j1, in (j, k) order
    def chunk(self, j0: int, j1: int, shape: tuple[int, ...]) -> np.ndarray:
        parts = [self.parts[j] for j in range(j0 + 1, j1 + 1) if j in self.parts]
        return np.concatenate(parts, axis=2) if parts else np.zeros(shape[:2] + (0,) + shape[2:])

    def needed(self, j0: int, j1: int, generation: int) -> bool:
        return bool(self.live(generation)[j0:j1].sum() > 0)

    def restore(self, j0: int, j1: int, arr: np.ndarray, written_at: int, generation: int) -> None:
        before = self.live(written_at)[j0:j1]
        now = self.live(generation)[j0:j1]
        edges = np.concatenate([[0], np.cumsum(before)])
        for i, j in enumerate(range(j0 + 1, j1 + 1)):
            if now[i] > 0:
                self.parts[j] = np.ascontiguousarray(arr[:, :, edges[i]:edges[i] + now[i]])
                self._alloc[j] = int(now[i])


class _Pool:
    """Every synthetic point so far (``accumulate-subsample`` may draw any of them): one
    buffer (S, G, capacity, d), batch j at [(j - 1) m, j m), sized for the whole run."""

    def __init__(self, m: int, horizon: int) -> None:
        self.m, self.horizon = m, horizon
        self.buf: np.ndarray | None = None
        self.n = 0

    def add(self, j: int, x: np.ndarray) -> None:
        m = self.m
        if self.buf is None or self.buf.shape[2] < j * m:
            cap = max(self.horizon, j) * m
            grown = np.empty(x.shape[:2] + (cap, x.shape[-1]))
            if self.buf is not None:
                grown[:, :, : self.n] = self.buf[:, :, : self.n]
            self.buf = grown
        self.buf[:, :, (j - 1) * m: j * m] = x
        self.n = j * m

    def view(self) -> np.ndarray:
        return self.buf[:, :, : self.n]

    def chunk(self, j0: int, j1: int, shape: tuple[int, ...]) -> np.ndarray:
        if self.buf is None:
            return np.zeros(shape[:2] + (0,) + shape[2:])
        return self.buf[:, :, j0 * self.m: j1 * self.m]

    def needed(self, j0: int, j1: int, generation: int) -> bool:
        return j1 > j0

    def restore(self, j0: int, j1: int, arr: np.ndarray, written_at: int, generation: int) -> None:
        for i, j in enumerate(range(j0 + 1, j1 + 1)):
            self.add(j, arr[:, :, i * self.m:(i + 1) * self.m])


def bytes_per_trajectory(policy: str, m: int, horizon: int, d: int) -> int:
    """Rough memory of one trajectory's stored points and per-generation work arrays."""
    work = 16 * (m + 1) * d * 8
    if policy == "accumulate-subsample":
        return work + horizon * m * d * 8
    if policy == "paper-toy" and horizon > 0 and m > 0:
        lo_sum = np.cumsum(paper_toy_counts(m, horizon))
        gs = np.unique(np.linspace(1, horizon, min(horizon, 200)).astype(np.int64))
        peak = max(int(paper_toy_counts(m, int(g)).sum() - lo_sum[g - 1]) for g in gs)
        return work + 2 * peak * d * 8  # shrink() keeps at most twice the live points
    return work


def gamma_chunk(n_seeds: int, n_gammas: int, per_trajectory: int, budget: int | None = None) -> int:
    """Gammas per piece so that one piece of a seed block fits in ``budget`` bytes (>= 1)."""
    budget = MEMORY_BUDGET if budget is None else budget
    return int(max(1, min(n_gammas, budget // max(1, n_seeds * per_trajectory))))


class GaussianEnsemble:
    """Advance S seeds x n_gamma trajectories of one :class:`Group` generation by generation.

    ``stream_seed``: the seed index whose random streams this block draws (block k of
    :func:`seed_blocks`); ``horizon``: the run's last generation (what ``paper-toy`` keeps
    depends on it; :func:`run_ensemble` sets it); ``kernels``: ``auto`` | ``numpy`` |
    ``compiled`` (same numbers); ``threads``: draw the next generation's random numbers on a
    worker thread (default: with the compiled kernels; same numbers)."""

    def __init__(self, *, task, group: Group, n_real: int, n_seeds: int, base_seed: int,
                 policy: str, policy_options: dict, metrics: tuple[str, ...], init_offset: float,
                 reg_covar: float = 0.0, stream_seed: int = 0, horizon: int = 0, kernels: str = "auto",
                 threads: bool | None = None) -> None:
        self.task, self.group = task, group
        self.n, self.S, self.base_seed = n_real, n_seeds, base_seed
        self.stream_seed = int(stream_seed)
        self.policy, self.policy_options = policy, policy_options
        self.metric_names = metrics
        self.init_offset, self.reg = init_offset, reg_covar
        self.G = len(group.gammas) if group.arm == "correction" else 1
        self.m = 0 if group.arm == "baseline" else int(math.floor(group.lam * n_real))
        self.t = np.array([mixing_weight(g) for g in group.gammas] if group.arm == "correction" else [0.0])
        tg = task.target
        self.tmean, self.tcov, self.tchol = tg.mean, tg.cov, tg.chol
        self.tcov_sqrt = psd_sqrt(self.tcov)
        self.pdf = GaussianPdf(self.tmean, self.tcov)
        self.phi0 = self.pdf(self.tmean)
        self.d = tg.mean.shape[0]
        self.horizon = int(horizon)
        if kernels not in ("auto", "numpy", "compiled"):
            raise ValueError(f"kernels: got {kernels!r}; allowed: auto | numpy | compiled")
        self.kernels = kernels
        self._threads = threads if threads is not None else (self._compiled() and not single_threaded())
        self._pool = None
        self._next = None
        self._rounds_guess = 1  # paper-histogram rounds to draw ahead: as many as the last generation used

    def _rng(self, g: int, role: str) -> np.random.Generator:
        return stream(self.base_seed, self.stream_seed, g, role)

    # ------------------------------------------------------------------ random draws
    def _draw(self, g: int) -> dict[str, Any]:
        """The random draws of generation g that do not depend on the state, in the order and
        shapes each stream has always been read: ``z`` (sample); the correction's (``u``,
        ``zc`` for the oracles; ``rounds`` of candidate normals and uniforms, and the stream
        to draw further rounds from, for paper-histogram); ``keys`` (accumulate-subsample)."""
        grp, S, m, d = self.group, self.S, self.m, self.d
        normal, uniform = self._samplers()
        out: dict[str, Any] = {}
        if grp.arm == "baseline":
            return out
        out["z"] = normal(self._rng(g, "sample"), (S, m, d))
        if grp.arm == "correction" and grp.correction != "none":
            rng = self._rng(g, "correct")
            if grp.correction in ("oracle-mixture", "oracle-ot"):
                out["u"] = uniform(rng, (S, m))
                out["zc"] = normal(rng, (S, m, d))
            elif grp.correction == "paper-histogram":
                block = int(grp.correction_options.get("block", 256))
                out["rounds"] = [(normal(rng, (S, block, d)), uniform(rng, (S, block)))
                                 for _ in range(self._rounds_guess)]
                out["rng"] = rng
        if self.policy == "accumulate-subsample":
            out["keys"] = uniform(self._rng(g, "policy"), (S, g * m))
        return out

    def _samplers(self):
        """(normal, uniform): ``f(generator, shape)`` -> array, numpy's or the compiled ones
        (the same numbers)."""
        if not self._compiled():
            return (lambda rng, shape: rng.standard_normal(shape)), (lambda rng, shape: rng.random(shape))
        k = compiled_kernels()
        return (lambda rng, shape: k["normals"](rng, np.empty(shape))), \
            (lambda rng, shape: k["uniforms"](rng, np.empty(shape)))

    def _draws(self, g: int) -> dict[str, Any]:
        """Generation g's draws; with a worker thread, those of g + 1 start now (drawing random
        numbers is most of a large block's serial work, and numpy releases the GIL for it)."""
        fut, self._next = self._next, None
        draws = fut.result() if fut is not None and fut.gen == g else self._draw(g)
        if self._threads and g < self.horizon:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="scloop-draws")
            self._next = self._pool.submit(self._draw, g + 1)
            self._next.gen = g + 1
        return draws

    def close(self) -> None:
        """Stop the worker thread, if any (a later step draws on the caller's thread)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _compiled(self) -> bool:
        if self.kernels == "auto":
            return self.S * self.G >= COMPILED_FROM and have_numba()
        return self.kernels == "compiled"

    def _points(self):
        if self.group.arm == "baseline":
            return None
        if self.policy == "paper-toy":
            return _PaperToyPoints(self.m, self.horizon)
        if self.policy == "accumulate-subsample":
            return _Pool(self.m, self.horizon)
        return None

    # ------------------------------------------------------------------ state
    def initial_state(self) -> dict[str, Any]:
        """Generation 0: real data (S, n, d) from the ``data`` stream, MLE fit, offset."""
        S, n, d = self.S, self.n, self.d
        z = self._rng(0, "data").standard_normal((S, n, d))
        real = affine_sample(self.tmean, self.tchol, z)
        s1, s2 = sums(real)
        mean, cov = moments_from_sums(s1, s2, n, self.reg)
        mean = mean + self.init_offset
        shape = (S, self.G)
        st: dict[str, Any] = {
            "generation": np.array(0),
            "real_s1": s1, "real_s2": s2,
            "mean": np.broadcast_to(mean[:, None], shape + (d,)).copy(),
            "cov": np.broadcast_to(cov[:, None], shape + (d, d)).copy(),
            "dead": np.zeros(shape, dtype=bool),
            "acc_s1": np.zeros(shape + (d,)), "acc_s2": np.zeros(shape + (d, d)),
            "points": self._points(),
        }
        _, bad = cholesky_or_nan(st["cov"])
        st["dead"] |= bad
        return st

    def restore(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """A state from its checkpointed arrays (the stored points are added by the caller
        through ``state["points"].restore``)."""
        st: dict[str, Any] = {k: arrays[k] for k in ("generation", "real_s1", "real_s2", "mean", "cov", "dead",
                                                      "acc_s1", "acc_s2")}
        st["points"] = self._points()
        return st

    def evaluate(self, st: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for name in self.metric_names:
            if name == "w2-gaussian":
                out[name] = w2_gaussian(st["mean"], st["cov"], self.tmean, self.tcov, s2_sqrt=self.tcov_sqrt)
            elif name == "mean_error":
                out[name] = mean_error(st["mean"], self.tmean)
            elif name == "cov_error":
                out[name] = cov_error(st["cov"], self.tcov)
        return {k: np.where(st["dead"], np.nan, v) for k, v in out.items()}

    # ------------------------------------------------------------------ one generation
    def _histogram(self, x: np.ndarray, draws: dict[str, Any], dead: np.ndarray):
        """paper-histogram on the batch x (S, G, m, d): the corrected batch, the candidates
        examined (S, G) and the fill counts (S, G).  Candidates come in rounds of ``block``
        per seed (normals, then uniforms), drawn until every trajectory has m points."""
        grp, S, m, d = self.group, self.S, self.m, self.d
        block = int(grp.correction_options.get("block", 256))
        bins = int(grp.correction_options.get("bins", 10))
        out = np.zeros_like(x)
        count = np.where(dead, m, 0).astype(np.int64)
        examined = np.zeros((S, self.G))
        ahead, rng = draws["rounds"], draws["rng"]
        normal, uniform = self._samplers()

        def rounds():
            for r in range(MAX_BLOCKS):
                if np.all(count >= m):
                    self._rounds_guess = max(1, r)
                    return
                yield ahead[r] if r < len(ahead) else (normal(rng, (S, block, d)), uniform(rng, (S, block)))

        if self._compiled():
            from scloop.corrections.histogram import compiled_kernels as histogram_kernels

            k = histogram_kernels()
            lo, width, density, peak = k["density"](x, dead, bins)
            t = np.ascontiguousarray(self.t, dtype=float)
            for zc, uc in rounds():
                # after the first round few seeds still need points: only theirs are computed
                need = np.nonzero((count < m).any(axis=1))[0]
                cand, q = k["candidates"](zc, need, self.tmean, self.tchol, self.pdf.prec)
                phi = np.exp(-0.5 * q) / self.pdf.norm  # numpy's exp, as GaussianPdf
                k["fill"](out, count, examined, need, cand, uc, phi, t, lo, width, density, peak, float(self.phi0))
            return out, examined, count
        safe_x = np.where(dead[..., None, None], 0.0, x)
        lo, width, density, peak = histogram_density(safe_x, bins)
        t = np.broadcast_to(self.t[None, :], (S, self.G))
        for zc, uc in rounds():
            cand = affine_sample(self.tmean, self.tchol, zc)  # (S, K, d)
            phi = self.pdf(cand)  # (S, K)
            # The block is evaluated in growing chunks, each only for the trajectories still
            # short of m points: most fill up early, and per trajectory the candidates are
            # examined in the same order, so the result does not depend on the chunking.
            # (chunking only pays with many trajectories; with few, Python overhead dominates)
            for a, b in _chunks(block, first=32 if S * self.G >= 1024 else block):
                si, gi = np.nonzero(count < m)
                if len(si) == 0:
                    break
                c_ab = cand[si, a:b]
                acc = histogram_accept(c_ab, uc[si, a:b], t[si, gi], lo[si, gi], width[si, gi],
                                       density[si, gi], peak[si, gi], phi[si, a:b], self.phi0)  # (P, b-a)
                sub = out[si, gi]
                count[si, gi], used = collect_first(sub, count[si, gi], c_ab, acc)
                out[si, gi] = sub
                examined[si, gi] += used
        return out, examined, count

    def _correct(self, x: np.ndarray, draws: dict[str, Any], dead: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Correct the batch x (S, G, m, d); returns it, the diagnostics and a mask (S, G) of
        trajectories the correction could not serve (they become degenerate)."""
        grp, S, m, d = self.group, self.S, self.m, self.d
        name = grp.correction if grp.arm == "correction" else "none"
        zeros = np.zeros((S, self.G))
        if grp.arm != "correction":
            return x, {}, np.zeros_like(dead)
        if name == "none":
            return x, {"correction_displacement": zeros, "correction_fraction_changed": zeros}, np.zeros_like(dead)
        diag: dict[str, np.ndarray] = {}
        failed = np.zeros_like(dead)
        if name in ("oracle-mixture", "oracle-ot"):
            u, z = draws["u"], draws["zc"]
            out, replaced = mixture_kernel(x, u[:, None], z[:, None], self.t[None, :], self.tmean, self.tchol)
            if name == "oracle-ot":
                mix_disp, _ = (compiled_kernels()["displacement"](x, out) if self._compiled()
                               else _batched_displacement(x, out))
                # No batched exact assignment solver exists in numpy/scipy/POT; this loop runs
                # scipy's C Hungarian solver per trajectory, and only where something moved.
                for s, k in zip(*np.nonzero(replaced.any(axis=-1) & ~dead)):
                    out[s, k] = ot_pairing(x[s, k], out[s, k])
                diag["correction_mixture_displacement"] = mix_disp
        elif name == "paper-histogram":
            out, examined, count = self._histogram(x, draws, dead)
            diag["correction_acceptance_rate"] = np.where(dead, np.nan, m / np.maximum(examined, 1))
            failed = count < m  # MAX_BLOCKS exhausted (the generic path raises Degenerate)
        else:  # pragma: no cover - guarded by supports()
            raise ValueError(name)
        disp, frac = compiled_kernels()["displacement"](x, out) if self._compiled() else _batched_displacement(x, out)
        diag["correction_displacement"], diag["correction_fraction_changed"] = disp, frac
        return out, diag, failed

    def step(self, st: dict[str, Any]) -> tuple[dict[str, Any], StepResult]:
        g = int(st["generation"]) + 1
        S, G, m, n, d = self.S, self.G, self.m, self.n, self.d
        secs = {"sample": 0.0, "correct": 0.0, "train": 0.0, "eval": 0.0}
        dead = st["dead"]
        corrected = self.group.arm == "correction" and self.group.correction != "none"
        diag: dict[str, np.ndarray] = {}
        failed = np.zeros((S, G), dtype=bool)
        kern = compiled_kernels() if self._compiled() else None
        batch_sums = kern["sums"] if kern else sums
        t0 = time.perf_counter()
        if self.group.arm == "baseline":
            s1 = np.broadcast_to(st["real_s1"][:, None], (S, G, d))
            s2 = np.broadcast_to(st["real_s2"][:, None], (S, G, d, d))
            count, prov = n, ((-1, False, n),)
        else:
            chol = st.get("chol")
            if chol is None:
                chol, _ = cholesky_or_nan(np.where(dead[..., None, None], np.eye(d), st["cov"]))
            draws = self._draws(g)
            z = draws["z"]
            x = kern["affine"](st["mean"], chol, z) if kern else affine_sample(st["mean"], chol, z[:, None])  # (S, G, m, d)
            t1 = time.perf_counter()
            secs["sample"] = t1 - t0
            x, diag, failed = self._correct(x, draws, dead)
            t0 = time.perf_counter()
            secs["correct"] = t0 - t1
            bx1, bx2 = batch_sums(x)
            pol = self.policy
            if pol == "augment":
                s1, s2, count = st["real_s1"][:, None] + bx1, st["real_s2"][:, None] + bx2, n + m
                prov = ((-1, False, n), (g, corrected, m))
            elif pol == "replace":
                s1, s2, count, prov = bx1, bx2, m, ((g, corrected, m),)
            elif pol == "accumulate":
                st["acc_s1"] = st["acc_s1"] + bx1
                st["acc_s2"] = st["acc_s2"] + bx2
                s1, s2 = st["real_s1"][:, None] + st["acc_s1"], st["real_s2"][:, None] + st["acc_s2"]
                count = n + g * m
                prov = _accumulate_provenance(n, m, g, corrected)
            elif pol == "paper-toy":
                pts: _PaperToyPoints = st["points"]
                if g > pts.horizon:
                    raise ValueError(f"paper-toy: generation {g} is past the horizon {pts.horizon} it was set up for")
                new = paper_toy_counts(m, g)
                old = np.append(paper_toy_counts(m, g - 1), 0) if g > 1 else np.array([0])
                acc1, acc2 = st["acc_s1"] + bx1, st["acc_s2"] + bx2  # generation g enters whole
                losing = np.nonzero(new < old)[0]  # batches j = losing + 1 lose points [new, old)
                if len(losing):
                    # (S, G, P, d), points in (j, k) order, contiguous, as the sums have always seen them
                    gone = np.concatenate([pts.take(int(j) + 1, int(new[j]), int(old[j])) for j in losing], axis=2)
                    r1, r2 = batch_sums(gone)
                    acc1, acc2 = acc1 - r1, acc2 - r2
                    for j in losing:
                        pts.shrink(int(j) + 1, int(new[j]))
                pts.add(g, x)
                st["acc_s1"], st["acc_s2"] = acc1, acc2
                s1, s2 = st["real_s1"][:, None] + acc1, st["real_s2"][:, None] + acc2
                count = n + int(new.sum())
                prov = _paper_toy_provenance(n, m, g, corrected)
            elif pol == "accumulate-subsample":
                pool: _Pool = st["points"]
                pool.add(g, x)
                n_pool = g * m
                budget = int(self.policy_options.get("budget", 100))
                keys = draws["keys"]
                if n_pool <= budget:
                    idx = np.broadcast_to(np.arange(n_pool), (S, n_pool))
                else:
                    idx = np.sort(np.argpartition(keys, budget - 1, axis=-1)[:, :budget], axis=-1)
                chosen = np.take_along_axis(pool.view(), idx[:, None, :, None], axis=2)
                c1, c2 = batch_sums(chosen)
                s1, s2 = st["real_s1"][:, None] + c1, st["real_s2"][:, None] + c2
                count = n + idx.shape[1]
                # provenance can differ across seeds here; report the block's first seed's split
                gen_of = idx[0] // m + 1
                cnt = np.bincount(gen_of, minlength=g + 1)
                prov = ((-1, False, n),) + tuple((j, corrected, int(cnt[j])) for j in range(1, g + 1) if cnt[j])
            else:  # pragma: no cover
                raise ValueError(pol)
        mean, cov = moments_from_sums(s1, s2, count, self.reg)
        chol_new, bad = cholesky_or_nan(cov)
        bad |= failed
        newly = bad & ~dead
        st["mean"] = np.where(dead[..., None], st["mean"], mean)
        st["cov"] = np.where(dead[..., None, None], st["cov"], cov)
        st["dead"] = dead | bad
        if self.group.arm != "baseline":
            # next generation's sampling factor: the factor of each live trajectory's new
            # covariance (the same batched, per-matrix computation the sampler would repeat),
            # the identity's (itself) for the dead
            st["chol"] = np.where(st["dead"][..., None, None], np.eye(d), chol_new)
        st["generation"] = np.array(g)
        t1 = time.perf_counter()
        secs["train"] = t1 - t0
        metrics = self.evaluate(st)
        secs["eval"] = time.perf_counter() - t1
        msg_failed = f"{self.group.correction}: rejection sampling accepted fewer than {m} points"
        msg_singular = "singular covariance: the loop has collapsed"
        reasons = []
        if (failed & ~dead).any():
            reasons.append(msg_failed)
        if (newly & ~failed).any():
            reasons.append(msg_singular)
        reason = "; ".join(reasons)
        keeps_real = self.policy != "replace" or self.group.arm == "baseline"
        n_syn = count - (n if keeps_real else 0)
        return st, StepResult(g, metrics, diag, newly, reason, secs, prov, n if keeps_real else 0, n_syn,
                              failed=failed & newly, reasons=(msg_failed, msg_singular))


@functools.lru_cache(maxsize=4096)
def _paper_toy_provenance(n: int, m: int, g: int, corrected: bool) -> tuple:
    # the same for every block and piece of a group, and O(g) to build: built once
    new = paper_toy_counts(m, g)
    keep = np.nonzero(new)[0]
    return ((-1, False, n),) + tuple(zip((keep + 1).tolist(), [corrected] * len(keep), new[keep].tolist()))


@functools.lru_cache(maxsize=4096)
def _accumulate_provenance(n: int, m: int, g: int, corrected: bool) -> tuple:
    return ((-1, False, n),) + tuple((j, corrected, m) for j in range(1, g + 1))


def supports(spec) -> tuple[bool, str]:
    """Whether the vectorised path can run ``spec`` (else the generic engine is used)."""
    from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS

    def capable(registry, name: str) -> bool:
        # a kernel lives in this module, so only scloop's own plugins can declare one
        if name not in registry:
            return False
        info = registry.info(name)
        return CAPABILITY in info.capabilities and info.builtin

    for registry, names, what in ((TASKS, [spec.task.name], "task"), (MODELS, [spec.model.name], "model"),
                                  (CORRECTIONS, [c.name for c in spec.corrections], "correction"),
                                  (POLICIES, [spec.policy.name], "policy"), (METRICS, list(spec.metrics), "metric")):
        for name in names:
            if not capable(registry, name):
                return False, f"{what} {name!r} has no kernel in the vectorised Gaussian engine"
    if set(spec.model.kwargs) - {"reg_covar"}:
        return False, "model options other than reg_covar"
    return True, ""


def run_ensemble(ens: GaussianEnsemble, n_generations: int, *, state: dict | None,
                 on_step: Callable[[StepResult], None], checkpoint: Callable[[dict], None] | None = None,
                 checkpoint_every: int = 1, gen0: Callable[[dict[str, Any]], None] | None = None) -> dict:
    """Run a group to ``n_generations``; ``state`` resumes from a checkpoint (made by the same
    ensemble: ``ens.restore``)."""
    if ens.horizon != n_generations:
        if state is not None and ens.horizon:
            raise ValueError(f"run_ensemble: the state was made for {ens.horizon} generations, not {n_generations}")
        ens.horizon = n_generations
    if state is None:
        state = ens.initial_state()
        if gen0 is not None:
            gen0(ens.evaluate(state))
    try:
        while int(state["generation"]) < n_generations:
            state, res = ens.step(state)
            on_step(res)
            g = res.generation
            if checkpoint is not None and (g % checkpoint_every == 0 or g == n_generations):
                checkpoint(state)
    finally:
        ens.close()
    return state
