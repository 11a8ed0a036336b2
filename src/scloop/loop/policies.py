"""Data policies: how the training set of generation g is built from the real data and the
synthetic (possibly corrected) batches of generations 1..g.

``history[j-1]`` is the synthetic batch of generation j.  Each policy returns the training
set and its :class:`~scloop.core.types.Provenance`.

- ``augment``: real + this generation's synthetic (the paper's default, docs/paper.md §1.4).
- ``replace``: this generation's synthetic only (fully synthetic loop).
- ``accumulate``: real + every generation's synthetic so far.
- ``accumulate-subsample``: real + ``budget`` points drawn without replacement from all the
  synthetic data so far (uniform random keys from the ``policy`` stream; the smallest
  ``budget`` keys win).
- ``paper-toy``: the official toy's scheme (docs/paper.md §3.1): at generation G keep the first
  floor(m j / G) points of generation j, j = 1..G (m = that generation's batch size).
"""

from __future__ import annotations

import numpy as np

from scloop.core.registry import POLICIES, ConfigError
from scloop.core.types import Data, DataPolicy, Provenance  # noqa: F401  (DataPolicy: the protocol)


def paper_toy_counts(m: int, generation: int) -> np.ndarray:
    """floor(m j / G) for j = 1..G (exact integer arithmetic), shape (G,)."""
    j = np.arange(1, generation + 1, dtype=np.int64)
    return (m * j) // generation


class Augment:
    name, keeps_history, needs_real = "augment", False, True

    def build(self, real, history, generation, corrected, *, rng=None):
        g = generation
        parts = [(-1, False, len(real))] + ([(g, corrected, len(history[-1]))] if history else [])
        return Data.concat([real] + history[-1:]), Provenance(tuple(p for p in parts if p[2]))


class Replace:
    name, keeps_history, needs_real = "replace", False, False

    def build(self, real, history, generation, corrected, *, rng=None):
        if not history or len(history[-1]) == 0:
            raise ConfigError("policy 'replace' needs synthetic data: lambda * n_real must be >= 1")
        g = generation
        return history[-1], Provenance(((g, corrected, len(history[-1])),))


class Accumulate:
    name, keeps_history, needs_real = "accumulate", True, True

    def build(self, real, history, generation, corrected, *, rng=None):
        parts = [(-1, False, len(real))] + [(j + 1, corrected, len(h)) for j, h in enumerate(history)]
        return Data.concat([real] + history), Provenance(tuple(p for p in parts if p[2]))


class AccumulateSubsample:
    name, keeps_history, needs_real = "accumulate-subsample", True, True

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def select(self, sizes: list[int], rng: np.random.Generator) -> np.ndarray:
        """Indices into the concatenated pool (sorted), drawn without replacement."""
        pool = int(sum(sizes))
        keys = rng.random(pool)
        if pool <= self.budget:
            return np.arange(pool)
        return np.sort(np.argpartition(keys, self.budget - 1)[: self.budget])

    def build(self, real, history, generation, corrected, *, rng):
        sizes = [len(h) for h in history]
        idx = self.select(sizes, rng)
        pool = Data.concat(history) if history and sum(sizes) else None
        chosen = pool.take(idx) if pool is not None else None
        gen_of = np.repeat(np.arange(1, len(history) + 1), sizes)[idx]
        counts = np.bincount(gen_of, minlength=len(history) + 1)
        parts = [(-1, False, len(real))] + [(j, corrected, int(counts[j])) for j in range(1, len(history) + 1)]
        data = Data.concat([real] + ([chosen] if chosen is not None else []))
        return data, Provenance(tuple(p for p in parts if p[2]))


class PaperToy:
    name, keeps_history, needs_real = "paper-toy", True, True

    def build(self, real, history, generation, corrected, *, rng=None):
        g = generation
        keep = [h.take(slice(0, int((len(h) * (j + 1)) // g))) for j, h in enumerate(history)] if g else []
        parts = [(-1, False, len(real))] + [(j + 1, corrected, len(k)) for j, k in enumerate(keep)]
        return Data.concat([real] + keep), Provenance(tuple(p for p in parts if p[2]))


@POLICIES.register("augment", capabilities=("gaussian-ensemble",))
def make_augment() -> Augment:
    return Augment()


@POLICIES.register("replace", capabilities=("gaussian-ensemble",))
def make_replace() -> Replace:
    return Replace()


@POLICIES.register("accumulate", capabilities=("gaussian-ensemble",))
def make_accumulate() -> Accumulate:
    return Accumulate()


@POLICIES.register("accumulate-subsample", capabilities=("gaussian-ensemble",))
def make_accumulate_subsample(*, budget: int = 100) -> AccumulateSubsample:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"policy.budget: got {budget!r}; allowed: an integer >= 1")
    return AccumulateSubsample(budget)


@POLICIES.register("paper-toy", capabilities=("gaussian-ensemble",))
def make_paper_toy() -> PaperToy:
    return PaperToy()
