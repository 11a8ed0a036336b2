"""Protocols and typed records shared by every part of scloop.

Arrays at plugin boundaries are numpy ``float64`` (or ``float32`` for large image/motion
data) of shape ``(n, *event_shape)``; conditions (labels) are integer arrays of shape ``(n,)``.
Torch, if used, stays inside a model plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Self, runtime_checkable

import numpy as np

Status = Literal["ok", "degenerate"]
ARMS = ("baseline", "no-correction", "correction")
STAGES = ("sample", "correct", "train", "eval")


@dataclass(frozen=True)
class Data:
    """A dataset: points ``x`` of shape ``(n, *event_shape)`` and optional conditions ``y`` ``(n,)``."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"Data: x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: np.ndarray | slice) -> "Data":
        return Data(self.x[idx], None if self.y is None else self.y[idx])

    @staticmethod
    def concat(parts: "list[Data]") -> "Data":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("Data.concat: nothing to concatenate")
        x = np.concatenate([p.x for p in parts], axis=0)
        if any(p.y is None for p in parts):
            return Data(x)
        return Data(x, np.concatenate([p.y for p in parts], axis=0))


class Degenerate(Exception):
    """Raised by a plugin when a fit or sample collapses numerically (singular covariance,
    NaN ...).  The engine records it as ``status="degenerate"`` with the message as reason;
    it is a result, not a crash."""


@runtime_checkable
class Target(Protocol):
    """A known target distribution p_theta* (only synthetic tasks have one)."""

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray: ...


@runtime_checkable
class GenerativeModel(Protocol):
    """A generative model trained by the loop.

    ``fit`` trains from scratch (``train: scratch``), ``update`` continues from the current
    state (``train: finetune``).  Both return ``self`` and keep learned state in fields ending
    in ``_``; calling them again replaces that state.
    """

    def fit(self, data: Data, *, rng: np.random.Generator) -> Self: ...

    def update(self, data: Data, *, rng: np.random.Generator) -> Self: ...

    def sample(
        self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None
    ) -> Data: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> Self: ...


@dataclass(frozen=True)
class CorrectionContext:
    """What a correction may look at: the real training data and, for synthetic tasks, the
    known target distribution.  ``cache_dir`` (may be None) is where a correction may keep
    expensive prepared artefacts (a trained verifier classifier ...) keyed by a content digest;
    ``device`` is the torch device request (``auto`` | ``cpu`` | ``cuda``)."""

    real: Data
    target: Any | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    meta: Mapping[str, Any] = field(default_factory=dict)  # task facts, e.g. a motion skeleton and fps


@dataclass(frozen=True)
class MetricContext:
    """What a metric's optional ``prepare(context)`` may look at, once per run and seed before
    generation 0: the real training split, the held-out reference, a cache directory for
    trained feature networks (keyed by a content digest) and the torch device request."""

    real: Data
    reference: Data | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    meta: Mapping[str, Any] = field(default_factory=dict)  # task facts, e.g. a motion skeleton and fps


@dataclass(frozen=True)
class Corrected:
    """Output of a correction: the corrected data and scalar diagnostics
    (``displacement``: mean L2 distance moved by the points that changed;
    ``fraction_changed``; correction-specific extras)."""

    data: Data
    diagnostics: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Correction(Protocol):
    """A self-correction function pi_gamma applied to synthetic samples (docs/paper.md §1.3)."""

    gamma: float

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator) -> Self: ...

    def __call__(
        self, data: Data, *, model: GenerativeModel, rng: np.random.Generator
    ) -> Corrected: ...


@dataclass(frozen=True)
class Evaluation:
    """Inputs of a metric at one generation: the trained model, fresh samples from it, a
    reference sample of the target/held-out real data, and the known target if any."""

    model: Any
    samples: Data | None
    reference: Data | None
    target: Any | None = None


@runtime_checkable
class Metric(Protocol):
    """A scalar quality metric of one generation.  Its orientation (``higher_is_better``),
    axis label and unit are declared at registration (:func:`scloop.register_metric`)."""

    name: str
    needs_samples: bool

    def __call__(self, ev: Evaluation) -> float: ...


# A metric may also define ``prepare(context: MetricContext) -> Self``; the runner calls it once
# per seed before generation 0 (image metrics train or load their feature network there).


@runtime_checkable
class Task(Protocol):
    """Where a run's real data (and, for synthetic tasks, the known target) come from.

    ``real_data(n_real, rng)`` draws the real training set of a seed (the first draw of its
    ``data`` stream); ``n_eval`` is how many fresh samples a metric's evaluation draws from the
    model.  Optional members: ``reference(rng) -> Data`` (a held-out/target sample for
    sample-based metrics, drawn next from the same stream), ``target`` (a known
    :class:`Target`), ``domain`` (``vector`` | ``image`` | ``motion`` | ``text``, default
    ``vector``) and ``meta`` (task facts handed to corrections and metrics, e.g. a skeleton)."""

    n_eval: int

    def real_data(self, n_real: int, rng: np.random.Generator) -> Data: ...


@runtime_checkable
class DataPolicy(Protocol):
    """How the training set of generation g is built from the real data and the synthetic
    (possibly corrected) batches of generations 1..g (docs/concepts.md, data policies).

    ``keeps_history``: whether batches older than the current one are ever used (else the
    checkpoint keeps only the current one); ``needs_real``: whether real data enter the
    training set."""

    name: str
    keeps_history: bool
    needs_real: bool

    def build(
        self, real: Data, history: list[Data], generation: int, corrected: bool, *, rng: np.random.Generator
    ) -> tuple[Data, "Provenance"]:
        """``history``: the synthetic batches of generations 1..generation when
        ``keeps_history``, else only the current generation's batch."""
        ...


@dataclass(frozen=True)
class Provenance:
    """Where the training set of one generation came from.

    ``parts``: tuples ``(source_generation, corrected, n_points)``; generation ``-1`` marks
    real data.
    """

    parts: tuple[tuple[int, bool, int], ...]

    def to_json(self) -> str:
        """Compact JSON: a list of ``[source_generation, corrected, n_points]``."""
        import json

        return json.dumps([[g, bool(c), n] for g, c, n in self.parts], separators=(",", ":"))


@dataclass(frozen=True)
class GenerationRecord:
    """One generation of one unit (arm x lambda x gamma x correction x seed)."""

    generation: int
    metrics: Mapping[str, float]
    n_real: int
    n_synthetic: int
    provenance: Provenance
    seconds: Mapping[str, float]
    status: Status = "ok"
    reason: str = ""
    diagnostics: Mapping[str, float] = field(default_factory=dict)
