"""Text benchmarks (one thread, as a scloop worker).

1. Throughput of each model in characters per second (every character and the end-of-string
   symbol counts as a token): training (``fit`` for the n-gram: counting; ``steps`` optimizer
   steps for the char-transformer), sampling (``sample``), scoring (``log_prob``), on the
   English-like PCFG strings and on standard-library code lines.
2. Seconds per generation by stage (sample / correct / train / eval) of the text-quick loop for
   every arm, from a 2-generation, 1-seed run (``scloop.run``; the stage times are the records'
   ``*_seconds`` rows).

The load average is printed: other processes on the cores slow everything.

Usage: python benchmarks/bench_text.py [--skip-transformer] [--skip-loop] [--device cpu|auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _chars(x) -> int:
    import numpy as np

    return int(np.char.str_len(np.asarray(x)).sum() + len(x))


def bench_models(a) -> None:
    import numpy as np

    import scloop.text  # noqa: F401
    from scloop.core.registry import MODELS, TASKS

    tasks = {"pcfg-english": (TASKS.create("pcfg", grammar="english", n_eval=1000), 80),
             "code-lines": (TASKS.create("python-stdlib", unit="line", n_eval=1000), 100)}
    print(f"{'model':<18} {'data':<13} {'train chars/s':>14} {'sample chars/s':>15} {'score chars/s':>14}  notes")
    for tname, (task, max_len) in tasks.items():
        rng = np.random.default_rng(0)
        real = task.real_data(2000, rng)
        n_chars = _chars(real.x)
        m = MODELS.create("ngram", order=7, max_len=max_len)
        _, w_fit, _ = _timed(lambda: m.fit(real, rng=rng))
        s, w_s, _ = _timed(lambda: m.sample(1000, rng=rng))
        _, w_lp, _ = _timed(lambda: m.log_prob(real.x))
        print(f"{'ngram (7)':<18} {tname:<13} {n_chars / w_fit:>14,.0f} {_chars(s.x) / w_s:>15,.0f} "
              f"{n_chars / w_lp:>14,.0f}  fit on 2,000 strings, 1,000 samples")
        if a.skip_transformer:
            continue
        import torch

        torch.set_num_threads(1)
        steps = 100
        ct = MODELS.create("char-transformer", max_len=max_len, steps=steps, batch_size=64, device=a.device)
        _, w_fit, _ = _timed(lambda: ct.fit(real, rng=rng))
        per_batch = 64 * (n_chars / len(real))  # expected characters (with EOS) per minibatch
        s, w_s, _ = _timed(lambda: ct.sample(256, rng=rng))
        _, w_lp, _ = _timed(lambda: ct.log_prob(real.x[:500]))
        print(f"{'char-transformer':<18} {tname:<13} {steps * per_batch / w_fit:>14,.0f} {_chars(s.x) / w_s:>15,.0f} "
              f"{_chars(real.x[:500]) / w_lp:>14,.0f}  {ct.n_params() / 1e3:.0f} k params, {steps} steps x 64, "
              f"256 samples, device {ct._dev()}")


def bench_loop(a) -> None:
    import scloop

    cfg = {"base": "text-quick", "n_generations": 2, "checkpoint_every": 2}
    with tempfile.TemporaryDirectory() as tmp:
        run, wall, _ = _timed(lambda: scloop.run({**_load("text-quick"), **cfg}, seeds=1, out=tmp, workers=1))
        df = run.table()
    d = df[df.metric.str.endswith("_seconds") & (df.generation > 0)]
    d = d.assign(arm=d.arm + ":" + d.correction + "@" + d.gamma.astype(str))
    t = d.pivot_table(index="arm", columns="metric", values="value", aggfunc="mean")
    t["total"] = t.sum(axis=1)
    print(f"\ntext-quick, seconds per generation by stage (1 seed, generations 1-2; whole run {wall:.0f} s):")
    print(t.round(3).to_string())


def _load(name: str) -> dict:
    import yaml

    from scloop.presets import __file__ as pfile

    with open(os.path.join(os.path.dirname(pfile), f"{name}.yaml")) as fh:
        return yaml.safe_load(fh)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-transformer", action="store_true")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--device", default="cpu", help="char-transformer device: cpu | auto | cuda")
    a = ap.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench_models(a)
    if not a.skip_loop:
        bench_loop(a)


if __name__ == "__main__":
    main()
