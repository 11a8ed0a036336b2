"""Image benchmarks: DDPM train-step time and sampling throughput on this machine for
8x8 (residual MLP) and 28x28 (UNet), and the per-generation seconds by stage of digits-quick.

Printed figures, not assertions.  One torch thread (as in every scloop worker process).
Usage: python benchmarks/bench_images.py [--quick] [--run RUN_DIR]
  --run: read the stage seconds of an existing digits-quick run instead of running a short one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _data(shape, n, rng):
    x = rng.random((n, *shape)).astype(np.float32)
    return x, (np.arange(n) % 10).astype(np.int64)


def bench_model(label, shape, opts, batch, sample_n, sample_steps_measured, timesteps):
    import torch

    from scloop.core.registry import MODELS
    from scloop.plugins import load_plugins
    from scloop.core.types import Data

    torch.set_num_threads(1)
    load_plugins()
    rng = np.random.default_rng(0)
    x, y = _data(shape, 512, rng)
    m = MODELS.create("ddpm", **opts, steps=3, batch_size=batch, timesteps=timesteps)
    m.fit(Data(x, y), rng=rng)  # builds the network (3 warm-up steps)
    n_steps = 10
    m2 = MODELS.create("ddpm", **opts, steps=n_steps, batch_size=batch, timesteps=timesteps)
    t0 = time.perf_counter()
    m2.fit(Data(x, y), rng=np.random.default_rng(1))
    step = (time.perf_counter() - t0) / n_steps
    # sampling: run `sample_steps_measured` denoising steps of a full batch, extrapolate to T
    ms = MODELS.create("ddpm", **opts, steps=1, batch_size=batch, timesteps=timesteps,
                       sampler="ddim", sample_steps=sample_steps_measured, sample_batch=sample_n)
    ms.load_state_dict(m2.state_dict())
    t0 = time.perf_counter()
    ms.sample(sample_n, rng=np.random.default_rng(2))
    per_step = (time.perf_counter() - t0) / sample_steps_measured
    ips = sample_n / (per_step * timesteps)
    print(f"{label:<28} params {m2.n_params_:>9,}  train step (batch {batch}): {step * 1e3:8.1f} ms   "
          f"sampling (batch {sample_n}, CFG in one forward of {2 * sample_n}): {per_step:6.3f} s/step -> "
          f"{ips:8.1f} images/s at T={timesteps} ancestral steps")
    return step, ips


def stage_table(run_dir):
    from scloop.store import RunStore

    st = RunStore(run_dir)
    rec = st.records()
    st.close()
    rec = rec[rec.generation > 0]
    cols = ["sample_seconds", "correct_seconds", "train_seconds", "eval_seconds"]
    g = rec.groupby(["arm", "lambda"])[cols].mean()
    g["total"] = g.sum(axis=1)
    print(f"\nper-generation seconds by stage (mean over units and generations 1..{rec.generation.max()}), {run_dir}:")
    print(g.round(2).to_string())
    return g


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller measurements")
    ap.add_argument("--run", default=None, help="existing digits-quick run directory")
    a = ap.parse_args()
    print("DDPM on CPU, 1 thread")
    bench_model("8x8 residual MLP (default)", (1, 8, 8), {"denoiser": "mlp"}, 128, 512 if not a.quick else 256, 20, 200)
    bench_model("28x28 UNet (default)", (1, 28, 28), {"denoiser": "unet"}, 128, 256 if not a.quick else 64,
                2, 200)
    bench_model("28x28 UNet (16,32,32, no attn)", (1, 28, 28),
                {"denoiser": "unet", "channels": [16, 32, 32], "attention": False}, 128, 256 if not a.quick else 64,
                2, 200)
    if a.run:
        stage_table(a.run)
        return
    from scloop.core.config import load_spec
    from scloop.runner import run_experiment

    gens = 2 if a.quick else 3
    spec = load_spec("digits-quick", [f"n_generations={gens}", "lambda=[1.0]"], seeds=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = run_experiment(spec, out=tmp, run_id="bench")
        print(f"\ndigits-quick, 1 seed, lambda=1.0, {gens} generations, 3 arms, 1 process: "
              f"{time.perf_counter() - t0:.1f} s including generation 0")
        stage_table(s.path)


if __name__ == "__main__":
    main()
