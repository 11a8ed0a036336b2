"""Writing figures: :func:`save_figure` (PNG + SVG of any matplotlib Figure) and
:func:`plot_run`, the files of ``scloop plot`` -- metric vs generation for every metric, the
theory overlay for the Gaussian mean error under the ``augment`` policy, and image grids for
image tasks (stick-figure GIFs for motion tasks)."""

from __future__ import annotations

from pathlib import Path

import yaml

# Fixed SVG element ids: the same figure gives the same file (diffable, cacheable).
_SAVE_RC = {"svg.hashsalt": "scloop"}


def save_figure(fig, path_stem: Path | str) -> list[Path]:
    """Write ``fig`` (a :class:`matplotlib.figure.Figure`, pyplot-managed or not) as
    ``<path_stem>.png`` (dpi 150) and ``<path_stem>.svg`` (no date in the metadata), cropped to
    the drawn area; returns ``[png, svg]``.

    A stem ending in ``.png`` / ``.svg`` has that suffix replaced; any other dot is part of the
    name (``w2_lambda0.5`` -> ``w2_lambda0.5.png``).  Parent folders are created.  Rendering
    goes through matplotlib's Agg / SVG canvases for this call only: the pyplot backend, the
    global ``rcParams`` and the figure's state are left as they were (the figure is not closed:
    it may be the caller's)."""
    import matplotlib

    stem = Path(path_stem)
    if stem.suffix.lower() in ("", ".png", ".svg"):
        png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    else:  # e.g. "w2_lambda0.5": keep the dot as part of the name
        png, svg = (stem.with_name(stem.name + s) for s in (".png", ".svg"))
    png.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_SAVE_RC):
        fig.savefig(png, format="png", dpi=150, bbox_inches="tight", pad_inches=0.05)
        fig.savefig(svg, format="svg", bbox_inches="tight", pad_inches=0.05, metadata={"Date": None})
    return [png, svg]


def plot_run(run_dir: Path) -> list[Path]:
    """Write the figures of a run into ``<run_dir>/figures`` (module docstring); returns the
    written paths.  The run's own plugins (``plugins:`` of its config) are loaded first, so that
    a user metric is labelled as its plugin declares."""
    from scloop.report import load_run_plugins
    from scloop.report.figures import metric_vs_generation, theory_overlay
    from scloop.store import RunStore

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    df = store.table(include_timing=False)
    cfg = yaml.safe_load(store.config_text())
    store.close()
    load_run_plugins(run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    paths: list[Path] = []
    name = cfg.get("name", run_dir.name)
    for metric in sorted(df.metric.unique()):
        if metric.startswith("correction_"):
            continue
        sub = df[df.metric == metric]
        logy = metric == "mean_error" and cfg.get("init", {}).get("offset", 0) != 0
        fig = metric_vs_generation(sub, metric, title=f"{name}: {metric}", logy=logy)
        paths += save_figure(fig, fig_dir / metric)
    policy = cfg.get("policy")
    policy = policy if isinstance(policy, str) else (policy or {}).get("name")
    if "mean_error" in set(df.metric) and policy == "augment":
        from scloop.theory import predicted_mean_error

        def predicted(lam, gamma, e0, n_generations):
            return predicted_mean_error(e0, lam, gamma, n_generations)

        fig = theory_overlay(df[df.metric == "mean_error"], predicted=predicted)
        paths += save_figure(fig, fig_dir / "mean_error_theory")
    if (run_dir / "samples").is_dir():
        from scloop.report.motion import is_motion_run, write_motion_gifs

        if is_motion_run(run_dir):  # stick-figure GIFs (figures/motion/<unit>/genGGGG.gif)
            return paths + write_motion_gifs(run_dir)
        from scloop.report.images import grid_evolution, write_grids

        write_grids(run_dir)  # one PNG per generation per unit of seed 0 (figures/grids/...)
        paths += grid_evolution(run_dir)
    return paths
