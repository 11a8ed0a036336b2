"""Check T1: the simulated loop's mean error contracts by lambda/((1+lambda)(1+gamma))."""

from __future__ import annotations

from typer.testing import CliRunner

from scloop.cli import app
from scloop.core.config import load_spec
from scloop.report.contraction import measured_contraction
from scloop.runner import run_experiment
from scloop.store import RunStore


def test_contraction_matches_theory(tmp_path):
    spec = load_spec("gaussian-theory", ["n_generations=8", "n_real=4000"], seeds=12)
    summary = run_experiment(spec, out=tmp_path)
    store = RunStore(summary.path)
    tab = measured_contraction(store.table(metric="mean_error"))
    store.close()
    assert len(tab) == 9  # 3 lambdas x 3 gammas
    assert (tab.n_ratios >= 1).all()
    assert tab.rel_error.max() < 0.05, tab.to_string()
    # the prediction is not trivially satisfied: the uncorrected factor is far from the corrected one
    assert tab.predicted.max() / tab.predicted.min() > 10

    res = CliRunner().invoke(app, ["theory-check", str(summary.path)])
    assert res.exit_code == 0, res.output
    assert "max relative error" in res.output


def test_theory_check_fails_on_a_wrong_model(tmp_path):
    # accumulate policy: the contraction is no longer lambda/((1+lambda)(1+gamma)); the check must notice
    spec = load_spec("gaussian-theory", ["n_generations=8", "n_real=4000", "policy=accumulate", "gamma=[0]"], seeds=4)
    summary = run_experiment(spec, out=tmp_path)
    res = CliRunner().invoke(app, ["theory-check", str(summary.path)])
    assert res.exit_code == 1, res.output
