"""Image grids of generated samples (image tasks).

The runner keeps up to 10 generated images per class of every generation of every unit in
``samples/unitNNNNNN/genGGGG.npz`` (uint8).  From them this module writes

- ``figures/grids/<unit label>/genGGG.png``: one grid per generation, rows = classes,
  columns = samples (nearest-neighbour upscaled so 8x8 digits stay legible);
- ``figures/grid_evolution.png``: rows = units of one seed, columns = a few generations --
  the figure that shows *how* a loop collapses (speckle, prototypes, one exemplar per class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tile(x: np.ndarray, y: np.ndarray, *, per_class: int = 10, scale: int = 1, pad: int = 1) -> np.ndarray:
    """Arrange images ``x`` uint8 (n, 1, H, W) with labels ``y`` (n,) into one grey image,
    one row per class present (sorted), up to ``per_class`` columns; missing cells stay dark
    grey.  Returns uint8 (rows*(H*scale+pad)+pad, cols*(W*scale+pad)+pad)."""
    classes = np.unique(y)
    h, w = x.shape[2] * scale, x.shape[3] * scale
    out = np.full((len(classes) * (h + pad) + pad, per_class * (w + pad) + pad), 64, dtype=np.uint8)
    for r, c in enumerate(classes):
        imgs = x[y == c][:per_class, 0]
        for j, im in enumerate(imgs):
            big = np.kron(im, np.ones((scale, scale), dtype=np.uint8)) if scale > 1 else im
            out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + j * (w + pad): pad + j * (w + pad) + w] = big
    return out


def _unit_label(u) -> str:
    if u.arm == "baseline":
        return f"seed{u.seed}-baseline"
    corr = "" if u.arm == "no-correction" else f"-{u.correction}-g{u.gamma:g}"
    return f"seed{u.seed}-{u.arm}-lam{u.lam:g}{corr}".replace("(", "_").replace(")", "").replace(",", "_").replace("=", "")


def write_grids(run_dir: Path, *, seeds: tuple[int, ...] = (0,)) -> list[Path]:
    """One PNG per generation and unit (of the given seeds).  Returns the written paths."""
    from matplotlib.image import imsave  # writes through Pillow: no backend involved

    from scloop.store import RunStore
    from scloop.store.atomic import load_npz

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    units = [u for u in store.units() if u.seed in seeds]
    store.close()
    paths = []
    for u in units:
        folder = run_dir / "samples" / f"unit{u.unit:06d}"
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("gen*.npz")):
            a = load_npz(f)
            scale = max(1, 32 // a["x"].shape[-1])
            out = run_dir / "figures" / "grids" / _unit_label(u) / f"{f.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            imsave(out, tile(a["x"], a["y"], scale=scale), cmap="gray", vmin=0, vmax=255)
            paths.append(out)
    return paths


def grid_evolution(run_dir: Path, *, seed: int = 0, generations: list[int] | None = None) -> list[Path]:
    """Rows = the units of ``seed``; columns = ``generations`` (default: 0, ~1/4, ~1/2, last).
    Writes ``figures/grid_evolution.png`` and ``.svg``; returns their paths (none without
    kept samples)."""
    from matplotlib.figure import Figure

    from scloop.report.plots import save_figure
    from scloop.store import RunStore
    from scloop.store.atomic import load_npz

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    units = [u for u in store.units() if u.seed == seed]
    last = store.max_generation()
    store.close()
    if last < 0:
        return []
    gens = generations or sorted({0, last // 4, last // 2, last})
    rows = []
    for u in units:
        files = [run_dir / "samples" / f"unit{u.unit:06d}" / f"gen{g:04d}.npz" for g in gens]
        if all(f.exists() for f in files):
            rows.append((u, [load_npz(f) for f in files]))
    if not rows:
        return []
    # a plain Figure, not pyplot's: nothing to close, the backend stays the caller's
    fig = Figure(figsize=(2.2 * len(gens), 2.3 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(gens), squeeze=False)
    for i, (u, grids) in enumerate(rows):
        for j, a in enumerate(grids):
            ax = axes[i, j]
            ax.imshow(tile(a["x"], a["y"]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"generation {gens[j]}", fontsize=9)
            if j == 0:
                label = "baseline (real only)" if u.arm == "baseline" else (
                    f"no correction\nλ={u.lam:g}" if u.arm == "no-correction" else f"{u.correction}\nγ={u.gamma:g}, λ={u.lam:g}")
                ax.set_ylabel(label, fontsize=8)
    return save_figure(fig, run_dir / "figures" / "grid_evolution")
