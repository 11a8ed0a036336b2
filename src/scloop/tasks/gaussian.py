"""The Gaussian task (docs/paper.md §3.1): real data are n i.i.d. draws from a known target
N(mu*, Sigma*), which is also the best-in-class model p_theta* for the ``gaussian`` model
(well-specified), so the idealized corrections can sample it exactly.

Options: ``dim`` (default 2), ``mean`` (a number for every coordinate, or a list),
``cov`` (a variance for every coordinate, a list of variances, or a full matrix),
``n_eval`` (size of the model sample and of the fixed target reference sample used by
sample-based metrics such as ``sliced-wasserstein`` and ``mmd``).
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import TASKS, ConfigError
from scloop.core.types import Data


class GaussianTarget:
    """N(mean, cov) with its Cholesky factor; ``sample`` draws ``z ~ N(0, I)`` of shape
    (n, d) from the generator and returns ``mean + L z``."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray) -> None:
        from scloop.models.gaussian import cholesky_or_nan

        self.mean = np.asarray(mean, dtype=float)
        self.cov = np.asarray(cov, dtype=float)
        chol, bad = cholesky_or_nan(self.cov)
        if bool(bad):
            raise ConfigError(f"task.cov: got {self.cov.tolist()!r}; allowed: a symmetric positive-definite matrix")
        self.chol = chol

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        from scloop.models.gaussian import affine_sample

        return affine_sample(self.mean, self.chol, rng.standard_normal((n, self.mean.shape[0])))


class GaussianTask:
    name = "gaussian"

    def __init__(self, *, dim: int = 2, mean=0.0, cov=1.0, n_eval: int = 1000) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"task.dim: got {dim!r}; allowed: an integer >= 1")
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 2:
            raise ConfigError(f"task.n_eval: got {n_eval!r}; allowed: an integer >= 2")
        try:
            m = np.broadcast_to(np.asarray(mean, dtype=float), (dim,)).copy()
        except (ValueError, TypeError):
            raise ConfigError(f"task.mean: got {mean!r}; allowed: a number or a list of {dim} numbers") from None
        c = np.asarray(cov, dtype=float) if not isinstance(cov, str) else None
        if c is None or not (c.ndim == 0 or c.shape == (dim,) or c.shape == (dim, dim)):
            raise ConfigError(
                f"task.cov: got {cov!r}; allowed: a variance, a list of {dim} variances, or a {dim}x{dim} matrix"
            )
        c = np.diag(np.broadcast_to(c, (dim,))) if c.ndim < 2 else c
        if not np.allclose(c, c.T):
            raise ConfigError(f"task.cov: got {cov!r}; allowed: a symmetric matrix")
        self.dim = dim
        self.n_eval = n_eval
        self.target = GaussianTarget(m, c)

    def real_data(self, n_real: int, rng: np.random.Generator) -> Data:
        """n_real target draws (the first draw of the ``data`` stream)."""
        return Data(self.target.sample(n_real, rng=rng))

    def reference(self, rng: np.random.Generator) -> Data:
        """A fixed target sample for sample-based metrics (the second draw of ``data``)."""
        return Data(self.target.sample(self.n_eval, rng=rng))


@TASKS.register("gaussian", capabilities=("gaussian-ensemble",))
def make_gaussian_task(*, dim: int = 2, mean=0.0, cov=1.0, n_eval: int = 1000) -> GaussianTask:
    return GaussianTask(dim=dim, mean=mean, cov=cov, n_eval=n_eval)
