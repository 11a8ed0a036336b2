"""Sample-based distances between model samples and a reference sample.

``sliced-wasserstein``: POT's Monte-Carlo sliced 2-Wasserstein distance with
``n_projections`` random directions (seeded from the evaluation stream).

``mmd``: unbiased estimate of the squared maximum mean discrepancy with an RBF kernel
k(x, y) = exp(-||x - y||^2 / (2 h^2)), bandwidth h from the median heuristic (median pairwise
distance of the pooled sample).  Being unbiased it can be slightly negative when the two
distributions agree.  Written out here (a few lines of numpy) because POT has no MMD and the
alternatives pull in a deep-learning framework.
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import METRICS
from scloop.core.types import Evaluation


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, n_projections: int = 256, seed: int = 0) -> float:
    import ot

    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    return float(ot.sliced_wasserstein_distance(x, y, n_projections=n_projections, seed=seed))


def mmd_rbf(x: np.ndarray, y: np.ndarray, *, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 (RBF kernel, median heuristic).  x (n, ...), y (m, ...)."""
    from scipy.spatial.distance import cdist

    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return float("nan")
    dxx, dyy, dxy = cdist(x, x, "sqeuclidean"), cdist(y, y, "sqeuclidean"), cdist(x, y, "sqeuclidean")
    if bandwidth is None:
        pooled = np.concatenate([dxx[np.triu_indices(n, 1)], dyy[np.triu_indices(m, 1)], dxy.ravel()])
        h2 = 0.5 * np.median(pooled)
        h2 = h2 if h2 > 0 else 1.0
    else:
        h2 = bandwidth**2
    kxx, kyy, kxy = np.exp(-dxx / (2 * h2)), np.exp(-dyy / (2 * h2)), np.exp(-dxy / (2 * h2))
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


class _SampleMetric:
    needs_samples = True

    def __init__(self, name, fn):
        self.name = name
        self._fn = fn

    def __call__(self, ev: Evaluation) -> float:
        if ev.samples is None or ev.reference is None:
            raise ValueError(f"metric {self.name!r} needs evaluation samples and a reference sample")
        return self._fn(ev.samples.x, ev.reference.x)


@METRICS.register("sliced-wasserstein", higher_is_better=False, label="Sliced Wasserstein to reference")
def make_sw(*, n_projections: int = 256, seed: int = 0) -> _SampleMetric:
    return _SampleMetric(
        "sliced-wasserstein", lambda x, y: sliced_wasserstein(x, y, n_projections=n_projections, seed=seed)
    )


@METRICS.register("mmd", higher_is_better=False, label="MMD to reference")
def make_mmd(*, bandwidth: float | None = None) -> _SampleMetric:
    return _SampleMetric("mmd", lambda x, y: mmd_rbf(x, y, bandwidth=bandwidth))
