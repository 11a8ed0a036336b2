"""Measured per-generation contraction of the seed-mean mean error vs theory (check T1).

For each (lambda, gamma) curve e_g (seed mean of ``mean_error``), the noise floor f is the
mean of the last three generations; the per-generation ratios e_g / e_{g-1} are taken over the
generations where e_g is still at least ``min_signal`` times the floor (there the norm of
signal plus noise is the signal's norm to within ~(f/e)^2), and their geometric mean is the
measured contraction.  It is compared
with lambda / ((1 + lambda)(1 + gamma)) (docs/paper.md, exact for the Gaussian MLE refit
under the ``augment`` policy with the idealized mixture correction).
"""

from __future__ import annotations

import numpy as np


def measured_contraction(df, *, min_signal: float = 10.0):
    """Rows of (correction, lambda, gamma, measured, predicted, rel_error, n_ratios, n_seeds)."""
    import pandas as pd

    from scloop.theory import gaussian_mean_contraction

    df = df[(df.metric == "mean_error") & (df.arm != "baseline")]
    out = []
    for (corr, lam, gam), sub in df.groupby(["correction", "lambda", "gamma"]):
        e = sub.groupby("generation").value.mean().sort_index().to_numpy()
        n_seeds = sub.seed.nunique()
        if len(e) < 3:
            continue
        floor = float(e[-3:].mean())
        ratios = []
        for g in range(1, len(e)):
            if e[g] < min_signal * floor:
                break
            ratios.append(e[g] / e[g - 1])
        measured = float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
        pred = float(gaussian_mean_contraction(lam, gam))
        out.append(dict(correction=corr, **{"lambda": lam}, gamma=gam, measured=measured, predicted=pred,
                        rel_error=abs(measured - pred) / pred if pred > 0 else abs(measured),
                        n_ratios=len(ratios), n_seeds=n_seeds, floor=floor))
    return pd.DataFrame(out)
