"""docs/paper.md §5, G1-G3, on the official toy configuration (100 seeds, 500 generations)."""

from __future__ import annotations

import numpy as np
import pytest

from scloop.core.config import load_spec
from scloop.report.figures import final_table
from scloop.runner import run_experiment
from scloop.store import RunStore


@pytest.mark.slow
def test_gaussian_paper_g1_g3(tmp_path):
    spec = load_spec("gaussian-paper", seeds=100)
    summary = run_experiment(spec, out=tmp_path)
    store = RunStore(summary.path)
    tab = final_table(store.table(metric="w2-gaussian", generations=[0, 500]), "w2-gaussian")
    store.close()
    h = tab[tab.correction == "paper-histogram"].sort_values("gamma")
    # G1: decreasing in gamma wherever the 95% intervals separate
    for a, b in zip(h.itertuples(), list(h.itertuples())[1:]):
        if a.ci_low > b.ci_high or b.ci_low > a.ci_high:
            assert a.mean > b.mean, (a.gamma, b.gamma)
    g0 = h[h.gamma == 0].iloc[0]
    assert g0["mean"] > 2 * g0["gen0_mean"]  # G2
    for r in h[h.gamma >= 1].itertuples():  # G3
        assert r.mean < r.gen0_mean
    assert np.all(np.diff(h["mean"].to_numpy()) < 0)
