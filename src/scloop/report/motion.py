"""Stick-figure GIFs of generated motion (motion tasks).

The runner keeps up to 2 generated windows per class of every generation of every unit in
``samples/unitNNNNNN/genGGGG.npz`` (float16 (k, T, F) in the task's representation).  From them
:func:`write_motion_gifs` writes ``figures/motion/<unit label>/genGGGG.gif``: one panel per kept
window (decoded on the task's skeleton, titled with its action), for a few generations (default
0, the middle one and the last) of the units of seed 0.  The skeleton and fps come from the run's
task (its ``data_dir`` is stored in the config by ``--data-dir``; else ``$SCLOOP_DATA_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def is_motion_run(run_dir: Path) -> bool:
    """Whether the run's kept samples are motion windows (ndim 3)."""
    from scloop.store.atomic import load_npz

    for f in sorted(Path(run_dir).glob("samples/unit*/gen*.npz"))[:1]:
        return np.asarray(load_npz(f)["x"]).ndim == 3
    return False


def _task_meta(run_dir: Path) -> dict:
    import yaml

    from scloop.core.registry import TASKS
    from scloop.plugins import load_plugins
    from scloop.store import RunStore

    load_plugins()
    store = RunStore(run_dir)
    cfg = yaml.safe_load(store.config_text())
    store.close()
    task = cfg["task"] if isinstance(cfg["task"], dict) else {"name": cfg["task"]}
    kwargs = {k: v for k, v in task.items() if k != "name"}
    return TASKS.create(task["name"], **kwargs).meta


def write_motion_gifs(run_dir: Path, *, seeds: tuple[int, ...] = (0,), generations: list[int] | None = None,
                      stride: int = 2, max_panels: int = 4) -> list[Path]:
    """One GIF per chosen generation and unit of ``seeds`` (module docstring); ``stride``: every
    stride-th frame (the GIF plays at fps / stride, i.e. real time); at most ``max_panels``
    windows (one per class first).  Returns the written paths."""
    from scloop.motion.animate import render_frames, write_animation
    from scloop.motion.representation import decode
    from scloop.report.images import _unit_label
    from scloop.store import RunStore
    from scloop.store.atomic import load_npz

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    units = [u for u in store.units() if u.seed in seeds]
    last = store.max_generation()
    store.close()
    if last < 0 or not units:
        return []
    gens = sorted(set(generations)) if generations is not None else sorted({0, last // 2, last})
    meta = _task_meta(run_dir)
    skel, fps = meta["skeleton"], float(meta["fps"])
    labels = list(meta.get("labels", ()))
    paths = []
    for u in units:
        for g in gens:
            f = run_dir / "samples" / f"unit{u.unit:06d}" / f"gen{g:04d}.npz"
            if not f.exists():
                continue
            a = load_npz(f)
            x, y = np.asarray(a["x"], dtype=np.float32), np.asarray(a["y"])
            # one window per class first, then the second ones
            order = sorted(range(len(y)), key=lambda i: (int(np.sum(y[:i] == y[i])), int(y[i])))[:max_panels]
            clips, titles = [], []
            for i in order:
                if not np.isfinite(x[i]).all():
                    continue
                clips.append(decode(x[i], skel, fps=fps))
                name = labels[int(y[i])] if int(y[i]) < len(labels) else f"class {int(y[i])}"
                titles.append(f"{name} (gen {g})")
            if not clips:
                continue
            frames = render_frames(clips, titles, stride=stride)
            out = run_dir / "figures" / "motion" / _unit_label(u) / f"gen{g:04d}.gif"
            out.parent.mkdir(parents=True, exist_ok=True)
            paths.append(write_animation(out, frames, fps / stride))
    return paths
