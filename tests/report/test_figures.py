"""Tests for scloop.report.figures on a small synthetic tidy frame with known values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from scloop.report.figures import ci95, final_table, metric_vs_generation, theory_overlay
from scloop.report.plots import save_figure

COLUMNS = [
    "run_id", "task", "arm", "seed", "lambda", "gamma", "n_real",
    "policy", "correction", "generation", "metric", "value",
]
CORRECTIONS = ["oracle-mixture", "knn"]
LAM = 0.5
GAMMAS = [0.0, 1.0, math.inf]
SEEDS = [0, 1, 2, 3]
G = 20
# Degenerate unit: knn, gamma = 1, seed 3 goes NaN from generation 12 on.
DEGENERATE = ("knn", 1.0, 3, 12)


def _value(metric: str, corr: str, gamma: float, seed: int, gen: int) -> float:
    shrink = 1.0 / (1.0 + gamma)  # 0 for gamma = inf
    c = 0.3 if corr == "knn" else 0.0
    noise = 0.02 * ((seed * 7 + gen * 3) % 5 - 2) + 0.01 * seed
    if metric == "mean_error":
        return (0.5 + 0.05 * seed) * (LAM / ((1 + LAM) * (1 + gamma))) ** gen + 1e-3 * (1 + seed)
    return 0.2 + c + shrink * 0.02 * gen + noise


def make_frame() -> pd.DataFrame:
    rows = []
    for corr in CORRECTIONS:
        for gamma in GAMMAS:
            for seed in SEEDS:
                for gen in range(G + 1):
                    for metric in ("w2-gaussian", "mean_error"):
                        v = _value(metric, corr, gamma, seed, gen)
                        d = DEGENERATE
                        if (corr, gamma, seed) == d[:3] and gen >= d[3]:
                            v = math.nan
                        rows.append((f"{corr}-{gamma}-{seed}", "gaussian", "correction", seed,
                                     LAM, gamma, 50, "accumulate", corr, gen, metric, v))
    # reference arms: real-only baseline and the uncorrected loop
    for arm, gamma in (("baseline", math.nan), ("no-correction", 0.0)):
        for seed in SEEDS:
            for gen in range(G + 1):
                for metric in ("w2-gaussian", "mean_error"):
                    v = _value(metric, "none", gamma if arm != "baseline" else 5.0, seed, gen)
                    rows.append((f"{arm}-{seed}", "gaussian", arm, seed, LAM, gamma, 50,
                                 "accumulate", "none", gen, metric, v))
    df = pd.DataFrame(rows, columns=COLUMNS)
    # a single +inf point must be dropped like NaN
    hit = (df.correction == "oracle-mixture") & (df.gamma == 0.0) & (df.seed == 2) & (
        df.generation == 7) & (df.metric == "w2-gaussian")
    df.loc[hit, "value"] = math.inf
    return df


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_frame()


def _expected(values: np.ndarray) -> tuple[float, float, float, int]:
    v = values[np.isfinite(values)]
    n = v.size
    m = v.mean()
    if n < 2:
        return m, math.nan, math.nan, n
    half = student_t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return m, m - half, m + half, n


def _assert_png_svg(paths, stem):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png == stem.with_suffix(".png") and svg == stem.with_suffix(".svg")
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text[:2000] and text.rstrip().endswith("</svg>")


def test_ci95_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=7)
    m, lo, hi = ci95(x)
    em, elo, ehi, _ = _expected(x)
    assert m == pytest.approx(em) and lo == pytest.approx(elo) and hi == pytest.approx(ehi)
    # non-finite entries are ignored
    m2, lo2, hi2 = ci95(list(x) + [math.nan, math.inf])
    assert (m2, lo2, hi2) == pytest.approx((m, lo, hi))
    # one unit: mean only; none: all NaN
    m1, lo1, hi1 = ci95([2.5])
    assert m1 == 2.5 and math.isnan(lo1) and math.isnan(hi1)
    assert all(math.isnan(v) for v in ci95([math.nan]))


def test_metric_vs_generation_files(df, tmp_path):
    stem = tmp_path / "w2_vs_gen"
    paths = save_figure(metric_vs_generation(df, "w2-gaussian", title="Gaussian toy"), stem)
    _assert_png_svg(paths, stem)


def test_metric_vs_generation_logy_single_panel_and_dotted_stem(df, tmp_path):
    one = df[df.correction.isin(["oracle-mixture", "none"])]
    stem = tmp_path / "sub" / "cov_lambda0.5"
    paths = save_figure(metric_vs_generation(one, "w2-gaussian", logy=True), stem)
    assert [p.name for p in paths] == ["cov_lambda0.5.png", "cov_lambda0.5.svg"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_metric_vs_generation_many_generations(tmp_path):
    gens = np.arange(501)
    rows = [
        ("r", "g", "correction", s, 0.5, g, 50, "acc", "oracle-mixture", int(k), "w2-gaussian",
         0.1 + 0.5 / (1 + g) * (1 - np.exp(-k / 80)) + 0.01 * s)
        for g in (0.0, 0.01, 0.1, 0.3, 1.0, 2.0, 5.0, math.inf)
        for s in range(3)
        for k in gens
    ]
    big = pd.DataFrame(rows, columns=COLUMNS)
    stem = tmp_path / "toy500"
    _assert_png_svg(save_figure(metric_vs_generation(big, "w2-gaussian"), stem), stem)


def test_unknown_metric_raises(df, tmp_path):
    with pytest.raises(ValueError, match="no rows for metric"):
        metric_vs_generation(df, "fid")


def test_theory_overlay(df, tmp_path):
    calls = []

    def predicted(lam, gamma, e0, n_generations):
        calls.append((lam, gamma, e0, n_generations))
        return e0 * (lam / ((1 + lam) * (1 + gamma))) ** np.arange(n_generations + 1)

    stem = tmp_path / "theory"
    _assert_png_svg(save_figure(theory_overlay(df, predicted=predicted), stem), stem)
    # one call per non-baseline curve (2 corrections x 3 gammas, no-correction in both panels)
    assert len(calls) == 2 * len(GAMMAS) + 2
    sub = df[(df.metric == "mean_error") & (df.generation == 0)]
    for lam, gamma, e0, n_gen in calls:
        assert lam == LAM and n_gen == G
        cand = sub[np.isclose(sub.gamma.fillna(-1), gamma)]
        means = {m for m in cand.groupby(["arm", "correction"]).value.mean()}
        assert any(e0 == pytest.approx(m) for m in means)


def test_theory_overlay_bad_length(df, tmp_path):
    with pytest.raises(ValueError, match="expected"):
        theory_overlay(df, predicted=lambda lam, g, e0, n: np.ones(n))


def _check_table(df, table, metric, generation):
    sub = df[df.metric == metric]
    assert len(table) == 2 * len(GAMMAS) + 2
    for row in table.itertuples(index=False):
        grp = sub[(sub.correction == row.correction) & (sub.arm == row.arm)
                  & np.isclose(sub["lambda"], row[1])]
        grp = grp[grp.gamma.isna()] if math.isnan(row.gamma) else grp[grp.gamma == row.gamma]
        at = grp[grp.generation == generation].sort_values("seed").value.to_numpy(float)
        m, lo, hi, n = _expected(at)
        assert row.generation == generation
        assert row.n == n
        assert row.mean == pytest.approx(m, rel=1e-12)
        assert row.ci_low == pytest.approx(lo, rel=1e-12)
        assert row.ci_high == pytest.approx(hi, rel=1e-12)
        assert (row.ci_high - row.ci_low) / 2 == pytest.approx(
            student_t.ppf(0.975, n - 1) * np.std(at[np.isfinite(at)], ddof=1) / math.sqrt(n))
        g0 = grp[grp.generation == 0].value.to_numpy(float)
        assert row.gen0_mean == pytest.approx(g0.mean(), rel=1e-12)


def test_final_table_last_generation(df):
    table = final_table(df, "w2-gaussian")
    assert list(table.columns[:4]) == ["correction", "lambda", "arm", "gamma"]
    for col in ("mean", "sd", "n", "ci_low", "ci_high", "gen0_mean"):
        assert col in table.columns
    _check_table(df, table, "w2-gaussian", G)
    # sorted by correction, lambda, arm, gamma
    keys = list(zip(table.correction, table.arm))
    assert keys == sorted(keys)
    corr = table[table.correction == "oracle-mixture"]
    assert list(corr.gamma) == [0.0, 1.0, math.inf]
    # the degenerate unit only has 3 finite seeds at the end
    deg = table[(table.correction == "knn") & (table.gamma == 1.0)].iloc[0]
    assert deg.n == 3


def test_final_table_explicit_generation_drops_inf(df):
    table = final_table(df, "w2-gaussian", generation=7)
    _check_table(df, table, "w2-gaussian", 7)
    row = table[(table.correction == "oracle-mixture") & (table.gamma == 0.0)].iloc[0]
    assert row.n == 3  # the +inf point was dropped
    sd = table.set_index(["correction", "gamma"]).loc[("knn", math.inf), "sd"]
    vals = df[(df.metric == "w2-gaussian") & (df.correction == "knn") & (df.gamma == math.inf)
              & (df.generation == 7)].value.to_numpy()
    assert sd == pytest.approx(np.std(vals, ddof=1))


def test_two_seed_band_is_the_seed_range_not_a_t_interval(df, tmp_path, monkeypatch):
    """With 2 seeds the t band (mean +- 12.7 sd/sqrt 2) dwarfs the data; figures draw min..max."""
    import matplotlib.axes

    two = df[df.seed.isin([0, 1]) & df.correction.isin(["oracle-mixture", "none"])]
    drawn = []
    real_fill = matplotlib.axes.Axes.fill_between

    def spy(self, x, lo, hi, *a, **k):
        drawn.append((np.asarray(lo, float), np.asarray(hi, float)))
        return real_fill(self, x, lo, hi, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", spy)
    metric_vs_generation(two, "w2-gaussian")
    vals = two[two.metric == "w2-gaussian"].value
    vals = vals[np.isfinite(vals)]
    assert drawn
    for lo, hi in drawn:
        ok = np.isfinite(lo) & np.isfinite(hi)
        assert ok.any()
        assert lo[ok].min() >= vals.min() - 1e-12 and hi[ok].max() <= vals.max() + 1e-12

    drawn.clear()  # four seeds: the t-based band of the mean, which can reach past the data
    four = df[df.correction.isin(["oracle-mixture", "none"])]
    metric_vs_generation(four, "w2-gaussian")
    per = four[(four.metric == "w2-gaussian") & (four.arm == "baseline")]
    g = per.groupby("generation").value
    half = student_t.ppf(0.975, 3) * g.std() / 2.0
    expect_hi = (g.mean() + half).to_numpy()
    assert any(np.allclose(hi, expect_hi) for _, hi in drawn)


# --------------------------------------------------------------------------- notebook safety
FAKE_BACKEND = "scloop_test_inline_backend"


def _fake_inline_backend() -> str:
    """A stand-in for ``matplotlib_inline.backend_inline`` (a ``module://`` backend)."""
    import sys
    import types

    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if FAKE_BACKEND not in sys.modules:
        mod = types.ModuleType(FAKE_BACKEND)

        class FigureCanvas(FigureCanvasAgg):
            pass

        mod.FigureCanvas = FigureCanvas
        mod.FigureManager = FigureManagerBase
        mod.show = lambda *a, **k: None
        sys.modules[FAKE_BACKEND] = mod
    return f"module://{FAKE_BACKEND}"


def test_plotting_leaves_the_backend_and_rcparams_alone(df, tmp_path):
    """In a notebook the backend is the inline one: plotting must not switch it (the old code
    called ``matplotlib.use("Agg")``) nor leave its style in the global rcParams."""
    import matplotlib
    from matplotlib.figure import Figure

    old = matplotlib.get_backend()
    try:
        matplotlib.use(_fake_inline_backend())
        backend = matplotlib.get_backend()
        before = dict(matplotlib.rcParams)
        fig = metric_vs_generation(df, "w2-gaussian", title="t")
        fig2 = theory_overlay(df, predicted=lambda lam, g, e0, n: e0 * 0.5 ** np.arange(n + 1))
        paths = save_figure(fig, tmp_path / "nb")
        assert matplotlib.get_backend() == backend
        assert dict(matplotlib.rcParams) == before
        assert isinstance(fig, Figure) and isinstance(fig2, Figure)
        _assert_png_svg(paths, tmp_path / "nb")
    finally:
        matplotlib.use(old)


def test_figures_need_no_pyplot(tmp_path):
    """A fresh interpreter: drawing and saving (PNG and SVG) never imports pyplot, so nothing is
    registered with a pyplot backend (no figure leaks, no double display in a notebook)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_figures import make_frame\n"
        "from scloop.report.figures import metric_vs_generation\n"
        "from scloop.report.plots import save_figure\n"
        "fig = metric_vs_generation(make_frame(), 'w2-gaussian')\n"
        "paths = save_figure(fig, Path(sys.argv[1]) / 'x')\n"
        "assert [p.suffix for p in paths] == ['.png', '.svg'] and all(p.stat().st_size > 1000 for p in paths)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print(type(fig).__module__, type(fig).__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "matplotlib.figure Figure"


def test_ax_draws_into_the_given_axes(df):
    from matplotlib.figure import Figure

    one = df[df.correction.isin(["oracle-mixture", "none"])]  # one (correction, lambda) panel
    mine = Figure()
    ax = mine.subplots()
    got = metric_vs_generation(one, "w2-gaussian", ax=ax, title="mine")
    assert got is mine and mine.axes == [ax]
    assert len(ax.get_lines()) == len(GAMMAS) + 2  # 3 gammas, baseline, no-correction
    assert ax.get_ylabel() == "W₂ to target"  # the metric plugin's label
    assert ax.get_title() == "mine" and ax.get_legend() is not None
    assert not mine.legends  # the legend sits in the caller's Axes, not outside their figure

    # two panels: two Axes, or a clear error for one
    with pytest.raises(ValueError, match="2 panel"):
        metric_vs_generation(df, "w2-gaussian", ax=ax)
    other = Figure()
    axes = other.subplots(1, 2)
    assert metric_vs_generation(df, "w2-gaussian", ax=axes) is other
    assert all(a.get_lines() for a in axes)
    sub = Figure().subfigures(1, 2)[1]  # inside a SubFigure the root Figure is returned
    ax_s = sub.subplots()
    assert metric_vs_generation(one, "w2-gaussian", ax=ax_s) is sub.get_figure(root=True)
    f3 = Figure()
    assert theory_overlay(one, ax=f3.subplots(), predicted=lambda lam, g, e0, n: e0 * 0.5 ** np.arange(n + 1)) is f3


def test_axis_label_comes_from_the_metric_plugin(df):
    from scloop.core.registry import METRICS
    from scloop.plugins import register_metric

    @register_metric("t-fig-score", higher_is_better=True, label="Test score", unit="bits")
    def make():  # pragma: no cover - never built
        raise AssertionError

    try:
        renamed = df[df.metric == "w2-gaussian"].assign(metric="t-fig-score")
        fig = metric_vs_generation(renamed, "t-fig-score")
        assert fig.axes[0].get_ylabel() == "Test score (bits)"
        # a name no plugin declares is labelled by itself
        fig = metric_vs_generation(renamed.assign(metric="t-undeclared"), "t-undeclared")
        assert fig.axes[0].get_ylabel() == "t-undeclared"
    finally:
        METRICS.unregister("t-fig-score")
