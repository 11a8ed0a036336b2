"""Idealized corrections towards a known target p_theta* (docs/paper.md §1.3).

``oracle-mixture`` samples exactly from

    pi_gamma p_theta = (p_theta + gamma p_target) / (1 + gamma):

each synthetic point (a draw from p_theta) is independently replaced by a fresh target draw
with probability t = gamma / (1 + gamma).

``oracle-ot`` is the pointwise version: the same mixture sample Y is built from the synthetic
batch X, then X is re-paired with Y by the optimal (squared-Euclidean) assignment and each
x_i is moved to its partner.  The output multiset is Y, so its law is exactly pi_gamma p_theta,
but every point now moves as little as the coupling allows, which makes the correction a
map on points as in the paper's definition.  Because Y = X when gamma = 0, the map is then the
identity (distinct points have a unique zero-cost assignment).

Random draws (shared by the generic path and the vectorised ensemble): first ``u`` ~ U[0,1)
of shape ``(n,)``, then ``z`` ~ N(0, I) of shape ``(n, d)`` for the target draws.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from scloop.core.registry import CORRECTIONS
from scloop.core.types import Corrected, CorrectionContext, Data
from scloop.corrections.base import check_gamma, displacement_diagnostics, mixing_weight, require_target


def mixture_kernel(x, u, z, t, target_mean, target_chol):
    """Batched mixture replacement.

    Parameters
    ----------
    x : (..., n, d) synthetic points.   u : (..., n) uniforms.   z : (..., n, d) normals.
    t : (...) or scalar mixing weight.  target_mean : (d,).   target_chol : (d, d).

    Returns
    -------
    out : (..., n, d), replaced : (..., n) bool
    """
    from scloop.models.gaussian import affine_sample

    y = affine_sample(target_mean, target_chol, z)
    t = np.asarray(t, dtype=float)
    replaced = u < t[..., None]
    return np.where(replaced[..., None], y, x), replaced


def ot_pairing(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Optimal assignment (squared Euclidean cost) of the rows of x (n, d) to the rows of y;
    returns y re-ordered so that row i is x_i's partner.  scipy's exact Hungarian solver:
    O(n^3), fine for the batch sizes used here (n <= a few thousand)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    cost = cdist(x.reshape(len(x), -1), y.reshape(len(y), -1), "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    out = np.empty_like(y)
    out[rows] = y[cols]
    return out


class OracleMixtureCorrection:
    """Exact sampler of pi_gamma p_theta (replace each point with probability t)."""

    name = "oracle-mixture"

    def __init__(self, *, gamma: float = 0.0) -> None:
        self.gamma = gamma

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        self.target_ = require_target(context.target, self.name)
        return self

    def _mixture(self, data: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(data.x, dtype=float)
        u = rng.random(len(x))
        z = rng.standard_normal(x.shape)
        out, replaced = mixture_kernel(x, u, z, mixing_weight(self.gamma), self.target_.mean, self.target_.chol)
        return out, replaced

    def __call__(self, data: Data, *, model=None, rng: np.random.Generator) -> Corrected:
        out, _ = self._mixture(data, rng)
        return Corrected(Data(out, data.y), displacement_diagnostics(data.x, out))


class OracleOTCorrection(OracleMixtureCorrection):
    """Pointwise idealized correction: move each point to its OT partner in a pi_gamma sample."""

    name = "oracle-ot"

    def __call__(self, data: Data, *, model=None, rng: np.random.Generator) -> Corrected:
        y, replaced = self._mixture(data, rng)
        x = np.asarray(data.x, dtype=float)
        out = ot_pairing(x, y) if replaced.any() else y
        diag = displacement_diagnostics(x, out)
        diag["mixture_displacement"] = displacement_diagnostics(x, y)["displacement"]
        return Corrected(Data(out, data.y), diag)


@CORRECTIONS.register("oracle-mixture", capabilities=("gaussian-ensemble",))
def make_oracle_mixture(*, gamma: float = 0.0) -> OracleMixtureCorrection:
    return OracleMixtureCorrection(gamma=check_gamma(gamma))


@CORRECTIONS.register("oracle-ot", capabilities=("gaussian-ensemble",))
def make_oracle_ot(*, gamma: float = 0.0) -> OracleOTCorrection:
    return OracleOTCorrection(gamma=check_gamma(gamma))
