"""Text metrics.  Each declares its orientation at registration.

Sample-based (on the ``n_eval`` fresh model samples of a generation):

- ``validity`` (higher is better): share of samples the task's check accepts (parses under
  the grammar; a well-formed ``a<op>b=c``; ``ast.parse`` / ``compile`` for code);
- ``answer-accuracy`` (higher, arithmetic): share of samples that are correct problems;
- ``rare-share`` (higher, PCFG; the truth is the grammar's exact P(rare production), e.g.
  0.290 for ``english``): share of the valid samples whose parse uses a rare production;
- ``tail-coverage`` (higher, PCFG): share of the grammar's rare productions used at least once
  by the samples;
- ``distinct-1`` / ``distinct-2`` / ``distinct-3`` (higher): distinct token n-grams per n-gram
  over all samples (tokens: words, numbers, punctuation, newlines);
- ``unique-fraction`` (higher): distinct strings per sample;
- ``self-bleu`` (lower is better: less self-similar): mean BLEU-4 of each of up to 500
  samples against all the others as references (clipped counts against the largest count in
  any other sample, add-one smoothing for n > 1, brevity penalty against the closest length);
- ``length-tv`` (lower): total-variation distance between the samples' length distribution and
  the target's (exact for PCFG and arithmetic, the training units' for code).

Model-based (the model's ``log_prob`` of the task's fixed reference sample):

- ``kl`` (lower; PCFG and arithmetic): KL(true || model) = cross-entropy of the reference
  (exact target draws) under the model minus the target's exact entropy, nats per string
  (a Monte-Carlo estimate of the cross-entropy, with the same reference every generation);
- ``cross-entropy`` (lower): the mean negative log-likelihood of the reference, nats per string;
- ``rare-mass`` (higher, PCFG; truth 0.290 for ``english``): share of all samples that are
  valid and use a rare production (the model's mass on the grammar's tail);
- ``tail-kl`` (lower, PCFG): E_true[log p_true - log p_model | rare production used];
- ``perplexity`` (lower; real code): exp(total NLL / total characters incl. EOS) of the
  held-out units.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

import scloop
from scloop import ConfigError
from scloop.text.corrections import distinct_n
from scloop.text.encoding import to_list


class TextMetric:
    name = "text-metric"
    needs_samples = True
    requires: tuple[str, ...] = ()

    def prepare(self, context):
        target = dict(context.meta or {}).get("target")
        if target is None:
            raise ConfigError(f"metric {self.name!r} needs a text task (task: pcfg, arithmetic or python-stdlib)")
        for attr in self.requires:
            if not hasattr(target, attr):
                raise ConfigError(f"metric {self.name!r} needs a task whose target has {attr!r} "
                                  f"(task kind {getattr(target, 'kind', '?')!r} has none)")
        self.target_ = target
        return self

    def _target(self, ev):
        t = getattr(self, "target_", None) or ev.target
        if t is None:
            raise ConfigError(f"metric {self.name!r} needs a text task")
        return t

    def _samples(self, ev) -> list[str]:
        return to_list(ev.samples.x)


class Validity(TextMetric):
    name = "validity"
    requires = ("is_valid",)

    def __call__(self, ev):
        xs = self._samples(ev)
        return float(np.mean(self._target(ev).is_valid(xs))) if xs else 0.0


class AnswerAccuracy(TextMetric):
    name = "answer-accuracy"
    requires = ("is_correct",)

    def __call__(self, ev):
        xs = self._samples(ev)
        return float(np.mean(self._target(ev).is_correct(xs))) if xs else 0.0


class RareShare(TextMetric):
    name = "rare-share"
    requires = ("uses_rare",)

    def __call__(self, ev):
        t = self._target(ev)
        xs = [s for s, v in zip(self._samples(ev), t.is_valid(self._samples(ev))) if v]
        return float(np.mean(t.uses_rare(xs))) if xs else 0.0


class TailCoverage(TextMetric):
    name = "tail-coverage"
    requires = ("rare_rules_used",)

    def __call__(self, ev):
        t = self._target(ev)
        return len(t.rare_rules_used(self._samples(ev))) / max(1, t.n_rare)


class Distinct(TextMetric):
    def __init__(self, n: int) -> None:
        self.n, self.name = n, f"distinct-{n}"

    def prepare(self, context):
        return self

    def __call__(self, ev):
        return distinct_n(self._samples(ev), self.n)


class UniqueFraction(Distinct):
    def __init__(self) -> None:
        self.name = "unique-fraction"

    def __call__(self, ev):
        xs = self._samples(ev)
        return len(set(xs)) / len(xs) if xs else 0.0


def _tok(s: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]|\n", s)


def self_bleu(strings: list[str], max_n: int = 4, limit: int = 500) -> float:
    """Mean BLEU-max_n of each of the first ``limit`` strings against all other strings."""
    toks = [_tok(s) for s in strings]
    if len(toks) < 2:
        return 0.0
    hyps = toks[:limit]
    # largest and second-largest count of each n-gram over all strings (to exclude a string itself)
    best: list[dict] = []
    for n in range(1, max_n + 1):
        top: dict = {}
        for t in toks:
            for g, c in Counter(tuple(t[i: i + n]) for i in range(len(t) - n + 1)).items():
                a, b = top.get(g, (0, 0))
                top[g] = (c, a) if c >= a else (a, max(b, c))
        best.append(top)
    lengths = np.array([len(t) for t in toks])
    sorted_l = np.sort(lengths)
    scores = []
    for t in hyps:
        if not t:
            scores.append(0.0)
            continue
        logp = 0.0
        for n in range(1, max_n + 1):
            cnt = Counter(tuple(t[i: i + n]) for i in range(len(t) - n + 1))
            total = sum(cnt.values())
            clipped = 0
            for g, c in cnt.items():
                a, b = best[n - 1][g]
                other = b if c == a else a  # the largest count in another string
                clipped += min(c, other)
            if n == 1:
                if clipped == 0:
                    logp = -math.inf
                    break
                logp += math.log(clipped / total) / max_n
            else:
                logp += math.log((clipped + 1) / (total + 1)) / max_n
        # brevity penalty against the closest other length
        ln = len(t)
        i = np.searchsorted(sorted_l, ln)
        cands = [sorted_l[j] for j in (i - 1, i, i + 1) if 0 <= j < len(sorted_l)]
        cands = sorted(cands, key=lambda r: (abs(r - ln), r))
        ref = cands[0]
        if ref == ln and (lengths == ln).sum() < 2 and len(cands) > 1:
            ref = cands[1]
        bp = 1.0 if ln >= ref else math.exp(1 - ref / ln)
        scores.append(bp * math.exp(logp) if logp > -math.inf else 0.0)
    return float(np.mean(scores))


class SelfBLEU(Distinct):
    def __init__(self) -> None:
        self.name = "self-bleu"

    def __call__(self, ev):
        return self_bleu(self._samples(ev))


class LengthTV(TextMetric):
    name = "length-tv"
    requires = ("length_pmf",)

    def __call__(self, ev):
        t = self._target(ev)
        pmf = np.asarray(t.length_pmf, dtype=float)
        lens = np.array([len(s) for s in self._samples(ev)], dtype=int)
        m = max(len(pmf), int(lens.max()) + 1 if len(lens) else 0)
        q = np.bincount(lens, minlength=m)[:m] / max(1, len(lens))
        p = np.zeros(m)
        p[: len(pmf)] = pmf
        return 0.5 * float(np.abs(p - q).sum())


class _ModelMetric(TextMetric):
    needs_samples = False

    def _ref_logp(self, ev) -> np.ndarray:
        if not hasattr(ev.model, "log_prob"):
            raise ConfigError(f"metric {self.name!r} needs a model with log_prob (ngram, char-transformer)")
        return np.asarray(ev.model.log_prob(ev.reference.x), dtype=float)


class _RareReference(_ModelMetric):
    requires = ("uses_rare", "log_prob")

    def _parts(self, ev):
        t = self._target(ev)
        ref = ev.reference.x
        key = id(ref)
        if getattr(self, "_key", None) != key:  # the reference is fixed for a run and seed
            self._key, self._lp_true, self._rare = key, t.log_prob(ref), t.uses_rare(ref)
        return self._ref_logp(ev), self._lp_true, self._rare


class RareMass(TextMetric):
    """The model's probability of producing a valid string whose derivation uses a rare
    production, estimated on its fresh samples (the truth is the grammar's exact rare mass)."""

    name = "rare-mass"
    requires = ("uses_rare",)

    def __call__(self, ev):
        t = self._target(ev)
        xs = self._samples(ev)
        return float(np.mean(t.uses_rare(xs) & t.is_valid(xs))) if xs else 0.0


class TailKL(_RareReference):
    """E_true[log p_true(s) - log p_model(s) | s uses a rare production]: how much worse the
    model explains the tail than the truth does (nats per string)."""

    name = "tail-kl"

    def __call__(self, ev):
        lp, lt, rare = self._parts(ev)
        if not rare.any():
            return 0.0
        return float(np.mean(lt[rare] - lp[rare]))


class KL(_ModelMetric):
    name = "kl"
    requires = ("entropy",)

    def __call__(self, ev):
        return float(-self._ref_logp(ev).mean() - self._target(ev).entropy)


class CrossEntropy(_ModelMetric):
    name = "cross-entropy"

    def __call__(self, ev):
        return float(-self._ref_logp(ev).mean())


class Perplexity(_ModelMetric):
    name = "perplexity"

    def __call__(self, ev):
        lp = self._ref_logp(ev)
        chars = float(np.char.str_len(np.asarray(ev.reference.x)).sum() + len(lp))
        return float(math.exp(-lp.sum() / chars))


# ---------------------------------------------------------------------- registration
@scloop.register_metric("validity", higher_is_better=True, domain="text", label="Validity rate")
def make_validity() -> Validity:
    return Validity()


@scloop.register_metric("answer-accuracy", higher_is_better=True, domain="text", label="Answer accuracy")
def make_answer_accuracy() -> AnswerAccuracy:
    return AnswerAccuracy()


@scloop.register_metric("rare-share", higher_is_better=True, domain="text",
                        label="Share of valid samples using a rare production")
def make_rare_share() -> RareShare:
    return RareShare()


@scloop.register_metric("rare-mass", higher_is_better=True, domain="text", label="Model mass on rare productions")
def make_rare_mass() -> RareMass:
    return RareMass()


@scloop.register_metric("tail-kl", higher_is_better=False, domain="text", label="Tail cross-entropy gap",
                        unit="nats/string")
def make_tail_kl() -> TailKL:
    return TailKL()


@scloop.register_metric("tail-coverage", higher_is_better=True, domain="text", label="Rare productions covered")
def make_tail_coverage() -> TailCoverage:
    return TailCoverage()


@scloop.register_metric("distinct-1", higher_is_better=True, domain="text", label="distinct-1")
def make_distinct1() -> Distinct:
    return Distinct(1)


@scloop.register_metric("distinct-2", higher_is_better=True, domain="text", label="distinct-2")
def make_distinct2() -> Distinct:
    return Distinct(2)


@scloop.register_metric("distinct-3", higher_is_better=True, domain="text", label="distinct-3")
def make_distinct3() -> Distinct:
    return Distinct(3)


@scloop.register_metric("unique-fraction", higher_is_better=True, domain="text", label="Distinct strings per sample")
def make_unique_fraction() -> UniqueFraction:
    return UniqueFraction()


@scloop.register_metric("self-bleu", higher_is_better=False, domain="text", label="Self-BLEU-4")
def make_self_bleu() -> SelfBLEU:
    return SelfBLEU()


@scloop.register_metric("length-tv", higher_is_better=False, domain="text", label="Length distribution TV distance")
def make_length_tv() -> LengthTV:
    return LengthTV()


@scloop.register_metric("kl", higher_is_better=False, domain="text", label="KL(true || model)", unit="nats/string")
def make_kl() -> KL:
    return KL()


@scloop.register_metric("cross-entropy", higher_is_better=False, domain="text", label="Held-out cross-entropy",
                        unit="nats/string")
def make_cross_entropy() -> CrossEntropy:
    return CrossEntropy()


@scloop.register_metric("perplexity", higher_is_better=False, domain="text", label="Held-out perplexity",
                        unit="per character")
def make_perplexity() -> Perplexity:
    return Perplexity()
