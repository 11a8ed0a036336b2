# A notebook cell: define a correction right here (in __main__), register it and run a loop
# with 2 worker processes.  Workers receive plugins defined in a notebook by value, so no
# plugin file is needed; re-running the cell replaces the registration (no "already
# registered" error).  Paste it into Jupyter, or run it as a script:
#   python examples/notebook_snippet.py
import numpy as np

import scloop


class MeanShift:
    """Translate the synthetic batch a fraction gamma/(1+gamma) of the way to the real mean
    (fixes the drift of the mean, leaves the shape of the batch alone)."""

    def __init__(self, gamma):
        self.gamma = gamma

    def prepare(self, context, *, rng):
        self.real_mean_ = np.asarray(context.real.x, dtype=float).mean(axis=0)
        return self

    def __call__(self, data, *, model, rng):
        t = 1.0 if np.isinf(self.gamma) else self.gamma / (1.0 + self.gamma)
        shift = t * (self.real_mean_ - data.x.mean(axis=0))
        return scloop.Corrected(scloop.Data(data.x + shift, data.y),
                                {"displacement": float(np.linalg.norm(shift))})


@scloop.register_correction("mean-shift")
def make_mean_shift(gamma=0.0):
    return MeanShift(float(gamma))


run = scloop.run(
    {"base": "gaussian-paper", "name": "notebook", "policy": "replace", "lambda": 1.0,
     "arms": ["no-correction", "correction"], "correction": "mean-shift", "gamma": [1.0, float("inf")],
     "metrics": ["w2-gaussian", "mean_error"], "n_generations": 20, "checkpoint_every": 20},
    seeds=3, workers=2, out="runs", force=True)
table = run.table(include_timing=False)
last = table[(table.generation == table.generation.max()) & table.metric.isin(["w2-gaussian", "mean_error"])]
print(last.pivot_table(index=["arm", "gamma"], columns="metric", values="value", aggfunc="mean").round(3))
# run.plot("w2-gaussian") draws the curves; run.report() writes runs/<run_id>/report/index.html
