"""The paper-style metric ``fid-paper`` / ``fid-paper-sd``: FID of 100 class-balanced samples,
repeated over 20 draws from the evaluation samples (scloop.metrics.images).

Data: sklearn's 8x8 digits through the ``digits`` task (1,200 training images for the feature
network, 597 held-out reference images); the "evaluation samples" are the 1,200 real training
images themselves, whose 1,000-sample-style FID is the task's floor (~0.17).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.core.registry import METRICS, TASKS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.types import Data, Evaluation, MetricContext
from scloop.metrics.images import paper_subsets

load_plugins()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    task = TASKS.create("digits")
    real, reference = task.real_data(1200), task.reference()
    ctx = MetricContext(real, reference, tmp_path_factory.mktemp("cache"), "cpu")
    return real, reference, ctx


def _metric(name, ctx, **options):
    return METRICS.create(name, **options).prepare(ctx)


def test_spread_positive_and_mean_near_the_large_sample_fid(setup):
    real, reference, ctx = setup
    ev = Evaluation(None, real, reference)
    fid = _metric("fid", ctx)(ev)
    mean = _metric("fid-paper", ctx)(ev)
    sd = _metric("fid-paper-sd", ctx)(ev)
    print(f"fid (1,200 samples) {fid:.3f}; fid-paper {mean:.3f} +- {sd:.3f} (20 draws of 100)")
    assert sd > 0
    # a 100-sample FID is biased upwards, but stays of the same order as the full-sample one
    assert fid < mean < 5 * fid
    assert sd < mean


def test_mean_and_sd_are_those_of_the_draws_and_shared(setup):
    real, reference, ctx = setup
    paper = _metric("fid-paper", ctx)
    spread = _metric("fid-paper-sd", ctx)
    samples = Data(real.x.copy(), real.y.copy())
    ev = Evaluation(None, samples, reference)
    m, s = paper(ev), spread(ev)
    fake, ref = paper.space_.embed(samples), paper.space_.embed(reference)
    values = paper.draw_values(fake, ref)
    assert values.shape == (20,) and np.isfinite(values).all()
    assert m == pytest.approx(values.mean()) and s == pytest.approx(values.std(ddof=1))
    # one computation: the draws are memoised on the samples' features
    assert spread.draw_values(fake, ref) is values
    # each draw is the FID of its subset, as the 1,000-sample metric computes it
    fid = _metric("fid", ctx)
    subsets = paper_subsets(samples.y, len(samples), 100, 20, np.random.default_rng(0))
    for i in (0, 7):
        sub = samples.take(subsets[i])
        assert fid(Evaluation(None, sub, reference)) == pytest.approx(values[i], rel=1e-6)


def test_deterministic_given_the_stream(setup):
    real, reference, ctx = setup
    a = _metric("fid-paper", ctx)(Evaluation(None, Data(real.x.copy(), real.y.copy()), reference))
    b = _metric("fid-paper", ctx)(Evaluation(None, Data(real.x.copy(), real.y.copy()), reference))
    c = _metric("fid-paper", ctx, seed=1)(Evaluation(None, Data(real.x.copy(), real.y.copy()), reference))
    assert a == b
    assert a != c


def test_subsets_are_class_balanced_and_distinct():
    labels = np.arange(1000) % 10
    subs = paper_subsets(labels, 1000, 100, 20, np.random.default_rng(0))
    assert len(subs) == 20
    for idx in subs:
        assert len(np.unique(idx)) == 100
        np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
    assert len({tuple(s) for s in subs}) == 20
    # 3 classes, 100 samples: 34 / 33 / 33
    three = np.arange(300) % 3
    counts = np.bincount(three[paper_subsets(three, 300, 100, 1, np.random.default_rng(0))[0]])
    assert counts.tolist() == [34, 33, 33]
    # unlabelled, unbalanced option, or too few images of a class: uniform draws
    for lab in (None, np.r_[np.zeros(995, int), np.ones(5, int)]):
        (idx,) = paper_subsets(lab, 1000, 100, 1, np.random.default_rng(0))
        assert len(np.unique(idx)) == 100
    with pytest.raises(ValueError, match="n_eval"):
        paper_subsets(labels[:50], 50, 100, 1, np.random.default_rng(0))


def test_class_balance_shrinks_the_spread(setup):
    """The official samples are class-balanced; uniform draws add the class-mix noise."""
    real, reference, ctx = setup
    ev = Evaluation(None, real, reference)
    balanced = _metric("fid-paper-sd", ctx)(ev)
    uniform = _metric("fid-paper-sd", ctx, balanced=False)(ev)
    assert uniform > 2 * balanced


@pytest.mark.parametrize("options", [{"n": 1}, {"draws": 1}, {"seed": -1}, {"n": 2.5}, {"balanced": "yes"}])
def test_bad_options(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        METRICS.create("fid-paper", **options)
    with pytest.raises(ConfigError, match=next(iter(options))):
        METRICS.create("fid-paper-sd", **options)


def test_nan_features_give_nan(setup):
    real, reference, ctx = setup
    x = real.x.copy()
    x[0] = np.nan
    assert math.isnan(_metric("fid-paper", ctx)(Evaluation(None, Data(x, real.y), reference)))
