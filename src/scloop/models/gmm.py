"""Gaussian mixture with k full-covariance components.

Fitting uses scikit-learn's EM (``GaussianMixture``) with ``random_state`` drawn from the
generator we are given, so every fit is reproducible from the run's streams.  Sampling is our
own: sklearn's ``GaussianMixture.sample()`` re-seeds from the stored ``random_state`` on every
call, which would give identical draws each generation and correlate the loop.

``update`` (``train: finetune``) warm-starts EM from the current weights, means and
precisions instead of a fresh k-means initialisation.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Self

import numpy as np

from scloop.core.registry import MODELS, ConfigError
from scloop.core.types import Data, Degenerate


class GMMModel:
    """k-component full-covariance Gaussian mixture.

    Parameters
    ----------
    k : number of components.   reg_covar : diagonal regularisation (sklearn's default).
    max_iter : EM iterations.   tol : EM convergence tolerance.
    """

    def __init__(self, *, k: int = 2, reg_covar: float = 1e-6, max_iter: int = 200, tol: float = 1e-6) -> None:
        self.k = k
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.tol = tol

    def _em(self, x: np.ndarray, rng: np.random.Generator, warm: bool) -> Self:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        if x.ndim != 2:
            raise ValueError(f"GMMModel.fit: expected x of shape (n, d), got {x.shape}")
        if len(x) < self.k:
            raise Degenerate(f"{len(x)} points cannot support {self.k} mixture components")
        kw: dict = {}
        if warm and hasattr(self, "weights_"):
            kw = dict(
                weights_init=self.weights_,
                means_init=self.means_,
                precisions_init=np.linalg.inv(self.covariances_),
            )
        gm = GaussianMixture(
            n_components=self.k,
            covariance_type="full",
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=int(rng.integers(2**31 - 1)),
            **kw,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(x)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise Degenerate(f"EM failed: {exc}") from None
        if not np.all(np.isfinite(gm.means_)) or not np.all(np.isfinite(gm.covariances_)):
            raise Degenerate("EM produced non-finite parameters")
        self.weights_ = gm.weights_.copy()
        self.means_ = gm.means_.copy()
        self.covariances_ = gm.covariances_.copy()
        self.chols_ = np.linalg.cholesky(self.covariances_)
        self.converged_ = bool(gm.converged_)
        self.n_iter_ = int(gm.n_iter_)
        return self

    def fit(self, data: Data, *, rng: np.random.Generator) -> Self:
        return self._em(np.asarray(data.x, dtype=float), rng, warm=False)

    def update(self, data: Data, *, rng: np.random.Generator) -> Self:
        return self._em(np.asarray(data.x, dtype=float), rng, warm=True)

    def sample(self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None) -> Data:
        comp = rng.choice(self.k, size=n, p=self.weights_ / self.weights_.sum())
        z = rng.standard_normal((n, self.means_.shape[1]))
        x = self.means_[comp] + np.einsum("nij,nj->ni", self.chols_[comp], z)
        return Data(x)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the mixture (closed form)."""
        w = self.weights_ / self.weights_.sum()
        mean = w @ self.means_
        second = np.einsum("k,kij->ij", w, self.covariances_ + np.einsum("ki,kj->kij", self.means_, self.means_))
        return mean, second - np.outer(mean, mean)

    def shift(self, offset: float) -> Self:
        """Translate every component mean by ``offset`` in every coordinate (``init.offset``)."""
        self.means_ = self.means_ + offset
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_, "means": self.means_, "covariances": self.covariances_}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self:
        self.weights_ = np.asarray(state["weights"], dtype=float)
        self.means_ = np.asarray(state["means"], dtype=float)
        self.covariances_ = np.asarray(state["covariances"], dtype=float)
        self.chols_ = np.linalg.cholesky(self.covariances_)
        return self


@MODELS.register("gmm")
def make_gmm(*, k: int = 2, reg_covar: float = 1e-6, max_iter: int = 200, tol: float = 1e-6) -> GMMModel:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"model.k: got {k!r}; allowed: an integer >= 1")
    if not isinstance(reg_covar, (int, float)) or reg_covar < 0:
        raise ConfigError(f"model.reg_covar: got {reg_covar!r}; allowed: a number >= 0")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"model.max_iter: got {max_iter!r}; allowed: an integer >= 1")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ConfigError(f"model.tol: got {tol!r}; allowed: a number > 0")
    return GMMModel(k=k, reg_covar=float(reg_covar), max_iter=max_iter, tol=float(tol))
