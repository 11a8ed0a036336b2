"""Stick-figure animations of motion clips (GIF via Pillow; MP4 when imageio's ffmpeg plugin is
installed), and a before/after side-by-side.

Each panel draws the bones (parent -> child segments) of one clip seen from the side-front
(matplotlib 3-D axes), the ground grid at z = 0, and the contact joints in red while within
3 cm of the ground.  Frames are rendered with the Agg backend into arrays, then written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.motion.metrics import CONTACT_HEIGHT
from scloop.motion.skeleton import Clip


def render_frames(clips: list[Clip], titles: list[str], *, stride: int = 1, size: float = 3.2,
                  clearance=None) -> list[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of the clips side by side (same length assumed: the shortest wins)."""
    # a plain Figure on an Agg canvas: no pyplot, so the caller's backend (a notebook's inline
    # one) is left alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3-D projection)

    from scloop.motion.kinematic import _root_joint

    X = [c.positions() for c in clips]
    T = min(len(x) for x in X)
    # joints above the one that carries the world translation (e.g. a static "joint_Root" at the
    # origin) are not part of the body: neither drawn nor used for the view box
    r = _root_joint(clips[0])
    body = [j for j in range(clips[0].skeleton.n_joints) if j >= r]
    allp = np.concatenate([x[:T, body].reshape(-1, 3) for x in X])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    centre = (lo + hi) / 2
    half = max(float((hi - lo)[:2].max()) / 2, float(hi[2]) / 2, 0.5) * 1.05
    parents = clips[0].skeleton.parents
    feet = clips[0].skeleton.foot_joints()
    clear = np.zeros(len(feet)) if clearance is None else np.asarray(clearance)
    fig = Figure(figsize=(size * len(clips), size), dpi=80)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, len(clips), i + 1, projection="3d") for i in range(len(clips))]
    frames = []
    gx, gy = np.meshgrid(np.linspace(centre[0] - half, centre[0] + half, 5),
                         np.linspace(centre[1] - half, centre[1] + half, 5))
    for t in range(0, T, stride):
        for ax, x, title in zip(axes, X, titles):
            ax.cla()
            ax.plot_wireframe(gx, gy, np.zeros_like(gx), color="0.85", linewidth=0.5)
            for j, p in enumerate(parents):
                if p >= r:
                    ax.plot(*zip(x[t, p], x[t, j]), color="tab:blue", linewidth=2)
            contact = [f for f, c in zip(feet, clear) if x[t, f, 2] - c < CONTACT_HEIGHT]
            if contact:
                ax.scatter(*x[t, contact].T, color="tab:red", s=12)
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_zlim(0, 2 * half)
            ax.set_box_aspect((1, 1, 1))
            ax.view_init(elev=12, azim=-60)
            ax.set_axis_off()
            ax.set_title(f"{title}  {t / clips[0].fps:.2f} s", fontsize=8)
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return frames


def write_animation(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    """GIF (always available through Pillow) or MP4 (needs imageio-ffmpeg); written atomically."""
    import imageio.v3 as iio

    from scloop.store.atomic import atomic_write_bytes

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise ValueError(f"{path}: allowed extensions .gif, .mp4")
    if ext == ".gif":
        blob = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    else:
        try:
            blob = iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps)
        except Exception as exc:  # imageio raises several types when no ffmpeg backend is present
            raise RuntimeError(f"{path}: no MP4 encoder available ({exc}); write a .gif instead") from None
    atomic_write_bytes(path, blob)
    return path
