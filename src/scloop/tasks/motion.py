"""Motion tasks (docs/paper.md §3.3): windows of real mocap in the canonical representation
(:mod:`scloop.motion.representation`).

``bandai``: clips of the selected ``contents`` (actions; ``"all"``: every action of the selected
dataset(s) with at least ``holdout`` clips, so that each has a held-out clip) and ``styles`` of
Bandai-Namco (``dataset``: ``dataset-1``, ``dataset-2`` or ``all``).  ``cmu-deepmimic``: the CMU
clips in DeepMimic format, labelled by a coarse action read from CMU's description
(:data:`CMU_ACTIONS`).  Both read the data directory (``data_dir`` option / ``--data-dir``; the
folder holding ``mocap/``), resample to ``fps`` and cut windows of ``window`` frames with stride
``stride``.

The split is by clip, never by window (overlapping windows of one clip on both sides would leak):
every ``holdout``-th clip in index order is held out for the metrics' reference, cut with
``ref_stride`` (default ``stride``; a smaller stride gives more, overlapping, reference windows).
``real_data(n_real)`` takes the first ``n_real`` windows of the training split in one of two
orders (``order``): ``clips`` (default) round-robin over the training clips (one window of each
clip, then the second of each ...), so a small ``n_real`` still covers many clips -- but only the
first ``n_real`` clips in index order when there are more clips than that; ``random``: a fixed
permutation of all training windows (seed 0), so that the loop's real data have the split's mix
of actions (each clip weighted by its number of windows), the mix of the held-out reference and of
``real_eval`` below -- otherwise every arm's distribution metrics carry a label-mix mismatch.
``real_data`` is the same for every seed.  Labels ``y``: the index of the clip's action in
``contents``.

``meta`` gives the skeleton, fps, window length and label names to motion corrections and
metrics, and two evaluation sets from the training split (the motion metrics' module,
:mod:`scloop.metrics.motion`): ``encoder_train`` (with ``encoder_data: split``, every training
window: the motion encoder is trained on them instead of the loop's ``n_real`` windows) and
``real_eval`` (``n_eval`` training windows drawn without replacement with a fixed seed, or all of
them if fewer: the real-vs-held-out reference point of the distribution metrics at the evaluation
size, i.e. their small-sample bias; it may share windows with the loop's ``n_real``).
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import TASKS, ConfigError
from scloop.core.types import Data

DEFAULT_CONTENTS = ("walk", "run", "wave-both-hands", "raise-up-both-hands")
ORDER_SEED = 0  # the permutation of order: random
REAL_EVAL_SEED = 1

# coarse actions of the CMU DeepMimic clips: the first keyword found in the lower-cased
# description (in this order) names the action; descriptions with none of them are "other"
CMU_ACTIONS = (("get up", "get-up"), ("cartwheel", "acrobatic"), ("flip", "acrobatic"),
               ("handstand", "acrobatic"), ("helicopter", "acrobatic"), ("kick", "kick"),
               ("jump", "jump"), ("leap", "jump"), ("hop", "jump"), ("run", "run"), ("jog", "run"),
               ("walk", "walk"))


def _check_int(key: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"task.{key}: got {v!r}; allowed: an integer >= {lo}")


class MotionTask:
    """Windows of labelled clips, split by clip (module docstring).  ``clips``: index order;
    ``actions``: the label name of each clip; ``contents``: the label names (their order gives
    ``y``)."""

    domain = "motion"

    def __init__(self, clips, actions, contents, *, name: str, fps: float, window: int, stride: int,
                 holdout: int, n_eval: int, ref_stride: int | None = None, order: str = "clips",
                 encoder_data: str = "loop") -> None:
        from scloop.motion.representation import canonical_skeleton, encode, windows

        for key, v, lo in (("window", window, 8), ("stride", stride, 1), ("holdout", holdout, 2), ("n_eval", n_eval, 2)):
            _check_int(key, v, lo)
        if ref_stride is not None:
            _check_int("ref_stride", ref_stride, 1)
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 5 <= fps <= 120:
            raise ConfigError(f"task.fps: got {fps!r}; allowed: a number in [5, 120]")
        if order not in ("clips", "random"):
            raise ConfigError(f"task.order: got {order!r}; allowed: clips (round-robin over clips), random "
                              "(a fixed permutation of the training windows)")
        if encoder_data not in ("loop", "split"):
            raise ConfigError(f"task.encoder_data: got {encoder_data!r}; allowed: loop (the loop's n_real "
                              "windows), split (every training window)")
        self.contents = tuple(contents)
        self.n_eval = n_eval
        self.name = name
        ref_stride = stride if ref_stride is None else ref_stride
        train, ref = [], []
        for i, (c, action) in enumerate(zip(clips, actions)):
            held = i % holdout == holdout - 1
            w = windows(encode(c, fps=float(fps)), window, ref_stride if held else stride)
            if len(w) == 0:
                continue
            y = np.full(len(w), self.contents.index(action), dtype=np.int64)
            if held:
                ref.append((w.astype(np.float32), y))
            else:
                train.append((w.astype(np.float32), y))
        if not train or not ref:
            raise ConfigError(f"task.window: got {window}; no clip is long enough at {fps} fps "
                              f"(or holdout={holdout} leaves one side empty)")
        # round-robin over clips: window k of every clip before window k+1 of any
        rr = [(ci, k) for k in range(max(len(w) for w, _ in train)) for ci, (w, _) in enumerate(train) if k < len(w)]
        self._train = Data(np.stack([train[ci][0][k] for ci, k in rr]), np.array([train[ci][1][k] for ci, k in rr]))
        if order == "random":
            self._train = self._train.take(np.random.default_rng(ORDER_SEED).permutation(len(self._train)))
        self._ref = Data(np.concatenate([w for w, _ in ref]), np.concatenate([y for _, y in ref]))
        self.n_clips = (len(train), len(ref))
        self.meta = {"skeleton": canonical_skeleton(clips[0].skeleton), "fps": float(fps), "window": window,
                     "labels": self.contents, "real_eval": self._real_eval(n_eval)}
        if encoder_data == "split":
            self.meta["encoder_train"] = self._train

    def _real_eval(self, n: int) -> Data:
        """``n`` training windows, drawn without replacement with a fixed seed (all if fewer)."""
        if n >= len(self._train):
            return self._train
        idx = np.sort(np.random.default_rng(REAL_EVAL_SEED).choice(len(self._train), size=n, replace=False))
        return self._train.take(idx)

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


def _bandai_clips(root: str, contents, styles, dataset: str | None, holdout: int):
    from scloop.motion.datasets import load_bandai

    if dataset not in (None, "all", "dataset-1", "dataset-2"):
        raise ConfigError(f"task.dataset: got {dataset!r}; allowed: dataset-1, dataset-2, all")
    everything = isinstance(contents, str) and contents == "all"
    try:
        clips = load_bandai(root, contents=None if everything else contents, styles=styles)
    except FileNotFoundError as exc:
        raise ConfigError(f"task.data_dir: {exc}") from None
    clips = [c for c in clips if dataset in (None, "all") or c.labels.get("dataset") == dataset]
    if everything:
        counts: dict[str, int] = {}
        for c in clips:
            counts[c.labels["action"]] = counts.get(c.labels["action"], 0) + 1
        contents = tuple(sorted(a for a, k in counts.items() if k >= holdout))
        clips = [c for c in clips if c.labels["action"] in contents]
    return clips, tuple(contents)


@TASKS.register("bandai", domain="motion")
def make_bandai(*, data_dir: str | None = None, contents=DEFAULT_CONTENTS, styles=None, dataset: str = "dataset-2",
                fps: float = 20.0, window: int = 60, stride: int = 20, holdout: int = 5, n_eval: int = 64,
                ref_stride: int | None = None, order: str = "clips", encoder_data: str = "loop") -> MotionTask:
    from scloop.data.paths import default_data_dir

    _check_int("holdout", holdout, 2)
    clips, contents = _bandai_clips(data_dir or str(default_data_dir()), contents, styles, dataset, holdout)
    if len(clips) < holdout:
        raise ConfigError(f"task: only {len(clips)} clips match contents={list(contents)} styles={styles} "
                          f"dataset={dataset!r}; need at least holdout={holdout}")
    return MotionTask(clips, [c.labels["action"] for c in clips], contents, name="bandai", fps=fps, window=window,
                      stride=stride, holdout=holdout, n_eval=n_eval, ref_stride=ref_stride, order=order,
                      encoder_data=encoder_data)


def cmu_action(description: str) -> str:
    """The coarse action of a CMU description (:data:`CMU_ACTIONS`; ``"other"`` if none)."""
    d = description.lower()
    for word, action in CMU_ACTIONS:
        if word in d:
            return action
    return "other"


@TASKS.register("cmu-deepmimic", domain="motion")
def make_cmu_deepmimic(*, data_dir: str | None = None, contents=None, fps: float = 20.0, window: int = 40,
                       stride: int = 10, holdout: int = 3, n_eval: int = 64, ref_stride: int | None = None,
                       order: str = "random", encoder_data: str = "loop") -> MotionTask:
    """The CMU DeepMimic clips (humanoid3d skeleton, 30 fps files) as a motion task; labels: the
    coarse actions of :func:`cmu_action` (``contents``: a subset of them; default every action
    with at least ``holdout`` clips).  2-s windows by default: half the clips are shorter than
    2.9 s."""
    from scloop.data.paths import default_data_dir
    from scloop.motion.datasets import load_cmu_deepmimic

    _check_int("holdout", holdout, 2)
    try:
        clips = load_cmu_deepmimic(data_dir or str(default_data_dir()))
    except FileNotFoundError as exc:
        raise ConfigError(f"task.data_dir: {exc}") from None
    actions = [cmu_action(c.labels.get("description", "")) for c in clips]
    known = sorted(set(actions))
    if contents is None:
        contents = tuple(a for a in known if actions.count(a) >= holdout)
    else:
        contents = (contents,) if isinstance(contents, str) else tuple(contents)
        for a in contents:
            if a not in known:
                raise ConfigError(f"task.contents: {a!r} unknown; known: {', '.join(known)}")
    keep = [i for i, a in enumerate(actions) if a in contents]
    if len(keep) < holdout:
        raise ConfigError(f"task: only {len(keep)} CMU clips match contents={list(contents)}; "
                          f"need at least holdout={holdout}")
    return MotionTask([clips[i] for i in keep], [actions[i] for i in keep], contents, name="cmu-deepmimic", fps=fps,
                      window=window, stride=stride, holdout=holdout, n_eval=n_eval, ref_stride=ref_stride,
                      order=order, encoder_data=encoder_data)
