"""Random streams: one independent ``np.random.Generator`` per (seed, generation, role).

All randomness of a run derives from ``SeedSequence(entropy=base_seed, spawn_key=(seed,
generation, role_id))``, so any generation can be recomputed on its own (resume) and every
arm, lambda and gamma of one experiment sees the same streams (common random numbers: the
arms differ only by what they do, which sharpens comparisons between them).

Vectorised ensembles (:mod:`scloop.tasks.gaussian_ensemble`) compute seeds in blocks of 1,000
and draw arrays with a leading seed axis: seed s is slice s mod 1000 of the streams of seed
index s // 1000 (runs of up to 1,000 seeds draw from seed index 0 only); with a single seed they
consume exactly the streams of the generic engine, which is what makes the two paths comparable
number for number (docs/scale.md).
"""

from __future__ import annotations

import numpy as np

ROLES: dict[str, int] = {
    "data": 0,  # real data (synthetic tasks) and data splits
    "init": 1,  # generation-0 fit
    "sample": 2,  # drawing synthetic samples from the previous model
    "correct": 3,  # the correction
    "policy": 4,  # data policy (subsampling)
    "train": 5,  # training (SGD noise, EM init)
    "eval": 6,  # evaluation samples and reference draws
    "prepare": 7,  # fitting a correction's own state (k-means ...)
}


def stream(base_seed: int, seed: int, generation: int, role: str) -> np.random.Generator:
    """The generator for one (seed, generation, role).  ``generation`` 0 is generation 0."""
    if role not in ROLES:
        raise KeyError(f"unknown random-stream role {role!r}; known: {', '.join(ROLES)}")
    ss = np.random.SeedSequence(entropy=int(base_seed), spawn_key=(int(seed), int(generation), ROLES[role]))
    return np.random.Generator(np.random.PCG64(ss))


class Streams:
    """Stream factory bound to one base seed and one seed index."""

    def __init__(self, base_seed: int, seed: int) -> None:
        self.base_seed = int(base_seed)
        self.seed = int(seed)

    def __call__(self, generation: int, role: str) -> np.random.Generator:
        return stream(self.base_seed, self.seed, generation, role)
