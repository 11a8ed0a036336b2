"""``w2_gaussian`` against independent computations of the Gaussian 2-Wasserstein distance

    W2^2 = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2}).

Oracles: scipy's general matrix square root, the 1-D and commuting closed forms, POT's
Bures-Wasserstein distance and an exact OT cost between large samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from scloop.core.registry import METRICS
from scloop.plugins import load_plugins
from scloop.core.types import Evaluation
from scloop.metrics import w2_gaussian
from scloop.metrics.gaussian import psd_sqrt


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _w2_sqrtm(m1, s1, m2, s2) -> float:
    """Independent oracle: scipy.linalg.sqrtm (Schur-based), no eigen-clipping."""
    r2 = scipy.linalg.sqrtm(s2)
    cross = scipy.linalg.sqrtm(r2 @ s1 @ r2)
    val = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(cross))
    return math.sqrt(max(float(np.real(val)), 0.0))


# (a) general SPD matrices -------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_w2_matches_sqrtm_formula(d):
    rng = np.random.default_rng(100 + d)
    for _ in range(10):
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        got = float(w2_gaussian(m1, s1, m2, s2))
        assert got == pytest.approx(_w2_sqrtm(m1, s1, m2, s2), rel=1e-7, abs=1e-9)
        # a distance: symmetric, zero on the diagonal
        assert float(w2_gaussian(m2, s2, m1, s1)) == pytest.approx(got, rel=1e-7, abs=1e-9)
        assert float(w2_gaussian(m1, s1, m1, s1)) < 1e-6


# (b) one dimension ----------------------------------------------------------------------
@pytest.mark.parametrize("m1,s1,m2,s2", [(0.0, 1.0, 0.0, 1.0), (1.5, 0.3, -2.0, 2.5), (3.0, 4.0, 3.0, 0.01),
                                         (-1.0, 1e-4, 2.0, 9.0)])
def test_w2_one_dimensional_closed_form(m1, s1, m2, s2):
    """Standard deviations s1, s2: W2 = sqrt((m1 - m2)^2 + (s1 - s2)^2)."""
    got = float(w2_gaussian([m1], [[s1**2]], [m2], [[s2**2]]))
    assert got == pytest.approx(math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2), rel=1e-9, abs=1e-12)


# (c) commuting covariances -------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 5])
def test_w2_commuting_covariances(d):
    """Diagonal covariances commute: W2^2 = |m1 - m2|^2 + ||S1^{1/2} - S2^{1/2}||_F^2; the same
    holds after a common rotation Q (Q D1 Q^T and Q D2 Q^T still commute)."""
    rng = np.random.default_rng(d)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.05, 4.0, d), rng.uniform(0.05, 4.0, d)
    expected = math.sqrt(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2))
    assert float(w2_gaussian(m1, np.diag(v1), m2, np.diag(v2))) == pytest.approx(expected, rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1, s2 = q @ np.diag(v1) @ q.T, q @ np.diag(v2) @ q.T
    assert float(w2_gaussian(m1, s1, m2, s2)) == pytest.approx(expected, rel=1e-8)


# (d) singular covariances --------------------------------------------------------------
def test_w2_singular_covariance_is_finite_and_correct():
    d = 3
    v = np.array([1.0, 2.0, -0.5])
    rank_one = np.outer(v, v)  # sqrt(rank_one) = v v^T / |v|, commutes with I
    nv = np.linalg.norm(v)
    got = float(w2_gaussian(np.zeros(d), rank_one, np.zeros(d), np.eye(d)))
    assert math.isfinite(got)
    assert got == pytest.approx(math.sqrt(nv**2 + d - 2 * nv), rel=1e-7)
    # singular on the other side as well
    got_rev = float(w2_gaussian(np.zeros(d), np.eye(d), np.zeros(d), rank_one))
    assert got_rev == pytest.approx(got, rel=1e-7)
    # a point mass against N(m, S): W2^2 = |m|^2 + tr(S)
    m = np.array([1.0, 0.0, 2.0])
    s = _random_spd(np.random.default_rng(0), d)
    assert float(w2_gaussian(np.zeros(d), np.zeros((d, d)), m, s)) == pytest.approx(
        math.sqrt(m @ m + np.trace(s)), rel=1e-9)
    # two identical singular Gaussians: zero, not NaN
    same = float(w2_gaussian(v, rank_one, v, rank_one))
    assert math.isfinite(same) and same < 1e-6
    # both all-zero: only the mean part
    assert float(w2_gaussian(np.zeros(d), np.zeros((d, d)), m, np.zeros((d, d)))) == pytest.approx(np.linalg.norm(m))


def test_w2_nearly_singular_tiny_negative_eigenvalue():
    """Round-off can make a PSD estimate slightly indefinite; the result must stay finite."""
    s = np.diag([1.0, 0.0]) + np.array([[0.0, 0.0], [0.0, -1e-17]])
    got = float(w2_gaussian(np.zeros(2), s, np.zeros(2), np.eye(2)))
    assert math.isfinite(got)
    assert got == pytest.approx(1.0, abs=1e-6)  # W2^2 = (1-1)^2 + (0-1)^2


# (e) POT --------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 4])
def test_w2_matches_pot_bures_wasserstein(d):
    ot_gaussian = pytest.importorskip("ot.gaussian")
    if not hasattr(ot_gaussian, "bures_wasserstein_distance"):
        pytest.skip("POT too old: no ot.gaussian.bures_wasserstein_distance")
    rng = np.random.default_rng(7 + d)
    for _ in range(5):
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        ref = float(np.asarray(ot_gaussian.bures_wasserstein_distance(m1, m2, s1, s2)))
        assert float(w2_gaussian(m1, s1, m2, s2)) == pytest.approx(ref, rel=1e-6)


def test_w2_matches_exact_ot_between_large_samples():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(3)
    d, n = 2, 1500
    m1, m2 = np.array([0.0, 0.0]), np.array([1.0, -0.5])
    s1, s2 = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[2.0, -0.4], [-0.4, 1.0]])
    x = rng.multivariate_normal(m1, s1, size=n)
    y = rng.multivariate_normal(m2, s2, size=n)
    w = np.full(n, 1.0 / n)
    empirical = math.sqrt(ot.emd2(w, w, ot.dist(x, y, metric="sqeuclidean"), numItermax=1_000_000))
    exact = float(w2_gaussian(m1, s1, m2, s2))
    assert empirical == pytest.approx(exact, abs=0.12)
    # and it is not trivially close: a different pair of Gaussians is far off
    assert abs(float(w2_gaussian(m1, s1, m2 + 1.0, s2)) - empirical) > 0.5


# (f) batching ---------------------------------------------------------------------------
def test_w2_batched_equals_loop():
    rng = np.random.default_rng(11)
    d, shape = 3, (4, 5)
    m1 = rng.standard_normal(shape + (d,))
    m2 = rng.standard_normal(shape + (d,))
    s1 = np.stack([_random_spd(rng, d) for _ in range(20)]).reshape(shape + (d, d))
    s2 = np.stack([_random_spd(rng, d) for _ in range(20)]).reshape(shape + (d, d))
    batched = w2_gaussian(m1, s1, m2, s2)
    assert batched.shape == shape
    loop = np.array([[float(w2_gaussian(m1[i, j], s1[i, j], m2[i, j], s2[i, j])) for j in range(shape[1])]
                     for i in range(shape[0])])
    np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-14)
    # broadcasting one target against a batch, with a precomputed target square root
    t_mean, t_cov = m2[0, 0], s2[0, 0]
    bcast = w2_gaussian(m1, s1, t_mean, t_cov, s2_sqrt=psd_sqrt(t_cov))
    loop_t = np.array([[float(w2_gaussian(m1[i, j], s1[i, j], t_mean, t_cov)) for j in range(shape[1])]
                       for i in range(shape[0])])
    np.testing.assert_allclose(bcast, loop_t, rtol=1e-10)


def test_psd_sqrt_squares_back():
    rng = np.random.default_rng(5)
    s = np.stack([_random_spd(rng, 4) for _ in range(6)])
    r = psd_sqrt(s)
    np.testing.assert_allclose(r @ r, s, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r, np.swapaxes(r, -1, -2), atol=1e-12)


# the registered metric uses the same formula on the model's and the target's moments ------
def test_w2_metric_plugin_uses_model_and_target_moments():
    load_plugins()
    from scloop.models import GaussianModel
    from scloop.tasks import GaussianTarget

    rng = np.random.default_rng(2)
    m1, m2 = rng.standard_normal(2), rng.standard_normal(2)
    s1, s2 = _random_spd(rng, 2), _random_spd(rng, 2)
    model = GaussianModel().set_params(m1, s1)
    target = GaussianTarget(m2, s2)
    value = METRICS.create("w2-gaussian")(Evaluation(model, None, None, target))
    assert value == pytest.approx(_w2_sqrtm(m1, s1, m2, s2), rel=1e-7)
