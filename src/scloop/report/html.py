"""A static HTML report of a sweep or a run: ``<dir>/report/index.html`` plus its PNG/SVG figures.

Sections (each only when the data has it):

1. runs and their states (failed runs with their error);
2. every metric vs generation, per facet (the run-level parameters that vary across runs, e.g.
   policy or n), one panel per (correction, lambda), seed mean with a t-based 95% band (the seed
   range below 3 seeds);
   for Gaussian tasks with the ``augment`` policy the closed-form mean-error prediction overlaid;
3. (lambda, gamma) phase diagrams of the final-generation seed mean and of the first generation at
   which the seed mean crosses a collapse threshold (default: twice -- or, for metrics where
   higher is better, half -- the cell's generation-0 value), with the cells where Theorem 4.3's
   factor rho(lambda)/(1+gamma) < 1 outlined for Gaussian tasks (``docs/paper.md``);
4. verdict tables: each corrector against no-correction at the last generation (paired by seed),
   also written as ``report/verdicts.md`` and ``report/verdicts.csv``;
5. image grids and motion animations kept by the runs;
6. compute per stage (sample / correct / train / eval seconds per generation);
7. provenance (``provenance.json`` of the sweep and of each run: versions, commit, device, times),
   when the directories hold it;
8. the resolved config of every run (and the sweep file).

Which way a metric is good comes from its plugin (``register_metric(..., higher_is_better=...)``);
the plugins listed in the runs' configs are loaded first.  A metric of unknown orientation gets
no verdict and no collapse threshold, and the report says so next to it.

Everything is written inside the directory; the page uses no script or style from the network
and opens from disk.  A few lines of inline script count images that fail to load and show a
warning (``body[data-broken-images]``, also used by the browser test).
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from scloop.core.registry import ConfigError

SKIP_PREFIXES = ("correction_",)
STAGES = ("sample_seconds", "correct_seconds", "train_seconds", "eval_seconds")
MAX_FACETS = 16


_log = logging.getLogger("scloop")


def orientation(metric: str) -> bool | None:
    """Whether higher is better for ``metric``, as its plugin declared it
    (:func:`scloop.report.metric_facts`); None: unknown -- no verdict, no collapse threshold."""
    from scloop.report import metric_facts

    return metric_facts(metric).higher_is_better


@dataclass
class _Source:
    title: str
    description: str
    df: Any  # tidy pandas DataFrame
    runs: list[dict[str, Any]]  # run_id, params, config, state, error, seconds
    run_dirs: dict[str, Path]
    sweep_yaml: str | None


def _load(path: Path) -> _Source:
    import yaml

    from scloop.store import RunStore, SweepStore, is_sweep_dir

    if is_sweep_dir(path):
        s = SweepStore(path)
        try:
            df = s.table()
            runs = s.run_rows()
        finally:
            s.close()
        sweep_yaml = (path / "sweep.yaml").read_text() if (path / "sweep.yaml").exists() else None
        meta = yaml.safe_load(sweep_yaml) if sweep_yaml else {}
        return _Source(f"Sweep {meta.get('name', path.name)}", meta.get("description", "") or "", df, runs,
                       {r["run_id"]: path / "runs" / r["run_id"] for r in runs}, sweep_yaml)
    if (path / "results.sqlite").exists():
        r = RunStore(path)
        try:
            df = r.table()
            cfg = r.config_text()
            st = r.status()
        finally:
            r.close()
        run = {"run_id": path.name, "params": {}, "config": cfg, "state": st.get("state", "?"),
               "error": st.get("error"), "seconds": None, "attempts": None}
        return _Source(f"Run {path.name}", "", df, [run], {path.name: path}, None)
    raise ConfigError(f"report: {str(path)!r} is neither a sweep directory (with sweep.sqlite) nor a run "
                      "directory (with results.sqlite)")


# ---------------------------------------------------------------------- facets
def _facet_keys(src: _Source) -> list[str]:
    """Run-level parameters that vary across runs (lambda, gamma, correction are drawn inside
    the figures, so they are not facets)."""
    df = src.df
    keys: list[str] = []
    for k in dict.fromkeys(k for r in src.runs for k in r["params"]):
        col = k if k in df.columns else None
        if col is None or k in ("lambda", "gamma", "correction", "arms", "seeds", "seed"):
            continue
        if df[col].astype(str).nunique() > 1:
            keys.append(col)
    for col in ("task", "policy", "n_real"):
        if col not in keys and col in df.columns and df[col].astype(str).nunique() > 1:
            keys.append(col)
    return keys


def _facets(df, keys: list[str]) -> list[tuple[str, Any]]:
    # Runs that differ only in lambda/gamma each carry the same baseline unit (same generation 0,
    # real data only): keep one copy of rows that coincide on everything but the run id.
    ident = [c for c in ("task", "policy", "n_real", "arm", "correction", "lambda", "gamma", "seed", "generation",
                         "metric") if c in df.columns] + [k for k in keys if k not in ("task", "policy", "n_real")]
    df = df.drop_duplicates(subset=ident, keep="first")
    if not keys:
        return [("", df)]
    out = []
    for vals, sub in df.groupby(keys, sort=False, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        label = ", ".join(f"{k} = {v}" for k, v in zip(keys, vals))
        out.append((label, sub))
    return out


def _slug(text: str) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:60] or "all"


# ---------------------------------------------------------------------- phase diagrams
def _curves(df, metric: str):
    """Seed-mean curve per (correction, lambda, gamma) of arm ``correction``: dict -> (gens, means)."""
    sub = df[(df["metric"] == metric) & (df["arm"] == "correction")]
    if sub.empty:
        return {}
    g = sub.groupby(["correction", "lambda", "gamma", "generation"], dropna=False)["value"].mean()
    out: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for (c, lam, gam), s in g.groupby(level=[0, 1, 2], sort=True):
        s = s.droplevel([0, 1, 2]).sort_index()
        out[(c, float(lam), float(gam))] = (s.index.to_numpy(), s.to_numpy(dtype=float))
    return out


def first_crossing(gens: np.ndarray, means: np.ndarray, threshold: float, higher_better: bool) -> float:
    """First generation whose seed mean is past ``threshold`` (above it for lower-is-better
    metrics, below it for higher-is-better ones; a non-finite mean counts as crossed -- the
    loop degenerated); NaN when it never crosses."""
    bad = ~np.isfinite(means) | ((means < threshold) if higher_better else (means > threshold))
    idx = np.flatnonzero(bad)
    return float(gens[idx[0]]) if idx.size else math.nan


def phase_tables(df, metric: str, threshold: float | None = None, *, higher_is_better: bool | None = None):
    """Per correction: (lambdas, gammas, final-mean matrix, crossing-generation matrix, last gen,
    thresholds used).  Rows = lambda, columns = gamma.

    The collapse threshold of a cell is ``threshold``, else twice (half, where higher is better)
    its generation-0 seed mean.  ``higher_is_better`` defaults to the metric plugin's
    declaration (:func:`orientation`); when that is unknown the crossing matrix is None and no
    threshold is used (which side of a threshold is "collapsed" is not known)."""
    hib = orientation(metric) if higher_is_better is None else bool(higher_is_better)
    out = {}
    curves = _curves(df, metric)
    for corr in sorted({k[0] for k in curves}):
        keys = [k for k in curves if k[0] == corr]
        lams = sorted({k[1] for k in keys})
        gams = sorted({k[2] for k in keys})
        final = np.full((len(lams), len(gams)), np.nan)
        cross = np.full_like(final, np.nan) if hib is not None else None
        last = 0
        used = []
        for (_, lam, gam) in keys:
            gens, means = curves[(corr, lam, gam)]
            i, j = lams.index(lam), gams.index(gam)
            final[i, j] = means[-1]
            last = max(last, int(gens[-1]))
            if cross is None:
                continue
            g0 = means[gens == 0]
            thr = threshold
            if thr is None:
                base = float(g0[0]) if g0.size else math.nan
                thr = base * (0.5 if hib else 2.0)
            used.append(thr)
            cross[i, j] = first_crossing(gens[gens > 0], means[gens > 0], thr, hib) if math.isfinite(thr) else math.nan
        out[corr] = (lams, gams, final, cross, last, used)
    return out


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else ("nan" if math.isnan(x) else "-∞")
    ax = abs(x)
    if ax != 0 and (ax < 1e-2 or ax >= 1e4):
        return f"{x:.2e}"
    return f"{x:.3g}"


def phase_figure(lams, gams, mat, *, title: str, cbar: str, never_label: str | None = None,
                 theory_mask: np.ndarray | None = None, log: bool = False, ax=None):
    """A (lambda x gamma) heat map of ``mat`` (rows = ``lams``, columns = ``gams``), each cell
    labelled with its value (``never_label`` where it is not finite), the cells of
    ``theory_mask`` outlined; drawn into ``ax`` or a new Figure (no pyplot, no backend change).
    Returns the Figure."""
    import matplotlib
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from scloop.report.figures import _root_figure

    if ax is None:
        fig = Figure(figsize=(1.1 * len(gams) + 2.6, 0.7 * len(lams) + 1.8))
        ax = fig.subplots()
        own = True
    else:
        fig, own = _root_figure(ax), False
    data = np.ma.masked_invalid(mat)
    norm = None
    if log and np.isfinite(mat).any() and np.nanmin(mat) > 0:
        norm = LogNorm(vmin=np.nanmin(mat), vmax=max(np.nanmax(mat), np.nanmin(mat) * 1.0001))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(len(gams)), [_fmt(g) for g in gams])
    ax.set_yticks(range(len(lams)), [_fmt(v) for v in lams])
    ax.set_xlabel("correction strength γ")
    ax.set_ylabel("synthetic fraction λ")
    for i in range(len(lams)):
        for j in range(len(gams)):
            v = mat[i, j]
            txt = _fmt(v) if math.isfinite(v) else (never_label or "")
            if txt:
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="black" if not math.isfinite(v) else "white")
            if theory_mask is not None and theory_mask[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#ff7f0e", linewidth=1.6))
    if np.isfinite(mat).any():
        fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title, fontsize=9)
    if own:
        fig.tight_layout()
    return fig


def _phase_figure(lams, gams, mat, *, stem: Path, **kw: Any) -> list[Path]:
    """:func:`phase_figure` written as ``<stem>.png`` and ``.svg``."""
    from scloop.report.plots import save_figure

    return save_figure(phase_figure(lams, gams, mat, **kw), stem)


# ---------------------------------------------------------------------- html helpers
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
.fail{color:#b00}.warn{background:#fee;border:1px solid #b00;padding:.5em;display:none}
.note{color:#555;font-size:.9em}nav a{margin-right:1em}
.helps{background:#e6f4e6}.hurts{background:#fbe4e4}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) { broken++; }
  }
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken-images', String(broken));
  if (broken > 0) {
    var w = document.getElementById('broken');
    w.textContent = broken + ' figure(s) failed to load: re-run `scloop report` on this directory.';
    w.style.display = 'block';
  }
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: Iterable[list[Any]], left: int = 1, classes: list[str] | None = None) -> str:
    head = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for k, r in enumerate(rows):
        cells = "".join(f"<td class='l'>{_e(v)}</td>" if i < left else f"<td>{_e(v)}</td>" for i, v in enumerate(r))
        cls = f" class='{classes[k]}'" if classes and classes[k] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(rel: str, alt: str) -> str:
    svg = rel[:-4] + ".svg"
    return f"<p><a href='{_e(svg)}'><img src='{_e(rel)}' alt='{_e(alt)}' loading='lazy'></a></p>"


# ---------------------------------------------------------------------- the report
def write_report(path: Path | str, *, thresholds: dict[str, float] | None = None,
                 metrics: list[str] | None = None) -> Path:
    """Write ``<path>/report/index.html`` (and ``<path>/report/fig/*``); returns the HTML path.

    ``path``: a sweep directory or a run directory.  ``thresholds``: collapse threshold per
    metric for the first-crossing phase diagrams (default: 2x / 0.5x the generation-0 value).
    ``metrics``: the metrics shown (default: all but timings and correction diagnostics).
    The plugins named in the runs' configs are loaded first (a failing one is logged and named
    in the report; its metrics have unknown orientation)."""
    import yaml

    from scloop.report import ORIENTATION_UNKNOWN, _config_refs, _load_refs
    from scloop.report.figures import final_table, metric_vs_generation, theory_overlay
    from scloop.report.plots import save_figure
    from scloop.store.atomic import atomic_write_text

    path = Path(path)
    src = _load(path)
    # a user metric's orientation and label live in its plugin: load the runs' plugins first
    failed_plugins = _load_refs((ref, src.run_dirs.get(r["run_id"], path)) for r in src.runs
                                for ref in _config_refs(r["config"]))
    thresholds = dict(thresholds or {})
    rep = path / "report"
    fig_dir = rep / "fig"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)  # stale figures of an earlier report must not linger
    fig_dir.mkdir(parents=True)
    df = src.df
    all_metrics = sorted(m for m in df["metric"].unique() if m not in STAGES and not m.startswith(SKIP_PREFIXES)) \
        if not df.empty else []
    unknown = sorted(set(thresholds) - set(all_metrics))
    if unknown:
        raise ConfigError(f"--threshold: unknown metric(s) {', '.join(unknown)}; metrics in this report: "
                          f"{', '.join(all_metrics) or '(none)'}")
    shown = [m for m in (metrics or all_metrics) if m in all_metrics]
    orient = {m: orientation(m) for m in shown}
    unknown_orient = [m for m in shown if orient[m] is None]
    configs = {r["run_id"]: (yaml.safe_load(r["config"]) if r["config"] else {}) for r in src.runs}
    keys = _facet_keys(src)
    facets = _facets(df[df["metric"].isin(shown)], keys) if shown else []
    parts: list[str] = []
    nav: list[tuple[str, str]] = []

    def section(anchor: str, title: str) -> None:
        nav.append((anchor, title))
        parts.append(f"<h2 id='{anchor}'>{_e(title)}</h2>")

    # 1. runs --------------------------------------------------------------------------------
    section("runs", "Runs")
    states: dict[str, int] = {}
    for r in src.runs:
        states[r["state"]] = states.get(r["state"], 0) + 1
    parts.append("<p>" + ", ".join(f"{v} {_e(k)}" for k, v in sorted(states.items())) + f" of {len(src.runs)} runs."
                 + (f" Facets (run parameters that vary): {_e(', '.join(keys))}." if keys else "") + "</p>")
    rows = []
    for r in src.runs:
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "(base)"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        rows.append([r["run_id"], p, r["state"], secs])
    parts.append(_table(["run", "parameters", "state", "seconds"], rows, left=3))
    for r in src.runs:
        if r["state"] == "failed":
            parts.append(f"<p class='fail'>{_e(r['run_id'])} failed:</p><pre>{_e(r['error'])}</pre>")
    for ref in failed_plugins:
        parts.append(f"<p class='fail'>Plugin {_e(ref)} failed to load (see the log); its metrics have unknown "
                     "orientation here.</p>")
    if unknown_orient:
        parts.append(f"<p class='note orientation-unknown'>No verdict and no collapse threshold for "
                     f"{_e(', '.join(unknown_orient))}: {_e(ORIENTATION_UNKNOWN)}.</p>")

    # 2. metric vs generation ----------------------------------------------------------------
    if shown:
        section("curves", "Metrics vs generation")
        parts.append("<p class='note'>Seed mean with a t-based 95% band of the mean (the seed range when "
                     "fewer than 3 seeds); one panel per "
                     "(correction, λ); colours by correction strength γ; baseline black dashed, "
                     "no-correction grey.</p>")
        if len(facets) > MAX_FACETS:
            parts.append(f"<p class='note'>Showing the first {MAX_FACETS} of {len(facets)} facets.</p>")
        for metric in shown:
            parts.append(f"<h3>{_e(metric)}</h3>")
            for label, sub in facets[:MAX_FACETS]:
                m = sub[sub["metric"] == metric]
                if m.empty:
                    continue
                stem = fig_dir / f"curve-{_slug(metric)}-{_slug(label)}"
                save_figure(metric_vs_generation(m, metric, title=f"{metric}" + (f" ({label})" if label else "")),
                            stem)
                parts.append(_img(f"fig/{stem.name}.png", f"{metric} vs generation {label}"))
                if metric == "mean_error" and _is_gaussian(m) and set(m["policy"].astype(str)) == {"augment"} \
                        and (m["arm"] != "baseline").any() and _offset(configs, set(m["run_id"])):
                    # the prediction is for the expected error of an offset generation 0; without an
                    # offset the finite-sample error floor dominates and the overlay says nothing
                    from scloop.theory import predicted_mean_error

                    stem_t = fig_dir / f"theory-{_slug(label)}"
                    save_figure(theory_overlay(m, predicted=lambda lam, gam, e0, n: predicted_mean_error(e0, lam, gam, n)),
                                stem_t)
                    parts.append("<p class='note'>Measured mean error vs the closed-form prediction "
                                 "λ/((1+λ)(1+γ)) per generation (dashed).</p>")
                    parts.append(_img(f"fig/{stem_t.name}.png", "theory overlay"))

    # 3. phase diagrams ----------------------------------------------------------------------
    phase_html: list[str] = []
    for metric in shown:
        hib = orient[metric]
        for label, sub in facets[:MAX_FACETS]:
            tabs = phase_tables(sub, metric, thresholds.get(metric), higher_is_better=hib)
            for corr, (lams, gams, final, cross, last, used) in tabs.items():
                if len(lams) * len(gams) < 2:
                    continue
                gaussian = _is_gaussian(sub)
                mask = None
                if gaussian:
                    from scloop.theory import corrected_factor

                    mask = np.array([[float(corrected_factor(lam, gam)) < 1.0 for gam in gams] for lam in lams])
                where = f"{corr}" + (f", {label}" if label else "")
                s1 = fig_dir / f"phase-{_slug(metric)}-{_slug(where)}"
                # log colours for distances (lower is better, spanning decades), linear otherwise
                _phase_figure(lams, gams, final, title=f"{metric} at generation {last} (seed mean)\n{where}",
                              cbar=metric, stem=s1, log=hib is False, theory_mask=mask)
                phase_html.append(f"<h3>{_e(metric)} — {_e(where)}</h3>")
                if cross is None:  # orientation unknown: which side of a threshold is collapse is unknown
                    given = f" (--threshold {thresholds[metric]:g} not used)" if metric in thresholds else ""
                    phase_html.append(f"<p class='note orientation-unknown'>No collapse diagram{_e(given)}: "
                                      f"{_e(ORIENTATION_UNKNOWN)}.</p>")
                    phase_html.append(_img(f"fig/{s1.name}.png", f"phase diagram {metric}"))
                    continue
                s2 = fig_dir / f"collapse-{_slug(metric)}-{_slug(where)}"
                how = (f"{thresholds[metric]:g}" if metric in thresholds else
                       ("½ × generation 0" if hib else "2 × generation 0"))
                _phase_figure(lams, gams, cross, title=f"first generation with {metric} "
                              f"{'<' if hib else '>'} {how}\n{where}", cbar="generation", stem=s2,
                              never_label=f">{last}")
                phase_html.append(f"<p class='note'>Collapse threshold: {_e(metric)} {'&lt;' if hib else '&gt;'} "
                                  f"{_e(how)}.</p>")
                phase_html.append(_img(f"fig/{s1.name}.png", f"phase diagram {metric}"))
                phase_html.append(_img(f"fig/{s2.name}.png", f"collapse generation {metric}"))
                if mask is not None:
                    phase_html.append("<p class='note'>Outlined (orange): cells where Theorem 4.3's factor "
                                      "ρ(λ)/(1+γ) &lt; 1, i.e. where the bound predicts stability.</p>")
    if phase_html:
        section("phase", "Phase diagrams (λ × γ)")
        parts.append("<p class='note'>Left: the final-generation seed mean of the corrected arm. Right: the first "
                     "generation at which the seed mean crosses the collapse threshold (grey: never within the "
                     "run). Set thresholds with <code>scloop report DIR --threshold METRIC=VALUE</code>.</p>")
        parts += phase_html

    # 4. verdicts ----------------------------------------------------------------------------
    v_tables, v_errors = verdict_tables(df, shown)
    _write_verdicts(rep, src.title, v_tables)
    verdict_html = _verdicts(v_tables, v_errors)
    if verdict_html:
        section("verdicts", "Verdicts: each corrector vs no correction")
        parts += verdict_html

    # final values table
    if shown:
        section("final", "Final values")
        for metric in shown:
            rows = []
            for label, sub in facets[:MAX_FACETS]:
                m = sub[sub["metric"] == metric]
                if m.empty:
                    continue
                for _, t in final_table(m, metric).iterrows():
                    ci = "" if t["n"] < 2 else f"[{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}]"
                    rows.append([label or "-", t["arm"], t["correction"], _fmt(t["lambda"]), _fmt(t["gamma"]),
                                 int(t["generation"]), _fmt(t["mean"]), ci, _fmt(t["gen0_mean"]), int(t["n"])])
            parts.append(f"<h3>{_e(metric)}</h3>")
            parts.append(_table(["facet", "arm", "correction", "λ", "γ", "generation", "seed mean", "95% CI",
                                 "generation 0", "seeds"], rows, left=3))

    # 5. samples -----------------------------------------------------------------------------
    sample_html = _samples(src, fig_dir)
    if sample_html:
        section("samples", "Samples")
        parts += sample_html

    # 6. compute -----------------------------------------------------------------------------
    comp = _compute(df)
    if comp:
        section("compute", "Compute per stage")
        parts.append("<p class='note'>Seconds per generation (mean over units and generations ≥ 1) and total "
                     "seconds, by run and arm.</p>")
        parts.append(comp)

    # 7. provenance --------------------------------------------------------------------------
    prov = _provenance(path, src)
    if prov:
        section("provenance", "Provenance")
        parts += prov

    # 8. configs -----------------------------------------------------------------------------
    section("configs", "Resolved configs")
    if src.sweep_yaml:
        parts.append(f"<details><summary>sweep file</summary><pre>{_e(src.sweep_yaml)}</pre></details>")
    for r in src.runs:
        parts.append(f"<details><summary>{_e(r['run_id'])}</summary><pre>{_e(r['config'])}</pre></details>")

    navh = "<nav>" + "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t in nav) + "</nav>"
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(src.title)}</title>"
           f"<style>{_CSS}</style></head><body data-images='0' data-broken-images='-1'>"
           f"<h1>{_e(src.title)}</h1>"
           + (f"<p>{_e(src.description)}</p>" if src.description else "")
           + f"<p class='note'>Written by <code>scloop report</code> from {_e(path.resolve())}.</p>"
           + "<div id='broken' class='warn'></div>" + navh + "".join(parts)
           + f"<script>{_SCRIPT}</script></body></html>")
    index = rep / "index.html"
    atomic_write_text(index, doc)
    atomic_write_text(rep / "report.json", json.dumps({"title": src.title, "runs": len(src.runs),
                                                       "metrics": shown, "facets": keys,
                                                       "orientation_unknown": unknown_orient,
                                                       "plugins_failed": failed_plugins}, indent=2))
    return index


# ---------------------------------------------------------------------- provenance
PROVENANCE_FILE = "provenance.json"
# shown first, in this order; any other key follows alphabetically
_PROV_KEYS = ("scloop_version", "git_commit", "git_dirty", "command", "python", "packages", "device", "platform",
              "created_at", "started_at", "ended_at", "state", "sessions")


def _read_provenance(folder: Path) -> dict[str, Any] | str | None:
    """The provenance object of a folder; None when absent, an error text when unreadable."""
    f = folder / PROVENANCE_FILE
    if not f.is_file():
        return None
    try:
        obj = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{PROVENANCE_FILE} unreadable: {exc}"
    return obj if isinstance(obj, dict) else f"{PROVENANCE_FILE}: expected a JSON object, got {type(obj).__name__}"


def _prov_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_prov_value(x)}" for k, x in sorted(v.items(), key=lambda kv: str(kv[0])))
    if isinstance(v, (list, tuple)):
        return "; ".join(_prov_value(x) for x in v) or "-"
    return str(v)


def _prov_session(s: Any) -> str:
    """One earlier start of a resumed run: its times, final state and commit."""
    if not isinstance(s, dict):
        return _prov_value(s)
    commit = str(s.get("git_commit") or "?")[:12] + (" (dirty)" if s.get("git_dirty") else "")
    return f"{s.get('started_at') or '?'} to {s.get('ended_at') or '?'}: {s.get('state') or '?'}, {commit}"


def provenance_table(prov: dict[str, Any]) -> str:
    """A two-column HTML table (key, value) of one provenance object (``provenance.json``); every
    cell escaped (``packages``: ``name version, ...``; booleans as yes/no; ``sessions``, the
    earlier starts of a resumed run, one line each)."""
    keys = [k for k in _PROV_KEYS if k in prov] + sorted(k for k in prov if k not in _PROV_KEYS)
    rows = []
    for k in keys:
        v = prov[k]
        if k == "sessions":
            if not v:
                continue  # started once: nothing to add
            rows.append(["earlier starts", " | ".join(_prov_session(x) for x in (v if isinstance(v, list) else [v]))])
            continue
        rows.append([k.replace("_", " "), _prov_value(v)])
    return _table(["", "value"], rows, left=2)


def _provenance(path: Path, src: _Source) -> list[str]:
    """The Provenance section: the sweep's (or the run's) ``provenance.json`` and, for a sweep,
    each run's; empty when no folder holds one."""
    out: list[str] = []

    def add(title: str | None, prov: dict[str, Any] | str) -> None:
        body = f"<p class='note'>{_e(prov)}</p>" if isinstance(prov, str) else provenance_table(prov)
        out.append(body if title is None else f"<details><summary>{_e(title)}</summary>{body}</details>")

    top = _read_provenance(path)
    if top is not None:
        add(None, top)
    if len(src.run_dirs) > 1 or src.run_dirs.get(path.name) != path:
        for rid, rdir in src.run_dirs.items():
            prov = _read_provenance(rdir)
            if prov is not None:
                add(rid, prov)
    return out


def _offset(configs: dict[str, dict], run_ids: set[str]) -> bool:
    return any(float((configs.get(r) or {}).get("init", {}).get("offset", 0) or 0) != 0 for r in run_ids)


def _is_gaussian(df) -> bool:
    return set(df["task"].astype(str)) == {"gaussian"}


def verdict_tables(df, metrics: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`~scloop.report.verdicts.verdict_table` per metric: (tables, why-not per metric)."""
    if df.empty or not {"correction", "no-correction"} <= set(df["arm"]):
        return {}, {}
    from scloop.report.verdicts import verdict_table

    tables: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for metric in metrics:
        sub = df[df["metric"] == metric]
        if sub.empty:
            continue
        try:
            tab = verdict_table(sub, metric)
        except ValueError as exc:
            errors[metric] = str(exc)
            continue
        if tab is not None and len(tab):
            tables[metric] = tab
    return tables, errors


def _verdicts(tables: dict[str, Any], errors: dict[str, str]) -> list[str]:
    from scloop.report.verdicts import verdict_html

    from scloop.report import ORIENTATION_UNKNOWN
    from scloop.report.verdicts import NO_VERDICT

    out = [f"<p class='note'>{_e(m)}: no verdict ({_e(e)})</p>" for m, e in errors.items()]
    for metric, tab in tables.items():
        out.append(f"<h3>{_e(metric)}</h3>")
        if (tab["verdict"] == NO_VERDICT).any():
            out.append(f"<p class='note orientation-unknown'>{_e(metric)}: no verdict -- {_e(ORIENTATION_UNKNOWN)}. "
                       "The paired differences are shown without a good side.</p>")
        out.append(verdict_html(tab))
    return out


def _write_verdicts(rep: Path, title: str, tables: dict[str, Any]) -> None:
    """``verdicts.md`` (every table with its sentences) and ``verdicts.csv`` (one row per
    comparison) next to the HTML, for papers and scripts; removed when there is nothing to say."""
    import pandas as pd

    from scloop.report.verdicts import verdict_markdown
    from scloop.store.atomic import atomic_write_text

    md, csv = rep / "verdicts.md", rep / "verdicts.csv"
    if not tables:
        for f in (md, csv):
            f.unlink(missing_ok=True)
        return
    text = [f"# Verdicts: {title}", "",
            "Each corrector against no correction at the last generation, paired by seed "
            "(written by `scloop report`).", ""]
    for metric, tab in tables.items():
        text += [f"## {metric}", "", verdict_markdown(tab)]
    atomic_write_text(md, "\n".join(text))
    atomic_write_text(csv, pd.concat(list(tables.values()), ignore_index=True).to_csv(index=False))


def _samples(src: _Source, fig_dir: Path) -> list[str]:
    """Image grids (generation x arm) and motion animations the runs kept, copied next to the
    report so that the page is self-contained."""
    out: list[str] = []
    for rid, rdir in list(src.run_dirs.items())[:MAX_FACETS]:
        if not (rdir / "samples").is_dir():
            continue
        made: list[Path] = []
        kind = _sample_kind(rdir)
        if kind == "text":
            out += _text_samples(rid, rdir)
            continue
        if kind == "image":
            from scloop.report.images import grid_evolution

            made += [p for p in grid_evolution(rdir) if p.suffix == ".png"]
        elif kind == "motion":
            from scloop.report.motion import write_motion_gifs

            made += [Path(p) for p in write_motion_gifs(rdir)]
        made += [p for p in sorted((rdir / "figures").rglob("*.gif")) if p not in made] if (rdir / "figures").is_dir() else []
        if not made:
            continue
        out.append(f"<h3>{_e(rid)}</h3>")
        for p in made[:12]:
            dst = fig_dir / f"samples-{_slug(rid)}-{_slug(str(p.relative_to(rdir)))}{p.suffix}"
            shutil.copyfile(p, dst)
            out.append(f"<p><img src='fig/{_e(dst.name)}' alt='{_e(p.name)}' loading='lazy'></p>")
    return out


def _sample_kind(run_dir: Path) -> str:
    """``image`` ((k, C, H, W) samples), ``motion`` ((k, T, F) windows) or ``""``."""
    from scloop.store.atomic import load_npz

    first = next(iter(sorted((run_dir / "samples").rglob("gen*.npz"))), None)
    if first is None:
        return ""
    arrays = load_npz(first)
    if "text" in arrays:
        return "text"
    ndim = arrays["x"].ndim
    return {4: "image", 3: "motion"}.get(ndim, "")


TEXT_PER_CELL = 3  # strings shown per (generation, unit) cell


def _text_samples(rid: str, run_dir: Path) -> list[str]:
    """Generated strings of a text run: rows are generations (first, a quarter, half, last),
    columns the units of seed 0, cells a few of that generation's samples (escaped)."""
    from scloop.store.atomic import load_npz
    from scloop.store.run_store import RunStore

    store = RunStore(run_dir)
    try:
        units = [u for u in store.units() if u.seed == min(x.seed for x in store.units())]
    finally:
        store.close()
    gens = sorted({int(p.stem[3:]) for p in (run_dir / "samples").rglob("gen*.npz")})
    if not gens or not units:
        return []
    pick = sorted({gens[0], gens[len(gens) // 4], gens[len(gens) // 2], gens[-1]})
    header = ["generation"] + [f"{u.arm} λ={u.lam:g} {u.correction} γ={u.gamma:g}" for u in units[:MAX_FACETS]]
    rows = []
    for g in pick:
        cells = []
        for u in units[:MAX_FACETS]:
            p = run_dir / "samples" / f"unit{u.unit:06d}" / f"gen{g:04d}.npz"
            texts = [str(t) for t in load_npz(p)["text"][:TEXT_PER_CELL]] if p.exists() else []
            cells.append("".join(f"<code style='white-space:pre-wrap;display:block'>{_e(t)}</code>" for t in texts))
        rows.append(f"<tr><td>{g}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return [f"<h3>{_e(rid)}: generated strings</h3>", f"<table><tr>{head}</tr>{''.join(rows)}</table>"]


def _compute(df) -> str:
    sub = df[df["metric"].isin(STAGES) & (df["generation"] > 0)]
    if sub.empty:
        return ""
    piv = sub.pivot_table(index=["run_id", "arm"], columns="metric", values="value", aggfunc=["mean", "sum"])
    rows = []
    for (rid, arm), r in piv.iterrows():
        vals = [r[("mean", s)] if ("mean", s) in r.index else math.nan for s in STAGES]
        tot = sum(r[("sum", s)] for s in STAGES if ("sum", s) in r.index)
        rows.append([rid, arm] + [f"{v:.3g}" for v in vals] + [f"{tot:.1f}"])
    return _table(["run", "arm", "sample s/gen", "correct s/gen", "train s/gen", "eval s/gen", "total s"], rows,
                  left=2)
