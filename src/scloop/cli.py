"""The ``scloop`` command line (Typer).  It parses arguments into specs and calls
:mod:`scloop.runner`, :mod:`scloop.store`, :mod:`scloop.report` or :mod:`scloop.theory`; it
holds no logic of its own.  Bad input exits with status 2 and a message naming the key, the
value and what is allowed, before anything is written."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Self-consuming generative training loops with self-correction.")

DEFAULT_OUT = os.environ.get("SCLOOP_RUNS", "runs")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


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


@app.command()
def run(
    config: str = typer.Argument(..., help="A preset name (see `scloop presets`) or a YAML config file."),
    set_: List[str] = typer.Option([], "--set", help="Override a key: --set gamma=[0,1] --set n_generations=10"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Number of seeds (overrides the config's `seeds`)."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run directory name (default: NAME-HASH)."),
    resume: bool = typer.Option(False, "--resume", help="Continue after the last complete generation."),
    force: bool = typer.Option(False, "--force", help="Delete an existing run with the same id first."),
    plot: bool = typer.Option(False, "--plot", help="Write the figures when the run ends."),
    quiet: bool = typer.Option(False, "--quiet", help="Plain log lines instead of progress bars."),
    workers: int = typer.Option(0, "--workers", help="Worker processes for the generic engine, 1 thread each "
                                "(0 = one per CPU core); results do not depend on it."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with real data (e.g. mnist/*.gz) for "
                                           "tasks that read files; default $SCLOOP_DATA_DIR or ~/.cache/scloop/data."),
) -> None:
    """Run an experiment (all arms, lambdas, gammas and seeds) into a run directory."""
    from scloop.core.config import load_spec
    from scloop.core.registry import ConfigError
    from scloop.runner import RunExists, run_experiment

    if seeds is not None and seeds < 1:
        _fail(f"--seeds: got {seeds}; allowed: an integer >= 1")
    if workers < 0:
        _fail(f"--workers: got {workers}; allowed: an integer >= 0 (0 = one per CPU core)")
    try:
        spec = load_spec(config, set_, seeds=seeds)
        if data_dir is not None:
            spec = _with_data_dir(spec, data_dir)
        summary = run_experiment(spec, out=out, run_id=run_id, resume=resume, force=force,
                                 quiet=quiet or not sys.stderr.isatty(), workers=workers)
    except ConfigError as exc:
        _fail(str(exc))
        return
    except RunExists as exc:
        _fail(str(exc), code=1)
        return
    if summary.skipped:
        typer.echo(f"run {summary.run_id} is already complete at {summary.path} (use --force to recompute)")
    else:
        typer.echo(f"run {summary.run_id}: {summary.n_units} units, engine={summary.engine}, "
                   f"{summary.seconds:.2f} s -> {summary.path}")
    _print_final(summary.path, spec.metrics[0])
    if plot:
        _plot(summary.path)


def _with_data_dir(spec, data_dir: str):
    """Set ``task.data_dir`` for tasks that read files; other tasks ignore ``--data-dir``."""
    from scloop.core.config import spec_from_dict
    from scloop.core.registry import TASKS, ConfigError
    from scloop.plugins import load_plugins

    load_plugins()
    if "data_dir" not in TASKS.options(spec.task.name):
        return spec
    if not Path(data_dir).expanduser().is_dir():
        raise ConfigError(f"--data-dir: got {data_dir!r}; allowed: an existing folder")
    raw = spec.to_dict()
    task = raw["task"] if isinstance(raw["task"], dict) else {"name": raw["task"]}
    raw["task"] = {**task, "data_dir": str(Path(data_dir).expanduser().resolve())}
    return spec_from_dict(raw)


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
        typer.echo(f"wrote {p}")
    return paths


@app.command("plot")
def plot_cmd(
    run: str = typer.Argument(..., help="Run directory or run id."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories."),
) -> None:
    """Write the figures of a run (PNG and SVG) into RUN/figures."""
    _plot(_resolve_run(run, out))


@app.command()
def theory(
    lam: List[float] = typer.Option([0.1, 0.25, 0.5, 0.75, 1.0], "--lambda", help="Synthetic fraction(s)."),
    gamma: List[str] = typer.Option(["0", "1", "2", "5", "inf"], "--gamma", help="Correction strength(s); 'inf' allowed."),
    r: float = typer.Option(0.0, "--eps-l-over-alpha", help="epsilon*L/alpha (model misspecification ratio)."),
) -> None:
    """Print contraction factors of Theorem 4.3 and the exact Gaussian contraction."""
    from scloop.theory import format_theory_table, theory_table

    try:
        gammas = [float(g) for g in gamma]
        rows = theory_table(lam, gammas, eps_l_over_alpha=r)
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(format_theory_table(rows, eps_l_over_alpha=r))


@app.command("theory-check")
def theory_check(
    run: str = typer.Argument(..., help="A run of the `augment` policy with the mean_error metric (gaussian-theory)."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Allowed relative error of the contraction."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories."),
) -> None:
    """Compare the measured per-generation contraction of the seed-mean mean error with
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


@app.command("ls")
def ls_cmd(out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories.")) -> None:
    """List runs."""
    from scloop.store import list_runs

    runs = list_runs(Path(out))
    if not runs:
        typer.echo(f"no runs under {out}")
        return
    for r in runs:
        typer.echo(f"{r['run_id']:<40} {r.get('state', '?'):<9} gen {r.get('completed_generation', '?'):>5}  "
                   f"units {r.get('n_units', '?'):>6}  engine {r.get('engine', '?')}")


@app.command()
def export(
    run: str = typer.Argument(..., help="Run directory, run id, or sweep directory."),
    fmt: str = typer.Option("csv", "--format", help="csv | json (records with provenance; runs only)."),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Include *_seconds rows."),
    to: Optional[str] = typer.Option(None, "--to", help="Write to FILE.csv or FILE.parquet instead of printing."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories."),
) -> None:
    """Print (or write) the tidy results table: run_id, task, arm, seed, lambda, gamma, n_real,
    policy, correction, generation, metric, value, status, n_synthetic -- and, for a sweep, one
    column per swept key."""
    import csv

    from scloop.core.registry import ConfigError
    from scloop.store import RunStore, SweepStore, is_sweep_dir
    from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS

    if fmt not in ("csv", "json"):
        _fail(f"--format: got {fmt!r}; allowed: csv | json")
    if to is not None and not to.endswith((".csv", ".parquet")):
        _fail(f"--to: got {to!r}; allowed: a path ending in .csv or .parquet")
    if is_sweep_dir(Path(run)):
        if fmt == "json":
            _fail("--format json: provenance records are per run; export a run directory under RUN/runs/ instead")
        sw = SweepStore(Path(run))
        try:
            if to is not None:
                typer.echo(f"wrote {sw.export(to, include_timing=timing)}")
            else:
                sys.stdout.write(sw.table(include_timing=timing).to_csv(index=False))
        except (ConfigError, ImportError) as exc:
            _fail(str(exc))
        finally:
            sw.close()
        return
    store = RunStore(_resolve_run(run, out))
    if to is not None:
        from scloop.store.sweep_store import write_table

        typer.echo(f"wrote {write_table(store.table(include_timing=timing), to)}")
        return
    if fmt == "json":
        typer.echo(store.records().to_json(orient="records"))
        return
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS + EXTRA_COLUMNS)
    for row in store.tidy_rows(include_timing=timing):
        w.writerow([repr(v) if isinstance(v, float) else v for v in row])


@app.command()
def sweep(
    sweep_ref: str = typer.Argument(..., metavar="SWEEP", help="A sweep preset (see `scloop presets`) or a sweep YAML file."),
    executor: str = typer.Option("local", "--executor", help="local (a process pool) | ray (Ray tasks)."),
    jobs: int = typer.Option(0, "--jobs", help="Runs in parallel, 1 thread each (0 = one per CPU core)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local one)."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder: the sweep is written to OUT/<sweep name>."),
    resume: bool = typer.Option(False, "--resume", help="Require an existing sweep directory and continue it "
                                "(a plain re-run also skips finished runs and resumes partial ones)."),
    force: bool = typer.Option(False, "--force", help="Delete the sweep directory first and start over."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with real data for tasks that read files."),
    report: bool = typer.Option(False, "--report", help="Write the HTML report when the sweep ends."),
    quiet: bool = typer.Option(False, "--quiet", help="Plain log lines instead of a progress bar."),
) -> None:
    """Run a grid of experiments (one run per point) into one results table."""
    from scloop.core.registry import ConfigError
    from scloop.sweep import load_sweep, run_sweep

    if data_dir is not None:
        os.environ["SCLOOP_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
        if not Path(data_dir).expanduser().is_dir():
            _fail(f"--data-dir: got {data_dir!r}; allowed: an existing folder")
    try:
        spec = load_sweep(sweep_ref)
        summary = run_sweep(spec, out=out, executor=executor, jobs=jobs, address=address, force=force,
                            resume=resume, quiet=quiet or not sys.stderr.isatty())
    except ConfigError as exc:
        _fail(str(exc))
        return
    typer.echo(summary.line())
    for rid, err in summary.failures:
        typer.echo(f"  failed: {rid}: {err}", err=True)
    if report:
        from scloop.report.html import write_report

        typer.echo(f"report: {write_report(summary.path)}")
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def report(
    path: str = typer.Argument(..., help="A sweep directory (OUT/<sweep name>) or a run directory / run id."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories (to resolve a run id)."),
    threshold: List[str] = typer.Option([], "--threshold", help="Collapse threshold METRIC=VALUE for the "
                                        "first-crossing phase diagram (default: twice the metric's generation-0 value)."),
) -> None:
    """Write a static HTML report (figures, phase diagrams, verdicts, compute, configs) into
    PATH/report/index.html."""
    from scloop.core.registry import ConfigError
    from scloop.report.html import write_report
    from scloop.store import is_sweep_dir

    p = Path(path)
    if not is_sweep_dir(p):
        p = _resolve_run(path, out)
    thresholds = {}
    for item in threshold:
        key, _, val = item.partition("=")
        try:
            thresholds[key.strip()] = float(val)
        except ValueError:
            _fail(f"--threshold {item!r}: expected METRIC=NUMBER (e.g. w2-gaussian=0.5)")
    try:
        index = write_report(p, thresholds=thresholds)
    except ConfigError as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {index}")
    vcsv = index.parent / "verdicts.csv"
    if vcsv.exists():
        import pandas as pd

        v = pd.read_csv(vcsv)
        typer.echo(f"wrote {index.parent / 'verdicts.md'} and {vcsv.name}; verdicts (corrector vs no correction):")
        for metric, g in v.groupby("metric", sort=True):
            counts = g["verdict"].value_counts()
            typer.echo(f"  {metric:<16} " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in
                                                     ("helps", "hurts", "no detectable effect")))


@app.command()
def presets() -> None:
    """List the built-in presets."""
    from scloop.core.config import preset_names

    from scloop.sweep import sweep_preset_names

    for p in preset_names():
        typer.echo(p)
    for p in sweep_preset_names():
        typer.echo(f"{p}  (sweep: scloop sweep {p})")


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
    """Where each supported dataset comes from (source, licence) and whether the data folder holds
    it intact (files against the dataset's index: counts, checksums, parse)."""
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
    data_dir: str = typer.Option(..., "--data-dir", help="Folder holding mocap/bandai-namco (or that folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    n_clips: int = typer.Option(20, "--n-clips", help="Clean clips (style normal, one per action)."),
    max_frames: int = typer.Option(150, "--max-frames", help="Cut each clip to this many frames."),
    harness: float = typer.Option(1.0, "--harness", help="Physics harness budget (correction strength)."),
    processes: int = typer.Option(1, "--processes", help="Worker processes for the simulation."),
    only: List[str] = typer.Option([], "--correction", help="physics, kinematic, physics+kinematic (default all)."),
) -> None:
    """Track clean clips and corrupted copies (floating, penetration, sliding, jitter) through each
    motion correction and report tracking error, harness load, falls and violation ratios."""
    import json

    from scloop.motion.check import check_corrections, clean_clips, motion_fixes

    if n_clips < 1 or max_frames < 10 or processes < 1 or harness < 0:
        _fail("--n-clips >= 1, --max-frames >= 10, --processes >= 1 and --harness >= 0 are required")
    fixes = motion_fixes(harness, processes)
    unknown = sorted(set(only) - set(fixes))
    if unknown:
        _fail(f"--correction: got {unknown}; allowed: {', '.join(fixes)}")
    try:
        clips = clean_clips(data_dir, n_clips=n_clips, max_frames=max_frames)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"--data-dir: {exc}")
        return
    report = check_corrections(clips, {k: v for k, v in fixes.items() if not only or k in only})
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report["corrections"].items()} | {"_clips": {
            "n": report["n_clips"], "seconds_of_motion": report["seconds_of_motion"],
            "actions": report["clip_actions"]}}))
        return
    for name, e in report["corrections"].items():
        typer.echo(f"{name}: tracking {e['tracking_error_cm']:.2f} cm"
                   + (f", harness load {e['harness_load']:.2f}, falls {e['falls']}" if "harness_load" in e else ""))
        for k, v in e["violation_ratio_after_over_before"].items():
            typer.echo(f"  {k:<12} after/before {v:.3f}   error to clean {e['error_to_clean_cm'][k]:.2f} cm")
        typer.echo("  clean clips, output/input: " + ", ".join(f"{m} {v:.2f}" for m, v in e["clean_metric_ratio"].items()))


@motion_app.command("animate")
def motion_animate(
    clip_file: str = typer.Argument(..., help="A BVH file or a DeepMimic JSON file."),
    out: str = typer.Option("motion.gif", "--out", help="Output .gif (or .mp4 with an ffmpeg backend)."),
    correct: Optional[str] = typer.Option(None, "--correct", help="Also show the clip after this correction "
                                          "side by side: physics, kinematic or physics+kinematic."),
    harness: float = typer.Option(1.0, "--harness", help="Physics harness budget."),
    max_frames: int = typer.Option(300, "--max-frames", help="Cut the clip to this many frames."),
    stride: int = typer.Option(2, "--stride", help="Draw every n-th frame."),
) -> None:
    """Stick-figure animation of a clip, optionally before/after a correction."""
    from dataclasses import replace

    from scloop.motion.animate import render_frames, write_animation

    path = Path(clip_file)
    if not path.is_file():
        _fail(f"CLIP_FILE: {clip_file!r} is not a file")
    if stride < 1 or max_frames < 2:
        _fail("--stride >= 1 and --max-frames >= 2 are required")
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
        p = write_animation(out, frames, clip.fps / stride)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {p} ({len(frames)} frames)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
