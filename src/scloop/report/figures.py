"""Paper-style figures and summary tables from a tidy result frame.

Input is the tidy frame produced by the run store, with (at least) the columns

``run_id, task, arm, seed, lambda, gamma, n_real, policy, correction, generation, metric, value``

where ``arm`` is one of ``baseline`` / ``no-correction`` / ``correction``.  The statistical
unit is the seed: at every generation a curve (one ``(arm, gamma)`` within one
``(correction, lambda)`` panel) is summarised by the mean over seeds and a t-based 95%
confidence interval of that mean, ``mean +- t_{0.975, S-1} * sd / sqrt(S)`` (no interval for
``S = 1``).  Non-finite values are dropped point by point, so a unit that went degenerate
simply stops contributing from the generation on which it broke.

The frame is expected to hold one experiment (one task, one ``n_real``, one policy); if
several rows share ``(correction, lambda, arm, gamma, seed, generation)`` they are averaged
per seed first and a :class:`UserWarning` is issued -- filter the frame beforehand to avoid
mixing conditions.

The plotting functions draw into the matplotlib ``Axes`` given as ``ax=`` or into a new
:class:`matplotlib.figure.Figure` (not a pyplot figure: nothing is registered with pyplot, the
backend and the global ``rcParams`` are left alone -- the paper style is applied inside a
:func:`matplotlib.rc_context`), and return the ``Figure``.  In a notebook the returned figure
displays itself; :func:`scloop.report.plots.save_figure` writes it as PNG and SVG.  Axis labels
come from the metric plugin's ``label`` and ``unit`` (:func:`scloop.report.metric_facts`).

matplotlib and scipy are imported lazily inside the functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "axis_label",
    "ci95",
    "final_table",
    "metric_vs_generation",
    "theory_overlay",
]


def axis_label(metric: str) -> str:
    """The y-axis label of ``metric``: its plugin's ``label (unit)``, else the name itself."""
    try:
        from scloop.report import metric_facts

        return metric_facts(metric).axis_label() or str(metric)
    except Exception:  # noqa: BLE001 - a label is never worth an exception
        return str(metric)

_PANEL_KEYS = ["correction", "lambda"]
_CURVE_KEYS = ["arm", "gamma"]
_GROUP_KEYS = _PANEL_KEYS + _CURVE_KEYS
_REQUIRED = ["arm", "seed", "lambda", "gamma", "correction", "generation", "metric", "value"]
_ARM_RANK = {"baseline": 0, "no-correction": 1, "correction": 2}
_ARM_STYLE = {
    "baseline": {"color": "black", "linestyle": "--", "label": "baseline"},
    "no-correction": {"color": "#8c8c8c", "linestyle": "-", "label": "no correction"},
}
# Sequential red -> magenta -> purple map for the correction strength (paper-style).
_GAMMA_COLORS = ["#e31a1c", "#f0027f", "#c51b8a", "#8e24aa", "#5e35b1", "#311b92"]

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9.5,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.color": "#b0b0b0",
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "svg.hashsalt": "scloop",
    "savefig.dpi": 150,
}


# --------------------------------------------------------------------------- statistics


def _t975(dof: np.ndarray | float) -> np.ndarray:
    # scipy.special's inverse Student-t is what scipy.stats.t.ppf calls (same values); importing
    # scipy.stats costs ~0.6 s more, a third of a small run's wall time
    from scipy.special import stdtrit

    return np.asarray(stdtrit(dof, 0.975), dtype=float)


def ci95(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean and t-based 95% confidence interval of the mean: ``(mean, low, high)``.

    Non-finite entries are ignored.  With no finite value all three are NaN; with a single
    value the bounds are NaN (the interval is undefined for one unit).
    """
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    v = v.ravel()
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if n == 1:
        return (mean, math.nan, math.nan)
    half = float(_t975(n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return (mean, mean - half, mean + half)


def _per_seed(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric, one value per (panel, curve, seed, generation); inf -> NaN."""
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"result frame lacks columns {missing}")
    sub = df.loc[df["metric"] == metric, _GROUP_KEYS + ["seed", "generation", "value"]].copy()
    if sub.empty:
        available = sorted(map(str, pd.unique(df["metric"])))
        raise ValueError(f"no rows for metric {metric!r}; available: {available}")
    sub["value"] = pd.to_numeric(sub["value"], errors="coerce").astype(float)
    sub.loc[~np.isfinite(sub["value"].to_numpy()), "value"] = np.nan
    sub["lambda"] = sub["lambda"].astype(float)
    sub["gamma"] = sub["gamma"].astype(float)
    sub["generation"] = sub["generation"].astype(int)
    keys = _GROUP_KEYS + ["seed", "generation"]
    if sub.duplicated(keys).any():
        warnings.warn(
            f"metric {metric!r}: several rows per (correction, lambda, arm, gamma, seed, "
            "generation); averaging them per seed. Filter the frame by task / n_real / policy "
            "to avoid mixing conditions.",
            UserWarning,
            stacklevel=3,
        )
        sub = sub.groupby(keys, dropna=False, sort=False, as_index=False)["value"].mean()
    return sub


def _summarize(per_seed: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Seed mean, sd, n (finite values) and 95% CI per group of ``keys``."""
    g = per_seed.groupby(list(keys), dropna=False, sort=True)["value"]
    out = g.agg(mean="mean", sd="std", n="count", seed_min="min", seed_max="max").reset_index()
    n = out["n"].to_numpy(dtype=float)
    sd = out["sd"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n >= 2, _t975(np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    out["n"] = out["n"].astype(int)
    return out


# With two seeds the t-based 95% band of the mean is mean ± 12.7 sd/sqrt(2): it dwarfs the data
# (and crosses zero for FID-like metrics), so figures show the seed range instead below this.
_MIN_SEEDS_FOR_CI = 3


def _band_kind(summ: pd.DataFrame) -> str:
    """"ci" (t-based 95% band of the seed mean) or "range" (min..max over seeds)."""
    n = summ["n"].to_numpy()
    return "ci" if n.size and int(n.max()) >= _MIN_SEEDS_FOR_CI else "range"


def _band_label(kind: str, summ: pd.DataFrame) -> str:
    if kind == "ci":
        return "band: 95% CI of the seed mean"
    return f"band: range over {int(summ['n'].max()) if len(summ) else 0} seeds"


# --------------------------------------------------------------------------- helpers


def _fmt_num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:g}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _contains(values: Iterable[Any], x: Any) -> bool:
    return any(_same(v, x) for v in values)


def _num_key(x: float) -> float:
    return -math.inf if (x is None or math.isnan(x)) else x


def _curve_key(arm: str, gamma: float) -> tuple:
    return (_ARM_RANK.get(arm, 3), arm, _num_key(gamma))


def _panel_key(panel: tuple[str, float]) -> tuple:
    c, lam = panel
    return (str(c), _num_key(lam))


def _assign_panels(per_seed: pd.DataFrame) -> tuple[list[tuple], dict[tuple, list[tuple]]]:
    """Panels and the curves drawn in each.

    Panels are the (correction, lambda) combinations of the ``correction`` arm (of all rows
    if there is no correction arm).  A reference curve (baseline / no-correction) is drawn in
    a panel when its correction matches it (or is not a panel correction at all, e.g.
    ``"none"``) and its lambda matches it (or is not a panel lambda at all).
    """
    main = per_seed[per_seed["arm"] == "correction"]
    if main.empty:
        main = per_seed
    panels = sorted(
        {(c, float(lam)) for c, lam in main[_PANEL_KEYS].drop_duplicates().itertuples(index=False)},
        key=_panel_key,
    )
    panel_corr = [p[0] for p in panels]
    panel_lam = [p[1] for p in panels]
    curves = per_seed[_GROUP_KEYS].drop_duplicates()
    members: dict[tuple, list[tuple]] = {p: [] for p in panels}
    main_is_all = main is per_seed
    for c, lam, arm, gamma in curves.itertuples(index=False):
        lam, gamma = float(lam), float(gamma)
        if arm == "correction" or main_is_all:
            key = next((p for p in panels if _same(p[0], c) and _same(p[1], lam)), None)
            if key is not None:
                members[key].append((c, lam, arm, gamma))
            continue
        for p in panels:
            c_ok = _same(c, p[0]) or not _contains(panel_corr, c)
            l_ok = _same(lam, p[1]) or not _contains(panel_lam, lam)
            if c_ok and l_ok:
                members[p].append((c, lam, arm, gamma))
    for p in panels:
        members[p].sort(key=lambda t: _curve_key(t[2], t[3]))
    return panels, members


def _norm_key(key: tuple) -> tuple:
    return tuple("<nan>" if isinstance(k, float) and math.isnan(k) else k for k in key)


def _curve_frames(summ: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Per-curve summary frames (sorted by generation), keyed by normalised group key."""
    out = {}
    for key, sub in summ.groupby(_GROUP_KEYS, dropna=False, sort=False):
        c, lam, arm, gamma = key
        out[_norm_key((c, float(lam), arm, float(gamma)))] = sub.sort_values("generation")
    return out


def _gamma_colors(per_seed: pd.DataFrame) -> dict[float, Any]:
    from matplotlib.colors import LinearSegmentedColormap

    gammas = sorted(
        {float(g) for g in per_seed.loc[per_seed["arm"] == "correction", "gamma"]},
        key=_num_key,
    )
    cmap = LinearSegmentedColormap.from_list("scloop_gamma", _GAMMA_COLORS)
    k = len(gammas)
    return {g: cmap(i / (k - 1) if k > 1 else 0.0) for i, g in enumerate(gammas)}


def _curve_style(arm: str, gamma: float, colors: dict[float, Any], multi_gamma: bool) -> dict:
    if arm == "correction":
        color = next((v for g, v in colors.items() if _same(g, gamma)), "#d7191c")
        return {"color": color, "linestyle": "-", "label": f"γ = {_fmt_num(gamma)}"}
    style = dict(_ARM_STYLE.get(arm, {"color": "#1f77b4", "linestyle": ":", "label": arm}))
    if multi_gamma and not math.isnan(gamma):
        style["label"] = f"{style['label']} (γ = {_fmt_num(gamma)})"
    return style


def _linewidth(max_gen: int) -> float:
    if max_gen <= 60:
        return 1.6
    if max_gen <= 200:
        return 1.1
    return 0.8


def _root_figure(ax):
    """The top-level Figure an Axes belongs to (through any SubFigure)."""
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10 has no ``root``
        fig = ax.figure
        while getattr(fig, "figure", fig) is not fig and fig is not None:
            fig = fig.figure
        return fig


def _given_axes(ax, n_panels: int) -> list:
    """The user's Axes, one per panel: a single Axes (one panel) or a sequence of them."""
    from matplotlib.axes import Axes

    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if not all(isinstance(a, Axes) for a in axes):
        raise TypeError(f"ax: got {type(ax).__name__}; allowed: a matplotlib Axes or a sequence of Axes")
    if len(axes) != n_panels:
        raise ValueError(
            f"ax: {len(axes)} Axes given for {n_panels} panel(s) (one per (correction, lambda)); pass "
            f"{n_panels} Axes or filter the frame to one correction and lambda"
        )
    return axes


def _grid(n_panels: int, panel_w: float = 4.0, panel_h: float = 3.0):
    """A new (not pyplot-managed) Figure with ``n_panels`` shared-axis panels."""
    from matplotlib.figure import Figure

    ncols = 1 if n_panels == 1 else (2 if n_panels in (2, 4) else 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_w * ncols, panel_h * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.remove()
    used = flat[:n_panels]
    for i, ax in enumerate(used):
        row, col = divmod(i, ncols)
        below = i + ncols
        is_bottom = below >= n_panels
        if is_bottom:
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("Generation")
        if col == 0:
            ax.yaxis.set_tick_params(labelleft=True)
    return fig, used, ncols


def _gen_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=6, integer=True, steps=[1, 2, 2.5, 5, 10])


def _draw_curve(ax, s: pd.DataFrame, style: dict, lw: float, band: str | None = "ci"):
    x = s["generation"].to_numpy()
    y = s["mean"].to_numpy(dtype=float)
    (line,) = ax.plot(x, y, color=style["color"], linestyle=style["linestyle"], linewidth=lw,
                      label=style["label"], solid_capstyle="butt")
    if band:
        lo_col, hi_col = ("ci_low", "ci_high") if band == "ci" else ("seed_min", "seed_max")
        lo = s[lo_col].to_numpy(dtype=float)
        hi = s[hi_col].to_numpy(dtype=float)
        if band == "range":  # a single seed has no spread to show
            lo = np.where(s["n"].to_numpy() >= 2, lo, np.nan)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x, lo, hi, where=ok, color=style["color"], alpha=0.16,
                            linewidth=0, interpolate=False)
    return line


def _add_legend(fig, entries: list[tuple[tuple, str, Any]], title: str | None = None, ax=None) -> None:
    seen: dict[str, tuple[tuple, Any]] = {}
    for key, label, handle in entries:
        if label not in seen:
            seen[label] = (key, handle)
    ordered = sorted(seen.items(), key=lambda kv: kv[1][0])
    if not ordered:
        return
    if ax is not None:  # the caller's Axes: a figure-level legend could cover their other panels
        ax.legend([h for _, (_, h) in ordered], [lab for lab, _ in ordered], title=title, fontsize="small",
                  title_fontsize="small")
        return
    # Anchored just outside the right edge of the figure (kept by bbox_inches="tight"), so
    # it never covers data nor collides with the suptitle, however many entries it has.
    fig.legend(
        [h for _, (_, h) in ordered],
        [lab for lab, _ in ordered],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        bbox_transform=fig.transFigure,
        title=title,
        alignment="left",
        handlelength=2.2,
    )


def _panel_title(panel: tuple, show_correction: bool) -> str:
    c, lam = panel
    lam_s = f"λ = {_fmt_num(lam)}"
    return f"{c}, {lam_s}" if show_correction else lam_s


# --------------------------------------------------------------------------- public API


def _canvas(n_panels: int, ax):
    """(figure, one Axes per panel, columns, whether the figure is ours).  A given ``ax`` is
    drawn into as it is; a new Figure gets the shared-axis panel grid."""
    if ax is None:
        fig, axes, ncols = _grid(n_panels)
        return fig, axes, ncols, True
    axes = _given_axes(ax, n_panels)
    for a in axes:
        a.set_xlabel("Generation")
    return _root_figure(axes[0]), axes, 1, False


def _finish(fig, axes, own: bool, entries, legend_title: str, title: str | None) -> None:
    """Legend (outside the right edge of our figure; inside the caller's last Axes) and title
    (suptitle of our figure; the title of a single given Axes)."""
    _add_legend(fig, entries, title=legend_title, ax=None if own else axes[-1])
    if not title:
        return
    if own or len(axes) > 1:
        fig.suptitle(title)
    else:
        axes[0].set_title(title)


def metric_vs_generation(
    df: pd.DataFrame,
    metric: str,
    *,
    ax=None,
    title: str | None = None,
    logy: bool = False,
):
    """Plot ``metric`` vs generation; one panel per (correction, lambda), one line per curve.

    Each line is the seed mean of one ``(arm, gamma)`` with a t-based 95% band of the mean
    when at least 3 seeds are present, else the range over the seeds (no band where only one
    seed is finite); the legend says which.  Correction arms are coloured red (smallest
    gamma) to purple (largest gamma, ``inf`` shown as "∞"); the baseline arm is black dashed
    and the no-correction arm grey.  The y label is the metric plugin's ``label (unit)``.

    Parameters
    ----------
    df : tidy frame (module docstring) holding rows of ``metric``.
    metric : the metric to draw (ValueError when it has no rows).
    ax : ``None`` (a new :class:`~matplotlib.figure.Figure`, panels in a grid, legend outside
        the right edge), one matplotlib ``Axes`` (the frame must hold one panel) or a sequence
        of one ``Axes`` per panel (in the order (correction, lambda) sorted); drawn into as
        they are, legend in the last one.
    title : figure title (the title of a single given ``Axes``).
    logy : log-scale y axis.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure` drawn into (the root figure of ``ax`` when given).
    Nothing is written: :func:`scloop.report.plots.save_figure` writes PNG and SVG.
    """
    import matplotlib

    per_seed = _per_seed(df, metric)
    summ = _summarize(per_seed, _GROUP_KEYS + ["generation"])
    panels, members = _assign_panels(per_seed)
    colors = _gamma_colors(per_seed)
    frames = _curve_frames(summ)
    band = _band_kind(summ)
    lw = _linewidth(int(per_seed["generation"].max()))
    show_corr = len({p[0] for p in panels}) > 1 or any(
        str(p[0]) not in ("none", "nan") for p in panels
    )
    ylabel = axis_label(metric)

    # rc_context: the paper style for what is created here, restored afterwards
    with matplotlib.rc_context(_RC):
        fig, axes, ncols, own = _canvas(len(panels), ax)
        entries: list[tuple[tuple, str, Any]] = []
        for i, (a, panel) in enumerate(zip(axes, panels)):
            curves = members[panel]
            for c, lam, arm, gamma in curves:
                sel = frames.get(_norm_key((c, lam, arm, gamma)))
                if sel is None:
                    continue
                sel = sel[np.isfinite(sel["mean"].to_numpy(dtype=float))]
                if sel.empty:
                    continue
                multi = sum(1 for t in curves if t[2] == arm) > 1
                style = _curve_style(arm, gamma, colors, multi)
                line = _draw_curve(a, sel, style, lw, band)
                entries.append((_curve_key(arm, gamma), style["label"], line))
            if len(panels) > 1 or show_corr:
                a.set_title(_panel_title(panel, show_corr))
            if i % ncols == 0:
                a.set_ylabel(ylabel)
            a.xaxis.set_major_locator(_gen_locator())
            a.margins(x=0.01)
            if logy:
                a.set_yscale("log")
        _finish(fig, axes, own, entries, f"Correction strength\n({_band_label(band, summ)})", title)
    return fig


def theory_overlay(
    df: pd.DataFrame,
    *,
    predicted: Callable[[float, float, float, int], np.ndarray],
    ax=None,
    title: str | None = "Mean error vs theory λ/((1+λ)(1+γ))",
):
    """Measured ``mean_error`` vs the theory prediction, log-scale y.

    One panel per lambda (per (correction, lambda) if several corrections are present); per
    gamma the seed mean (solid, with 95% band) and ``predicted(lam, gamma, e0, G)`` (dashed,
    same colour), where ``e0`` is the curve's seed-mean ``mean_error`` at generation 0 and
    ``G`` its last generation; ``predicted`` must return ``G + 1`` values for generations
    ``0..G`` (e.g. ``e0 (λ/((1+λ)(1+γ)))^g``, the Gaussian mean contraction of
    ``docs/paper.md``).  The baseline arm has no theory curve and is not drawn; a
    no-correction arm is drawn in grey with the prediction for its gamma (0 if unset).

    ``ax`` and the returned :class:`~matplotlib.figure.Figure` as in
    :func:`metric_vs_generation`; nothing is written.
    """
    import matplotlib
    from matplotlib.lines import Line2D

    per_seed = _per_seed(df, "mean_error")
    per_seed = per_seed[per_seed["arm"] != "baseline"]
    if per_seed.empty:
        raise ValueError("theory_overlay: no non-baseline mean_error rows")
    summ = _summarize(per_seed, _GROUP_KEYS + ["generation"])
    panels, members = _assign_panels(per_seed)
    colors = _gamma_colors(per_seed)
    frames = _curve_frames(summ)
    band = _band_kind(summ)
    lw = _linewidth(int(per_seed["generation"].max()))
    show_corr = len({p[0] for p in panels}) > 1
    ylabel = axis_label("mean_error")

    with matplotlib.rc_context(_RC):
        fig, axes, ncols, own = _canvas(len(panels), ax)
        entries: list[tuple[tuple, str, Any]] = []
        measured_min, theory_min = math.inf, math.inf  # over all (y-shared) panels
        for i, (a, panel) in enumerate(zip(axes, panels)):
            for c, lam, arm, gamma in members[panel]:
                sel = frames.get(_norm_key((c, lam, arm, gamma)))
                if sel is None or sel.empty:
                    continue
                n_gen = int(sel["generation"].max())
                style = _curve_style(arm, gamma, colors, multi_gamma=False)
                finite = sel[np.isfinite(sel["mean"].to_numpy(dtype=float))]
                if not finite.empty:
                    pos = finite["mean"].to_numpy(dtype=float)
                    pos = pos[pos > 0]
                    if pos.size:
                        measured_min = min(measured_min, float(pos.min()))
                    line = _draw_curve(a, finite, style, lw, band)
                    entries.append((_curve_key(arm, gamma), style["label"], line))
                g0 = sel.loc[sel["generation"] == 0, "mean"]
                e0 = float(g0.iloc[0]) if len(g0) else math.nan
                if not math.isfinite(e0):
                    continue
                g_theory = 0.0 if math.isnan(gamma) else gamma
                pred = np.asarray(predicted(lam, g_theory, e0, n_gen), dtype=float).ravel()
                if pred.shape != (n_gen + 1,):
                    raise ValueError(
                        f"predicted(...) returned shape {pred.shape}, expected ({n_gen + 1},)"
                    )
                with np.errstate(invalid="ignore"):
                    pred = np.where(pred > 0, pred, np.nan)
                if np.isfinite(pred).any():
                    theory_min = min(theory_min, float(np.nanmin(pred)))
                a.plot(np.arange(n_gen + 1), pred, color=style["color"], linestyle="--",
                       linewidth=lw, alpha=0.95)
            a.set_yscale("log")
            a.set_title(_panel_title(panel, show_corr))
            if i % ncols == 0:
                a.set_ylabel(ylabel)
            a.xaxis.set_major_locator(_gen_locator())
            a.margins(x=0.01)
        # Keep the measured curves readable: a theory line that decays far below the data
        # (e.g. towards 0 for large gamma) is cut three decades under the lowest seed mean.
        if math.isfinite(measured_min) and theory_min < measured_min * 1e-3:
            for a in (axes if not own else axes[:1]):  # our panels share y; the caller's may not
                a.set_ylim(bottom=measured_min * 1e-3)
        style_handles = [
            ((9, "", 0.0), "measured (seed mean; " + _band_label(band, summ) + ")",
             Line2D([], [], color="black", linestyle="-", linewidth=1.4)),
            ((9, "", 1.0), "theory", Line2D([], [], color="black", linestyle="--", linewidth=1.4)),
        ]
        _finish(fig, axes, own, entries + style_handles, "Correction strength", title)
    return fig


def final_table(df: pd.DataFrame, metric: str, generation: int | None = None) -> pd.DataFrame:
    """Seed statistics of ``metric`` per (correction, lambda, arm, gamma).

    At ``generation`` (default: the last generation present for that group) the columns are
    ``generation, mean, sd, n, ci_low, ci_high`` (``n`` = number of seeds with a finite
    value; t-based 95% CI of the mean, NaN for ``n < 2``), plus ``gen0_mean``, the seed mean
    at generation 0.  Sorted by correction, lambda, arm, gamma.
    """
    per_seed = _per_seed(df, metric)
    summ = _summarize(per_seed, _GROUP_KEYS + ["generation"])
    if generation is None:
        last = summ.groupby(_GROUP_KEYS, dropna=False)["generation"].transform("max")
        at = summ[summ["generation"] == last]
    else:
        at = summ[summ["generation"] == int(generation)]
        groups = summ[_GROUP_KEYS].drop_duplicates()
        at = groups.merge(at, on=_GROUP_KEYS, how="left")
        at["generation"] = int(generation)
        at["n"] = at["n"].fillna(0).astype(int)
    gen0 = summ.loc[summ["generation"] == 0, _GROUP_KEYS + ["mean"]].rename(
        columns={"mean": "gen0_mean"}
    )
    out = at.merge(gen0, on=_GROUP_KEYS, how="left")
    cols = _GROUP_KEYS + ["generation", "mean", "sd", "n", "ci_low", "ci_high", "gen0_mean"]
    out = out[cols].sort_values(_GROUP_KEYS, na_position="last", kind="mergesort")
    return out.reset_index(drop=True)
