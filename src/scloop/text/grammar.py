"""Probabilistic context-free grammars with exact sampling, lark parsing and exact string
probabilities.

A :class:`PCFG` is a list of productions ``(lhs, rhs, prob)``: ``lhs`` a nonterminal name
(lower case), ``rhs`` a tuple of symbols where a terminal is written in single quotes
(``"'+'"``) and anything else is a nonterminal.  The probabilities of one nonterminal's
productions sum to 1.  A string is the concatenation of its terminals joined by ``sep``
(``""`` for the arithmetic grammar, ``" "`` for the word grammar).

The target of a task is the PCFG *conditioned on* ``len(string) <= max_len`` (a fixed-width
array needs a bound; the conditioning keeps everything exact):

- sampling: top-down expansion with the task's random generator, rejecting (exactly, by
  restarting) a derivation as soon as its string exceeds ``max_len``;
- parsing: a lark parser generated from the productions, every alternative aliased to its
  production (``-> p12``) so the parse tree names the productions used.  LALR(1) when the
  grammar allows it (both shipped grammars: fast), else Earley with explicit ambiguity, where
  the probability of an ambiguous string sums over its parses;
- ``log_prob(s) = sum of log p(production) over its derivation - log Z``, where
  ``Z = P(len <= max_len)`` and the entropy, the length distribution and the probability of
  using a rare production are computed exactly by dynamic programming over the string length
  (:meth:`PCFG.length_tables`): derivations are epsilon-free and unit cycles are refused, so a
  string of length <= L has finitely many derivations and a fixed-point iteration over
  derivation depth terminates with exact values.

The entropy is that of the *derivation*; it equals the entropy of the *string* when the grammar
is unambiguous (both shipped grammars are; ``tests/text`` checks it by enumeration).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np


def is_terminal(sym: str) -> bool:
    return len(sym) >= 2 and sym[0] == "'" and sym[-1] == "'"


def term(sym: str) -> str:
    return sym[1:-1]


@dataclass(frozen=True)
class Production:
    index: int
    lhs: str
    rhs: tuple[str, ...]
    prob: float
    rare: bool


@dataclass
class Analysis:
    """What parsing one string tells: validity, exact log-probability under the untruncated
    PCFG (``-inf`` when invalid), and the productions used (indices; empty when invalid)."""

    valid: bool
    logp: float
    rules: frozenset[int] = field(default_factory=frozenset)


class PCFG:
    """A PCFG over literal terminals.  ``rare_threshold``: productions with probability at or
    below it are the grammar's *rare productions* (the tail that collapse loses first)."""

    def __init__(self, name: str, start: str, productions: Sequence[tuple[str, Sequence[str], float]], *,
                 sep: str = "", max_len: int = 64, rare_threshold: float = 0.05) -> None:
        self.name, self.start, self.sep, self.max_len = name, start, sep, int(max_len)
        self.productions = [Production(i, lhs, tuple(rhs), float(p), float(p) <= rare_threshold)
                            for i, (lhs, rhs, p) in enumerate(productions)]
        self.nonterminals = sorted({p.lhs for p in self.productions})
        self.by_lhs: dict[str, list[Production]] = {a: [] for a in self.nonterminals}
        for p in self.productions:
            self.by_lhs[p.lhs].append(p)
        self._check()
        self._cum = {a: np.cumsum([p.prob for p in ps]) for a, ps in self.by_lhs.items()}
        self._memo: dict[str, Analysis] = {}
        self._repairs: dict[str, str | None] = {}

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        if self.start not in self.by_lhs:
            raise ValueError(f"grammar {self.name}: start symbol {self.start!r} has no production")
        for a, ps in self.by_lhs.items():
            if not a.isidentifier() or a != a.lower() or a.startswith("_"):
                raise ValueError(f"grammar {self.name}: nonterminal {a!r} must be a lower-case identifier")
            total = sum(p.prob for p in ps)
            if abs(total - 1.0) > 1e-9:
                raise ValueError(f"grammar {self.name}: productions of {a!r} sum to {total}, not 1")
            for p in ps:
                if not p.rhs:
                    raise ValueError(f"grammar {self.name}: empty production for {a!r} (epsilon rules not supported)")
                for s in p.rhs:
                    if is_terminal(s):
                        if not term(s):
                            raise ValueError(f"grammar {self.name}: empty terminal in {p}")
                    elif s not in self.by_lhs:
                        raise ValueError(f"grammar {self.name}: symbol {s!r} has no production")
        # unit cycles (a =>+ a through single-nonterminal productions) would make the number of
        # derivations of a string infinite
        unit = {a: {p.rhs[0] for p in ps if len(p.rhs) == 1 and not is_terminal(p.rhs[0])}
                for a, ps in self.by_lhs.items()}
        for a in unit:
            seen, todo = set(), list(unit[a])
            while todo:
                b = todo.pop()
                if b == a:
                    raise ValueError(f"grammar {self.name}: unit cycle through {a!r}")
                if b not in seen:
                    seen.add(b)
                    todo.extend(unit[b])

    @property
    def rare(self) -> list[Production]:
        return [p for p in self.productions if p.rare]

    def cost(self, sym: str) -> int:
        """Length contribution of a terminal: its characters plus one separator."""
        return len(term(sym)) + len(self.sep)

    # ------------------------------------------------------------------ sampling
    def sample_one(self, rng: np.random.Generator) -> tuple[str, list[int]]:
        """One exact draw from the PCFG conditioned on ``len <= max_len``, and its productions."""
        budget = self.max_len + len(self.sep)
        while True:
            out: list[str] = []
            used: list[int] = []
            stack = [self.start]
            length = 0
            ok = True
            while stack:
                sym = stack.pop()
                if is_terminal(sym):
                    out.append(term(sym))
                    length += self.cost(sym)
                    if length > budget:
                        ok = False
                        break
                    continue
                ps = self.by_lhs[sym]
                k = int(np.searchsorted(self._cum[sym], rng.random() * self._cum[sym][-1], side="right"))
                p = ps[min(k, len(ps) - 1)]
                used.append(p.index)
                stack.extend(reversed(p.rhs))
            if ok:
                return self.sep.join(out), used

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        return [self.sample_one(rng)[0] for _ in range(n)]

    # ------------------------------------------------------------------ exact tables
    def length_tables(self) -> dict[str, np.ndarray]:
        """Exact per-length tables of the start symbol, index = string cost
        (``len(string) + len(sep)``) from 0 to ``max_len + len(sep)``:
        ``Z`` probability mass, ``E`` sum of p log p over derivations, ``R`` mass of the
        derivations that use no rare production."""
        return self._tables

    @cached_property
    def _tables(self) -> dict[str, np.ndarray]:
        L = self.max_len + len(self.sep)
        zeros = np.zeros(L + 1)
        Z = {a: zeros.copy() for a in self.nonterminals}
        E = {a: zeros.copy() for a in self.nonterminals}
        R = {a: zeros.copy() for a in self.nonterminals}

        def conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.convolve(a, b)[: L + 1]

        def sym_tables(s: str):
            if is_terminal(s):
                t = zeros.copy()
                c = self.cost(s)
                if c <= L:
                    t[c] = 1.0
                return t, zeros, t
            return Z[s], E[s], R[s]

        for _ in range(100 * (L + 1) * max(1, len(self.nonterminals))):
            nZ, nE, nR = {}, {}, {}
            for a, ps in self.by_lhs.items():
                za, ea, ra = zeros.copy(), zeros.copy(), zeros.copy()
                for p in ps:
                    z, e, r = sym_tables(p.rhs[0])
                    for s in p.rhs[1:]:
                        z2, e2, r2 = sym_tables(s)
                        z, e, r = conv(z, z2), conv(e, z2) + conv(z, e2), conv(r, r2)
                    lp = math.log(p.prob)
                    za += p.prob * z
                    ea += p.prob * (e + lp * z)
                    if not p.rare:
                        ra += p.prob * r
                nZ[a], nE[a], nR[a] = za, ea, ra
            same = all(np.array_equal(nZ[a], Z[a]) and np.array_equal(nE[a], E[a]) for a in Z)
            Z, E, R = nZ, nE, nR
            if same:
                break
        else:  # pragma: no cover - cannot happen for an epsilon-free grammar without unit cycles
            raise RuntimeError(f"grammar {self.name}: length tables did not converge")
        return {"Z": Z[self.start], "E": E[self.start], "R": R[self.start]}

    @cached_property
    def log_z(self) -> float:
        """log P(len <= max_len) under the untruncated PCFG."""
        return float(math.log(self._tables["Z"].sum()))

    @cached_property
    def entropy(self) -> float:
        """Exact entropy (nats per string) of the truncated target."""
        t = self._tables
        z = t["Z"].sum()
        return float(-t["E"].sum() / z + math.log(z))

    @cached_property
    def length_pmf(self) -> np.ndarray:
        """P(len(string) = k) under the target, k = 0..max_len."""
        z = self._tables["Z"]
        pmf = z[len(self.sep):] / z.sum()
        out = np.zeros(self.max_len + 1)
        out[: len(pmf)] = pmf[: self.max_len + 1]
        return out

    @cached_property
    def rare_mass(self) -> float:
        """P(the derivation uses at least one rare production) under the target."""
        t = self._tables
        return float(1.0 - t["R"].sum() / t["Z"].sum())

    # ------------------------------------------------------------------ parsing
    def lark_grammar(self) -> str:
        """The grammar in lark's syntax; alternative ``i`` is aliased ``p{i}``."""
        lines = []
        for a, ps in self.by_lhs.items():
            alts = []
            for p in ps:
                syms = [json.dumps(term(s) + self.sep) if is_terminal(s) else s for s in p.rhs]
                alts.append(" ".join(syms) + f" -> p{p.index}")
            lines.append(f"{a}: " + "\n    | ".join(alts))
        return "\n".join(lines) + "\n"

    @cached_property
    def parser(self):
        import lark

        try:
            return lark.Lark(self.lark_grammar(), start=self.start, parser="lalr", lexer="contextual", strict=True)
        except lark.exceptions.GrammarError:
            return lark.Lark(self.lark_grammar(), start=self.start, parser="earley", lexer="dynamic",
                             ambiguity="explicit")

    @property
    def is_lalr(self) -> bool:
        return self.parser.options.parser == "lalr"

    def _tree_logp(self, tree) -> tuple[float, set[int]]:
        from lark import Tree

        data = str(tree.data)
        if data == "_ambig":
            parts = [self._tree_logp(c) for c in tree.children if isinstance(c, Tree)]
            lps = np.array([lp for lp, _ in parts])
            m = lps.max()
            return float(m + math.log(np.exp(lps - m).sum())), set().union(*(r for _, r in parts))
        idx = int(data[1:])
        lp, rules = math.log(self.productions[idx].prob), {idx}
        for c in tree.children:
            if isinstance(c, Tree):
                clp, cr = self._tree_logp(c)
                lp += clp
                rules |= cr
        return lp, rules

    def analyze(self, s: str) -> Analysis:
        """Parse ``s`` (memoised)."""
        hit = self._memo.get(s)
        if hit is not None:
            return hit
        import lark

        res = Analysis(False, -math.inf)
        if (s or self.sep == "") and not (self.sep and (s != s.strip(self.sep) or self.sep * 2 in s)):
            try:
                tree = self.parser.parse(s + self.sep)
            except lark.exceptions.LarkError:
                tree = None
            if tree is not None:
                lp, rules = self._tree_logp(tree)
                res = Analysis(True, lp, frozenset(rules))
        if len(self._memo) > 500_000:
            self._memo.clear()
        self._memo[s] = res
        return res

    def is_valid(self, strings: Iterable[str]) -> np.ndarray:
        return np.array([self.analyze(str(s)).valid and len(str(s)) <= self.max_len for s in strings], dtype=bool)

    def log_prob(self, strings: Iterable[str]) -> np.ndarray:
        """Exact log-probability under the target (the PCFG conditioned on ``len <= max_len``)."""
        out = []
        for s in strings:
            s = str(s)
            a = self.analyze(s)
            out.append(a.logp - self.log_z if a.valid and len(s) <= self.max_len else -math.inf)
        return np.array(out, dtype=float)

    def uses_rare(self, strings: Iterable[str]) -> np.ndarray:
        rare = {p.index for p in self.rare}
        return np.array([bool(self.analyze(str(s)).rules & rare) for s in strings], dtype=bool)

    # ------------------------------------------------------------------ repair
    @cached_property
    def _terminal_values(self) -> dict[str, str]:
        return {t.name: t.pattern.value for t in self.parser.terminals}

    def repair(self, s: str, *, max_nodes: int = 4000) -> str | None:
        """A valid string close to ``s``: its longest prefix of whole terminals that the LALR
        parser accepts, completed by the shortest sequence of terminals that finishes a parse
        (breadth-first over parser states; ties by terminal order).  None when the grammar is
        not LALR or no completion is found within ``max_nodes`` parser states."""
        if self.analyze(s).valid and len(s) <= self.max_len:
            return s
        if not self.is_lalr:
            return None
        if s in self._repairs:
            return self._repairs[s]
        out = self._repair(s, max_nodes)
        if len(self._repairs) > 200_000:
            self._repairs.clear()
        self._repairs[s] = out
        return out

    def _repair(self, s: str, max_nodes: int) -> str | None:
        import lark
        from lark import Token

        text = s + self.sep
        ip = self.parser.parse_interactive("")
        prefix: list[str] = []
        try:
            for tok in self.parser.lex(text):
                try:
                    ip.feed_token(tok)
                except lark.exceptions.UnexpectedInput:
                    break
                prefix.append(str(tok))
        except lark.exceptions.LarkError:
            pass
        values = self._terminal_values
        budget = self.max_len + len(self.sep) - sum(len(p) for p in prefix)
        frontier = [(ip, [], 0)]
        seen = set()
        nodes = 0
        while frontier:
            nxt = []
            for state, added, used in frontier:
                try:
                    done = state.copy()
                    done.feed_eof()
                    return "".join(prefix + added)[: len("".join(prefix + added)) - len(self.sep)] if self.sep \
                        else "".join(prefix + added)
                except lark.exceptions.UnexpectedInput:
                    pass
                for name in sorted(state.choices()):
                    if name not in values:
                        continue
                    v = values[name]
                    if used + len(v) > budget:
                        continue
                    st = state.copy()
                    try:
                        st.feed_token(Token(name, v))
                    except lark.exceptions.UnexpectedInput:
                        continue
                    key = tuple(st.parser_state.state_stack)
                    if key in seen:
                        continue
                    seen.add(key)
                    nxt.append((st, added + [v], used + len(v)))
                    nodes += 1
                    if nodes > max_nodes:
                        return None
            frontier = nxt
        return None


# ---------------------------------------------------------------------- shipped grammars
def _words(lhs: str, words: dict[str, float]) -> list[tuple[str, tuple[str, ...], float]]:
    return [(lhs, (f"'{w}'",), p) for w, p in words.items()]


def arithmetic_grammar(max_len: int = 40) -> PCFG:
    """Arithmetic expressions over non-negative integers with + - * / and parentheses (the
    usual precedence grammar: unambiguous and LALR(1)).  Rare productions (p <= 0.05):
    division, unary minus, three-digit numbers."""
    digits = [str(d) for d in range(10)]
    prods = [
        ("expr", ("term",), 0.62),
        ("expr", ("expr", "'+'", "term"), 0.24),
        ("expr", ("expr", "'-'", "term"), 0.14),
        ("term", ("factor",), 0.72),
        ("term", ("term", "'*'", "factor"), 0.24),
        ("term", ("term", "'/'", "factor"), 0.04),
        ("factor", ("number",), 0.80),
        ("factor", ("'('", "expr", "')'"), 0.17),
        ("factor", ("'-'", "factor"), 0.03),
        ("number", ("digit",), 0.62),
        ("number", ("nzdigit", "digit"), 0.34),
        ("number", ("nzdigit", "digit", "digit"), 0.04),
    ]
    prods += [("digit", (f"'{d}'",), 0.1) for d in digits]
    prods += [("nzdigit", (f"'{d}'",), 1 / 9) for d in digits[1:]]
    return PCFG("arithmetic", "expr", prods, sep="", max_len=max_len, rare_threshold=0.05)


def english_grammar(max_len: int = 80) -> PCFG:
    """A small English-like grammar (words joined by single spaces; unambiguous and LALR(1)).
    Rare productions (p <= 0.05): conditional sentences, ditransitive verb phrases, two
    adjectives, and a rare word in every word class."""
    prods = [
        ("s", ("np", "vp"), 0.95),
        ("s", ("'if'", "np", "vp", "'then'", "np", "vp"), 0.05),
        ("np", ("det", "n"), 0.55),
        ("np", ("det", "adj", "n"), 0.28),
        ("np", ("det", "n", "pp"), 0.13),
        ("np", ("det", "adj", "adj", "n"), 0.04),
        ("pp", ("prep", "np"), 1.0),
        ("vp", ("vi",), 0.34),
        ("vp", ("vt", "np"), 0.52),
        ("vp", ("vt", "np", "adv"), 0.10),
        ("vp", ("vd", "np", "'to'", "np"), 0.04),
    ]
    prods += _words("det", {"the": 0.58, "a": 0.30, "every": 0.09, "no": 0.03})
    prods += _words("n", {"dog": 0.22, "cat": 0.20, "bird": 0.14, "child": 0.13, "teacher": 0.11, "farmer": 0.09,
                          "robot": 0.07, "axolotl": 0.02, "narwhal": 0.02})
    prods += _words("adj", {"big": 0.28, "small": 0.25, "red": 0.2, "happy": 0.15, "old": 0.1, "iridescent": 0.02})
    prods += _words("prep", {"with": 0.45, "near": 0.33, "under": 0.19, "beneath": 0.03})
    prods += _words("vi", {"sleeps": 0.35, "runs": 0.3, "laughs": 0.2, "sings": 0.12, "hibernates": 0.03})
    prods += _words("vt", {"sees": 0.32, "chases": 0.25, "likes": 0.22, "helps": 0.18, "defenestrates": 0.03})
    prods += _words("vd", {"gives": 0.6, "sends": 0.4})
    prods += _words("adv", {"quickly": 0.5, "happily": 0.3, "often": 0.17, "reluctantly": 0.03})
    return PCFG("english", "s", prods, sep=" ", max_len=max_len, rare_threshold=0.05)


GRAMMARS = {"arithmetic": arithmetic_grammar, "english": english_grammar}
