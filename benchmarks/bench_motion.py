"""Motion benchmarks.

Physics-correction throughput in seconds of motion corrected per CPU-second on one core (goal
>= 80x real time) and the speed-up with 2 worker processes, on clean Bandai clips; the same on
the 84 CMU DeepMimic clips (humanoid3d, 30 fps); plus the kinematic correction's throughput.
This machine's speed drifts by ~15 % from day to day, so the physics figure is also printed
against a fixed MuJoCo workload timed in the same run (12 capsules dropped onto a plane, stepped
with the tracker's integrator and timestep): "physics per reference" = physics real-time factor /
reference steps per CPU-millisecond, comparable across days; the load average is printed too
(other processes on the cores slow both).

Issue 5 (the motion loop, one thread, as a scloop worker): the motion-quick MDM's training step
time, its sampling throughput (motions/s with the preset's sampler), and the seconds per
generation by stage (sample / correct / train / eval) of one motion-quick generation for the
no-correction, physics and kinematic arms at lambda = 1 (generation 0 shortened to a few steps:
its weights do not change the stage costs).

Usage: python benchmarks/bench_motion.py [--data-dir ../shared/data] [--n-clips 20] [--max-frames N]
                                         [--skip-physics] [--skip-loop]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--n-clips", type=int, default=20)
    ap.add_argument("--max-frames", type=int, default=100_000, help="cut clips (default: whole clips)")
    ap.add_argument("--skip-physics", action="store_true", help="skip the correction benchmarks")
    ap.add_argument("--skip-loop", action="store_true", help="skip the motion-loop benchmarks")
    a = ap.parse_args()
    if not a.skip_physics:
        bench_corrections(a)
    if not a.skip_loop:
        bench_model(a)
        bench_generation(a)


_REFERENCE_MJCF = """<mujoco><option timestep="0.0041667" integrator="implicitfast"/>
<worldbody><geom type="plane" size="0 0 0.05"/>{bodies}</worldbody></mujoco>"""


def reference_steps_per_ms(n_steps: int = 20_000) -> float:
    """MuJoCo steps per CPU-millisecond of a fixed scene (12 free capsules dropped in a row onto a
    plane, so contacts come and go): a machine-speed yardstick independent of scloop's code."""
    import mujoco

    bodies = "".join(f'<body pos="{0.25 * k:.2f} 0 {0.3 + 0.05 * k:.2f}" euler="0 {10 * k} 0"><freejoint/>'
                     f'<geom type="capsule" size="0.04 0.1"/></body>' for k in range(12))
    m = mujoco.MjModel.from_xml_string(_REFERENCE_MJCF.format(bodies=bodies))
    d = mujoco.MjData(m)
    best = float("inf")
    for _ in range(3):  # best of 3: the yardstick should not carry this run's noise
        mujoco.mj_resetData(m, d)
        t0 = time.process_time()
        for _ in range(n_steps):
            mujoco.mj_step(m, d)
        best = min(best, time.process_time() - t0)
    return n_steps / (best * 1000.0)


def bench_corrections(a) -> None:
    from scloop.motion.check import clean_clips
    from scloop.motion.kinematic import kinematic_correct
    from scloop.motion.physics.tracking import track_many

    clips = clean_clips(a.data_dir, n_clips=a.n_clips, max_frames=a.max_frames)
    secs = sum(c.duration for c in clips)
    print(f"load average {' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1 / 5 / 15 min; {os.cpu_count()} cores)")
    print(f"{len(clips)} clean Bandai clips, {secs:.1f} s of motion at {clips[0].fps:g} fps")
    track_many(clips[:1], harness=1.0, processes=1)  # compile the model once (not timed)
    t0 = time.process_time()
    w0 = time.perf_counter()
    res = track_many(clips, harness=1.0, processes=1)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    print(f"physics, 1 process : {secs / cpu:7.1f}x real time per CPU-second ({wall:.1f} s wall); "
          f"tracking {sum(r.tracking_error_cm for r in res) / len(res):.2f} cm, falls {sum(r.falls for r in res)}")
    ref = reference_steps_per_ms()
    print(f"MuJoCo reference    : {ref:7.1f} steps per CPU-millisecond; physics per reference "
          f"{secs / cpu / ref:.2f} (x real time per step/ms)")
    cmu = _cmu_clips(a.data_dir)
    if cmu:
        cs = sum(c.duration for c in cmu)
        t0 = time.process_time()
        res = track_many(cmu, harness=1.0, processes=1)
        cpu = time.process_time() - t0
        print(f"physics, CMU DeepMimic ({len(cmu)} clips, {cs:.0f} s): {cs / cpu:7.1f}x real time per CPU-second, "
              f"per reference {cs / cpu / ref:.2f}; falls {sum(r.falls for r in res)}")
    w0 = time.perf_counter()
    track_many(clips, harness=1.0, processes=2)
    wall2 = time.perf_counter() - w0
    print(f"physics, 2 processes: {secs / wall2:7.1f}x real time (wall), speed-up x{wall / wall2:.2f} over 1 process")
    t0 = time.process_time()
    for c in clips:
        kinematic_correct(c)
    print(f"kinematic          : {secs / (time.process_time() - t0):7.1f}x real time per CPU-second")


def _cmu_clips(data_dir: str) -> list:
    """The CMU DeepMimic clips, or [] when the data are not there."""
    import csv
    from pathlib import Path

    from scloop.motion.deepmimic import read_deepmimic

    root = Path(data_dir) / "mocap" / "cmu-deepmimic"
    if not (root / "index.csv").exists():
        return []
    with open(root / "index.csv", newline="") as f:
        return [read_deepmimic(root / r["file"]) for r in csv.DictReader(f)]


def bench_model(a) -> None:
    """Training step time and sampling throughput of the motion-quick MDM (one thread)."""
    import numpy as np
    import torch

    from scloop.core.config import load_spec
    from scloop.core.registry import MODELS, TASKS
    from scloop.plugins import load_plugins

    torch.set_num_threads(1)
    load_plugins()
    spec = load_spec("motion-quick")
    task = TASKS.create("bandai", data_dir=a.data_dir)
    real = task.real_data(spec.n_real)
    kw = {**spec.model.kwargs, "steps": 30, "device": "cpu"}
    m = MODELS.create("mdm", **kw).fit(real, rng=np.random.default_rng(0))
    m.finetune_steps = 60
    m.update(real, rng=np.random.default_rng(1))  # timed: 60 steps after warm-up
    step = m.last_train_seconds_ / 60
    print(f"mdm (motion-quick: latent {kw['latent']}, {kw['layers']} layers, {m.n_params_ / 1e6:.2f} M parameters), "
          f"1 thread: train step {1000 * step:.0f} ms at batch {kw['batch_size']} "
          f"({kw['batch_size'] / step:.0f} windows/s)")
    for n in (32, 128):
        m.sample(n, rng=np.random.default_rng(2))
        sec = m.last_sample_seconds_
        print(f"  sampling {n} windows ({kw['sampler']}, {kw['sample_steps']} steps): {sec:.1f} s, "
              f"{n / sec:.1f} motions/s")
    paper = load_spec("motion-paper").model.kwargs
    big = MODELS.create("mdm", **{**paper, "steps": 3, "finetune_steps": 5, "device": "cpu"})
    big.fit(real, rng=np.random.default_rng(0)).update(real, rng=np.random.default_rng(1))
    print(f"mdm (motion-paper: latent {paper['latent']}, {paper['layers']} layers, {big.n_params_ / 1e6:.1f} M "
          f"parameters), 1 thread: train step {1000 * big.last_train_seconds_ / 5:.0f} ms at batch "
          f"{paper['batch_size']}")


def bench_generation(a) -> None:
    """Seconds per generation by stage for motion-quick (one seed, lambda = 1, one generation)."""
    import tempfile

    from scloop.core.config import load_spec
    from scloop.runner import run_experiment
    from scloop.store import RunStore

    over = [f"task={{name: bandai, n_eval: 128, data_dir: {os.path.abspath(a.data_dir)}}}", "model.steps=20",
            "lambda=[1.0]", "n_generations=1", "arms=[baseline, no-correction, correction]"]
    spec = load_spec("motion-quick", over, seeds=1)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = run_experiment(spec, out=d, run_id="bench", workers=1)
        total = time.perf_counter() - t0
        st = RunStore(s.path)
        rec = st.records()
        st.close()
    print(f"motion-quick, one generation at lambda = 1 (n_real {spec.n_real}, {spec.task.kwargs['n_eval']} eval "
          f"windows; whole run {total:.0f} s), seconds by stage:")
    print(f"  {'arm':<26}{'sample':>8}{'correct':>9}{'train':>8}{'eval':>7}{'total':>8}")
    for _, r in rec[rec.generation == 1].iterrows():
        label = r.arm if r.arm != "correction" else f"correction ({r.correction})"
        parts = [r.sample_seconds, r.correct_seconds, r.train_seconds, r.eval_seconds]
        print(f"  {label:<26}" + "".join(f"{v:>{w}.1f}" for v, w in zip(parts, (8, 9, 8, 7))) + f"{sum(parts):>8.1f}")


if __name__ == "__main__":
    main()
