"""Motion benchmarks (issue 4): physics-correction throughput in seconds of motion corrected per
CPU-second on one core (goal >= 80x real time) and the speed-up with 2 worker processes, on clean
Bandai clips; plus the kinematic correction's throughput.

Usage: python benchmarks/bench_motion.py [--data-dir ../shared/data] [--n-clips 20] [--max-frames N]
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
    a = ap.parse_args()
    from scloop.motion.check import clean_clips
    from scloop.motion.kinematic import kinematic_correct
    from scloop.motion.physics.tracking import track_many

    clips = clean_clips(a.data_dir, n_clips=a.n_clips, max_frames=a.max_frames)
    secs = sum(c.duration for c in clips)
    print(f"{len(clips)} clean Bandai clips, {secs:.1f} s of motion at {clips[0].fps:g} fps")
    track_many(clips[:1], harness=1.0, processes=1)  # compile the model once (not timed)
    t0 = time.process_time()
    w0 = time.perf_counter()
    res = track_many(clips, harness=1.0, processes=1)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    print(f"physics, 1 process : {secs / cpu:7.1f}x real time per CPU-second ({wall:.1f} s wall); "
          f"tracking {sum(r.tracking_error_cm for r in res) / len(res):.2f} cm, falls {sum(r.falls for r in res)}")
    w0 = time.perf_counter()
    track_many(clips, harness=1.0, processes=2)
    wall2 = time.perf_counter() - w0
    print(f"physics, 2 processes: {secs / wall2:7.1f}x real time (wall), speed-up x{wall / wall2:.2f} over 1 process")
    t0 = time.process_time()
    for c in clips:
        kinematic_correct(c)
    print(f"kinematic          : {secs / (time.process_time() - t0):7.1f}x real time per CPU-second")


if __name__ == "__main__":
    main()
