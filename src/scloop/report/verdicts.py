"""Computed verdicts: does each correction help, hurt, or make no detectable difference?

:func:`verdict_table` compares every ``correction`` unit with the ``no-correction`` unit of the
same (task, policy, lambda, n_real) and seed, at one generation (default: the last), by a
paired analysis across seeds:

* ``mean_diff`` = mean over seeds of (correction - no-correction), in the metric's units;
* ``ci_low`` / ``ci_high``: the (1 - alpha) Student-t interval of the paired differences,
  mean_diff -/+ t_{1 - alpha/2, n - 1} sd / sqrt(n);
* ``p_value``: paired t-test (``scipy.stats.ttest_rel``);
* ``verdict``: ``"helps"`` when the interval excludes 0 on the good side of the metric (below 0
  for lower-is-better metrics such as FID, above 0 for higher-is-better ones such as recall),
  ``"hurts"`` when it excludes 0 on the bad side, else ``"no detectable effect"`` (also with
  fewer than 2 pairs).  The interval excludes 0 exactly when p < alpha, so the verdict and the
  test agree.  A metric of unknown orientation gets :data:`NO_VERDICT` (its statistics are
  still computed).  A sentence per row says the same in words.

Nothing is tuned or hand-written: the verdict is a function of the table.

Matching is on parameters, never on ``run_id``: a sweep writes one run per case, and the
no-correction units of one run are the controls of the correction units of another if task,
policy, lambda, n_real and seed agree.  The same unit found in several runs (a rerun, or two
sweep cases that both list the arm) must carry the same value (up to 1e-6 relative: runs are
deterministic per seed up to torch's thread count); it is then used once.  Different values
raise a ValueError naming the runs: filter the table to one configuration first (the tidy
table has no model columns, so runs of different models must not be mixed).

Degenerate units (``status == "degenerate"``: numerical collapse; the engine stops such a unit
and its later generations do not exist) are *excluded*: a seed enters the paired test only when
both of its units are ok and finite at the compared generation.  The excluded units are counted
per arm (``n_degenerate_correction``, ``n_degenerate_no_correction``) and named in the sentence,
because a collapse that happens in one arm only is itself a finding the t-test cannot see.
Units that simply have no row at that generation (an unfinished run) are counted in
``n_missing``.

Metric orientation is what the metric's plugin declared
(``register_metric(name, higher_is_better=...)``, read through
:func:`scloop.report.metric_facts`; load a run's own plugins first with
:func:`scloop.report.load_run_plugins`).  An explicit ``higher_is_better=`` overrides it.  A
metric that no plugin declares, or that declares ``higher_is_better=None`` (a spread, say), has
no good side: its rows say :data:`NO_VERDICT` -- never a guessed direction.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

VERDICTS = ("helps", "hurts", "no detectable effect")
#: The verdict of a metric whose orientation is unknown (no side of 0 is the good one).
NO_VERDICT = "no verdict (orientation unknown)"
GROUP = ["task", "n_real", "policy", "lambda"]
COLUMNS = [
    "task", "n_real", "policy", "lambda", "correction", "gamma", "metric", "generation", "higher_is_better",
    "n_seeds", "mean_correction", "mean_no_correction", "mean_diff", "ci_low", "ci_high", "p_value", "verdict",
    "n_degenerate_correction", "n_degenerate_no_correction", "n_missing", "sentence",
]
REL_TOL = 1e-6


def orientation(metric: str, higher_is_better: bool | None = None) -> bool | None:
    """``higher_is_better`` when given, else what the metric's plugin declared
    (:func:`scloop.report.metric_facts`); None: unknown (no verdict is drawn)."""
    if higher_is_better is not None:
        return bool(higher_is_better)
    from scloop.report import metric_facts

    return metric_facts(metric).higher_is_better


def _orient_words(hib: Any) -> str:
    if hib is None or (isinstance(hib, float) and math.isnan(hib)):
        return "orientation unknown"
    return "higher is better" if hib else "lower is better"


def _fmt(v: float, digits: int = 3, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:+.{digits}g}" if sign else f"{v:.{digits}g}"


def _fmt_gamma(g: float) -> str:
    return "∞" if math.isinf(g) else f"{g:g}"


def _fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 1e-3 else f"{p:.2g}"


def _paired_stats(c: np.ndarray, nc: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """mean_diff, ci_low, ci_high, p_value of the paired differences c - nc."""
    from scipy import stats

    n = len(c)
    if n == 0:
        return (math.nan,) * 4
    d = c - nc
    mean = float(d.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    sd = float(d.std(ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        # every seed moved by exactly the same amount: the interval is that point
        return mean, mean, mean, (1.0 if mean == 0.0 else 0.0)
    half = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(c, nc).pvalue)
    return mean, mean - half, mean + half, p


def _verdict(lo: float, hi: float, hib: bool | None) -> str:
    if hib is None:
        return NO_VERDICT
    if math.isnan(lo) or math.isnan(hi):
        return "no detectable effect"
    if lo > 0:
        return "helps" if hib else "hurts"
    if hi < 0:
        return "hurts" if hib else "helps"
    return "no detectable effect"


def _sentence(r: dict[str, Any], alpha: float) -> str:
    where = f"{r['task']} (n_real = {r['n_real']}), {r['policy']}, λ = {r['lambda']:g}"
    who = f"{r['correction']} (γ = {_fmt_gamma(r['gamma'])})"
    orient = _orient_words(r["higher_is_better"])
    verb = {"helps": "helps", "hurts": "hurts", "no detectable effect": "has no detectable effect",
            NO_VERDICT: "gets no verdict"}[r["verdict"]]
    head = f"{where}: {who} {verb} ({r['metric']} at generation {r['generation']}, {orient})"
    n = r["n_seeds"]
    level = f"{100 * (1 - alpha):g}%"
    if n == 0:
        body = "no seed has both a correction and a no-correction value there"
    elif n == 1:
        body = (f"{_fmt(r['mean_correction'])} with correction vs {_fmt(r['mean_no_correction'])} without, from a "
                f"single seed (difference {_fmt(r['mean_diff'], sign=True)}); at least 2 seeds are needed for an interval")
    else:
        p = _fmt_p(r["p_value"])
        body = (f"{_fmt(r['mean_correction'])} with correction vs {_fmt(r['mean_no_correction'])} without, "
                f"difference {_fmt(r['mean_diff'], sign=True)} ({level} CI [{_fmt(r['ci_low'], sign=True)}, "
                f"{_fmt(r['ci_high'], sign=True)}], paired t-test p {p if p.startswith('<') else '= ' + p}, "
                f"{n} seeds)")
    notes = []
    if r["verdict"] == NO_VERDICT:
        from scloop.report import ORIENTATION_UNKNOWN

        notes.append(ORIENTATION_UNKNOWN)
    if r["n_degenerate_correction"] or r["n_degenerate_no_correction"]:
        notes.append(f"excluded as degenerate: {r['n_degenerate_correction']} correction and "
                     f"{r['n_degenerate_no_correction']} no-correction unit(s)")
    if r["n_missing"]:
        notes.append(f"{r['n_missing']} unit(s) without a value at that generation")
    return f"{head}: {body}" + (f"; {'; '.join(notes)}." if notes else ".")


def _unit_values(d, full, generation_of) -> tuple[dict, set, set]:
    """value per unit key at its group's generation, the degenerate unit keys, the unit keys
    present in the table (any metric)."""
    unit_cols = GROUP + ["arm", "correction", "gamma", "seed"]
    # degenerate: any row of the unit (any metric, timing included) at or before the generation
    degenerate, present = set(), set()
    for key, rows in full.groupby(unit_cols, sort=False, dropna=False):
        g = generation_of.get(tuple(key[: len(GROUP)]))
        if g is None:
            continue
        present.add(key)
        if ((rows["status"] == "degenerate") & (rows["generation"] <= g)).any():
            degenerate.add(key)
    values: dict[tuple, float] = {}
    for key, rows in d.groupby(unit_cols, sort=False, dropna=False):
        g = generation_of.get(tuple(key[: len(GROUP)]))
        if g is None or key in degenerate:
            continue
        at = rows[(rows["generation"] == g)]
        vals = at["value"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            continue
        if not np.allclose(vals, vals[0], rtol=REL_TOL, atol=1e-12):
            runs = sorted(map(str, at["run_id"].unique()))
            raise ValueError(
                f"unit {dict(zip(unit_cols, key))} has different values at generation {g} in runs "
                f"{', '.join(runs)}: filter the table to one configuration before computing verdicts"
            )
        values[key] = float(vals[0])
    return values, degenerate, present


def verdict_table(df, metric: str, *, higher_is_better: bool | None = None, alpha: float = 0.05,
                  generation: int | None = None):
    """One row per (task, n_real, policy, lambda, correction, gamma) of arm ``correction``,
    compared with arm ``no-correction`` of the same (task, policy, lambda, n_real), paired by
    seed, at ``generation`` (default: the last generation present for that group).

    Parameters
    ----------
    df : the tidy results (:data:`scloop.store.run_store.EXPORT_COLUMNS` + ``status``), from
        one run or several (a sweep).  Rows of other metrics are used only to spot degenerate
        units.
    metric : the metric to compare.
    higher_is_better : orientation; default: what the metric's plugin declared
        (:func:`orientation`).  None there (unknown): every row gets :data:`NO_VERDICT` and
        ``higher_is_better`` None.
    alpha : 1 - confidence level of the interval and level of the test.
    generation : the generation compared (default: last per group).

    Returns
    -------
    DataFrame with :data:`COLUMNS`: ``task, n_real, policy, lambda, correction, gamma, metric,
    generation, higher_is_better, n_seeds, mean_correction, mean_no_correction, mean_diff,
    ci_low, ci_high, p_value, verdict, n_degenerate_correction, n_degenerate_no_correction,
    n_missing, sentence``.  Empty (with these columns) when there is no correction arm.
    """
    import pandas as pd

    hib = orientation(metric, higher_is_better)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: got {alpha!r}; allowed: a number in (0, 1)")
    missing_cols = sorted(set(GROUP + ["arm", "correction", "gamma", "seed", "generation", "metric", "value"]) - set(df.columns))
    if missing_cols:
        raise ValueError(f"verdict_table: the table lacks column(s) {', '.join(missing_cols)}")
    full = df.copy()
    if "status" not in full.columns:
        full["status"] = "ok"
    if "run_id" not in full.columns:
        full["run_id"] = ""
    full["lambda"] = full["lambda"].astype(float)
    full["gamma"] = full["gamma"].astype(float)
    full = full[full["arm"].isin(["correction", "no-correction"])]
    d = full[full["metric"] == metric]
    if d.empty:
        known = sorted(map(str, df["metric"].unique()))
        raise ValueError(f"metric {metric!r}: no correction / no-correction rows; metrics in the table: {', '.join(known)}")

    generation_of: dict[tuple, int] = {}
    for key, rows in d.groupby(GROUP, sort=True):
        generation_of[tuple(key)] = int(rows["generation"].max()) if generation is None else int(generation)
    values, degenerate, present = _unit_values(d, full, generation_of)

    # controls: (group, seed) -> no-correction unit keys (normally one)
    controls: dict[tuple, list[tuple]] = {}
    for k in present:
        if k[4] == "no-correction":
            controls.setdefault((k[:4], k[7]), []).append(k)
    treated: dict[tuple, list[tuple]] = {}  # (group, correction, gamma) -> correction unit keys
    for k in present:
        if k[4] == "correction":
            treated.setdefault((k[:4], k[5], k[6]), []).append(k)

    records = []
    for (group, corr, gam), units in sorted(treated.items(), key=lambda kv: repr(kv[0])):
        g = generation_of.get(group)
        if g is None:  # no row of this metric in the group
            continue
        c_vals, nc_vals = [], []
        n_deg_c = n_deg_nc = n_missing = 0
        for kc in sorted(units, key=lambda k: k[7]):
            knc = sorted(controls.get((group, kc[7]), []), key=repr)
            nc_key = next((k for k in knc if k in values), None)
            n_deg_c += kc in degenerate
            n_deg_nc += any(k in degenerate for k in knc)
            n_missing += kc not in values and kc not in degenerate
            n_missing += sum(1 for k in knc if k not in values and k not in degenerate)
            if kc in values and nc_key is not None:
                c_vals.append(values[kc])
                nc_vals.append(values[nc_key])
        c_arr, nc_arr = np.array(c_vals, dtype=float), np.array(nc_vals, dtype=float)
        mean_diff, lo, hi, p = _paired_stats(c_arr, nc_arr, alpha)
        rec = {
            "task": group[0], "n_real": group[1], "policy": group[2], "lambda": float(group[3]),
            "correction": corr, "gamma": float(gam), "metric": metric, "generation": g, "higher_is_better": hib,
            "n_seeds": len(c_vals),
            "mean_correction": float(c_arr.mean()) if len(c_arr) else math.nan,
            "mean_no_correction": float(nc_arr.mean()) if len(nc_arr) else math.nan,
            "mean_diff": mean_diff, "ci_low": lo, "ci_high": hi, "p_value": p,
            "verdict": _verdict(lo, hi, hib),
            "n_degenerate_correction": int(n_deg_c), "n_degenerate_no_correction": int(n_deg_nc),
            "n_missing": int(n_missing),
        }
        rec["sentence"] = _sentence(rec, alpha)
        records.append(rec)
    table = pd.DataFrame(records, columns=COLUMNS)
    if len(table):
        table = table.sort_values(["task", "n_real", "policy", "lambda", "correction", "gamma"], kind="stable")
        table = table.reset_index(drop=True)
    return table


# ---------------------------------------------------------------------- rendering
_HEAD = ["policy", "λ", "correction", "γ", "seeds", "with", "without", "difference", "95% CI", "p", "verdict"]


def _several_tasks(table) -> bool:
    return len(table[["task", "n_real"]].drop_duplicates()) > 1


def _head(table) -> list[str]:
    return (["task (n_real)"] if _several_tasks(table) else []) + _HEAD


def _cells(r, with_task: bool = False) -> list[str]:
    ci = f"[{_fmt(r['ci_low'], sign=True)}, {_fmt(r['ci_high'], sign=True)}]" if r["n_seeds"] >= 2 else "n/a"
    return ([f"{r['task']} ({r['n_real']})"] if with_task else []) + [
        str(r["policy"]), f"{r['lambda']:g}", str(r["correction"]), _fmt_gamma(r["gamma"]), str(r["n_seeds"]),
        _fmt(r["mean_correction"]), _fmt(r["mean_no_correction"]), _fmt(r["mean_diff"], sign=True), ci,
        _fmt_p(r["p_value"]), str(r["verdict"]),
    ]


def _caption(table) -> str:
    metrics = sorted(map(str, table["metric"].unique()))
    gens = sorted(int(g) for g in table["generation"].unique())
    orient = {_orient_words(h) for h in table["higher_is_better"]}
    gen = f"generation {gens[0]}" if len(gens) == 1 else f"generations {', '.join(map(str, gens))}"
    return f"{', '.join(metrics)} ({', '.join(sorted(orient))}) at {gen}: correction vs no correction, paired by seed"


def verdict_markdown(table) -> str:
    """A Markdown table (one line per row of :func:`verdict_table`) followed by the sentences."""
    if len(table) == 0:
        return "_No correction arm to compare._\n"
    head, several = _head(table), _several_tasks(table)
    lines = [f"**{_caption(table)}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r, several)) + " |")
    lines.append("")
    lines += [f"- {r['sentence']}" for _, r in table.iterrows()]
    return "\n".join(lines) + "\n"


def verdict_html(table) -> str:
    """An HTML fragment: ``<table class="verdicts">`` (each verdict cell has class ``helps``,
    ``hurts`` or ``null``) and a ``<ul>`` of the sentences.  Every cell is escaped."""
    if len(table) == 0:
        return '<p class="verdicts">No correction arm to compare.</p>\n'
    esc = html.escape
    out = ['<table class="verdicts">', f"<caption>{esc(_caption(table))}</caption>",
           "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _head(table)) + "</tr></thead>", "<tbody>"]
    several = _several_tasks(table)
    for _, r in table.iterrows():
        cells = _cells(r, several)
        cls = {"helps": "helps", "hurts": "hurts"}.get(r["verdict"], "null")
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells[:-1]) + f'<td class="{cls}">{esc(cells[-1])}</td>'
        out.append(f"<tr>{tds}</tr>")
    out += ["</tbody>", "</table>", '<ul class="verdict-sentences">']
    out += [f"<li>{esc(r['sentence'])}</li>" for _, r in table.iterrows()]
    out.append("</ul>")
    return "\n".join(out) + "\n"


__all__ = [
    "COLUMNS",
    "NO_VERDICT",
    "VERDICTS",
    "orientation",
    "verdict_html",
    "verdict_markdown",
    "verdict_table",
]
