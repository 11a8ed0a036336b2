"""Text tasks: ``pcfg`` and ``arithmetic`` (known ground truth) and ``python-stdlib`` (real code).

Every task's ``Data.x`` is a ``(n,)`` fixed-width unicode array of strings (no conditions).
Its ``target`` is an object with ``sample(n, rng=...)`` and ``is_valid(strings)``, and, where
the truth is known, ``log_prob(strings)`` (exact, nats), ``entropy`` (exact, nats per string)
and ``length_pmf``; the metrics and corrections of :mod:`scloop.text` read it (``target`` of
the correction context and of the evaluation, ``meta["target"]`` for a metric's ``prepare``).

- ``pcfg`` (``grammar: arithmetic | english``): real data and the reference are exact draws
  from the grammar conditioned on ``len <= max_len`` (:mod:`scloop.text.grammar`).
- ``arithmetic``: problems ``a<op>b=c`` -- an operator uniform over ``operators``, each
  operand's digit count uniform over ``min_digits..max_digits``, the operand uniform among the
  numbers with that many digits (0..9 for one digit), ``c`` the exact answer (``//`` for
  ``/``, never by zero).  Exact probabilities, entropy and length distribution.
- ``python-stdlib``: units of the interpreter's standard library (:mod:`scloop.text.code`),
  split by file; real data are ``n_real`` units drawn without replacement from the training
  files, the reference ``n_eval`` units from the held-out files.  There is no known density;
  the ``target`` draws fresh units of the training files (the "true samples" of an oracle
  correction).
"""

from __future__ import annotations

import math
import re
from functools import cached_property

import numpy as np

import scloop
from scloop import ConfigError, Data
from scloop.text.encoding import as_strings, to_list


def _check_int(key: str, v, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        allowed = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ConfigError(f"{key}: got {v!r}; allowed: {allowed}")
    return v


# ---------------------------------------------------------------------- pcfg
class PCFGTarget:
    kind = "pcfg"

    def __init__(self, grammar) -> None:
        self.grammar = grammar
        self.max_len = grammar.max_len
        self.entropy = grammar.entropy
        self.length_pmf = grammar.length_pmf
        self.rare_mass = grammar.rare_mass
        self.n_rare = len(grammar.rare)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return as_strings(self.grammar.sample(n, rng))

    def log_prob(self, strings) -> np.ndarray:
        return self.grammar.log_prob(to_list(strings))

    def is_valid(self, strings) -> np.ndarray:
        return self.grammar.is_valid(to_list(strings))

    def uses_rare(self, strings) -> np.ndarray:
        return self.grammar.uses_rare(to_list(strings))

    def rare_rules_used(self, strings) -> set[int]:
        rare = {p.index for p in self.grammar.rare}
        used: set[int] = set()
        for s in to_list(strings):
            used |= set(self.grammar.analyze(s).rules) & rare
        return used

    def repair(self, s: str) -> str | None:
        return self.grammar.repair(s)


class TextTask:
    """Common parts: real data and reference from the target, ``meta`` for plugins."""

    domain = "text"

    def __init__(self, target, n_eval: int, kind: str, **meta) -> None:
        self.target = target
        self.n_eval = _check_int("task.n_eval", n_eval, 10)
        self.meta = {"target": target, "kind": kind, "max_len": target.max_len, **meta}

    def real_data(self, n_real: int, rng: np.random.Generator) -> Data:
        return Data(self.target.sample(n_real, rng=rng))

    def reference(self, rng: np.random.Generator) -> Data:
        return Data(self.target.sample(self.n_eval, rng=rng))


@scloop.register_task("pcfg", domain="text")
def make_pcfg(grammar: str = "english", max_len: int | None = None, n_eval: int = 2000) -> TextTask:
    """``grammar``: ``arithmetic`` (expressions, default max_len 40) or ``english`` (a small
    English-like grammar with rare productions, default max_len 80)."""
    from scloop.text.grammar import GRAMMARS

    if grammar not in GRAMMARS:
        raise ConfigError(f"task.grammar: got {grammar!r}; allowed: {', '.join(GRAMMARS)}")
    g = GRAMMARS[grammar]() if max_len is None else GRAMMARS[grammar](max_len=_check_int("task.max_len", max_len, 4, 1000))
    return TextTask(PCFGTarget(g), n_eval, "pcfg", grammar=grammar)


# ---------------------------------------------------------------------- arithmetic
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a // b}
_PROBLEM = re.compile(r"^(0|[1-9][0-9]*)([-+*/])(0|[1-9][0-9]*)=(-?(?:0|[1-9][0-9]*))$")
_PREFIX = re.compile(r"^(0|[1-9][0-9]*)([-+*/])(0|[1-9][0-9]*)=")


class ArithmeticTarget:
    kind = "arithmetic"

    def __init__(self, operators: str, min_digits: int, max_digits: int) -> None:
        self.ops = list(dict.fromkeys(operators))
        self.digits = list(range(min_digits, max_digits + 1))
        self.max_len = 2 * max_digits + 1 + 1 + (2 * max_digits + 1)

    @staticmethod
    def _range(d: int) -> tuple[int, int]:
        return (0, 9) if d == 1 else (10 ** (d - 1), 10 ** d - 1)

    def _operand(self, d: int, rng: np.random.Generator, *, nonzero: bool = False) -> int:
        lo, hi = self._range(d)
        if nonzero and lo == 0:
            lo = 1
        return int(rng.integers(lo, hi + 1))

    def _count(self, d: int, nonzero: bool = False) -> int:
        lo, hi = self._range(d)
        return hi - max(lo, 1 if nonzero else lo) + 1

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        out = []
        for _ in range(n):
            op = self.ops[int(rng.integers(len(self.ops)))]
            a = self._operand(self.digits[int(rng.integers(len(self.digits)))], rng)
            b = self._operand(self.digits[int(rng.integers(len(self.digits)))], rng, nonzero=op == "/")
            out.append(f"{a}{op}{b}={_OPS[op](a, b)}")
        return as_strings(out)

    def parse(self, s: str):
        m = _PROBLEM.match(s)
        if not m:
            return None
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        return a, op, b, c

    def _in_support(self, a: int, op: str, b: int) -> bool:
        da, db = len(str(a)), len(str(b))
        return op in self.ops and da in self.digits and db in self.digits and not (op == "/" and b == 0)

    def is_valid(self, strings) -> np.ndarray:
        """Well-formed: ``a<op>b=c`` with canonical integers and a known operator (the answer
        may be wrong: that is :meth:`is_correct`)."""
        return np.array([self.parse(s) is not None and self.parse(s)[1] in self.ops for s in to_list(strings)],
                        dtype=bool)

    def is_correct(self, strings) -> np.ndarray:
        out = []
        for s in to_list(strings):
            p = self.parse(s)
            out.append(p is not None and p[1] in self.ops and not (p[1] == "/" and p[2] == 0)
                       and _OPS[p[1]](p[0], p[2]) == p[3])
        return np.array(out, dtype=bool)

    def fix(self, s: str) -> str | None:
        """The problem with its answer recomputed, if ``s`` starts with a well-formed
        ``a<op>b=``; else None."""
        m = _PREFIX.match(s)
        if not m:
            return None
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        if op not in self.ops or (op == "/" and b == 0):
            return None
        return f"{a}{op}{b}={_OPS[op](a, b)}"

    def log_prob(self, strings) -> np.ndarray:
        out = []
        for s in to_list(strings):
            p = self.parse(s)
            if p is None or not self._in_support(p[0], p[1], p[2]) or _OPS[p[1]](p[0], p[2]) != p[3]:
                out.append(-math.inf)
                continue
            a, op, b, _ = p
            lp = -math.log(len(self.ops)) - 2 * math.log(len(self.digits))
            lp -= math.log(self._count(len(str(a)))) + math.log(self._count(len(str(b)), op == "/"))
            out.append(lp)
        return np.array(out, dtype=float)

    @cached_property
    def entropy(self) -> float:
        h = math.log(len(self.ops)) + 2 * math.log(len(self.digits))
        h += float(np.mean([math.log(self._count(d)) for d in self.digits]))
        h += float(np.mean([np.mean([math.log(self._count(d, op == "/")) for d in self.digits]) for op in self.ops]))
        return h

    @cached_property
    def length_pmf(self) -> np.ndarray:
        pmf = np.zeros(self.max_len + 1)
        for op in self.ops:
            for da in self.digits:
                for db in self.digits:
                    lo_a, hi_a = self._range(da)
                    lo_b, hi_b = self._range(db)
                    if op == "/" and lo_b == 0:
                        lo_b = 1
                    a = np.arange(lo_a, hi_a + 1, dtype=np.int64)[:, None]
                    b = np.arange(lo_b, hi_b + 1, dtype=np.int64)[None, :]
                    c = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.floor_divide}[op](a, b)
                    clen = np.where(c < 0, 1, 0) + np.floor(np.log10(np.maximum(np.abs(c), 1))).astype(int) + 1
                    lens = (da + db + 2 + clen).ravel()
                    w = 1.0 / (len(self.ops) * len(self.digits) ** 2 * lens.size)
                    np.add.at(pmf, lens, w)
        return pmf


@scloop.register_task("arithmetic", domain="text")
def make_arithmetic(operators: str = "+-*", min_digits: int = 1, max_digits: int = 2, n_eval: int = 2000) -> TextTask:
    """``operators``: a string of ``+ - * /``; operands have ``min_digits..max_digits`` digits."""
    if not isinstance(operators, str) or not operators or set(operators) - set(_OPS):
        raise ConfigError(f"task.operators: got {operators!r}; allowed: a non-empty string of + - * /")
    lo = _check_int("task.min_digits", min_digits, 1, 4)
    hi = _check_int("task.max_digits", max_digits, lo, 4)
    return TextTask(ArithmeticTarget(operators, lo, hi), n_eval, "arithmetic")


# ---------------------------------------------------------------------- real code
class CodeTarget:
    """The training half of the corpus: no known density; ``sample`` draws fresh units."""

    kind = "code"

    def __init__(self, pool: list[str], unit: str, max_len: int) -> None:
        self.pool = as_strings(pool)
        self.unit, self.max_len = unit, max_len

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.pool[rng.integers(len(self.pool), size=n)]

    def is_valid(self, strings) -> np.ndarray:
        from scloop.text.code import is_valid_unit

        return np.array([len(s) <= self.max_len and is_valid_unit(s, self.unit) for s in to_list(strings)], dtype=bool)

    @cached_property
    def length_pmf(self) -> np.ndarray:
        lens = np.char.str_len(self.pool)
        return np.bincount(lens, minlength=self.max_len + 1)[: self.max_len + 1] / len(lens)


class CodeTask(TextTask):
    def __init__(self, unit: str, max_len: int, min_len: int, holdout: float, n_eval: int) -> None:
        from scloop.text.code import corpus

        c = corpus(unit, max_len, min_len, holdout)
        self._heldout = as_strings(c["heldout"])
        if len(self._heldout) < n_eval:
            raise ConfigError(f"task.n_eval: got {n_eval}; the held-out files have {len(self._heldout)} units")
        super().__init__(CodeTarget(c["train"], unit, max_len), n_eval, "code", unit=unit,
                         n_train_units=len(c["train"]), n_heldout_units=len(c["heldout"]),
                         n_train_files=len(c["train_files"]), n_heldout_files=len(c["heldout_files"]))

    def real_data(self, n_real: int, rng: np.random.Generator) -> Data:
        pool = self.target.pool
        if n_real > len(pool):
            raise ConfigError(f"n_real: got {n_real}; the training files have {len(pool)} units")
        return Data(pool[np.sort(rng.choice(len(pool), size=n_real, replace=False))])

    def reference(self, rng: np.random.Generator) -> Data:
        return Data(self._heldout[np.sort(rng.choice(len(self._heldout), size=self.n_eval, replace=False))])


@scloop.register_task("python-stdlib", domain="text")
def make_python_stdlib(unit: str = "line", max_len: int | None = None, min_len: int = 8, holdout: float = 0.1,
                       n_eval: int = 1000) -> CodeTask:
    """``unit``: ``line`` (logical lines: simple statements; default max_len 100) or
    ``function`` (whole ``def`` blocks; default max_len 400).  ``holdout``: share of files
    held out (by a hash of the path)."""
    from scloop.text.code import UNITS

    if unit not in UNITS:
        raise ConfigError(f"task.unit: got {unit!r}; allowed: {', '.join(UNITS)}")
    if max_len is None:
        max_len = 100 if unit == "line" else 400
    _check_int("task.max_len", max_len, 8, 4000)
    _check_int("task.min_len", min_len, 1, max_len)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ConfigError(f"task.holdout: got {holdout!r}; allowed: a number in (0, 1)")
    return CodeTask(unit, max_len, min_len, float(holdout), n_eval)
