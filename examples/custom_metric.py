"""Define your own metric, register it, and see it in the results table and in a plot.

    python examples/custom_metric.py              # ~5 s on a laptop CPU

A metric is an object with a ``name``, a ``needs_samples`` flag and ``__call__(ev) -> float``,
where ``ev`` (a :class:`scloop.Evaluation`) holds the trained model of one generation, fresh
samples from it (only when ``needs_samples`` is true), a held-out reference sample and, for
synthetic tasks, the known target.  ``register_metric`` must say whether higher is better
(verdicts, phase diagrams and collapse thresholds read it); ``label`` and ``unit`` name the
plot axis.

The metric written here, ``heldout-loglik``, is the mean log-likelihood of the task's
held-out reference sample (1,000 fresh target draws) under the fitted Gaussian, in nats per
point: it falls as a fully synthetic loop collapses, and a correction keeps it up.
"""

from __future__ import annotations

import math

import numpy as np

import scloop


class HeldoutLogLik:
    name = "heldout-loglik"
    needs_samples = False  # reads the model's fitted moments; no sampling needed

    def __call__(self, ev: scloop.Evaluation) -> float:
        mean, cov = ev.model.moments()  # the built-in ``gaussian`` model has moments()
        x = np.asarray(ev.reference.x, dtype=float) - mean
        sign, logdet = np.linalg.slogdet(cov)
        if sign <= 0:
            return -math.inf
        maha = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
        return float(np.mean(-0.5 * (maha + logdet + x.shape[1] * math.log(2 * math.pi))))


@scloop.register_metric("heldout-loglik", higher_is_better=True, label="Held-out log-likelihood",
                        unit="nats/point")
def make_heldout_loglik() -> HeldoutLogLik:
    return HeldoutLogLik()


CONFIG = {
    "name": "custom-metric",
    "task": {"name": "gaussian", "dim": 2},
    "model": {"name": "gaussian", "reg_covar": 1.0e-6},
    "n_real": 50,
    "policy": "replace",                       # fully synthetic loop: collapses without correction
    "lambda": 1.0,
    "arms": ["baseline", "no-correction", "correction"],
    "correction": "oracle-mixture",
    "gamma": [0.3, 3.0],
    "metrics": ["w2-gaussian", "heldout-loglik"],   # a built-in metric next to ours
    "n_generations": 40,
    "checkpoint_every": 40,
}


def main() -> None:
    run = scloop.run(CONFIG, seeds=5, out="runs", force=True, workers=1)
    df = run.table(include_timing=False)
    df = df[df.metric.isin(["w2-gaussian", "heldout-loglik"])]
    last = df[df.generation == df.generation.max()]
    table = last.pivot_table(index=["arm", "gamma"], columns="metric", values="value", aggfunc="mean")
    print(f"seed mean at generation {int(df.generation.max())} (5 seeds); the exact target has "
          f"held-out log-likelihood ~ {-(1 + math.log(2 * math.pi)):.3f}")
    print(table.round(3).to_string())

    # The plot's axis uses the label and unit given to register_metric.
    import matplotlib

    matplotlib.use("Agg")
    fig = run.plot("heldout-loglik")
    png = run.path / "figures" / "heldout-loglik.png"
    png.parent.mkdir(exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"\ny axis: {fig.axes[0].get_ylabel()!r}\nfigure: {png}")


if __name__ == "__main__":
    main()
