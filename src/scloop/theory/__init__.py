"""Closed-form theory of self-correcting self-consuming loops (Gillman et al., ICML 2024, Thm 4.3).

Pure numpy. See :mod:`scloop.theory.bounds` for formulas and which constants are reconstructions.
"""

from scloop.theory.bounds import RECONSTRUCTION_NOTE
from scloop.theory.bounds import TheoryRow
from scloop.theory.bounds import admissible_lambda
from scloop.theory.bounds import corrected_factor
from scloop.theory.bounds import format_theory_table
from scloop.theory.bounds import gaussian_mean_contraction
from scloop.theory.bounds import predicted_bound
from scloop.theory.bounds import predicted_mean_error
from scloop.theory.bounds import rho
from scloop.theory.bounds import theory_table
from scloop.theory.bounds import w1_mixture_identity_factor

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
