"""Corrections of synthetic strings by programs.

Strength: with ``gamma`` (>= 0, ``.inf`` allowed) each synthetic string is *inspected* with
probability t = gamma / (1 + gamma) (independently, from the ``correct`` stream), as in the
paper's pi_gamma = (p_theta + gamma pi p_theta) / (1 + gamma); gamma = inf inspects every
string, gamma = 0 is the identity.  ``top-likelihood`` is the exception (gamma sets its pool
size, see there).

- ``text-oracle-mixture``: an inspected string is replaced by a fresh draw from the task's
  target -- the idealized corrector (named so because scloop's own ``oracle-mixture`` works on
  vectors; the registry is one namespace across domains);
- ``grammar``: an inspected string that the task's validity check rejects is either redrawn
  from the model (``mode: resample``, up to ``max_rounds`` batches) or repaired to a valid
  string (``mode: repair``: its longest grammatical prefix completed by the shortest parse
  completion; PCFG tasks only);  what stays invalid is kept or dropped (``on_fail``);
- ``checker`` (arithmetic): an inspected problem ``a<op>b=...`` gets its answer recomputed;
  one without a well-formed ``a<op>b=`` prefix is redrawn (``on_fail`` after ``max_rounds``);
- ``compile`` (code): ``ast.parse`` / ``compile`` of an inspected unit; ``mode: filter``
  drops it, ``resample`` redraws it, ``truncate`` cuts it to its longest valid prefix;
- ``biased-verifier``: a proxy verifier that accepts a string when it is no longer than the
  ``quantile`` of the real strings' lengths (short strings are more often valid, but the proxy
  knows nothing else); rejected strings are redrawn up to ``max_rounds`` times, then dropped;
- ``top-likelihood``: curation by the model's own likelihood: draw ``ceil(gamma n)`` extra
  samples (gamma = inf: ``(pool - 1) n``) and keep the ``n`` most likely of the pool
  (``score: total`` log-probability, or ``per_char``).

Diagnostics (``correction_*`` rows of the results): ``inspected`` (share of the batch),
``acceptance`` (share of the inspected accepted as drawn), ``fraction_changed`` (share of the
output that differs from the drawn string at its place, dropped strings counted as changed),
``kept_fraction`` (output size / batch size), ``edit_chars`` (mean Levenshtein distance of the
changed strings that were edited in place, on up to 200 of them), ``diversity_removed``
(distinct strings per string before minus after) and ``distinct2_removed`` (distinct token
bigrams per bigram, before minus after); the verifiers add ``valid_before`` / ``valid_after``.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np

import scloop
from scloop import ConfigError, Corrected, Data
from scloop.text.encoding import as_strings, to_list


def mixing_weight(gamma: float) -> float:
    g = float(gamma)
    if math.isnan(g) or g < 0:
        raise ConfigError(f"gamma: got {gamma!r}; allowed: a number >= 0 (or .inf)")
    return 1.0 if math.isinf(g) else g / (1.0 + g)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit costs), one numpy row per character of ``a``."""
    if not a or not b:
        return max(len(a), len(b))
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    prev = np.arange(len(b) + 1)
    j = np.arange(len(b) + 1)
    for i, ca in enumerate(a, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (bb != ord(ca)))
        cur = j + np.minimum.accumulate(cur - j)  # insertions
        prev = cur
    return int(prev[-1])


def _tokens(s: str) -> list[str]:
    import re

    return re.findall(r"\w+|[^\w\s]|\n", s)


def distinct_n(strings, n: int) -> float:
    grams, total = set(), 0
    for s in strings:
        t = _tokens(str(s))
        for i in range(len(t) - n + 1):
            grams.add(tuple(t[i: i + n]))
            total += 1
    return len(grams) / total if total else 0.0


def batch_diagnostics(before: np.ndarray, after: np.ndarray, changed: np.ndarray, edited_pairs) -> dict[str, float]:
    """``changed``: bool per input string (edited, replaced or dropped)."""
    nb, na = len(before), len(after)
    out = {
        "fraction_changed": float(changed.mean()) if nb else 0.0,
        "kept_fraction": na / nb if nb else 1.0,
        "diversity_removed": (len(set(before.tolist())) / nb if nb else 0.0) - (len(set(after.tolist())) / na if na else 0.0),
        "distinct2_removed": distinct_n(before, 2) - distinct_n(after, 2),
    }
    pairs = edited_pairs[:200]
    out["edit_chars"] = float(np.mean([levenshtein(a, b) for a, b in pairs])) if pairs else 0.0
    return out


class TextCorrection:
    """Base: the target from the context, the inspection mask, the diagnostics."""

    name = "text-correction"
    needs: tuple[str, ...] = ()

    def __init__(self, gamma: float = 0.0) -> None:
        self.gamma = float(gamma)
        self.t = mixing_weight(gamma)

    def prepare(self, context, *, rng: np.random.Generator | None = None) -> Self:
        target = context.target if context.target is not None else dict(context.meta or {}).get("target")
        if target is None:
            raise ConfigError(f"correction {self.name!r} needs a text task (task: pcfg, arithmetic or python-stdlib)")
        for attr in self.needs:
            if not hasattr(target, attr):
                raise ConfigError(f"correction {self.name!r} needs a task whose target has {attr!r}; "
                                  f"task kind {getattr(target, 'kind', '?')!r} has none")
        self.target_ = target
        self.real_ = as_strings(context.real.x)
        return self

    def _inspect(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.random(n) < self.t

    def _resample(self, model, k: int, rng: np.random.Generator) -> list[str]:
        return to_list(model.sample(k, rng=rng).x) if k > 0 else []

    def __call__(self, data: Data, *, model, rng: np.random.Generator) -> Corrected:
        x = as_strings(data.x)
        mask = self._inspect(len(x), rng)
        out, keep, changed, accepted, edited, extra = self._correct(to_list(x), mask, model, rng)
        after = as_strings([s for s, k in zip(out, keep) if k])
        diag = batch_diagnostics(x, after, changed, edited)
        diag["inspected"] = float(mask.mean()) if len(x) else 0.0
        diag["acceptance"] = float(accepted[mask].mean()) if mask.any() else 1.0
        diag.update(extra)
        return Corrected(Data(after), diag)

    def _correct(self, xs: list[str], mask: np.ndarray, model, rng):  # pragma: no cover - abstract
        raise NotImplementedError


class OracleMixture(TextCorrection):
    name = "text-oracle-mixture"
    needs = ("sample",)

    def _correct(self, xs, mask, model, rng):
        idx = np.flatnonzero(mask)
        fresh = to_list(self.target_.sample(len(idx), rng=rng)) if len(idx) else []
        out = list(xs)
        for i, s in zip(idx, fresh):
            out[i] = s
        changed = np.array([a != b for a, b in zip(xs, out)], dtype=bool)
        return out, np.ones(len(xs), bool), changed, np.zeros(len(xs), bool), [], {}


class _Verifier(TextCorrection):
    """Accept-or-fix loop shared by grammar / checker / compile / biased-verifier."""

    def __init__(self, gamma: float, *, max_rounds: int, on_fail: str) -> None:
        super().__init__(gamma)
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 0:
            raise ConfigError(f"correction.max_rounds: got {max_rounds!r}; allowed: an integer >= 0")
        if on_fail not in ("keep", "drop"):
            raise ConfigError(f"correction.on_fail: got {on_fail!r}; allowed: keep, drop")
        self.max_rounds, self.on_fail = max_rounds, on_fail

    def accept(self, xs: list[str]) -> np.ndarray:
        return self.target_.is_valid(xs)

    def fix(self, s: str) -> str | None:
        """An in-place fix of a rejected string, or None (then it is redrawn)."""
        return None

    def _redraw(self) -> bool:
        return self.max_rounds > 0

    def _correct(self, xs, mask, model, rng):
        n = len(xs)
        out = list(xs)
        keep = np.ones(n, bool)
        ok = np.ones(n, bool)
        idx = np.flatnonzero(mask)
        if len(idx):
            ok[idx] = self.accept([xs[i] for i in idx])
        accepted = ok.copy()
        edited = []
        pending = []
        for i in idx[~ok[idx]]:
            f = self.fix(xs[i])
            if f is not None:
                out[i] = f
                ok[i] = True
                if f != xs[i]:
                    edited.append((xs[i], f))
            else:
                pending.append(int(i))
        rounds = 0
        while pending and self._redraw() and rounds < self.max_rounds:
            rounds += 1
            draws = self._resample(model, len(pending), rng)
            good = self.accept(draws)
            still = []
            for i, s, g in zip(pending, draws, good):
                if not g:
                    f = self.fix(s)
                    if f is not None:
                        s, g = f, True
                if g:
                    out[i] = s
                    ok[i] = True
                else:
                    still.append(i)
            pending = still
        for i in pending:
            if self.on_fail == "drop":
                keep[i] = False
        changed = np.array([(not k) or a != b for a, b, k in zip(xs, out, keep)], dtype=bool)
        extra = {"rounds": float(rounds)}
        if hasattr(self.target_, "is_valid"):
            vb = self.target_.is_valid(xs)
            va = self.target_.is_valid([s for s, k in zip(out, keep) if k])
            extra["valid_before"] = float(vb.mean()) if n else 0.0
            extra["valid_after"] = float(va.mean()) if len(va) else 0.0
        return out, keep, changed, accepted, edited, extra


class GrammarCorrection(_Verifier):
    name = "grammar"
    needs = ("is_valid",)

    def __init__(self, gamma: float, *, mode: str, max_rounds: int, on_fail: str) -> None:
        super().__init__(gamma, max_rounds=max_rounds, on_fail=on_fail)
        if mode not in ("resample", "repair"):
            raise ConfigError(f"correction.mode: got {mode!r}; allowed: resample, repair")
        self.mode = mode

    def prepare(self, context, *, rng=None) -> Self:
        super().prepare(context, rng=rng)
        if self.mode == "repair" and not hasattr(self.target_, "repair"):
            raise ConfigError("correction 'grammar' with mode: repair needs a grammar task (task: pcfg)")
        return self

    def fix(self, s):
        return self.target_.repair(s) if self.mode == "repair" else None

    def _redraw(self) -> bool:
        return self.mode == "resample" or self.max_rounds > 0


class CheckerCorrection(_Verifier):
    name = "checker"
    needs = ("fix", "is_correct")

    def accept(self, xs):
        return self.target_.is_correct(xs)

    def fix(self, s):
        return self.target_.fix(s)


class CompileCorrection(_Verifier):
    name = "compile"
    needs = ("unit",)

    def __init__(self, gamma: float, *, mode: str, max_rounds: int) -> None:
        if mode not in ("filter", "resample", "truncate"):
            raise ConfigError(f"correction.mode: got {mode!r}; allowed: filter, resample, truncate")
        super().__init__(gamma, max_rounds=max_rounds if mode == "resample" else 0, on_fail="drop")
        self.mode = mode

    def fix(self, s):
        if self.mode != "truncate":
            return None
        from scloop.text.code import longest_valid_prefix

        return longest_valid_prefix(s, self.target_.unit)


class BiasedVerifier(_Verifier):
    name = "biased-verifier"

    def __init__(self, gamma: float, *, quantile: float, max_rounds: int) -> None:
        super().__init__(gamma, max_rounds=max_rounds, on_fail="drop")
        if not 0 < float(quantile) <= 1:
            raise ConfigError(f"correction.quantile: got {quantile!r}; allowed: a number in (0, 1]")
        self.quantile = float(quantile)

    def prepare(self, context, *, rng=None) -> Self:
        super().prepare(context, rng=rng)
        self.threshold_ = float(np.quantile(np.char.str_len(self.real_), self.quantile)) if len(self.real_) else 0.0
        return self

    def accept(self, xs):
        return np.array([len(s) <= self.threshold_ for s in xs], dtype=bool)

    def _correct(self, xs, mask, model, rng):
        res = super()._correct(xs, mask, model, rng)
        out, keep, *_rest, extra = res
        if hasattr(self.target_, "is_valid") and len(xs):
            v = self.target_.is_valid(xs)
            a = self.accept(xs)
            extra["proxy_valid_accepted"] = float(v[a].mean()) if a.any() else 0.0
            extra["proxy_valid_rejected"] = float(v[~a].mean()) if (~a).any() else 0.0
        return res


class TopLikelihood(TextCorrection):
    name = "top-likelihood"

    def __init__(self, gamma: float, *, pool: int, score: str) -> None:
        super().__init__(gamma)
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise ConfigError(f"correction.pool: got {pool!r}; allowed: an integer >= 1")
        if score not in ("total", "per_char"):
            raise ConfigError(f"correction.score: got {score!r}; allowed: total, per_char")
        self.pool, self.score = pool, score

    def __call__(self, data: Data, *, model, rng: np.random.Generator) -> Corrected:
        x = as_strings(data.x)
        n = len(x)
        extra_n = (self.pool - 1) * n if math.isinf(self.gamma) else int(math.ceil(self.gamma * n))
        if not hasattr(model, "log_prob"):
            raise ConfigError("correction 'top-likelihood' needs a model with log_prob (ngram, char-transformer)")
        cand = to_list(x) + self._resample(model, extra_n, rng)
        lp = np.asarray(model.log_prob(as_strings(cand)), dtype=float)
        if self.score == "per_char":
            lp = lp / (np.array([len(s) for s in cand]) + 1)
        order = np.argsort(-lp, kind="stable")[:n]
        chosen = np.sort(order)
        after = as_strings([cand[i] for i in chosen])
        kept_original = np.zeros(n, bool)
        kept_original[chosen[chosen < n]] = True
        diag = batch_diagnostics(x, after, ~kept_original, [])
        diag["inspected"] = 1.0 if extra_n else 0.0
        diag["acceptance"] = n / len(cand) if cand else 1.0
        diag["kept_fraction"] = len(after) / n if n else 1.0
        return Corrected(Data(after), diag)


# ---------------------------------------------------------------------- registration
@scloop.register_correction("text-oracle-mixture", domain="text")
def make_text_oracle_mixture(gamma: float = 0.0) -> OracleMixture:
    return OracleMixture(gamma)


@scloop.register_correction("grammar", domain="text")
def make_grammar(gamma: float = 0.0, mode: str = "resample", max_rounds: int = 5, on_fail: str = "drop") -> GrammarCorrection:
    return GrammarCorrection(gamma, mode=mode, max_rounds=max_rounds, on_fail=on_fail)


@scloop.register_correction("checker", domain="text")
def make_checker(gamma: float = 0.0, max_rounds: int = 5, on_fail: str = "drop") -> CheckerCorrection:
    return CheckerCorrection(gamma, max_rounds=max_rounds, on_fail=on_fail)


@scloop.register_correction("compile", domain="text")
def make_compile(gamma: float = 0.0, mode: str = "resample", max_rounds: int = 5) -> CompileCorrection:
    return CompileCorrection(gamma, mode=mode, max_rounds=max_rounds)


@scloop.register_correction("biased-verifier", domain="text")
def make_biased_verifier(gamma: float = 0.0, quantile: float = 0.5, max_rounds: int = 5) -> BiasedVerifier:
    return BiasedVerifier(gamma, quantile=quantile, max_rounds=max_rounds)


@scloop.register_correction("top-likelihood", domain="text")
def make_top_likelihood(gamma: float = 0.0, pool: int = 4, score: str = "total") -> TopLikelihood:
    return TopLikelihood(gamma, pool=pool, score=score)
