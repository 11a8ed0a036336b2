"""Full-covariance Gaussian fitted by maximum likelihood (closed form, any dimension).

The fitting and sampling kernels below accept arbitrary leading batch dimensions so that the
vectorised ensemble (:mod:`scloop.tasks.gaussian_ensemble`) and the generic engine compute
the same numbers with the same code.

MLE (docs/paper.md §3.1: the official toy fits a one-component GaussianMixture, i.e. this MLE
plus sklearn's ``reg_covar`` = 1e-6 on the diagonal):

    mu = (1/N) sum_i x_i,      Sigma = (1/N) sum_i x_i x_i^T - mu mu^T   (+ reg_covar * I).
"""

from __future__ import annotations

from typing import Mapping, Self

import numpy as np

from scloop.core.registry import MODELS
from scloop.core.types import Data, Degenerate

# Relative eigenvalue floor below which a covariance counts as singular.
SINGULAR_RTOL = 1e-12


def moments_from_sums(s1: np.ndarray, s2: np.ndarray, n: np.ndarray | float, reg_covar: float = 0.0):
    """MLE mean and covariance from sufficient statistics.

    Parameters
    ----------
    s1 : (..., d) sum of points.   s2 : (..., d, d) sum of outer products.   n : (...) counts.

    Returns
    -------
    mean : (..., d), cov : (..., d, d)
    """
    n = np.asarray(n, dtype=float)
    mean = s1 / n[..., None]
    cov = s2 / n[..., None, None] - mean[..., :, None] * mean[..., None, :]
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    if reg_covar:
        cov = cov + reg_covar * np.eye(cov.shape[-1])
    return mean, cov


def sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sufficient statistics of points ``x`` (..., n, d): sum (..., d) and sum of outer
    products (..., d, d)."""
    s1 = x.sum(axis=-2)
    s2 = np.einsum("...ni,...nj->...ij", x, x)
    return s1, s2


def cholesky_or_nan(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Cholesky factor of ``cov`` (..., d, d) and a boolean mask (...) of the
    matrices that are numerically singular or non-finite (their factor is NaN)."""
    finite = np.all(np.isfinite(cov), axis=(-1, -2))
    safe = np.where(finite[..., None, None], cov, np.eye(cov.shape[-1]))
    w = np.linalg.eigvalsh(safe)
    scale = np.maximum(np.abs(w).max(axis=-1), 1e-300)
    bad = (~finite) | (w.min(axis=-1) <= SINGULAR_RTOL * scale)
    safe = np.where(bad[..., None, None], np.eye(cov.shape[-1]), safe)
    chol = np.linalg.cholesky(safe)
    chol = np.where(bad[..., None, None], np.nan, chol)
    return chol, bad


def affine_sample(mean: np.ndarray, chol: np.ndarray, z: np.ndarray) -> np.ndarray:
    """x = mean + L z for standard normals ``z`` (..., n, d); mean (..., d), chol (..., d, d).

    The products are accumulated left to right over j with whole-array operations: numpy
    reductions over a tiny last axis are slow, and for d <= 8 this is the order numpy's own
    ``sum`` uses, so the result is the same to the bit."""
    acc = z[..., :, 0, None] * chol[..., None, :, 0]
    for j in range(1, z.shape[-1]):
        acc = acc + z[..., :, j, None] * chol[..., None, :, j]
    return mean[..., None, :] + acc


class GaussianModel:
    """Full-covariance Gaussian N(mean_, covariance_) fitted by MLE.

    Parameters
    ----------
    reg_covar : float
        Added to the covariance diagonal after fitting (sklearn's default is 1e-6; 0 = exact MLE).

    ``update`` (``train: finetune``) equals ``fit``: the MLE has a closed form, so continuing
    from the previous parameters and refitting coincide.
    """

    def __init__(self, *, reg_covar: float = 0.0) -> None:
        self.reg_covar = reg_covar

    # -- training
    def fit(self, data: Data, *, rng: np.random.Generator | None = None) -> Self:
        x = np.asarray(data.x, dtype=float)
        if x.ndim != 2 or len(x) < 1:
            raise ValueError(f"GaussianModel.fit: expected x of shape (n, d) with n >= 1, got {x.shape}")
        s1, s2 = sums(x)
        mean, cov = moments_from_sums(s1, s2, len(x), self.reg_covar)
        return self.set_params(mean, cov, n_points=len(x))

    def update(self, data: Data, *, rng: np.random.Generator | None = None) -> Self:
        return self.fit(data, rng=rng)

    def set_params(self, mean: np.ndarray, cov: np.ndarray, *, n_points: int | None = None) -> Self:
        chol, bad = cholesky_or_nan(np.asarray(cov, dtype=float))
        self.mean_ = np.asarray(mean, dtype=float)
        self.covariance_ = np.asarray(cov, dtype=float)
        self.chol_ = chol
        if bool(bad):
            w = np.linalg.eigvalsh(np.nan_to_num(self.covariance_))
            raise Degenerate(
                f"singular covariance (eigenvalues {np.array2string(w, precision=3)})"
                + (f" fitted on {n_points} points in {self.mean_.shape[-1]} dimensions" if n_points else "")
                + "; the loop has collapsed. Try more real data (n_real) or a nonzero reg_covar."
            )
        return self

    # -- sampling
    def sample(self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None) -> Data:
        z = rng.standard_normal((n, self.mean_.shape[-1]))
        return Data(affine_sample(self.mean_, self.chol_, z))

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean_, self.covariance_

    def shift(self, offset: float) -> Self:
        """Translate the fitted mean by ``offset`` in every coordinate (a deliberately
        sub-optimal generation 0, ``init.offset``)."""
        return self.set_params(self.mean_ + offset, self.covariance_)

    # -- state
    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "cov": self.covariance_}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self:
        return self.set_params(np.asarray(state["mean"]), np.asarray(state["cov"]))


@MODELS.register("gaussian", capabilities=("gaussian-ensemble",))
def make_gaussian(*, reg_covar: float = 0.0) -> GaussianModel:
    if not isinstance(reg_covar, (int, float)) or reg_covar < 0:
        from scloop.core.registry import ConfigError

        raise ConfigError(f"model.reg_covar: got {reg_covar!r}; allowed: a number >= 0")
    return GaussianModel(reg_covar=float(reg_covar))
