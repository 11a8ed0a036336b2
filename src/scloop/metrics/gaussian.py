"""Closed-form metrics between the fitted model's first two moments and the target's.

``w2-gaussian`` (docs/paper.md §3.1): the 2-Wasserstein distance between N(mu1, S1) and
N(mu2, S2),

    W2^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2}),

computed with symmetric eigendecompositions (negative round-off eigenvalues clipped to 0),
so it is safe for singular or nearly singular covariances.  For a model that is not a single
Gaussian (e.g. ``gmm``) its exact mean and covariance are used (moment-matched Gaussian).

``mean_error`` = ||mu_hat - mu*||_2; ``cov_error`` = ||Sigma_hat - Sigma*||_F.

All functions accept leading batch dimensions (used by the vectorised ensemble).
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import METRICS, ConfigError
from scloop.core.types import Evaluation


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root of s (..., d, d) via eigh, eigenvalues clipped at 0."""
    w, v = np.linalg.eigh(0.5 * (s + np.swapaxes(s, -1, -2)))
    return (v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(v, -1, -2)


def w2_gaussian(mu1, s1, mu2, s2, *, s2_sqrt=None) -> np.ndarray:
    """W2 between Gaussians; mu (..., d), s (..., d, d).  Returns (...)."""
    mu1, s1, mu2, s2 = (np.asarray(a, dtype=float) for a in (mu1, s1, mu2, s2))
    r2 = psd_sqrt(s2) if s2_sqrt is None else s2_sqrt
    inner = r2 @ s1 @ r2
    w = np.linalg.eigvalsh(0.5 * (inner + np.swapaxes(inner, -1, -2)))
    cross = np.sqrt(np.clip(w, 0.0, None)).sum(axis=-1)
    mean_part = ((mu1 - mu2) ** 2).sum(axis=-1)
    cov_part = np.trace(s1, axis1=-2, axis2=-1) + np.trace(s2, axis1=-2, axis2=-1) - 2.0 * cross
    return np.sqrt(np.clip(mean_part + cov_part, 0.0, None))


def mean_error(mu, mu_target) -> np.ndarray:
    return np.sqrt(((np.asarray(mu) - np.asarray(mu_target)) ** 2).sum(axis=-1))


def cov_error(s, s_target) -> np.ndarray:
    return np.sqrt(((np.asarray(s) - np.asarray(s_target)) ** 2).sum(axis=(-1, -2)))


def _model_moments(ev: Evaluation):
    if hasattr(ev.model, "moments"):
        return ev.model.moments()
    if ev.samples is None:
        raise ConfigError("gaussian metrics need a model with moments() or evaluation samples")
    x = ev.samples.x.reshape(len(ev.samples), -1)
    return x.mean(0), np.cov(x, rowvar=False, bias=True)


def _target_moments(ev: Evaluation):
    if ev.target is not None and hasattr(ev.target, "mean"):
        return ev.target.mean, ev.target.cov
    if ev.reference is None:
        raise ConfigError("gaussian metrics need a known target or a reference sample")
    x = ev.reference.x.reshape(len(ev.reference), -1)
    return x.mean(0), np.cov(x, rowvar=False, bias=True)


class _MomentMetric:
    needs_samples = False

    def __init__(self, name, fn):
        self.name = name
        self._fn = fn

    def __call__(self, ev: Evaluation) -> float:
        mu, s = _model_moments(ev)
        mt, st = _target_moments(ev)
        return float(self._fn(mu, s, mt, st))


@METRICS.register("w2-gaussian", higher_is_better=False, label="W₂ to target", capabilities=("gaussian-ensemble",))
def make_w2() -> _MomentMetric:
    return _MomentMetric("w2-gaussian", lambda mu, s, mt, st: w2_gaussian(mu, s, mt, st))


@METRICS.register("mean_error", higher_is_better=False, label="‖μ̂ − μ*‖", capabilities=("gaussian-ensemble",))
def make_mean_error() -> _MomentMetric:
    return _MomentMetric("mean_error", lambda mu, s, mt, st: mean_error(mu, mt))


@METRICS.register("cov_error", higher_is_better=False, label="‖Σ̂ − Σ*‖_F", capabilities=("gaussian-ensemble",))
def make_cov_error() -> _MomentMetric:
    return _MomentMetric("cov_error", lambda mu, s, mt, st: cov_error(s, st))
