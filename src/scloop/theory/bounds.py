"""Closed-form quantities of Gillman et al. (ICML 2024), Theorem 4.3, in pure numpy.

Notation (see ``docs/paper.md`` §1–2):

- ``lam`` (λ >= 0): synthetic fraction, number of synthetic samples per real sample.
- ``gamma`` (γ in [0, inf]): strength of the idealized correction
  ``π_γ p = (p + γ p_θ*) / (1 + γ)``; ``γ = inf`` means corrected samples follow ``p_θ*``.
- ``eps_l_over_alpha`` (r = εL/α >= 0): misspecification ε times the Lipschitz constant L of
  ``x -> ∇²_θ log p_θ(x)``, divided by the strong-concavity constant α.

Provenance of the constants (read before using them as acceptance thresholds):

- The contraction factor ``ρ(λ)/(1+γ) = λ(α+εL) / ((1+γ)[α − λ(α+εL)])`` is the only formula
  known from a (third-party) verbatim quote of the paper.
- The theorem statement (the form of the bound, the statistical-error term) and the threshold
  ``λ(1+r) < (1+γ)/(2+γ)`` are **reconstructions** ([M] in docs/paper.md §2); the threshold is
  exactly the condition ``ρ(λ)/(1+γ) < 1``.
- The exact Gaussian / exponential-family contraction ``λ/((1+λ)(1+γ))`` and the W1 mixture
  identity are derivations ([D]), not claims of the paper.

Every function broadcasts over numpy array inputs; it returns a Python ``float`` when all
inputs are scalars and an ``ndarray`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "RECONSTRUCTION_NOTE",
    "TheoryRow",
    "admissible_lambda",
    "corrected_factor",
    "format_theory_table",
    "gaussian_mean_contraction",
    "predicted_bound",
    "predicted_mean_error",
    "rho",
    "theory_table",
    "w1_mixture_identity_factor",
]

RECONSTRUCTION_NOTE = (
    "Reconstructed [M]: the lam_max threshold and the Theorem 4.3 statement; only rho(lambda)/(1+gamma) "
    "is quoted verbatim (third-party); gauss_c is derived [D]."
)
"""Footer of :func:`format_theory_table`: which constants are reconstructions."""


# --------------------------------------------------------------------------- helpers


def _nonneg(value: ArrayLike, name: str, *, allow_inf: bool = False) -> np.ndarray:
    """Validate ``value`` as a non-negative (optionally infinite) real array; return float array."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or array of real numbers (got {value!r})") from exc
    allowed = "a number >= 0 (np.inf allowed)" if allow_inf else "a finite number >= 0"
    bad = np.isnan(arr) | (arr < 0)
    if not allow_inf:
        bad |= np.isinf(arr)
    if np.any(bad):
        offending = float(arr[bad].flat[0]) if arr.ndim else float(arr)
        raise ValueError(f"{name} must be {allowed} (got {name}={offending!r})")
    return arr


def _n_generations(n_generations: int) -> int:
    if isinstance(n_generations, bool) or not isinstance(n_generations, (int, np.integer)) or n_generations < 0:
        raise ValueError(f"n_generations must be an integer >= 0 (got n_generations={n_generations!r})")
    return int(n_generations)


def _out(arr: np.ndarray) -> float | np.ndarray:
    return float(arr) if np.ndim(arr) == 0 else arr


# --------------------------------------------------------------------------- factors


def rho(lam: ArrayLike, eps_l_over_alpha: ArrayLike = 0.0) -> float | np.ndarray:
    """Uncorrected contraction factor ρ(λ) of Bertrand et al. (ICLR 2024), reused in Theorem 4.3.

    Implements ``ρ(λ) = λ(α+εL) / (α − λ(α+εL))`` (docs/paper.md §2.2) written with ``r = εL/α``:
    ``ρ(λ) = λ(1+r) / (1 − λ(1+r))``. The formula is only meaningful for ``λ(1+r) < 1``; outside
    that domain ``np.inf`` is returned (never the negative value of the raw formula).

    Parameters
    ----------
    lam : float or array_like
        Synthetic fraction λ, finite and >= 0.
    eps_l_over_alpha : float or array_like, default 0.0
        r = εL/α, finite and >= 0 (0 = well-specified model).

    Returns
    -------
    float or ndarray
        ρ(λ) in [0, inf); ``inf`` where ``λ(1+r) >= 1``.

    Raises
    ------
    ValueError
        If ``lam`` or ``eps_l_over_alpha`` is negative, NaN or infinite.
    """
    s = _nonneg(lam, "lam") * (1.0 + _nonneg(eps_l_over_alpha, "eps_l_over_alpha"))
    inside = s < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(inside, s / np.where(inside, 1.0 - s, 1.0), np.inf)
    return _out(value)


def corrected_factor(
    lam: ArrayLike, gamma: ArrayLike, eps_l_over_alpha: ArrayLike = 0.0
) -> float | np.ndarray:
    """Contraction factor of Theorem 4.3 (Gillman et al., ICML 2024): ``ρ(λ)/(1+γ)``.

    This factor is quoted verbatim by a third party
    (``λ(α+εL) / {(1+γ)[α − λ(α+εL)]}``); the theorem applies where it is < 1.

    Parameters
    ----------
    lam : float or array_like
        Synthetic fraction λ, finite and >= 0.
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed (perfect correction).
    eps_l_over_alpha : float or array_like, default 0.0
        r = εL/α, finite and >= 0.

    Returns
    -------
    float or ndarray
        ``ρ(λ)/(1+γ)``; 0 at ``γ = inf`` when ρ is finite, ``inf`` wherever ρ is infinite.

    Raises
    ------
    ValueError
        On negative / NaN inputs, or infinite ``lam`` / ``eps_l_over_alpha``.
    """
    g = _nonneg(gamma, "gamma", allow_inf=True)
    r = np.asarray(rho(lam, eps_l_over_alpha), dtype=float)
    with np.errstate(invalid="ignore"):
        value = np.where(np.isinf(r), np.inf, r / (1.0 + g))
    return _out(value)


def admissible_lambda(gamma: ArrayLike, eps_l_over_alpha: ArrayLike = 0.0) -> float | np.ndarray:
    """Threshold on λ under which Theorem 4.3 applies: ``(1+γ) / ((2+γ)(1+r))``.

    This is the supremum of the λ with ``ρ(λ)/(1+γ) < 1`` (the bound holds for λ strictly
    below it). **Reconstruction [M]**: the paper's exact threshold could not be read; this form
    is exactly the condition ``ρ(λ)/(1+γ) < 1`` on the quoted factor. It equals
    ``1/(2(1+r))`` at γ = 0 (Bertrand et al. Theorem 2) and tends to ``1/(1+r)`` as γ -> inf.

    Parameters
    ----------
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed.
    eps_l_over_alpha : float or array_like, default 0.0
        r = εL/α, finite and >= 0.

    Returns
    -------
    float or ndarray
        λ_max in [1/(2(1+r)), 1/(1+r)]; exactly ``1/(1+r)`` at ``γ = inf``.

    Raises
    ------
    ValueError
        On negative / NaN inputs, or infinite ``eps_l_over_alpha``.
    """
    g = _nonneg(gamma, "gamma", allow_inf=True)
    r = _nonneg(eps_l_over_alpha, "eps_l_over_alpha")
    with np.errstate(invalid="ignore"):
        frac = np.where(np.isinf(g), 1.0, (1.0 + g) / (2.0 + g))
    return _out(frac / (1.0 + r))


def gaussian_mean_contraction(lam: ArrayLike, gamma: ArrayLike) -> float | np.ndarray:
    """Exact per-generation contraction of the mean error for an exponential-family MLE refit.

    For a Gaussian (or any exponential family) refit by population MLE on real data plus λ
    synthetic samples per real one (``augment`` policy), the synthetic samples being drawn from
    the idealized correction ``π_γ p_θt``, moment matching gives
    ``m_{t+1} − m* = λ / ((1+λ)(1+γ)) · (m_t − m*)`` exactly (docs/paper.md §2.2 last paragraph
    and §5 T1; a derivation [D], not a claim of the paper). The same factor holds for the
    second (raw) moments. It is always below the bound's ``ρ(λ)/(1+γ)`` (r = 0).

    Parameters
    ----------
    lam : float or array_like
        Synthetic fraction λ, finite and >= 0.
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed (factor 0).

    Returns
    -------
    float or ndarray
        ``λ / ((1+λ)(1+γ))`` in [0, 1).

    Raises
    ------
    ValueError
        On negative / NaN inputs, or infinite ``lam``.
    """
    lam_a = _nonneg(lam, "lam")
    g = _nonneg(gamma, "gamma", allow_inf=True)
    return _out(lam_a / ((1.0 + lam_a) * (1.0 + g)))


def w1_mixture_identity_factor(gamma: ArrayLike) -> float | np.ndarray:
    """Factor of the identity ``W1(π_γ p, p*) = W1(p, p*) / (1+γ)`` (docs/paper.md §1.3, §5 T3).

    Follows from ``π_γ p − p* = (p − p*)/(1+γ)`` as signed measures (derivation [D]).

    Parameters
    ----------
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed (factor 0).

    Returns
    -------
    float or ndarray
        ``1/(1+γ)`` in [0, 1].

    Raises
    ------
    ValueError
        If ``gamma`` is negative or NaN.
    """
    return _out(1.0 / (1.0 + _nonneg(gamma, "gamma", allow_inf=True)))


# --------------------------------------------------------------------------- trajectories


def predicted_mean_error(
    e0: ArrayLike,
    lam: ArrayLike,
    gamma: ArrayLike,
    n_generations: int,
    floor: ArrayLike = 0.0,
) -> np.ndarray:
    """Predicted mean-error trajectory ``e_g = floor + (e0 − floor) · c^g``, g = 0..G.

    ``c = gaussian_mean_contraction(lam, gamma)`` (exact for exponential-family population
    refits, derivation [D]); ``floor`` models a sampling-noise floor the loop settles on.

    Parameters
    ----------
    e0 : float or array_like
        Error at generation 0, finite and >= 0.
    lam : float or array_like
        Synthetic fraction λ, finite and >= 0.
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed.
    n_generations : int
        Number of generations G >= 0.
    floor : float or array_like, default 0.0
        Asymptotic error, finite and >= 0.

    Returns
    -------
    ndarray
        Shape ``broadcast(e0, lam, gamma, floor).shape + (G+1,)``; 1-D of length G+1 for scalars.

    Raises
    ------
    ValueError
        On invalid numeric inputs or a negative / non-integer ``n_generations``.
    """
    e0_a = _nonneg(e0, "e0")
    floor_a = _nonneg(floor, "floor")
    c = np.asarray(gaussian_mean_contraction(lam, gamma), dtype=float)
    g = np.arange(_n_generations(n_generations) + 1, dtype=float)
    return floor_a[..., None] + (e0_a - floor_a)[..., None] * c[..., None] ** g


def predicted_bound(
    lam: ArrayLike,
    gamma: ArrayLike,
    n_generations: int,
    e0: ArrayLike,
    eps_l_over_alpha: ArrayLike = 0.0,
    stat_error: ArrayLike = 0.0,
) -> np.ndarray:
    """Right-hand side of Theorem 4.3 for generations t = 0..G: ``S/(1−f) + f^t · e0``.

    ``f = corrected_factor(lam, gamma, eps_l_over_alpha)``. The full statement reads
    ``‖θ_t − θ*‖ <= (ε_OPT + a/√n · √log(bt/δ)) / (1 − f) + f^t ‖θ_0 − θ*‖``; here the
    statistical term ``S = stat_error`` is taken constant in t (pass an upper bound over the
    horizon to cover the union-bound ``log t``). **Reconstruction [M]**: only ``f`` is quoted
    verbatim; the form of the bound is reconstructed. With γ = 0 it is Bertrand et al. Thm 2.

    Parameters
    ----------
    lam : float or array_like
        Synthetic fraction λ, finite and >= 0.
    gamma : float or array_like
        Correction strength γ >= 0; ``np.inf`` allowed.
    n_generations : int
        Number of generations G >= 0.
    e0 : float or array_like
        Initial distance ``‖θ_0 − θ*‖``, finite and >= 0.
    eps_l_over_alpha : float or array_like, default 0.0
        r = εL/α, finite and >= 0.
    stat_error : float or array_like, default 0.0
        Per-step statistical + optimisation error S, finite and >= 0.

    Returns
    -------
    ndarray
        Shape ``broadcast(lam, gamma, e0, eps_l_over_alpha, stat_error).shape + (G+1,)``;
        ``inf`` for all t where ``f >= 1`` (the theorem does not apply).

    Raises
    ------
    ValueError
        On invalid numeric inputs or a negative / non-integer ``n_generations``.
    """
    f = np.asarray(corrected_factor(lam, gamma, eps_l_over_alpha), dtype=float)
    e0_a = _nonneg(e0, "e0")
    s = _nonneg(stat_error, "stat_error")
    t = np.arange(_n_generations(n_generations) + 1, dtype=float)
    ok = f < 1.0
    f_safe = np.where(ok, f, 0.0)[..., None]
    value = s[..., None] / (1.0 - f_safe) + f_safe**t * e0_a[..., None]
    return np.where(ok[..., None], value, np.inf)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TheoryRow:
    """Theorem 4.3 quantities for one (λ, γ) pair.

    ``in_domain`` is True when the (reconstructed) hypothesis of Theorem 4.3 holds, i.e.
    ``corrected_factor < 1`` (equivalently ``lam < admissible_lambda``).
    """

    lam: float
    gamma: float
    rho: float
    corrected_factor: float
    admissible_lambda: float
    gaussian_contraction: float
    in_domain: bool


def _as_list(values: ArrayLike | Iterable[float], name: str, *, allow_inf: bool = False) -> list[float]:
    if isinstance(values, Iterable) and not isinstance(values, (np.ndarray, str, bytes)):
        values = list(values)
    arr = np.atleast_1d(_nonneg(values, name, allow_inf=allow_inf)).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} must contain at least one value (got an empty sequence)")
    return [float(v) for v in arr]


def theory_table(
    lambdas: ArrayLike | Iterable[float],
    gammas: ArrayLike | Iterable[float],
    eps_l_over_alpha: float = 0.0,
) -> list[TheoryRow]:
    """Evaluate Theorem 4.3 quantities on the grid ``lambdas × gammas`` (λ outer, γ inner).

    Parameters
    ----------
    lambdas : float or iterable of float
        Synthetic fractions λ, finite and >= 0.
    gammas : float or iterable of float
        Correction strengths γ >= 0 (``np.inf`` allowed).
    eps_l_over_alpha : float, default 0.0
        r = εL/α, finite and >= 0.

    Returns
    -------
    list of TheoryRow
        One row per (λ, γ) pair, in input order.

    Raises
    ------
    ValueError
        On invalid values or empty ``lambdas`` / ``gammas``.
    """
    lam_list = _as_list(lambdas, "lambdas")
    gam_list = _as_list(gammas, "gammas", allow_inf=True)
    r = float(_nonneg(eps_l_over_alpha, "eps_l_over_alpha"))
    rows = []
    for lam in lam_list:
        for gamma in gam_list:
            f = float(corrected_factor(lam, gamma, r))
            rows.append(
                TheoryRow(
                    lam=lam,
                    gamma=gamma,
                    rho=float(rho(lam, r)),
                    corrected_factor=f,
                    admissible_lambda=float(admissible_lambda(gamma, r)),
                    gaussian_contraction=float(gaussian_mean_contraction(lam, gamma)),
                    in_domain=bool(f < 1.0),
                )
            )
    return rows


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.4f}"


def format_theory_table(rows: Sequence[TheoryRow], eps_l_over_alpha: float | None = None) -> str:
    """Render :func:`theory_table` rows as an aligned plain-text table.

    Parameters
    ----------
    rows : sequence of TheoryRow
        Rows to print, one line each.
    eps_l_over_alpha : float, optional
        If given, the value of r = εL/α is stated in the header.

    Returns
    -------
    str
        Header (column legend), the table, and a footer stating which constants are
        reconstructions. No trailing newline.
    """
    r_txt = "" if eps_l_over_alpha is None else f" (r = eps*L/alpha = {eps_l_over_alpha:g})"
    header = [
        f"Theorem 4.3 (Gillman et al., ICML 2024) contraction quantities{r_txt}",
        "  lambda    : synthetic fraction (synthetic samples per real sample)",
        "  gamma     : correction strength, pi_gamma p = (p + gamma p*)/(1+gamma)",
        "  rho       : rho(lambda) = lambda(1+r)/(1-lambda(1+r)), uncorrected factor (inf: out of domain)",
        "  factor    : rho(lambda)/(1+gamma), Theorem 4.3 contraction factor (< 1 required)",
        "  lam_max   : (1+gamma)/((2+gamma)(1+r)), largest admissible lambda",
        "  gauss_c   : lambda/((1+lambda)(1+gamma)), exact Gaussian mean contraction (augment, MLE)",
        "  in_domain : factor < 1, i.e. Theorem 4.3 applies",
        "",
    ]
    cols = ["lambda", "gamma", "rho", "factor", "lam_max", "gauss_c", "in_domain"]
    body = [
        [
            f"{row.lam:g}",
            "inf" if math.isinf(row.gamma) else f"{row.gamma:g}",
            _fmt(row.rho),
            _fmt(row.corrected_factor),
            _fmt(row.admissible_lambda),
            _fmt(row.gaussian_contraction),
            "yes" if row.in_domain else "no",
        ]
        for row in rows
    ]
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(header + lines + ["", RECONSTRUCTION_NOTE])
