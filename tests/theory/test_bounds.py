"""Tests for scloop.theory.bounds (docs/paper.md §2.5 and §5 T1–T3)."""

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import scloop.theory as theory
from scloop.theory import (
    TheoryRow,
    admissible_lambda,
    corrected_factor,
    format_theory_table,
    gaussian_mean_contraction,
    predicted_bound,
    predicted_mean_error,
    rho,
    theory_table,
    w1_mixture_identity_factor,
)

GAMMAS = [0.0, 1.0, 2.0, 5.0, 10.0, np.inf]


# ----------------------------------------------------------------- numerical illustration (§2.5)


def test_admissible_lambda_numbers_r0():
    expected = [0.50, 0.667, 0.75, 0.857, 0.917, 1.0]
    np.testing.assert_allclose(admissible_lambda(GAMMAS), expected, atol=5e-4)


def test_corrected_factor_numbers_at_quarter():
    expected = [0.333, 0.167, 0.111, 0.056, 0.030, 0.0]
    np.testing.assert_allclose(corrected_factor(0.25, GAMMAS), expected, atol=5e-4)


def test_admissible_lambda_numbers_r02():
    got = admissible_lambda([0.0, 1.0, 5.0, np.inf], eps_l_over_alpha=0.2)
    np.testing.assert_allclose(got, [0.417, 0.556, 0.714, 0.833], atol=5e-4)


def test_rho_closed_form_and_domain():
    assert rho(0.0) == 0.0
    assert rho(0.25) == pytest.approx(1 / 3)
    assert rho(0.25, 0.2) == pytest.approx(0.3 / 0.7)
    # alpha / eps*L form: lam (alpha + eps L) / (alpha - lam (alpha + eps L))
    alpha, eps_l, lam = 2.0, 0.6, 0.3
    assert rho(lam, eps_l / alpha) == pytest.approx(lam * (alpha + eps_l) / (alpha - lam * (alpha + eps_l)))
    out = rho(np.array([0.5, 0.99, 1.0, 3.0]))
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(99.0)
    assert np.all(np.isinf(out[2:])) and np.all(out[2:] > 0)
    assert math.isinf(rho(0.9, 0.2))  # 0.9 * 1.2 >= 1


# ----------------------------------------------------------------- T2


def test_T2_factor_strictly_decreasing_in_gamma():
    gammas = np.concatenate([[0.0], np.logspace(-3, 4, 60), [np.inf]])
    for r in [0.0, 0.2, 1.0]:
        for lam in [0.05, 0.2, 0.4]:
            f = corrected_factor(lam, gammas, r)
            if not np.isfinite(f[0]):
                continue
            assert np.all(np.diff(f) < 0), (lam, r)
            assert f[-1] == 0.0
            np.testing.assert_allclose(f, rho(lam, r) / (1 + gammas))


def test_T2_admissible_lambda_grows_between_limits():
    gammas = np.concatenate([[0.0], np.logspace(-3, 6, 80), [np.inf]])
    for r in [0.0, 0.2, 3.0]:
        lm = admissible_lambda(gammas, r)
        assert lm[0] == pytest.approx(1 / (2 * (1 + r)))
        assert lm[-1] == pytest.approx(1 / (1 + r))
        assert np.all(np.diff(lm) > 0)
        assert lm[-2] == pytest.approx(1 / (1 + r), rel=1e-5)
        np.testing.assert_allclose(lm[:-1], (1 + gammas[:-1]) / ((2 + gammas[:-1]) * (1 + r)))


def test_admissible_lambda_is_threshold_of_factor():
    for gamma in [0.0, 0.5, 3.0]:
        for r in [0.0, 0.2]:
            lm = admissible_lambda(gamma, r)
            assert corrected_factor(lm, gamma, r) == pytest.approx(1.0)
            assert corrected_factor(lm * (1 - 1e-6), gamma, r) < 1.0
            assert corrected_factor(lm * (1 + 1e-6), gamma, r) > 1.0


def test_corrected_factor_inf_outside_domain_even_at_gamma_inf():
    assert math.isinf(corrected_factor(1.0, np.inf))
    assert math.isinf(corrected_factor(2.0, 3.0))
    assert corrected_factor(0.99, np.inf) == 0.0


# ----------------------------------------------------------------- T3


def _w1_check(p_vals, p_w, q_vals, q_w, gamma):
    base = wasserstein_distance(p_vals, q_vals, p_w, q_w)
    t = gamma / (1 + gamma) if np.isfinite(gamma) else 1.0
    mix_vals = np.concatenate([p_vals, q_vals])
    mix_w = np.concatenate([(1 - t) * p_w / p_w.sum(), t * q_w / q_w.sum()])
    mixed = wasserstein_distance(mix_vals, q_vals, mix_w, q_w)
    return base, mixed


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.5, 1.0, 3.0, 10.0, np.inf])
def test_T3_w1_mixture_identity_against_scipy(gamma):
    rng = np.random.default_rng(0)
    # p: heavy empirical sample of a shifted, wider normal with non-uniform weights;
    # p*: a different discrete distribution.
    p_vals = rng.normal(1.5, 2.0, size=400)
    p_w = rng.uniform(0.1, 1.0, size=400)
    q_vals = rng.normal(0.0, 1.0, size=150)
    q_w = rng.uniform(0.1, 1.0, size=150)
    base, mixed = _w1_check(p_vals, p_w, q_vals, q_w, gamma)
    assert base > 0.5
    assert mixed == pytest.approx(base * w1_mixture_identity_factor(gamma), rel=1e-9, abs=1e-12)


def test_T3_shared_support():
    # same support, different weights (p = shifted mass)
    support = np.arange(10.0)
    p_w = np.exp(-0.5 * (support - 6.0) ** 2)
    q_w = np.exp(-0.5 * (support - 3.0) ** 2)
    for gamma in [0.0, 2.0, 7.0]:
        base, mixed = _w1_check(support, p_w, support, q_w, gamma)
        assert mixed == pytest.approx(base / (1 + gamma), rel=1e-9)


def test_w1_factor_values():
    np.testing.assert_allclose(w1_mixture_identity_factor(GAMMAS), [1, 1 / 2, 1 / 3, 1 / 6, 1 / 11, 0])


# ----------------------------------------------------------------- T1


def _simulate_refit(lam, gamma, m0, s0, m_star, s_star, n_gen):
    """Exact population MLE refit of a Gaussian on real data + lam * corrected synthetic data.

    Corrected synthetic distribution: (1-t) N(m_t, S_t) + t N(m*, S*), t = gamma/(1+gamma).
    Training distribution: (1 * p_data + lam * synthetic) / (1 + lam), p_data = N(m*, S*)
    (well-specified). MLE of a Gaussian = mean and covariance of the training mixture, computed
    with the law of total covariance.
    """
    t = 1.0 if np.isinf(gamma) else gamma / (1 + gamma)
    w_model = lam * (1 - t) / (1 + lam)
    w_star = 1 - w_model
    means, covs = [m0], [s0]
    m, s = m0, s0
    for _ in range(n_gen):
        m_new = w_model * m + w_star * m_star
        s_new = (
            w_model * (s + np.outer(m - m_new, m - m_new))
            + w_star * (s_star + np.outer(m_star - m_new, m_star - m_new))
        )
        m, s = m_new, s_new
        means.append(m)
        covs.append(s)
    return np.array(means), np.array(covs)


@pytest.mark.parametrize("lam", [0.1, 0.5, 1.0, 1.5, 4.0])
@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0, 5.0, np.inf])
def test_T1_gaussian_refit_contraction(lam, gamma):
    m_star = np.array([0.0, 0.0])
    s_star = np.eye(2)
    m0 = np.array([2.0, -1.0])
    s0 = np.array([[0.4, 0.1], [0.1, 0.2]])
    means, covs = _simulate_refit(lam, gamma, m0, s0, m_star, s_star, 8)
    c = gaussian_mean_contraction(lam, gamma)

    # scalar recursion from the brief: m_{t+1} = (m* + lam((1-t) m_t + t m*)) / (1 + lam)
    t = 1.0 if np.isinf(gamma) else gamma / (1 + gamma)
    m_rec = [m0]
    for _ in range(8):
        m_rec.append((m_star + lam * ((1 - t) * m_rec[-1] + t * m_star)) / (1 + lam))
    np.testing.assert_allclose(means, np.array(m_rec), atol=1e-12)

    err = np.linalg.norm(means - m_star, axis=1)
    np.testing.assert_allclose(err[1:], err[:-1] * c, rtol=1e-9, atol=1e-14)
    # raw second moments E[x x^T] contract by the same factor
    raw = covs + np.einsum("gi,gj->gij", means, means)
    raw_err = np.linalg.norm((raw - s_star).reshape(len(raw), -1), axis=1)
    np.testing.assert_allclose(raw_err[1:], raw_err[:-1] * c, rtol=1e-9, atol=1e-14)
    # predicted trajectory matches the simulated one
    np.testing.assert_allclose(predicted_mean_error(err[0], lam, gamma, 8), err, rtol=1e-9, atol=1e-14)


def test_T1_bound_is_conservative_and_correction_divides_factor():
    lams = np.linspace(0.01, 0.49, 25)
    for gamma in [0.0, 1.0, 5.0]:
        c = gaussian_mean_contraction(lams, gamma)
        assert np.all(c < corrected_factor(lams, gamma))
        np.testing.assert_allclose(c, gaussian_mean_contraction(lams, 0.0) / (1 + gamma))


# ----------------------------------------------------------------- trajectories


def test_predicted_mean_error_shape_and_floor():
    e = predicted_mean_error(1.0, 0.5, 1.0, 5, floor=0.2)
    assert e.shape == (6,)
    assert e[0] == pytest.approx(1.0)
    c = 0.5 / (1.5 * 2.0)
    np.testing.assert_allclose(e, 0.2 + 0.8 * c ** np.arange(6))
    grid = predicted_mean_error(1.0, np.array([[0.1], [0.5]]), np.array([0.0, 1.0, np.inf]), 3)
    assert grid.shape == (2, 3, 4)
    np.testing.assert_allclose(grid[:, 2, 1:], 0.0)


def test_predicted_bound_values():
    f = 1 / 3
    b = predicted_bound(0.25, 0.0, 4, e0=2.0, stat_error=0.1)
    np.testing.assert_allclose(b, 0.1 / (1 - f) + 2.0 * f ** np.arange(5))
    # gamma = inf: statistical floor only (bound of fitting the real data alone)
    np.testing.assert_allclose(predicted_bound(0.25, np.inf, 3, e0=2.0, stat_error=0.1), [2.1, 0.1, 0.1, 0.1])
    # outside the domain the bound is vacuous
    assert np.all(np.isinf(predicted_bound(0.5, 0.0, 3, e0=1.0)))
    grid = predicted_bound(np.array([0.25, 0.6]), np.array([[0.0], [1.0]]), 2, e0=1.0, eps_l_over_alpha=0.0)
    assert grid.shape == (2, 2, 3)
    assert np.all(np.isinf(grid[0, 1])) and np.all(np.isfinite(grid[1]))
    # correction shrinks the transient by (1+gamma)^-t and lowers the floor
    b0 = predicted_bound(0.3, 0.0, 6, e0=1.0, stat_error=0.05)
    b1 = predicted_bound(0.3, 1.0, 6, e0=1.0, stat_error=0.05)
    assert np.all(b1[1:] < b0[1:])


def test_scalar_in_float_out_and_broadcasting():
    assert isinstance(rho(0.1), float)
    assert isinstance(corrected_factor(0.1, 1), float)
    assert isinstance(admissible_lambda(np.inf), float)
    assert isinstance(gaussian_mean_contraction(0.1, 0.0), float)
    assert isinstance(w1_mixture_identity_factor(0), float)
    out = corrected_factor(np.array([0.1, 0.2])[:, None], np.array([0.0, 1.0, np.inf]))
    assert out.shape == (2, 3)


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: rho(-0.1), "lam"),
        (lambda: rho(np.array([0.1, -0.2])), "lam"),
        (lambda: rho(0.1, -1.0), "eps_l_over_alpha"),
        (lambda: rho(np.nan), "lam"),
        (lambda: rho(np.inf), "lam"),
        (lambda: corrected_factor(0.1, -0.5), "gamma"),
        (lambda: corrected_factor(0.1, np.nan), "gamma"),
        (lambda: admissible_lambda(-1.0), "gamma"),
        (lambda: admissible_lambda(1.0, np.inf), "eps_l_over_alpha"),
        (lambda: gaussian_mean_contraction(-0.1, 0.0), "lam"),
        (lambda: w1_mixture_identity_factor(-2.0), "gamma"),
        (lambda: predicted_mean_error(-1.0, 0.1, 0.0, 3), "e0"),
        (lambda: predicted_mean_error(1.0, 0.1, 0.0, 3, floor=-0.1), "floor"),
        (lambda: predicted_mean_error(1.0, 0.1, 0.0, -1), "n_generations"),
        (lambda: predicted_bound(0.1, 0.0, 2.5, 1.0), "n_generations"),
        (lambda: predicted_bound(0.1, 0.0, 3, 1.0, stat_error=-0.1), "stat_error"),
        (lambda: theory_table([0.1, -0.3], [0.0]), "lambdas"),
        (lambda: theory_table([0.1], [-1.0]), "gammas"),
        (lambda: theory_table([], [0.0]), "lambdas"),
    ],
)
def test_validation_errors(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_validation_message_names_value_and_allowed():
    with pytest.raises(ValueError, match=r"lam.*>= 0.*-0\.5"):
        rho(-0.5)
    with pytest.raises(ValueError, match=r"gamma.*np\.inf allowed"):
        corrected_factor(0.1, -1.0)


# ----------------------------------------------------------------- table


def test_theory_table_rows():
    rows = theory_table([0.25, 0.5], [0, 1], eps_l_over_alpha=0.0)
    assert [(r.lam, r.gamma) for r in rows] == [(0.25, 0.0), (0.25, 1.0), (0.5, 0.0), (0.5, 1.0)]
    assert all(isinstance(r, TheoryRow) for r in rows)
    r0 = rows[0]
    assert r0.rho == pytest.approx(1 / 3) and r0.corrected_factor == pytest.approx(1 / 3)
    assert r0.admissible_lambda == pytest.approx(0.5) and r0.gaussian_contraction == pytest.approx(0.2)
    assert [r.in_domain for r in rows] == [True, True, False, True]
    with pytest.raises(AttributeError):
        r0.lam = 1.0  # frozen
    inf_row = theory_table(0.9, np.inf)[0]
    assert inf_row.corrected_factor == 0.0 and inf_row.in_domain


def test_format_theory_table():
    rows = theory_table([0.25, 0.5], [0, 1, np.inf])
    text = format_theory_table(rows)
    lines = text.splitlines()
    table = [ln for ln in lines if ln.strip().startswith(("0.25", "0.5"))]
    assert len(table) == 6
    assert len({len(ln) for ln in table}) == 1  # aligned
    assert "lambda" in text and "gamma" in text and "in_domain" in text
    assert "reconstruct" in lines[-1].lower()
    assert "0.3333" in table[0] and "inf" in text
    assert format_theory_table([]).count("\n") > 3


def test_public_exports():
    for name in theory.__all__:
        assert hasattr(theory, name)
    assert "rho" in theory.__all__ and "theory_table" in theory.__all__
