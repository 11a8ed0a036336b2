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
    from scloop.core.registry import TASKS, ConfigError, load_plugins

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
    run: str = typer.Argument(..., help="Run directory or run id."),
    fmt: str = typer.Option("csv", "--format", help="csv | json (records with provenance)."),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Include *_seconds rows."),
    out: str = typer.Option(DEFAULT_OUT, "--out", help="Root folder of run directories."),
) -> None:
    """Print the tidy results table: run_id, task, arm, seed, lambda, gamma, n_real, policy,
    correction, generation, metric, value (then status, n_synthetic)."""
    import csv

    from scloop.store import RunStore
    from scloop.store.run_store import EXPORT_COLUMNS, EXTRA_COLUMNS

    if fmt not in ("csv", "json"):
        _fail(f"--format: got {fmt!r}; allowed: csv | json")
    store = RunStore(_resolve_run(run, out))
    if fmt == "json":
        typer.echo(store.records().to_json(orient="records"))
        return
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS + EXTRA_COLUMNS)
    for row in store.tidy_rows(include_timing=timing):
        w.writerow([repr(v) if isinstance(v, float) else v for v in row])


@app.command()
def presets() -> None:
    """List the built-in presets."""
    from scloop.core.config import preset_names

    for p in preset_names():
        typer.echo(p)


data_app = typer.Typer(no_args_is_help=True, help="Real data sets: what is found in a data dir, downloads.")
app.add_typer(data_app, name="data")


def _data_root(data_dir: Optional[str]) -> Path:
    from scloop.data.paths import default_data_dir

    return Path(data_dir).expanduser() if data_dir else default_data_dir()


@data_app.command("info")
def data_info(data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Data folder (default "
                                                     "$SCLOOP_DATA_DIR or ~/.cache/scloop/data).")) -> None:
    """List the data sets found in the data folder and check that they read."""
    from scloop.data.idx import IDXError
    from scloop.data.mnist import find_mnist, load_mnist

    root = _data_root(data_dir)
    typer.echo(f"data dir: {root}")
    typer.echo("digits: sklearn.datasets.load_digits, 1,797 8x8 images (always available)")
    found = find_mnist(root)
    if not found:
        typer.echo("mnist: not found (scloop data download mnist --data-dir DIR)")
    for split, (pi, _) in found.items():
        try:
            x, _ = load_mnist(root, split)
            typer.echo(f"mnist {split}: {len(x):,} images, ok ({pi.parent})")
        except IDXError as exc:
            _fail(str(exc), code=1)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
