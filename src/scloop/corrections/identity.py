"""The identity correction (``none``): synthetic samples are used as drawn."""

from __future__ import annotations

from typing import Self

import numpy as np

from scloop.core.registry import CORRECTIONS
from scloop.core.types import Corrected, CorrectionContext, Data


class NoCorrection:
    """pi(x) = x for every gamma."""

    def __init__(self, *, gamma: float = 0.0) -> None:
        self.gamma = gamma

    def prepare(self, context: CorrectionContext, *, rng: np.random.Generator | None = None) -> Self:
        return self

    def __call__(self, data: Data, *, model=None, rng: np.random.Generator | None = None) -> Corrected:
        return Corrected(data, {"displacement": 0.0, "fraction_changed": 0.0})


@CORRECTIONS.register("none", capabilities=("gaussian-ensemble",))
def make_none(*, gamma: float = 0.0) -> NoCorrection:
    from scloop.corrections.base import check_gamma

    return NoCorrection(gamma=check_gamma(gamma))
