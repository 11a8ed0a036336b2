"""Figures of one run directory: metric vs generation for every metric, the theory overlay
for the Gaussian mean error under the ``augment`` policy, and image grids for image tasks
(stick-figure GIFs for motion tasks)."""

from __future__ import annotations

from pathlib import Path

import yaml


def plot_run(run_dir: Path) -> list[Path]:
    from scloop.report.figures import metric_vs_generation, theory_overlay
    from scloop.store import RunStore

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    df = store.table(include_timing=False)
    cfg = yaml.safe_load(store.config_text())
    store.close()
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    paths: list[Path] = []
    name = cfg.get("name", run_dir.name)
    for metric in sorted(df.metric.unique()):
        if metric.startswith("correction_"):
            continue
        sub = df[df.metric == metric]
        logy = metric == "mean_error" and cfg.get("init", {}).get("offset", 0) != 0
        paths += metric_vs_generation(sub, metric, fig_dir / metric, title=f"{name}: {metric}", logy=logy)
    policy = cfg.get("policy")
    policy = policy if isinstance(policy, str) else (policy or {}).get("name")
    if "mean_error" in set(df.metric) and policy == "augment":
        from scloop.theory import predicted_mean_error

        def predicted(lam, gamma, e0, n_generations):
            return predicted_mean_error(e0, lam, gamma, n_generations)

        paths += theory_overlay(df[df.metric == "mean_error"], fig_dir / "mean_error_theory", predicted=predicted)
    if (run_dir / "samples").is_dir():
        from scloop.report.motion import is_motion_run, write_motion_gifs

        if is_motion_run(run_dir):  # stick-figure GIFs (figures/motion/<unit>/genGGGG.gif)
            return paths + write_motion_gifs(run_dir)
        from scloop.report.images import grid_evolution, write_grids

        write_grids(run_dir)  # one PNG per generation per unit of seed 0 (figures/grids/...)
        paths += grid_evolution(run_dir)
    return paths
