"""``scloop motion check-correction``: how well each motion correction repairs known violations.

On ``n_clips`` clean Bandai clips (style ``normal``, one take per action, both datasets, in index
order; cut to ``max_frames``) and, for each clip, four corrupted copies
(:mod:`scloop.motion.corrupt`), every correction (``physics``, ``kinematic`` and the chain
``physics+kinematic``) reports:

- ``tracking_error_cm``: mean per-joint position error (cm) of the output vs the clean input;
- ``harness_load`` and ``falls`` (physics only);
- ``violation_ratio_after_over_before[kind]``: sum over clips of the violated metric after the
  correction / the same sum on the corrupted input (floating -> floating, penetration ->
  penetration, sliding -> skating, jitter -> jerk);
- ``error_to_clean_cm[kind]``: mean per-joint error of the corrected corrupted clip vs the clean
  clip;
- ``clean_metric_ratio[metric]``: on the clean clips, sum of each metric over the outputs / over
  the inputs (> 1.2 means the correction made clean motion worse by more than 20 %), with the
  per-clip means in ``clean_metric_mean_before`` / ``clean_metric_mean_after`` (metres, m/s,
  m/s^3): a ratio of two near-zero values says little.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from scloop.motion import metrics as M
from scloop.motion.corrupt import KINDS, VIOLATION, corrupt
from scloop.motion.skeleton import Clip


def clean_clips(data_dir: str | Path, *, n_clips: int = 20, max_frames: int = 150) -> list[Clip]:
    """Style-normal clips, one per (dataset, action), in index order, cut to ``max_frames``."""
    from dataclasses import replace

    from scloop.motion.bvh import read_bvh
    from scloop.motion.datasets import dataset_dir, read_index

    root = dataset_dir("bandai-namco", data_dir)
    seen, rows = set(), []
    for r in read_index(root):
        key = (r["dataset"], r["content"])
        if r["style"] == "normal" and key not in seen:
            seen.add(key)
            rows.append(r)
    # interleave the two datasets so a small n_clips still covers walks, runs and gestures
    d1 = [r for r in rows if r["dataset"] == "dataset-1"]
    d2 = [r for r in rows if r["dataset"] == "dataset-2"]
    order = [r for pair in zip(d2, d1) for r in pair] + d1[len(d2):] + d2[len(d1):]
    clips = []
    for r in order[:n_clips]:
        c = read_bvh(root / r["file"], labels={"action": r["content"], "style": r["style"]})
        if c.n_frames > max_frames:
            c = replace(c, rotations=c.rotations[:max_frames], translations=c.translations[:max_frames])
        clips.append(c)
    return clips


def _err_cm(a: Clip, b: Clip) -> float:
    return float(100 * np.linalg.norm(a.positions() - b.positions(), axis=-1).mean())


Fix = Callable[[list[Clip], np.ndarray], tuple[list[Clip], dict]]


def check_corrections(clips: list[Clip], corrections: dict[str, Fix], *, seed: int = 0) -> dict:
    """Run every correction -- a function ``(clips, foot clearance) -> (corrected clips,
    {"harness_load": ..., "falls": ...})`` -- on the clean clips and their corrupted copies.
    Returns the JSON-able report (module docstring)."""
    feet = clips[0].skeleton.foot_joints()
    clear = M.estimate_clearance(clips, feet)
    rng = np.random.default_rng(seed)
    corrupted = {k: [corrupt(c, k, rng=rng) for c in clips] for k in KINDS}

    def metric_sum(cs: list[Clip], name: str) -> float:
        return float(sum(M.all_metrics(c.positions(), c.fps, feet, clear)[name] for c in cs))

    report: dict = {"n_clips": len(clips), "seconds_of_motion": float(sum(c.duration for c in clips)),
                    "clip_actions": [c.labels.get("action", c.name) for c in clips], "corrections": {}}
    for name, fn in corrections.items():
        t0 = time.perf_counter()
        out, info = fn(clips, clear)
        entry: dict = {"tracking_error_cm": float(np.mean([_err_cm(o, c) for o, c in zip(out, clips)]))}
        falls, loads = [info.get("falls", 0)], [info.get("harness_load")]
        before = {m: metric_sum(clips, m) / len(clips) for m in M.METRICS}
        after = {m: metric_sum(out, m) / len(clips) for m in M.METRICS}
        entry["clean_metric_ratio"] = {m: after[m] / max(before[m], 1e-12) for m in M.METRICS}
        entry["clean_metric_mean_before"] = before
        entry["clean_metric_mean_after"] = after
        ratios, errs = {}, {}
        for kind, bad in corrupted.items():
            fixed, inf = fn(bad, clear)
            falls.append(inf.get("falls", 0))
            loads.append(inf.get("harness_load"))
            metric = VIOLATION[kind]
            ratios[kind] = metric_sum(fixed, metric) / max(metric_sum(bad, metric), 1e-12)
            errs[kind] = float(np.mean([_err_cm(f, c) for f, c in zip(fixed, clips)]))
        entry["violation_ratio_after_over_before"] = ratios
        entry["error_to_clean_cm"] = errs
        if loads[0] is not None:
            entry["harness_load"] = float(loads[0])
            entry["falls"] = int(falls[0])
            entry["falls_on_corrupted"] = int(sum(falls[1:]))
        entry["seconds"] = time.perf_counter() - t0
        report["corrections"][name] = entry
    return report


def kinematic_fix(clips: list[Clip], clearance: np.ndarray) -> tuple[list[Clip], dict]:
    from scloop.motion.kinematic import kinematic_correct

    return [kinematic_correct(c, clearance=clearance) for c in clips], {}


def physics_fix(harness: float = 1.0, processes: int = 1, **track_options) -> Fix:
    def fix(clips: list[Clip], clearance: np.ndarray) -> tuple[list[Clip], dict]:
        from scloop.motion.physics.tracking import track_many

        res = track_many(clips, harness=harness, processes=processes, **track_options)
        return [r.clip for r in res], {"harness_load": float(np.mean([r.harness_load for r in res])),
                                       "falls": int(sum(r.falls for r in res))}

    return fix


def chain(*fixes: Fix) -> Fix:
    def fix(clips: list[Clip], clearance: np.ndarray) -> tuple[list[Clip], dict]:
        info: dict = {}
        for f in fixes:
            clips, i = f(clips, clearance)
            info = {**info, **i}
        return clips, info

    return fix


def motion_fixes(harness: float = 1.0, processes: int = 1) -> dict[str, Fix]:
    """The three corrections by name.  ``physics+kinematic`` runs the kinematic pass first and the
    simulation last: the kinematic pass removes what physics cannot see (a root drifting over
    planted feet, which the harness would faithfully follow), and the simulation then has the
    last word, so the output stays a physically simulated motion."""
    return {"physics": physics_fix(harness, processes), "kinematic": kinematic_fix,
            "physics+kinematic": chain(kinematic_fix, physics_fix(harness, processes))}
