"""Computed verdicts (scloop.report.verdicts) on constructed tidy tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scloop.report.verdicts import COLUMNS, NO_VERDICT, verdict_html, verdict_markdown, verdict_table
from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS

SEEDS = 5
LAST = 20


def _rows(run_id, arm, lam, corr, gamma, values, *, metric="fid", policy="augment", generations=(0, 10, LAST),
          status=None, n_real=1200, task="digits"):
    """Tidy rows of one arm: value at the last generation = values[seed]; earlier generations
    get an unrelated constant (they must not matter)."""
    out = []
    for seed, v in enumerate(values):
        for g in generations:
            st = "ok" if status is None else status(seed, g)
            out.append((run_id, task, arm, seed, lam, gamma, n_real, policy, corr, g, metric,
                        v if g == generations[-1] else 0.5, st, int(lam * n_real)))
    return out


def _frame(rows):
    return pd.DataFrame(rows, columns=EXPORT_COLUMNS + EXTRA_COLUMNS)


NOCORR = np.array([0.35, 0.33, 0.36, 0.34, 0.37])
HELP = NOCORR - np.array([0.05, 0.04, 0.06, 0.05, 0.045])  # lower FID in every seed
HURT = NOCORR + np.array([0.03, 0.025, 0.035, 0.03, 0.028])
NULL = NOCORR + np.array([0.01, -0.012, 0.004, -0.006, 0.003])  # mean ~0, noisy


@pytest.fixture
def table():
    rows = _rows("r1", "no-correction", 1.0, "none", 0.0, NOCORR)
    rows += _rows("r1", "baseline", 0.0, "none", 0.0, NOCORR - 0.1)  # ignored
    rows += _rows("r1", "correction", 1.0, "ot-real", math.inf, HELP)
    rows += _rows("r1", "correction", 1.0, "kmeans(k=16,seed=0)", math.inf, HURT)
    rows += _rows("r1", "correction", 1.0, "nearest-real", math.inf, NULL)
    return _frame(rows)


def test_known_verdicts_and_statistics(table):
    out = verdict_table(table, "fid")
    assert list(out.columns) == COLUMNS
    assert len(out) == 3
    by = out.set_index("correction")
    assert by.loc["ot-real", "verdict"] == "helps"
    assert by.loc["kmeans(k=16,seed=0)", "verdict"] == "hurts"
    assert by.loc["nearest-real", "verdict"] == "no detectable effect"
    # numbers against an independent computation
    for name, vals in (("ot-real", HELP), ("kmeans(k=16,seed=0)", HURT), ("nearest-real", NULL)):
        r = by.loc[name]
        d = vals - NOCORR
        half = stats.t.ppf(0.975, SEEDS - 1) * d.std(ddof=1) / math.sqrt(SEEDS)
        assert r["n_seeds"] == SEEDS and r["generation"] == LAST
        assert r["mean_diff"] == pytest.approx(d.mean())
        assert r["mean_correction"] == pytest.approx(vals.mean())
        assert r["mean_no_correction"] == pytest.approx(NOCORR.mean())
        assert r["ci_low"] == pytest.approx(d.mean() - half)
        assert r["ci_high"] == pytest.approx(d.mean() + half)
        assert r["p_value"] == pytest.approx(stats.ttest_rel(vals, NOCORR).pvalue)
        assert (r["p_value"] < 0.05) == (r["verdict"] != "no detectable effect")
        assert not r["higher_is_better"]
    assert "helps" in by.loc["ot-real", "sentence"] and "generation 20" in by.loc["ot-real", "sentence"]
    assert "no detectable effect" in by.loc["nearest-real", "sentence"]


def test_higher_is_better_flips_the_direction(table):
    rec = table.assign(metric="recall")
    out = verdict_table(rec, "recall").set_index("correction")
    # the same numbers, but now larger is better: lower values hurt
    assert out.loc["ot-real", "verdict"] == "hurts"
    assert out.loc["kmeans(k=16,seed=0)", "verdict"] == "helps"
    # explicit orientation overrides the mapping
    out2 = verdict_table(table, "fid", higher_is_better=True).set_index("correction")
    assert out2.loc["ot-real", "verdict"] == "hurts"


def test_unknown_metric_gets_no_verdict(table):
    """A metric no plugin declares has no good side: statistics, but no verdict -- never a
    guessed lower-is-better."""
    odd = table.assign(metric="my_score")
    out = verdict_table(odd, "my_score")
    assert len(out) == 3 and set(out["verdict"]) == {NO_VERDICT}
    assert out["higher_is_better"].isna().all()
    ref = verdict_table(table, "fid").set_index("correction")
    by = out.set_index("correction")
    assert by["mean_diff"].to_dict() == pytest.approx(ref["mean_diff"].to_dict())  # numbers still there
    assert all("orientation unknown" in t for t in out["sentence"])
    assert "orientation unknown" in verdict_markdown(out) and 'class="null"' in verdict_html(out)
    # an explicit orientation overrides
    assert set(verdict_table(odd, "my_score", higher_is_better=False)["verdict"]) == {"helps", "hurts",
                                                                                        "no detectable effect"}
    with pytest.raises(ValueError, match="fid-paper"):  # known orientation, absent from the table
        verdict_table(table, "fid-paper")


def test_matching_across_runs_on_parameters_not_run_id():
    """A sweep: the controls live in one run, the corrections in two others."""
    rows = _rows("sweep-a", "no-correction", 1.0, "none", 0.0, NOCORR)
    rows += _rows("sweep-a", "no-correction", 4.0, "none", 0.0, NOCORR + 1.0)
    rows += _rows("sweep-b", "correction", 1.0, "ot-real", math.inf, HELP)
    rows += _rows("sweep-c", "correction", 4.0, "ot-real", math.inf, NOCORR + 1.0 + (HURT - NOCORR))
    # the same control again in a third run (identical values): used once
    rows += _rows("sweep-c", "no-correction", 1.0, "none", 0.0, NOCORR)
    # another policy must not be matched with augment
    rows += _rows("sweep-d", "correction", 1.0, "ot-real", math.inf, HELP, policy="replace")
    out = verdict_table(_frame(rows), "fid")
    got = {(r.policy, r["lambda"]): r for _, r in out.iterrows()}
    assert got[("augment", 1.0)]["verdict"] == "helps" and got[("augment", 1.0)]["n_seeds"] == SEEDS
    assert got[("augment", 4.0)]["verdict"] == "hurts"
    assert got[("augment", 4.0)]["mean_no_correction"] == pytest.approx(NOCORR.mean() + 1.0)
    assert got[("replace", 1.0)]["n_seeds"] == 0 and got[("replace", 1.0)]["verdict"] == "no detectable effect"


def test_conflicting_duplicates_raise():
    rows = _rows("a", "no-correction", 1.0, "none", 0.0, NOCORR)
    rows += _rows("b", "no-correction", 1.0, "none", 0.0, NOCORR + 0.1)
    rows += _rows("a", "correction", 1.0, "ot-real", math.inf, HELP)
    with pytest.raises(ValueError, match="different values"):
        verdict_table(_frame(rows), "fid")


def test_degenerate_units_are_excluded_and_counted():
    # seed 1 of the correction arm collapses at generation 10 (NaN, status degenerate) and stops
    rows = _rows("r", "no-correction", 1.0, "none", 0.0, NOCORR)
    corr = [r for r in _rows("r", "correction", 1.0, "ot-real", math.inf, HELP) if not (r[3] == 1 and r[9] == LAST)]
    corr = [r[:11] + ((math.nan, "degenerate") if (r[3] == 1 and r[9] == 10) else (r[11], r[12])) + r[13:] for r in corr]
    out = verdict_table(_frame(rows + corr), "fid").iloc[0]
    assert out["n_seeds"] == SEEDS - 1
    assert out["n_degenerate_correction"] == 1 and out["n_degenerate_no_correction"] == 0
    keep = np.arange(SEEDS) != 1
    assert out["mean_diff"] == pytest.approx((HELP - NOCORR)[keep].mean())
    assert "degenerate" in out["sentence"]
    # a unit marked degenerate only on another metric's row is excluded as well
    rows2 = rows + _rows("r", "correction", 1.0, "ot-real", math.inf, HELP)
    rows2 += _rows("r", "correction", 1.0, "ot-real", math.inf, [1.0] * SEEDS, metric="recall",
                   status=lambda s, g: "degenerate" if (s == 0 and g == LAST) else "ok")
    out2 = verdict_table(_frame(rows2), "fid").iloc[0]
    assert out2["n_seeds"] == SEEDS - 1 and out2["n_degenerate_correction"] == 1


def test_explicit_generation_and_too_few_seeds():
    rows = _rows("r", "no-correction", 1.0, "none", 0.0, NOCORR[:1])
    rows += _rows("r", "correction", 1.0, "ot-real", math.inf, HELP[:1])
    out = verdict_table(_frame(rows), "fid").iloc[0]
    assert out["n_seeds"] == 1 and math.isnan(out["ci_low"]) and out["verdict"] == "no detectable effect"
    assert "single seed" in out["sentence"]
    # generation 10: every unit has 0.5 there -> zero difference, zero spread
    full = _frame(_rows("r", "no-correction", 1.0, "none", 0.0, NOCORR)
                  + _rows("r", "correction", 1.0, "ot-real", math.inf, HELP))
    at10 = verdict_table(full, "fid", generation=10).iloc[0]
    assert at10["generation"] == 10 and at10["mean_diff"] == 0.0 and at10["p_value"] == 1.0
    assert at10["verdict"] == "no detectable effect"


def test_renderers(table):
    out = verdict_table(table, "fid")
    md = verdict_markdown(out)
    assert md.count("| augment |") == len(out)
    assert "helps" in md and "hurts" in md and "∞" in md
    page = verdict_html(out)
    assert page.count("<tr>") == len(out) + 1
    assert 'class="helps"' in page and 'class="hurts"' in page and 'class="null"' in page
    assert "kmeans(k=16,seed=0)" in page
    assert "No correction arm" in verdict_markdown(out.iloc[:0])


def test_several_tasks_are_kept_apart_and_labelled(table):
    other = table.assign(task="mnist", n_real=8000, value=table["value"] + 10.0)
    out = verdict_table(pd.concat([table, other]), "fid")
    assert len(out) == 6 and sorted(out["task"].unique()) == ["digits", "mnist"]
    assert out.groupby("task")["mean_no_correction"].first().to_dict() == pytest.approx(
        {"digits": NOCORR.mean(), "mnist": NOCORR.mean() + 10.0})
    md = verdict_markdown(out)
    assert "| task (n_real) |" in md and "mnist (8000)" in md and "digits (n_real = 1200)" in md
    assert "<th>task (n_real)</th>" in verdict_html(out)
