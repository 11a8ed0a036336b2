"""Text models: normalisation, exact log-probabilities, exact state round trips."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import scloop.text  # noqa: F401
from scloop import Data
from scloop.core.registry import MODELS
from scloop.text.encoding import BOS, N_OUT, as_strings, decode, encode

DATA = Data(as_strings(["ab", "a", "b", "abab", "ba", "aab", "ab"] * 5))


def test_encoding_round_trip():
    x = as_strings(["", "hello world", "x\ty\nz", "~!@#"])
    ids, lengths = encode(x)
    assert (ids >= 0).all()
    assert decode(ids, lengths).tolist() == x.tolist()
    assert (encode(["é"])[0] < 0).any()


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_ngram_distributions_normalised(order):
    m = MODELS.create("ngram", order=order).fit(DATA, rng=np.random.default_rng(0))
    hist = np.full((3, order - 1), BOS, dtype=np.int64)
    if order > 1:
        hist[1, -1] = 2
        hist[2, -1] = 50
    p = m._next_dist(hist)
    assert p.shape == (3, N_OUT) and (p > 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    # log_prob is the product of the same conditionals
    lp = m.log_prob(as_strings(["ab"]))[0]
    a, b = encode(["ab"])[0][0]
    h = np.full((1, max(order - 1, 0)), BOS, dtype=np.int64)
    expect = np.log(m._next_dist(h)[0, a])
    h2 = np.concatenate([h[:, 1:], [[a]]], axis=1) if order > 1 else h
    expect += np.log(m._next_dist(h2)[0, b])
    h3 = np.concatenate([h2[:, 1:], [[b]]], axis=1) if order > 1 else h
    expect += np.log(m._next_dist(h3)[0, 0])
    assert np.isclose(lp, expect, rtol=1e-12)


def test_ngram_sampling_matches_log_prob():
    m = MODELS.create("ngram", order=3, max_len=12).fit(DATA, rng=np.random.default_rng(0))
    s = m.sample(20000, rng=np.random.default_rng(1)).x
    c = Counter(s.tolist())
    for w in ["ab", "a", "b", "abab"]:
        p = np.exp(m.log_prob(as_strings([w]))[0])
        assert abs(c[w] / 20000 - p) < 4.5 * np.sqrt(p * (1 - p) / 20000) + 1e-3, w


def test_ngram_state_and_update():
    m = MODELS.create("ngram", order=4, keep=0.5).fit(DATA, rng=np.random.default_rng(0))
    m2 = MODELS.create("ngram", order=4, keep=0.5).load_state_dict(m.state_dict())
    assert all(v.dtype != object for v in m.state_dict().values())
    assert np.array_equal(m.sample(200, rng=np.random.default_rng(5)).x, m2.sample(200, rng=np.random.default_rng(5)).x)
    new = Data(as_strings(["zz"] * 10))
    m.update(new, rng=np.random.default_rng(0))
    m2.update(new, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(m.log_prob(DATA.x), m2.log_prob(DATA.x))
    assert m.log_prob(as_strings(["zz"]))[0] > MODELS.create("ngram", order=4).fit(DATA, rng=None).log_prob(as_strings(["zz"]))[0]


def test_temperature_and_top_p():
    from scloop.text.models import apply_temperature_top_p

    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    q = apply_temperature_top_p(p, 1.0, 0.8)
    np.testing.assert_allclose(q, [[0.625, 0.375, 0, 0]])
    cold = apply_temperature_top_p(p, 0.5, 1.0)
    assert cold[0, 0] > 0.5 and np.isclose(cold.sum(), 1)
    m = MODELS.create("ngram", order=3, top_p=0.5).fit(DATA, rng=None)
    assert len(set(m.sample(300, rng=np.random.default_rng(0)).x.tolist())) < 8


def _tiny_transformer(**kw):
    opts = dict(layers=1, heads=2, dim=16, max_len=12, steps=30, finetune_steps=10, batch_size=16, threads=1)
    return MODELS.create("char-transformer", **{**opts, **kw})


def test_char_transformer_round_trip_and_resume():
    torch = pytest.importorskip("torch")  # noqa: F841
    m = _tiny_transformer().fit(DATA, rng=np.random.default_rng(0))
    state = m.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    m2 = _tiny_transformer().load_state_dict(state)
    np.testing.assert_array_equal(m.sample(64, rng=np.random.default_rng(3)).x, m2.sample(64, rng=np.random.default_rng(3)).x)
    np.testing.assert_allclose(m.log_prob(DATA.x), m2.log_prob(DATA.x), rtol=0, atol=0)
    # a resumed fine-tune continues exactly (AdamW moments restored)
    m.update(DATA, rng=np.random.default_rng(9))
    m2.update(DATA, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(m.log_prob(DATA.x), m2.log_prob(DATA.x))
    # training lowers the loss; probabilities are normalised over the first symbol
    fresh = _tiny_transformer(steps=0).fit(DATA, rng=np.random.default_rng(0))
    assert m.log_prob(DATA.x).mean() > fresh.log_prob(DATA.x).mean()
    s = m.sample(50, rng=np.random.default_rng(1)).x
    assert s.dtype.kind == "U" and all(len(x) <= 12 for x in s)
