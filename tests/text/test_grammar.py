"""PCFG: exact probabilities, entropy, length distribution and rare mass against brute-force
enumeration of every derivation; exact sampling; the shipped grammars."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from scloop.text.grammar import PCFG, arithmetic_grammar, english_grammar, is_terminal, term


def enumerate_strings(g: PCFG) -> dict[str, tuple[float, int, float]]:
    """Every string of length <= max_len with (probability summed over derivations, number of
    derivations, probability of derivations using a rare production) -- by exhaustive
    leftmost expansion with pruning on the terminal cost."""
    out: dict[str, list] = defaultdict(lambda: [0.0, 0, 0.0])
    budget = g.max_len + len(g.sep)
    min_cost = {a: math.inf for a in g.nonterminals}
    for _ in range(50):
        for p in g.productions:
            c = sum(g.cost(s) if is_terminal(s) else min_cost[s] for s in p.rhs)
            min_cost[p.lhs] = min(min_cost[p.lhs], c)

    def rec(done: list[str], cost: int, todo: tuple[str, ...], prob: float, rare: bool) -> None:
        rest = sum(g.cost(s) if is_terminal(s) else min_cost[s] for s in todo)
        if cost + rest > budget:
            return
        if not todo:
            s = g.sep.join(done)
            e = out[s]
            e[0] += prob
            e[1] += 1
            if rare:
                e[2] += prob
            return
        head, tail = todo[0], todo[1:]
        if is_terminal(head):
            rec(done + [term(head)], cost + g.cost(head), tail, prob, rare)
            return
        for p in g.by_lhs[head]:
            rec(done, cost, p.rhs + tail, prob * p.prob, rare or p.rare)

    rec([], 0, (g.start,), 1.0, False)
    return {k: tuple(v) for k, v in out.items()}


def small_grammar(max_len: int = 7) -> PCFG:
    return PCFG("small", "s", [
        ("s", ("a",), 0.5),
        ("s", ("s", "'+'", "a"), 0.3),
        ("s", ("'('", "s", "')'"), 0.2),
        ("a", ("'x'",), 0.7),
        ("a", ("'y'",), 0.26),
        ("a", ("'zz'",), 0.04),
    ], max_len=max_len, rare_threshold=0.05)


def ambiguous_grammar(max_len: int = 5) -> PCFG:
    return PCFG("ambig", "s", [
        ("s", ("s", "'+'", "s"), 0.3),
        ("s", ("'x'",), 0.7),
    ], max_len=max_len)


@pytest.mark.parametrize("make", [small_grammar, lambda: small_grammar(9)])
def test_exact_probabilities_match_enumeration(make):
    g = make()
    assert g.is_lalr
    table = enumerate_strings(g)
    z = sum(p for p, _, _ in table.values())
    assert math.isclose(math.exp(g.log_z), z, rel_tol=1e-12)
    assert all(n == 1 for _, n, _ in table.values())  # unambiguous
    strings = sorted(table)
    lp = g.log_prob(strings)
    expect = np.log([table[s][0] / z for s in strings])
    np.testing.assert_allclose(lp, expect, rtol=1e-12, atol=1e-12)
    h = -sum(p / z * math.log(p / z) for p, _, _ in table.values())
    assert math.isclose(g.entropy, h, rel_tol=1e-12)
    pmf = np.zeros(g.max_len + 1)
    for s, (p, _, _) in table.items():
        pmf[len(s)] += p / z
    np.testing.assert_allclose(g.length_pmf, pmf, atol=1e-14)
    rare = sum(r for _, _, r in table.values()) / z
    assert math.isclose(g.rare_mass, rare, rel_tol=1e-12)
    # strings outside the language or too long have probability 0
    assert g.log_prob(["x+", "(x", "x" + "+x" * 10, ""]).tolist() == [-math.inf] * 4


def test_ambiguous_grammar_sums_over_parses():
    g = ambiguous_grammar()
    assert not g.is_lalr  # Earley with explicit ambiguity
    table = enumerate_strings(g)
    assert table["x+x+x"][1] == 2
    z = sum(p for p, _, _ in table.values())
    strings = sorted(table)
    np.testing.assert_allclose(g.log_prob(strings), np.log([table[s][0] / z for s in strings]), rtol=1e-12)


def test_sampling_is_exact():
    g = small_grammar()
    table = enumerate_strings(g)
    z = sum(p for p, _, _ in table.values())
    rng = np.random.default_rng(0)
    n = 40_000
    draws = g.sample(n, rng)
    assert all(len(s) <= g.max_len for s in draws)
    counts = defaultdict(int)
    for s in draws:
        counts[s] += 1
    # every frequent string within 4.5 binomial standard deviations
    for s, (p, _, _) in table.items():
        q = p / z
        if q * n > 20:
            assert abs(counts[s] - q * n) < 4.5 * math.sqrt(n * q * (1 - q)), s
    assert set(counts) <= set(table)


@pytest.mark.parametrize("make,max_len", [(arithmetic_grammar, 4), (english_grammar, 20)])
def test_shipped_grammars_unambiguous_and_exact(make, max_len):
    g = make(max_len=max_len)
    assert g.is_lalr
    table = enumerate_strings(g)
    assert len(table) > 20
    assert all(n == 1 for _, n, _ in table.values())
    z = sum(p for p, _, _ in table.values())
    strings = sorted(table)
    np.testing.assert_allclose(g.log_prob(strings), np.log([table[s][0] / z for s in strings]), rtol=1e-10)
    h = -sum(p / z * math.log(p / z) for p, _, _ in table.values())
    assert math.isclose(g.entropy, h, rel_tol=1e-10)


def test_shipped_grammars_facts():
    e, a = english_grammar(), arithmetic_grammar()
    assert len(e.rare) == 11 and len(a.rare) == 3
    assert 0.28 < e.rare_mass < 0.30
    rng = np.random.default_rng(1)
    s = e.sample(3000, rng)
    assert e.is_valid(s).all()
    assert abs(np.mean(e.uses_rare(s)) - e.rare_mass) < 0.03
    # Monte-Carlo entropy agrees with the exact value
    assert abs(-e.log_prob(s).mean() - e.entropy) < 0.15


def test_repair_gives_valid_strings():
    g = english_grammar()
    for bad in ["the happily", "a dog sees the", "runs the cat", "every cat with", ""]:
        r = g.repair(bad)
        assert r is not None and g.is_valid([r])[0], (bad, r)
    assert g.repair("a dog sees the") == "a dog sees the dog"
    a = arithmetic_grammar()
    assert a.repair("(3*4") == "(3*4)"
    assert a.is_valid([a.repair("1++2")])[0]
    assert a.repair("7-1") == "7-1"
