"""The ``scloop`` command line (Typer).  It parses arguments into specs and calls
:mod:`scloop.runner`, :mod:`scloop.store`, :mod:`scloop.report` or :mod:`scloop.theory`; it
holds no logic of its own.  Bad input exits with status 2 and a message naming the option or
key, the value and what is allowed, before anything is written.

Conventions shared by every command:

* results (tables, CSV, JSON) go to standard output; logs and progress go to standard error
  through :mod:`logging` (logger ``"scloop"``, set up by :func:`scloop.log.setup_logging`):
  ``scloop -q ...`` keeps warnings and errors only, ``scloop -v ...`` adds debug messages;
* ``--out`` is always the root folder of run and sweep directories, ``--to`` a file to write,
  ``--workers`` the number of parallel processes, ``--data-dir`` the real-data folder;
* old option names (``sweep --jobs``, ``motion check-correction --processes``,
  ``motion animate --out``) still work, hidden from ``--help``, with a deprecation warning.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Self-consuming generative training loops with self-correction.\n\n"
                       "Results go to stdout; logs and progress go to stderr (-q: warnings only, -v: debug).")

DEFAULT_OUT = os.environ.get("SCLOOP_RUNS", "runs")
OUT_HELP = "Root folder of run and sweep directories (default $SCLOOP_RUNS or ./runs)."

log = logging.getLogger("scloop.cli")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        from scloop import __version__

        typer.echo(f"scloop {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the scloop version and exit."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Log warnings and errors only (no progress)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log debug messages too."),
) -> None:
    from scloop.log import NORMAL, QUIET, VERBOSE, reset_logging, setup_logging

    if quiet and verbose:
        _fail("-q/--quiet and -v/--verbose: got both; allowed: at most one of them")
    setup_logging(QUIET if quiet else VERBOSE if verbose else NORMAL)
    ctx.call_on_close(reset_logging)


def _set_quiet(quiet: bool) -> None:
    """A command's own ``--quiet`` means the same as ``scloop -q``."""
    if quiet:
        logging.getLogger("scloop").setLevel(logging.WARNING)


def _is_quiet() -> bool:
    return not logging.getLogger("scloop").isEnabledFor(logging.INFO)


def _deprecated_alias(ctx: typer.Context, param: str, value: Any, old_flag: str, old_value: Any, flag: str) -> Any:
    """The value of an option given under its old (hidden) name ``old_flag``, if it was."""
    if old_value is None:
        return value
    source = ctx.get_parameter_source(param)
    if getattr(source, "name", "") == "COMMANDLINE" and value != old_value:
        _fail(f"{old_flag}: got {old_value!r} together with {flag} {value!r}; allowed: one of them "
              f"({old_flag} is the old name of {flag})")
    log.warning("%s is deprecated; use %s", old_flag, flag)
    return old_value


def _load_plugin_refs(refs: List[str]) -> list[str]:
    """``--plugin`` values resolved against the working directory and imported (ConfigError
    naming the option when one cannot be found or imported)."""
    from scloop.core.registry import ConfigError
    from scloop.plugins import load_plugins, resolve_ref

    resolved = []
    for ref in refs:
        try:
            resolved.append(resolve_ref(ref))
        except ConfigError as exc:
            raise ConfigError(f"--plugin: got {ref!r}; allowed: a module name on the Python path or a path to a "
                              f".py file ({exc})") from None
    load_plugins(resolved)
    return resolved


def _run_conflict() -> type:
    """``scloop.runner.RunConflict`` (a ConfigError: the run id exists with another identity)."""
    from scloop.core.registry import ConfigError

    try:
        from scloop.runner import RunConflict
    except ImportError:
        return ConfigError
    return RunConflict


def _resolve_run(run: str, out: str) -> Path:
    p = Path(run)
    if (p / "results.sqlite").exists():
        return p
    q = Path(out) / run
    if (q / "results.sqlite").exists():
        return q
    from scloop.store import list_runs

    known = [r["run_id"] for r in list_runs(Path(out))]
    matches = [k for k in known if k.startswith(run)]
    if len(matches) == 1:
        return Path(out) / matches[0]
    _fail(f"run {run!r} not found (looked for {p} and {q}); runs under {out}: {', '.join(known) or '(none)'}")
    raise AssertionError


PLUGIN_HELP = ("Import a plugin module or .py file (relative to the working directory) before the config is "
               "read; repeatable.")


@app.command()
def run(
    config: str = typer.Argument(..., help="A preset name (see `scloop presets`) or a YAML config file."),
    set_: List[str] = typer.Option([], "--set", help="Override a key: --set gamma=[0,1] --set n_generations=10"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Number of seeds (overrides the config's `seeds`)."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run directory name (default: NAME-HASH)."),
    resume: bool = typer.Option(False, "--resume", help="Continue after the last complete generation."),
    force: bool = typer.Option(False, "--force", help="Delete an existing run with the same id first."),
    plot: bool = typer.Option(False, "--plot", help="Write the figures when the run ends."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Same as `scloop -q`: warnings only, no progress."),
    workers: int = typer.Option(0, "--workers", help="Worker processes for the generic engine, 1 thread each; "
                                "threads (cells at once) for the vectorised Gaussian engine (0 = one per CPU "
                                "core); results do not depend on it."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with real data (e.g. mnist/*.gz) for "
                                           "tasks that read files; default $SCLOOP_DATA_DIR or ~/.cache/scloop/data."),
    plugin: List[str] = typer.Option([], "--plugin", metavar="MODULE_OR_FILE", help=PLUGIN_HELP),
) -> None:
    """Run an experiment into a run directory and print its final results table.

    One run covers every arm, lambda, correction, gamma and seed of the config.  The results
    table goes to stdout; the progress and the run's summary line go to stderr."""
    from scloop.core.config import check_id, load_spec
    from scloop.core.registry import ConfigError

    try:
        if run_id is not None:
            check_id(run_id, "--run-id")
    except ConfigError as exc:
        _fail(str(exc))
        return
    _set_quiet(quiet)
    if seeds is not None and seeds < 1:
        _fail(f"--seeds: got {seeds}; allowed: an integer >= 1")
    if workers < 0:
        _fail(f"--workers: got {workers}; allowed: an integer >= 0 (0 = one per CPU core)")
    from scloop.runner import RunExists, run_experiment

    run_conflict = _run_conflict()
    try:
        refs = _load_plugin_refs(plugin)
        spec = load_spec(config, set_, seeds=seeds)
        if data_dir is not None:
            spec = _with_data_dir(spec, data_dir)
        summary = run_experiment(spec, out=out, run_id=run_id, resume=resume, force=force,
                                 quiet=_is_quiet() or not sys.stderr.isatty(), workers=workers, plugins=refs)
    except run_conflict as exc:
        _fail(str(exc))
        return
    except ConfigError as exc:
        _fail(str(exc))
        return
    except RunExists as exc:
        _fail(str(exc), code=1)
        return
    if summary.skipped:
        log.info("run %s is already complete at %s (use --force to recompute)", summary.run_id, summary.path)
    else:
        log.info("run %s: %s units, engine=%s, %.2f s -> %s", summary.run_id, summary.n_units, summary.engine,
                 summary.seconds, summary.path)
    _print_final(summary.path, spec.metrics[0])
    if plot:
        _plot(summary.path)


def _with_data_dir(spec, data_dir: str):
    """Set ``task.data_dir`` for tasks that read files; other tasks ignore ``--data-dir``."""
    from scloop.api import with_data_dir

    return with_data_dir(spec, data_dir)


def _print_final(path: Path, metric: str) -> None:
    from scloop.store import RunStore

    store = RunStore(path)
    df = store.table(metric=metric, generations=[0, store.max_generation()])
    store.close()
    if df.empty:
        return
    from scloop.report.figures import final_table

    tab = final_table(df, metric)
    typer.echo(f"\n{metric} at the last generation (seed mean, 95% CI) vs generation 0:")
    for _, r in tab.iterrows():
        ci = "" if r["n"] < 2 else f" [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
        typer.echo(f"  {r['correction']:<18} λ={r['lambda']:<5g} {r['arm']:<13} γ={r['gamma']:<6g} "
                   f"gen {int(r['generation']):>4}: {r['mean']:.4f}{ci}  (gen 0: {r['gen0_mean']:.4f}, n={int(r['n'])})")


def _plot(path: Path) -> list[Path]:
    from scloop.report.plots import plot_run

    paths = plot_run(path)
    for p in paths:
        log.info("wrote %s", p)
    return paths


@app.command("plot")
def plot_cmd(
    run: str = typer.Argument(..., help="Run directory or run id."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
) -> None:
    """Write the figures of a run (PNG and SVG) into RUN/figures."""
    _plot(_resolve_run(run, out))


def _nonneg(option: str, text: str, *, allow_inf: bool) -> float:
    """A number >= 0 from the command line; ``inf`` / ``.inf`` / ``Infinity`` (any case) where
    infinity is allowed, as in configs."""
    t = str(text).strip()
    allowed = "a number >= 0" + (" or inf (.inf, Infinity)" if allow_inf else ", finite")
    if t.lower().lstrip("+") in ("inf", ".inf", "infinity"):
        if allow_inf:
            return math.inf
        _fail(f"{option}: got {text!r}; allowed: {allowed}")
    try:
        v = float(t)
    except ValueError:
        v = math.nan
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        _fail(f"{option}: got {text!r}; allowed: {allowed}")
    return v


@app.command()
def theory(
    lam: List[str] = typer.Option(["0.1", "0.25", "0.5", "0.75", "1.0"], "--lambda",
                                  help="Synthetic fraction(s), numbers >= 0; repeatable."),
    gamma: List[str] = typer.Option(["0", "1", "2", "5", "inf"], "--gamma",
                                    help="Correction strength(s), numbers >= 0 or inf (.inf, Infinity); repeatable."),
    r: str = typer.Option("0", "--eps-l-over-alpha", help="epsilon*L/alpha (model misspecification ratio), >= 0."),
) -> None:
    """Print contraction factors of Theorem 4.3 and the exact Gaussian contraction."""
    from scloop.theory import format_theory_table, theory_table

    lams = [_nonneg("--lambda", v, allow_inf=False) for v in lam]
    gammas = [_nonneg("--gamma", g, allow_inf=True) for g in gamma]
    ratio = _nonneg("--eps-l-over-alpha", r, allow_inf=False)
    try:
        rows = theory_table(lams, gammas, eps_l_over_alpha=ratio)
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(format_theory_table(rows, eps_l_over_alpha=ratio))


@app.command("theory-check")
def theory_check(
    run: str = typer.Argument(..., help="A run of the `augment` policy with the mean_error metric (gaussian-theory)."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Allowed relative error of the contraction."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP),
) -> None:
    """Check a run's measured contraction against the Gaussian prediction.

    Compares the measured per-generation contraction of the seed-mean mean error with
    lambda/((1+lambda)(1+gamma)); exits 1 if any curve is off by more than --tolerance."""
    from scloop.report.contraction import measured_contraction
    from scloop.store import RunStore

    store = RunStore(_resolve_run(run, out))
    tab = measured_contraction(store.table(metric="mean_error"))
    store.close()
    if tab.empty:
        _fail("no mean_error curves in this run")
    typer.echo(f"{'correction':<16}{'lambda':>7}{'gamma':>7}{'measured':>11}{'predicted':>11}{'rel.err':>9}{'ratios':>7}{'seeds':>7}")
    for _, r in tab.iterrows():
        typer.echo(f"{r['correction']:<16}{r['lambda']:>7g}{r['gamma']:>7g}{r['measured']:>11.5f}{r['predicted']:>11.5f}"
                   f"{r['rel_error']:>9.2%}{int(r['n_ratios']):>7}{int(r['n_seeds']):>7}")
    worst = float(tab.rel_error.max())
    typer.echo(f"max relative error {worst:.2%} (tolerance {tolerance:.0%})")
    if not worst <= tolerance:
        raise typer.Exit(1)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _when(value: Any) -> str:
    """An ISO-8601 time stamp as ``YYYY-MM-DD HH:MM`` (its own time zone); ``-`` if absent."""
    if not value:
        return "-"
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)[:16]


def _run_row(d: Path) -> dict[str, str]:
    st = _read_json(d / "status.json")
    prov = _read_json(d / "provenance.json")
    details = [f"gen {st.get('completed_generation', '-')}", f"units {st.get('n_units', '-')}",
               f"engine {st.get('engine', '-')}"]
    return {"name": d.name, "kind": "run", "state": str(st.get("state", "-")),
            "created": _when(prov.get("created_at") or prov.get("started_at") or st.get("started_at")),
            "ended": _when(st.get("ended_at") or prov.get("ended_at")),
            "version": str(prov.get("scloop_version") or "-"), "details": ", ".join(details)}


def _sweep_row(d: Path) -> dict[str, str]:
    from collections import Counter

    from scloop.store.sweep_store import RUN_STATES, SweepStore

    prov = _read_json(d / "provenance.json")
    row = {"name": d.name, "kind": "sweep", "state": "-",
           "created": _when(prov.get("created_at") or prov.get("started_at")), "ended": _when(prov.get("ended_at")),
           "version": str(prov.get("scloop_version") or "-"), "details": "-"}
    store = SweepStore(d)
    try:
        counts = Counter(r["state"] for r in store.run_rows())
    except Exception as exc:  # a sweep database another process is creating, or a damaged one
        row["details"] = f"unreadable ({type(exc).__name__})"
        return row
    finally:
        store.close()
    n = sum(counts.values())
    if n and counts["complete"] == n:
        row["state"] = "complete"
    else:
        row["state"] = next((s for s in ("running", "failed", "pending") if counts[s]), "-")
    order = [s for s in RUN_STATES if counts[s]] + sorted(s for s in counts if s not in RUN_STATES)
    row["details"] = f"runs {n}" + (": " + ", ".join(f"{counts[s]} {s}" for s in order) if n else "")
    return row


@app.command("ls")
def ls_cmd(out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP)) -> None:
    """List the runs and sweeps under --out.

    One line each: name, kind, state, when it was created and when it last ended, the scloop
    version that ran it ("-" where not recorded) and a summary (generations and units of a run;
    the number of runs of a sweep and their states)."""
    from scloop.store import is_sweep_dir

    root = Path(out)
    rows = []
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if is_sweep_dir(d):
                rows.append(_sweep_row(d))
            elif (d / "status.json").exists():
                rows.append(_run_row(d))
    if not rows:
        log.info("no runs or sweeps under %s", out)
        return
    cols = [("name", "NAME"), ("kind", "KIND"), ("state", "STATE"), ("created", "CREATED"),
            ("ended", "LAST END"), ("version", "VERSION"), ("details", "DETAILS")]
    width = {k: max(len(h), *(len(r[k]) for r in rows)) for k, h in cols}
    fmt = "  ".join(f"{{{k}:<{width[k]}}}" for k, _ in cols[:-1]) + "  {details}"
    typer.echo(fmt.format(**{k: h for k, h in cols}).rstrip())
    for r in rows:
        typer.echo(fmt.format(**r).rstrip())


EXPORT_FORMATS = {"csv": (".csv",), "json": (".json",), "parquet": (".parquet", ".pq")}


def _export_format(fmt: Optional[str], to: Optional[str]) -> str:
    """The export format: ``--format`` if given, else the one of ``--to``'s extension, else csv;
    ``--format`` and ``--to`` must agree."""
    allowed_ext = ", ".join(e for exts in EXPORT_FORMATS.values() for e in exts)
    if fmt is not None and fmt not in EXPORT_FORMATS:
        _fail(f"--format: got {fmt!r}; allowed: {' | '.join(EXPORT_FORMATS)}")
    implied = None
    if to is not None:
        suffix = Path(to).suffix.lower()
        implied = next((f for f, exts in EXPORT_FORMATS.items() if suffix in exts), None)
        if implied is None:
            _fail(f"--to: got {to!r}; allowed: a path ending in {allowed_ext}")
        if fmt is not None and fmt != implied:
            _fail(f"--format {fmt} with --to {to!r}: the extension means {implied}; allowed: --format {implied}, "
                  f"or a --to path ending in {' or '.join(EXPORT_FORMATS[fmt])}, or no --format")
    fmt = fmt or implied or "csv"
    if fmt == "parquet" and to is None:
        _fail("--format parquet: parquet is binary and is not printed; allowed: --to FILE.parquet")
    return fmt


@app.command()
def export(
    run: str = typer.Argument(..., help="Run directory, run id, or sweep directory."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv | json (records with provenance; runs only) | "
                                      "parquet (needs --to).  Default: from the --to extension, else csv."),
    no_timing: bool = typer.Option(False, "--no-timing", help="Leave out the *_seconds timing rows."),
    timing: bool = typer.Option(False, "--timing", hidden=True, help="Include the timing rows (the default)."),
    to: Optional[str] = typer.Option(None, "--to", help="Write to FILE (.csv, .json or .parquet) instead of "
                                     "printing."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP + "  Used to resolve a run id."),
) -> None:
    """Print (or write) the tidy results table of a run or a sweep.

    Columns: run_id, task, arm, seed, lambda, gamma, n_real, policy, correction, generation,
    metric, value, status, n_synthetic -- and, for a sweep, one column per swept key.  The
    format is --format, or the one of the --to extension (they must agree), or csv."""
    import csv

    from scloop.core.registry import ConfigError
    from scloop.store import RunStore, SweepStore, is_sweep_dir
    from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS
    from scloop.store.sweep_store import write_table

    if timing and no_timing:
        _fail("--timing and --no-timing: got both; allowed: one of them")
    include_timing = not no_timing
    fmt = _export_format(fmt, to)
    if is_sweep_dir(Path(run)):
        if fmt == "json":
            _fail("--format json: provenance records are per run; export a run directory under RUN/runs/ instead")
        sw = SweepStore(Path(run))
        try:
            if to is not None:
                log.info("wrote %s", sw.export(to, include_timing=include_timing))
            else:
                sys.stdout.write(sw.table(include_timing=include_timing).to_csv(index=False))
        except (ConfigError, ImportError) as exc:
            _fail(str(exc))
        finally:
            sw.close()
        return
    store = RunStore(_resolve_run(run, out))
    try:
        if fmt == "json":
            text = store.records().to_json(orient="records")
            if to is None:
                typer.echo(text)
            else:
                from scloop.store.atomic import atomic_write_text

                atomic_write_text(Path(to), text + "\n")
                log.info("wrote %s", to)
            return
        if to is not None:
            try:
                log.info("wrote %s", write_table(store.table(include_timing=include_timing), to))
            except (ConfigError, ImportError) as exc:
                _fail(str(exc))
            return
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(EXPORT_COLUMNS + EXTRA_COLUMNS)
        for row in store.tidy_rows(include_timing=include_timing):
            w.writerow([repr(v) if isinstance(v, float) else v for v in row])
    finally:
        store.close()


@app.command()
def sweep(
    ctx: typer.Context,
    sweep_ref: str = typer.Argument(..., metavar="SWEEP", help="A sweep preset (see `scloop presets`) or a sweep YAML file."),
    executor: str = typer.Option("local", "--executor", help="local (a process pool) | ray (Ray tasks)."),
    workers: int = typer.Option(0, "--workers", help="Runs in parallel, 1 thread each (0 = one per CPU core)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", hidden=True, help="Old name of --workers."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local one)."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP + "  The sweep is written to OUT/<sweep name>."),
    resume: bool = typer.Option(False, "--resume", help="Require an existing sweep directory and continue it "
                                "(a plain re-run also skips finished runs and resumes partial ones)."),
    force: bool = typer.Option(False, "--force", help="Delete the sweep directory first and start over."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with real data for tasks that read files."),
    report: bool = typer.Option(False, "--report", help="Write the HTML report when the sweep ends."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Same as `scloop -q`: warnings only, no progress."),
    plugin: List[str] = typer.Option([], "--plugin", metavar="MODULE_OR_FILE", help=PLUGIN_HELP),
) -> None:
    """Run a grid of experiments (one run per point) into one results table."""
    from scloop.core.registry import ConfigError
    from scloop.sweep import load_sweep, run_sweep

    _set_quiet(quiet)
    workers = _deprecated_alias(ctx, "workers", workers, "--jobs", jobs, "--workers")
    if workers < 0:
        _fail(f"--workers: got {workers}; allowed: an integer >= 0 (0 = one per CPU core)")
    if data_dir is not None:
        if not Path(data_dir).expanduser().is_dir():
            _fail(f"--data-dir: got {data_dir!r}; allowed: an existing folder")
        os.environ["SCLOOP_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    try:
        refs = _load_plugin_refs(plugin)
        spec = load_sweep(sweep_ref)
        summary = run_sweep(spec, out=out, executor=executor, jobs=workers, address=address, force=force,
                            resume=resume, quiet=_is_quiet() or not sys.stderr.isatty(), plugins=refs)
    except ConfigError as exc:
        _fail(str(exc))
        return
    log.info("%s", summary.line())
    for rid, err in summary.failures:
        log.error("failed: %s: %s", rid, err)
    if report:
        from scloop.report.html import write_report

        log.info("wrote %s", write_report(summary.path))
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def report(
    path: str = typer.Argument(..., help="A sweep directory (OUT/<sweep name>) or a run directory / run id."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help=OUT_HELP + "  Used to resolve a run id."),
    threshold: List[str] = typer.Option([], "--threshold", help="Collapse threshold METRIC=VALUE for the "
                                        "first-crossing phase diagram (default: twice the metric's generation-0 value)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with real data, for reports that read it "
                                           "(e.g. a motion sweep's reference windows); default $SCLOOP_DATA_DIR."),
) -> None:
    """Write a static HTML report of a sweep or a run and print its verdicts.

    The report (figures, phase diagrams, verdicts, compute, configs) goes to
    PATH/report/index.html, the verdict tables to verdicts.md and verdicts.csv beside it."""
    from scloop.core.registry import ConfigError
    from scloop.report.html import write_report
    from scloop.store import is_sweep_dir

    thresholds = {}
    for item in threshold:
        key, _, val = item.partition("=")
        try:
            thresholds[key.strip()] = float(val)
        except ValueError:
            _fail(f"--threshold: got {item!r}; allowed: METRIC=NUMBER (e.g. w2-gaussian=0.5)")
    if data_dir is not None:
        if not Path(data_dir).expanduser().is_dir():
            _fail(f"--data-dir: got {data_dir!r}; allowed: an existing folder")
        os.environ["SCLOOP_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    p = Path(path)
    if not is_sweep_dir(p):
        p = _resolve_run(path, out)
    try:
        index = write_report(p, thresholds=thresholds)
    except ConfigError as exc:
        _fail(str(exc))
        return
    log.info("wrote %s", index)
    vcsv = index.parent / "verdicts.csv"
    if vcsv.exists():
        import pandas as pd

        log.info("wrote %s and %s", index.parent / "verdicts.md", vcsv)
        v = pd.read_csv(vcsv)
        typer.echo("verdicts (corrector vs no correction):")
        from scloop.report.verdicts import NO_VERDICT

        for metric, g in v.groupby("metric", sort=True):
            counts = g["verdict"].value_counts()
            if counts.get(NO_VERDICT, 0) == len(g):
                typer.echo(f"  {metric:<16} no verdict: orientation unknown (declare higher_is_better on the "
                           "metric plugin)")
                continue
            typer.echo(f"  {metric:<16} " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in
                                                     ("helps", "hurts", "no detectable effect")))


def _preset_description(load) -> str:
    try:
        return " ".join(str(load() or "").split()) or "-"
    except Exception as exc:  # a broken preset must not hide the others
        return f"(unreadable: {type(exc).__name__})"


@app.command()
def presets() -> None:
    """List the built-in presets with their descriptions.

    Two groups: run presets (`scloop run NAME`) and sweep presets (`scloop sweep NAME`)."""
    from scloop.core.config import load_raw, preset_names
    from scloop.sweep import load_sweep, sweep_preset_names

    groups = [("run presets (scloop run NAME):", [(n, _preset_description(lambda n=n: load_raw(n).get("description")))
                                                  for n in preset_names()]),
              ("sweep presets (scloop sweep NAME):", [(n, _preset_description(lambda n=n: load_sweep(n).description))
                                                      for n in sweep_preset_names()])]
    width = max([len(n) for _, items in groups for n, _ in items] or [0])
    for i, (title, items) in enumerate(groups):
        if i:
            typer.echo("")
        typer.echo(title)
        for name, desc in items:
            typer.echo(f"  {name:<{width}}  {desc}")


data_app = typer.Typer(no_args_is_help=True, help="Real data sets: what is found in a data dir, downloads.")
app.add_typer(data_app, name="data")


def _data_root(data_dir: Optional[str]) -> Path:
    from scloop.data.paths import default_data_dir

    return Path(data_dir).expanduser() if data_dir else default_data_dir()


@data_app.command("info")
def data_info(
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Data folder (default $SCLOOP_DATA_DIR or "
                                           "~/.cache/scloop/data)."),
    name: List[str] = typer.Option([], "--dataset", help="Only these datasets (default: all supported)."),
    quick: bool = typer.Option(False, "--quick", help="Check counts and checksums without parsing every file."),
) -> None:
    """Where each dataset comes from and whether the data folder holds it intact.

    Prints the source and licence of each supported dataset and checks the data folder's files
    against the dataset's index (counts, checksums, parse); exits 1 on a problem."""
    from scloop.core.registry import ConfigError
    from scloop.motion.datasets import DATASETS, check, describe

    root = _data_root(data_dir)
    names = name or list(DATASETS)
    bad = False
    typer.echo(f"data dir: {root}\n")
    for n in names:
        try:
            typer.echo(describe(n))
            rep = check(n, root, parse=not quick)
        except ConfigError as exc:
            _fail(str(exc))
            return
        except FileNotFoundError as exc:
            typer.echo(f"  not found: {exc}\n")
            continue
        typer.echo(f"  {rep}\n")
        bad = bad or not rep.ok
    if bad:
        raise typer.Exit(1)


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="Data set: mnist."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Target folder (files go to DIR/mnist/)."),
) -> None:
    """Download a data set into the data folder (needs internet; md5 of the contents checked)."""
    from scloop.data.idx import IDXError
    from scloop.data.mnist import download_mnist

    if name != "mnist":
        _fail(f"data set {name!r}: allowed: mnist (digits ships with scikit-learn)")
    try:
        folder = download_mnist(_data_root(data_dir))
    except IDXError as exc:
        _fail(str(exc), code=1)
        return
    typer.echo(f"mnist in {folder}")


motion_app = typer.Typer(no_args_is_help=True, help="Human motion: correction checks, animations.")
app.add_typer(motion_app, name="motion")


@motion_app.command("check-correction")
def motion_check_correction(
    ctx: typer.Context,
    data_dir: str = typer.Option(..., "--data-dir", help="Folder holding mocap/bandai-namco (or that folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n_clips: int = typer.Option(20, "--n-clips", help="Clean clips (style normal, one per action)."),
    max_frames: int = typer.Option(150, "--max-frames", help="Cut each clip to this many frames."),
    harness: float = typer.Option(1.0, "--harness", help="Physics harness budget (correction strength)."),
    workers: int = typer.Option(1, "--workers", help="Worker processes for the simulation."),
    processes: Optional[int] = typer.Option(None, "--processes", hidden=True, help="Old name of --workers."),
    only: List[str] = typer.Option([], "--correction", help="physics, kinematic, physics+kinematic (default all)."),
    bias: bool = typer.Option(True, "--bias/--no-bias", help="Also measure each correction's systematic shift "
                              "of real windows (one and two passes; a few seconds per correction)."),
    bias_windows: str = typer.Option("clips", "--bias-windows", help="Windows for --bias: clips (of the checked "
                                     "clips, 20 fps, 60 frames, stride 20) or task (the bandai task's 371 "
                                     "training windows; ~1 min per correction)."),
) -> None:
    """Measure what each motion correction repairs on real clips.

    Tracks clean clips and corrupted copies (floating, penetration, sliding, jitter) through
    each motion correction and reports tracking error, harness load, falls and violation
    ratios; with --bias (default) also the per-feature-group mean shift each correction adds to
    windows of the clean clips after one and two passes, in group std (target < 0.1)."""
    import json

    from scloop.motion.check import check_corrections, clean_clips, correction_bias, motion_fixes, windows_bias

    workers = _deprecated_alias(ctx, "workers", workers, "--processes", processes, "--workers")
    for flag, value, ok, allowed in (("--n-clips", n_clips, n_clips >= 1, "an integer >= 1"),
                                     ("--max-frames", max_frames, max_frames >= 10, "an integer >= 10"),
                                     ("--workers", workers, workers >= 1, "an integer >= 1"),
                                     ("--harness", harness, harness >= 0, "a number >= 0")):
        if not ok:
            _fail(f"{flag}: got {value}; allowed: {allowed}")
    fixes = motion_fixes(harness, workers)
    unknown = sorted(set(only) - set(fixes))
    if unknown:
        _fail(f"--correction: got {unknown}; allowed: {', '.join(fixes)}")
    if bias_windows not in ("clips", "task"):
        _fail(f"--bias-windows: got {bias_windows!r}; allowed: clips, task")
    try:
        clips = clean_clips(data_dir, n_clips=n_clips, max_frames=max_frames)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"--data-dir: {exc}")
        return
    chosen = {k: v for k, v in fixes.items() if not only or k in only}
    report = check_corrections(clips, chosen)
    extra: dict = {}
    if bias:
        try:
            if bias_windows == "task":
                from scloop.core.registry import TASKS
                from scloop.plugins import load_plugins

                load_plugins()
                task = TASKS.create("bandai", data_dir=data_dir)
                b = windows_bias(task.real_data(task.n_available).x, task.meta["skeleton"], task.meta["fps"], chosen)
                b["source"] = "the bandai task's training windows"
            else:
                b = correction_bias(clips, chosen)
                b["source"] = "windows of the checked clips"
        except ValueError as exc:  # every clip shorter than a window
            extra["_bias"] = {"skipped": str(exc)}
        else:
            for name, entry in b.pop("corrections").items():
                report["corrections"][name]["bias"] = entry
            extra["_bias"] = b
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report["corrections"].items()} | {"_clips": {
            "n": report["n_clips"], "seconds_of_motion": report["seconds_of_motion"],
            "actions": report["clip_actions"]}} | extra))
        return
    for name, e in report["corrections"].items():
        typer.echo(f"{name}: tracking {e['tracking_error_cm']:.2f} cm"
                   + (f", harness load {e['harness_load']:.2f}, falls {e['falls']}" if "harness_load" in e else ""))
        for k, v in e["violation_ratio_after_over_before"].items():
            typer.echo(f"  {k:<12} after/before {v:.3f}   error to clean {e['error_to_clean_cm'][k]:.2f} cm")
        typer.echo("  clean clips, output/input: " + ", ".join(f"{m} {v:.2f}" for m, v in e["clean_metric_ratio"].items()))
        if "bias" in e:
            for k, per in e["bias"]["passes"].items():
                typer.echo(f"  bias, {k} pass{'es' if k != '1' else ''} (group std): "
                           + ", ".join(f"{g} {v:.3f}" for g, v in per.items()))
    if "_bias" in extra:
        b = extra["_bias"]
        typer.echo(f"bias: {b['windows']} {b['source']} ({b['window']} frames at {b['fps']:g} fps); target < "
                   f"{b['target']:g} group std" if "windows" in b else f"bias: skipped ({b['skipped']})")


@motion_app.command("animate")
def motion_animate(
    ctx: typer.Context,
    clip_file: str = typer.Argument(..., help="A BVH file or a DeepMimic JSON file."),
    to: str = typer.Option("motion.gif", "--to", help="Output file: .gif (or .mp4 with an ffmpeg backend)."),
    out: Optional[str] = typer.Option(None, "--out", hidden=True, help="Old name of --to."),
    correct: Optional[str] = typer.Option(None, "--correct", help="Also show the clip after this correction "
                                          "side by side: physics, kinematic or physics+kinematic."),
    harness: float = typer.Option(1.0, "--harness", help="Physics harness budget."),
    max_frames: int = typer.Option(300, "--max-frames", help="Cut the clip to this many frames."),
    stride: int = typer.Option(2, "--stride", help="Draw every n-th frame."),
) -> None:
    """Stick-figure animation of a clip, optionally before/after a correction."""
    from dataclasses import replace

    from scloop.motion.animate import render_frames, write_animation

    to = _deprecated_alias(ctx, "to", to, "--out", out, "--to")
    path = Path(clip_file)
    if not path.is_file():
        _fail(f"CLIP_FILE: got {clip_file!r}; allowed: an existing BVH or DeepMimic JSON file")
    if stride < 1:
        _fail(f"--stride: got {stride}; allowed: an integer >= 1")
    if max_frames < 2:
        _fail(f"--max-frames: got {max_frames}; allowed: an integer >= 2")
    if correct not in (None, "physics", "kinematic", "physics+kinematic"):
        _fail(f"--correct: got {correct!r}; allowed: physics, kinematic, physics+kinematic")
    try:
        if path.suffix.lower() == ".bvh":
            from scloop.motion.bvh import read_bvh

            clip = read_bvh(path)
        else:
            from scloop.motion.deepmimic import read_deepmimic

            clip = read_deepmimic(path)
    except ValueError as exc:
        _fail(str(exc), code=1)
        return
    clip = replace(clip, rotations=clip.rotations[:max_frames], translations=clip.translations[:max_frames])
    clips, titles = [clip], ["input"]
    if correct:
        from scloop.motion.check import motion_fixes
        from scloop.motion.metrics import estimate_clearance

        fix = motion_fixes(harness)[correct]
        fixed, _ = fix([clip], estimate_clearance([clip], clip.skeleton.foot_joints()))
        clips.append(fixed[0])
        titles.append(correct)
    from scloop.motion.metrics import estimate_clearance

    frames = render_frames(clips, titles, stride=stride,
                           clearance=estimate_clearance([clip], clip.skeleton.foot_joints()))
    try:
        p = write_animation(to, frames, clip.fps / stride)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    log.info("wrote %s (%d frames)", p, len(frames))


def _reflow_help(*typers: typer.Typer) -> None:
    """Join the lines of each paragraph of the commands' docstrings: the help screen keeps
    single line breaks of the paragraphs after the first one."""
    import inspect

    for t in typers:
        for info in t.registered_commands:
            if info.callback is not None and info.callback.__doc__:
                doc = inspect.cleandoc(info.callback.__doc__)
                info.callback.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


_reflow_help(app, data_app, motion_app)


def _silence_stdout() -> None:
    """Point the standard output descriptor at /dev/null so that the interpreter's final flush
    of a closed pipe reports nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main() -> None:
    """Entry point of the ``scloop`` command.  A reader that goes away (``scloop export RUN |
    head -1``) ends the command quietly with status 141, like other command-line tools."""
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(141)
    except SystemExit as exc:
        # Typer/click answer EPIPE with exit 1 after wrapping the streams so that their final
        # flush is silent; report it as a closed pipe instead
        if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _silence_stdout()
            sys.exit(141)
        raise


if __name__ == "__main__":
    main()
