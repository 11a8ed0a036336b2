"""Compiled (numba) kernels of the vectorised Gaussian engine (:mod:`scloop.tasks.gaussian_ensemble`).

Imported only when a block is large enough to use them (importing this module imports numba).
They live at module level, not inside a factory function: numba's on-disk cache cannot reuse a
kernel that calls another kernel held in a closure cell (``displacement`` calls the recursive
``pairwise``), so such kernels were recompiled in every process (~3 s per run).
Each kernel performs the operations of the numpy function it replaces in the same order, so
both paths give the same numbers to the bit (tested).
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")




@jit
def affine(mean, chol, z):
    """affine_sample(mean, chol, z[:, None]): mean (S, G, d), chol (S, G, d, d), z (S, m, d)
    -> (S, G, m, d)."""
    S, G, d = mean.shape
    m = z.shape[1]
    x = np.empty((S, G, m, d))
    for s in range(S):
        for g in range(G):
            for k in range(m):
                for i in range(d):
                    acc = z[s, k, 0] * chol[s, g, i, 0]
                    for j in range(1, d):
                        acc = acc + z[s, k, j] * chol[s, g, i, j]
                    x[s, g, k, i] = mean[s, g, i] + acc
    return x


@jit
def batch_sums(x):
    """scloop.models.gaussian.sums of x (S, G, n, d): (S, G, d), (S, G, d, d)."""
    S, G, n, d = x.shape
    s1 = np.zeros((S, G, d))
    s2 = np.zeros((S, G, d, d))
    for s in range(S):
        for g in range(G):
            if n == 0:
                continue
            for i in range(d):
                acc = x[s, g, 0, i]
                for k in range(1, n):
                    acc += x[s, g, k, i]
                s1[s, g, i] = acc
            for i in range(d):
                for j in range(d):
                    acc = 0.0
                    for k in range(n):
                        acc += x[s, g, k, i] * x[s, g, k, j]
                    s2[s, g, i, j] = acc
    return s1, s2


@jit
def _leaf(a, start, n):
    """numpy's pairwise summation of a block of n <= 128 values a[start:start + n]."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[start + i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
        r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
        i = 8
        while i < n - (n % 8):
            r0 += a[start + i]
            r1 += a[start + i + 1]
            r2 += a[start + i + 2]
            r3 += a[start + i + 3]
            r4 += a[start + i + 4]
            r5 += a[start + i + 5]
            r6 += a[start + i + 6]
            r7 += a[start + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[start + i]
            i += 1
        return res
    return 0.0  # not reached: n <= 128


@jit
def pairwise(a, start, n):
    """numpy's pairwise summation of a[start:start + n] (its order, to the bit).

    numpy splits a block of more than 128 values at n2 = n // 2 rounded down to a multiple of
    8 and adds the two halves' sums, left + right.  Written with an explicit stack instead of
    recursion: numba segfaults when it loads a cached recursive function."""
    if n <= 128:
        return _leaf(a, start, n)
    fstart = np.empty(64, np.int64)  # frames: 64 levels halve any int64 length
    fn = np.empty(64, np.int64)
    stage = np.empty(64, np.int64)
    left = np.empty(64)
    top = 0
    fstart[0], fn[0], stage[0] = start, n, 0
    ret = 0.0
    while True:
        n0 = fn[top]
        n2 = n0 // 2
        n2 -= n2 % 8
        if stage[top] == 0:
            cs, cn = fstart[top], n2
            stage[top] = 1
        elif stage[top] == 1:
            left[top] = ret
            cs, cn = fstart[top] + n2, n0 - n2
            stage[top] = 2
        else:
            ret = left[top] + ret
            if top == 0:
                return ret
            top -= 1
            continue
        if cn <= 128:
            ret = _leaf(a, cs, cn)
        else:
            top += 1
            fstart[top], fn[top], stage[top] = cs, cn, 0


@jit
def displacement(before, after):
    """_batched_displacement: (S, G, m, d) twice -> mean displacement of the moved points
    and the fraction moved, (S, G) each."""
    S, G, m, d = before.shape
    disp = np.zeros((S, G))
    frac = np.zeros((S, G))
    for s in range(S):
        dist = np.empty(m)
        for g in range(G):
            moved = 0
            for k in range(m):
                acc = (after[s, g, k, 0] - before[s, g, k, 0]) ** 2
                for i in range(1, d):
                    acc += (after[s, g, k, i] - before[s, g, k, i]) ** 2
                v = np.sqrt(acc)
                if v > 0:
                    moved += 1
                    dist[k] = v
                else:
                    dist[k] = 0.0
            if moved > 0:
                disp[s, g] = pairwise(dist, 0, m) / moved
            frac[s, g] = moved / m if m > 0 else np.nan
    return disp, frac


@jit
def normals(gen, out):
    """Fill ``out`` with gen.standard_normal() draws in C order: numba's port of numpy's
    ziggurat on the same bit generator, the same numbers as ``gen.standard_normal(shape)``
    (tested), about 3x faster (the per-draw call through numpy's C API is gone)."""
    flat = out.reshape(-1)
    for i in range(flat.size):
        flat[i] = gen.standard_normal()
    return out


@jit
def uniforms(gen, out):
    """Fill ``out`` with gen.random() draws in C order (as ``gen.random(shape)``)."""
    flat = out.reshape(-1)
    for i in range(flat.size):
        flat[i] = gen.random()
    return out
