"""The motion physics metrics share one decode per sample array; the shared values must follow
the array's content, not its identity (an in-place edit of the samples is a new evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from scloop.core.registry import METRICS, TASKS
from scloop.core.types import Data, Evaluation, MetricContext
from scloop.plugins import load_plugins

load_plugins()

NAMES = ("motion_penetration", "motion_floating", "motion_skating", "motion_jerk")


@pytest.fixture(scope="module")
def setup(shared_data):
    task = TASKS.create("bandai", data_dir=str(shared_data), contents=["walk"], window=40, stride=20)
    ctx = MetricContext(task.real_data(task.n_available), task.reference(), meta=task.meta)
    metrics = {n: METRICS.create(n).prepare(ctx) for n in NAMES}
    return metrics, task.reference().take(slice(0, 6))


@pytest.fixture
def decodes(monkeypatch):
    """Counts window decodes (the metrics import ``decode`` from the representation module)."""
    from scloop.motion import representation

    calls = []
    real = representation.decode

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(representation, "decode", counting)
    return calls


def _fresh(metrics, x: np.ndarray) -> dict[str, float]:
    """The values computed from scratch on a private copy of ``x``."""
    from scloop.metrics import motion as MM

    MM._LAST.clear()
    data = Data(x.copy())
    return {n: m(Evaluation(None, data, data)) for n, m in metrics.items()}


def test_in_place_edit_is_not_served_from_the_cache(setup, decodes):
    metrics, ref = setup
    samples = Data(ref.x.copy(), ref.y)
    ev = Evaluation(None, samples, ref)
    original = samples.x.copy()
    before = {n: m(ev) for n, m in metrics.items()}
    assert len(decodes) == len(samples)  # one decode per window, shared by the four metrics

    samples.x[2, :, 0] += 0.10  # the same array object, window 2 raised 10 cm (root height feature)
    decodes.clear()
    after = {n: m(ev) for n, m in metrics.items()}
    assert len(decodes) == len(samples)  # decoded again, once
    assert after["motion_floating"] > before["motion_floating"] + 0.10 / len(samples) / 2
    assert after == pytest.approx(_fresh(metrics, samples.x))
    assert before == pytest.approx(_fresh(metrics, original))


def test_sum_preserving_edit_and_unchanged_arrays(setup, decodes):
    metrics, ref = setup
    floating = metrics["motion_floating"]
    samples = Data(ref.x.copy(), ref.y)
    ev = Evaluation(None, samples, ref)
    v0 = floating(ev)
    # swap two windows' root heights, then move one up and the other down: every sum stays
    samples.x[[1, 3], :, 0] = samples.x[[3, 1], :, 0]
    samples.x[1, :, 0] += 0.10
    samples.x[3, :, 0] -= 0.10
    decodes.clear()
    v1 = floating(ev)
    assert len(decodes) == len(samples) and v1 == pytest.approx(_fresh(metrics, samples.x)["motion_floating"])
    assert v1 != v0
    # an equal copy (new identity, same bytes) is served from the cache; so is a repeat call
    floating(Evaluation(None, samples, ref))
    decodes.clear()
    assert floating(Evaluation(None, Data(samples.x.copy()), ref)) == v1
    assert floating(ev) == v1 and not decodes
