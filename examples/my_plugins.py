"""Plugins for examples/custom.yaml and examples/custom-sweep.yaml.

A config lists this file under ``plugins: [my_plugins.py]`` (the path is relative to the
YAML file); scloop imports it in every process that runs a part of the experiment, so the
names registered here can be used in ``correction:`` and ``metrics:``.  The same file can be
given on the command line instead: ``scloop run CONFIG --plugin examples/my_plugins.py``.

Two plugins (the scripts custom_correction.py and custom_metric.py explain them step by step):

- correction ``moment-match``: moves every synthetic point a fraction t = gamma / (1 + gamma)
  of the way along the optimal-transport map that takes the synthetic batch's Gaussian fit
  to the real data's, i.e. it pulls the batch's mean and covariance towards the real ones;
- metric ``heldout-loglik``: the mean log-likelihood of the task's held-out reference sample
  under the fitted Gaussian (higher is better, in nats per point).
"""

from __future__ import annotations

import math

import numpy as np

import scloop
from scloop import Corrected, Data


def _sqrtm(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix."""
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_ot_matrix(cov_from: np.ndarray, cov_to: np.ndarray) -> np.ndarray:
    """A with x -> m_to + A (x - m_from) the optimal transport map N(m_from, cov_from) ->
    N(m_to, cov_to):  A = S^-1/2 (S^1/2 T S^1/2)^1/2 S^-1/2  (S = cov_from, T = cov_to)."""
    r = _sqrtm(cov_from)
    r_inv = np.linalg.pinv(r)
    return r_inv @ _sqrtm(r @ cov_to @ r) @ r_inv


class MomentMatch:
    """Correction: transport the synthetic batch a fraction t of the way to the real moments."""

    def __init__(self, gamma: float, eps: float) -> None:
        self.gamma = gamma  # every correction has a ``gamma`` attribute (its strength)
        self.eps = eps

    def prepare(self, context, *, rng):
        # once per seed, before generation 0: the real training data are in context.real
        x = np.asarray(context.real.x, dtype=float)
        self.mean_ = x.mean(axis=0)
        self.cov_ = np.cov(x, rowvar=False, bias=True)
        return self

    def __call__(self, data, *, model, rng):
        x = np.asarray(data.x, dtype=float)
        if len(x) < 2:
            return Corrected(data, {"displacement": 0.0, "fraction_changed": 0.0})
        t = 1.0 if math.isinf(self.gamma) else self.gamma / (1.0 + self.gamma)
        mean = x.mean(axis=0)
        cov = np.cov(x, rowvar=False, bias=True) + self.eps * np.eye(x.shape[1])
        moved = self.mean_ + (x - mean) @ gaussian_ot_matrix(cov, self.cov_)  # symmetric matrix
        out = x + t * (moved - x)
        dist = np.linalg.norm(out - x, axis=1)
        return Corrected(Data(out, data.y), {"displacement": float(dist.mean()),
                                             "fraction_changed": float((dist > 0).mean())})


@scloop.register_correction("moment-match")
def make_moment_match(gamma: float = 0.0, eps: float = 1e-9) -> MomentMatch:
    """Options (config keys): ``eps``, a ridge added to the batch covariance."""
    return MomentMatch(float(gamma), float(eps))


class HeldoutLogLik:
    """Metric: mean log N(reference | fitted mean, fitted covariance), nats per point."""

    name = "heldout-loglik"
    needs_samples = False  # it reads the model's moments, not fresh samples

    def __call__(self, ev) -> float:
        if not hasattr(ev.model, "moments"):
            raise TypeError("heldout-loglik needs a model with moments() (e.g. model: gaussian)")
        mean, cov = ev.model.moments()
        x = np.asarray(ev.reference.x, dtype=float) - mean
        sign, logdet = np.linalg.slogdet(cov)
        if sign <= 0:
            return -math.inf
        maha = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
        return float(np.mean(-0.5 * (maha + logdet + x.shape[1] * math.log(2 * math.pi))))


@scloop.register_metric("heldout-loglik", higher_is_better=True, label="Held-out log-likelihood",
                        unit="nats/point")
def make_heldout_loglik() -> HeldoutLogLik:
    return HeldoutLogLik()
