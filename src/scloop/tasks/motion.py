"""Motion task (docs/paper.md §3.3): windows of real Bandai-Namco mocap in the canonical
representation (:mod:`scloop.motion.representation`).

Clips of the selected ``contents`` (actions) and ``styles`` are read from the data directory
(``data_dir`` option / ``--data-dir``; the folder holding ``mocap/bandai-namco``), resampled to
``fps`` and cut into windows of ``window`` frames with stride ``stride``.  The split is by clip,
never by window (overlapping windows of one clip on both sides would leak): every ``holdout``-th
clip in index order is held out for the metrics' reference.  ``real_data(n_real)`` takes windows
round-robin over the training clips (one window of each clip, then the second of each ...), so a
small ``n_real`` still covers every clip; it is the same for every seed.  Labels ``y``: the index
of the clip's action in ``contents``.  ``meta`` gives the skeleton, fps, window length and label
names to motion corrections and metrics.
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import TASKS, ConfigError
from scloop.core.types import Data

DEFAULT_CONTENTS = ("walk", "run", "wave-both-hands", "raise-up-both-hands")


class MotionTask:
    domain = "motion"

    def __init__(self, *, data_dir: str | None, contents, styles, dataset: str, fps: float, window: int,
                 stride: int, holdout: int, n_eval: int) -> None:
        from scloop.data.paths import default_data_dir
        from scloop.motion.datasets import load_bandai
        from scloop.motion.representation import canonical_skeleton, encode, windows

        for key, v, lo in (("window", window, 8), ("stride", stride, 1), ("holdout", holdout, 2), ("n_eval", n_eval, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"task.{key}: got {v!r}; allowed: an integer >= {lo}")
        if not isinstance(fps, (int, float)) or not 5 <= fps <= 120:
            raise ConfigError(f"task.fps: got {fps!r}; allowed: a number in [5, 120]")
        self.contents = tuple(contents)
        self.n_eval = n_eval
        root = data_dir or str(default_data_dir())
        try:
            clips = load_bandai(root, contents=self.contents, styles=styles)
        except FileNotFoundError as exc:
            raise ConfigError(f"task.data_dir: {exc}") from None
        clips = [c for c in clips if dataset in (None, "all") or c.labels.get("dataset") == dataset]
        if len(clips) < holdout:
            raise ConfigError(f"task: only {len(clips)} clips match contents={list(self.contents)} styles={styles} "
                              f"dataset={dataset!r}; need at least holdout={holdout}")
        train, ref = [], []
        for i, c in enumerate(clips):
            w = windows(encode(c, fps=float(fps)), window, stride)
            if len(w) == 0:
                continue
            y = np.full(len(w), self.contents.index(c.labels["action"]), dtype=np.int64)
            (ref if i % holdout == holdout - 1 else train).append((w.astype(np.float32), y))
        if not train or not ref:
            raise ConfigError(f"task.window: got {window}; no clip is long enough at {fps} fps")
        # round-robin over clips: window k of every clip before window k+1 of any
        order = [(ci, k) for k in range(max(len(w) for w, _ in train)) for ci, (w, _) in enumerate(train) if k < len(w)]
        self._train = Data(np.stack([train[ci][0][k] for ci, k in order]), np.array([train[ci][1][k] for ci, k in order]))
        self._ref = Data(np.concatenate([w for w, _ in ref]), np.concatenate([y for _, y in ref]))
        self.n_clips = (len(train), len(ref))
        self.meta = {"skeleton": canonical_skeleton(clips[0].skeleton), "fps": float(fps), "window": window,
                     "labels": self.contents}
        self.name = "bandai"

    @property
    def n_available(self) -> int:
        return len(self._train)

    def real_data(self, n_real: int, rng: np.random.Generator | None = None) -> Data:
        """The first ``n_real`` training windows (round-robin over clips; ``rng`` unused)."""
        if n_real > len(self._train):
            raise ConfigError(f"config key 'n_real': got {n_real}; the training split has {len(self._train)} "
                              f"windows ({self.n_clips[0]} clips)")
        return self._train.take(slice(0, n_real))

    def reference(self, rng: np.random.Generator | None = None) -> Data:
        """Windows of the held-out clips."""
        return self._ref


@TASKS.register("bandai", domain="motion")
def make_bandai(*, data_dir: str | None = None, contents=DEFAULT_CONTENTS, styles=None, dataset: str = "dataset-2",
                fps: float = 20.0, window: int = 60, stride: int = 20, holdout: int = 5, n_eval: int = 64) -> MotionTask:
    return MotionTask(data_dir=data_dir, contents=contents, styles=styles, dataset=dataset, fps=fps, window=window,
                      stride=stride, holdout=holdout, n_eval=n_eval)
