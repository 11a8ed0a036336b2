"""``ngram``: an interpolated Kneser-Ney character n-gram language model (numpy only).

Strings are modelled as ``BOS^(n-1) c_1 .. c_m EOS``.  For order k = n the counts are the raw
n-gram counts; for k < n they are continuation counts (how many distinct symbols precede the
k-gram), and

    P_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h) + D_k N1+(h .) / c_k(h) * P_{k-1}(w | h')

with P_0 uniform over the 98 output symbols, a context never seen falling back to P_{k-1},
and the discount D_k = n1 / (n1 + 2 n2) of the order's count-of-counts (clipped to
[0.05, 0.95]), or a fixed ``discount``.  Every string has a positive, exactly computable probability (``log_prob``).

The only learned state is the set of highest-order n-grams and their counts (all the lower
orders derive from it), so ``state_dict`` is two arrays and resume is exact.  ``fit``
counts the training set; ``update`` (``train: finetune``) multiplies the stored counts by
``keep`` and adds the new ones.  n-grams are packed into int64 codes (7 bits per symbol, so
order <= 9); a context's continuations are contiguous in the sorted code array, which makes a
next-symbol distribution for a batch of contexts a few vectorised gathers.

Sampling: ancestral, with ``temperature`` and nucleus ``top_p`` applied to each next-symbol
distribution, up to ``max_len`` characters (a string that reaches it without EOS is cut there).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

import scloop
from scloop import ConfigError, Data
from scloop.text.encoding import BOS, N_OUT, decode, encode

B = 128  # code base: 7 bits per symbol


def _positions(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded symbol matrix ``(n, order-1 + w + 1)`` and a mask of real target positions."""
    ids, lengths = encode(x)
    if (ids < 0).any():
        raise ConfigError("ngram: a string has a character outside the text vocabulary (tab, newline, printable ASCII)")
    n, w = ids.shape
    seq = np.full((n, order - 1 + w + 1), 0, dtype=np.int64)
    seq[:, : order - 1] = BOS
    seq[:, order - 1: order - 1 + w] = ids
    # EOS (0) already sits at position order-1+length; positions after it are masked out
    mask = np.arange(w + 1)[None, :] <= lengths[:, None]
    return seq, mask


def _codes(seq: np.ndarray, k: int, order: int) -> np.ndarray:
    """k-gram codes ending at every target position: ``(n, w + 1)``."""
    n, total = seq.shape
    npos = total - (order - 1)
    code = np.zeros((n, npos), dtype=np.int64)
    for j in range(k):
        start = order - k + j
        code = code * B + seq[:, start: start + npos]
    return code


class NGramLM:
    def __init__(self, *, order: int = 6, keep: float = 1.0, discount: float | None = None, temperature: float = 1.0,
                 top_p: float = 1.0, max_len: int = 128, sample_batch: int = 4096) -> None:
        self.order, self.keep, self.discount = order, keep, discount
        self.temperature, self.top_p, self.max_len, self.sample_batch = temperature, top_p, max_len, sample_batch

    # ------------------------------------------------------------------ counting
    def _count(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seq, mask = _positions(x, self.order)
        codes = _codes(seq, self.order, self.order)[mask]
        grams, counts = np.unique(codes, return_counts=True)
        return grams, counts.astype(np.float64)

    def _build(self) -> None:
        """Derive every order's tables from the highest-order counts."""
        tables = {}
        grams, counts = self.grams_, self.counts_
        for k in range(self.order, 0, -1):
            if k < self.order:
                suffix = grams % (B ** k)
                grams, counts = np.unique(suffix, return_counts=True)
                counts = counts.astype(np.float64)
            ctx = grams // B
            uctx, start = np.unique(ctx, return_index=True)
            total = np.add.reduceat(counts, start) if len(counts) else np.zeros(0)
            n1p = np.diff(np.append(start, len(grams))).astype(np.float64)
            r = np.rint(counts)
            n1, n2 = float((r == 1).sum()), float((r == 2).sum())
            d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.75
            d = float(np.clip(d, 0.05, 0.95)) if self.discount is None else float(self.discount)
            tables[k] = dict(grams=grams, counts=counts, ctx=uctx, start=start, total=total, n1p=n1p, d=d)
            grams, counts = tables[k]["grams"], tables[k]["counts"]
        self.tables_ = tables

    def fit(self, data: Data, *, rng: np.random.Generator) -> "NGramLM":
        self.grams_, self.counts_ = self._count(np.asarray(data.x))
        self._build()
        return self

    def update(self, data: Data, *, rng: np.random.Generator) -> "NGramLM":
        if not hasattr(self, "grams_"):
            return self.fit(data, rng=rng)
        g, c = self._count(np.asarray(data.x))
        allg = np.concatenate([self.grams_, g])
        allc = np.concatenate([self.counts_ * self.keep, c])
        self.grams_, inv = np.unique(allg, return_inverse=True)
        self.counts_ = np.bincount(inv, weights=allc)
        keep = self.counts_ > 1e-12
        self.grams_, self.counts_ = self.grams_[keep], self.counts_[keep]
        self._build()
        return self

    # ------------------------------------------------------------------ probabilities
    def _lookup(self, table: dict, keys: np.ndarray, what: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arr = table[what]
        i = np.searchsorted(arr, keys)
        i = np.minimum(i, max(len(arr) - 1, 0))
        hit = (arr[i] == keys) if len(arr) else np.zeros(keys.shape, bool)
        return hit, np.where(hit, values[i] if len(arr) else 0, 0)

    def _prob_codes(self, seq: np.ndarray) -> np.ndarray:
        """P(target | history) for every position of a padded sequence matrix."""
        p = np.full(seq[:, self.order - 1:].shape, 1.0 / N_OUT)
        for k in range(1, self.order + 1):
            t = self.tables_[k]
            code = _codes(seq, k, self.order)
            _, c = self._lookup(t, code, "grams", t["counts"])
            hit, tot = self._lookup(t, code // B, "ctx", t["total"])
            _, n1p = self._lookup(t, code // B, "ctx", t["n1p"])
            tot_safe = np.where(hit, tot, 1.0)
            pk = np.maximum(c - t["d"], 0) / tot_safe + t["d"] * n1p / tot_safe * p
            p = np.where(hit, pk, p)
        return p

    def log_prob(self, strings) -> np.ndarray:
        """Exact log-probability (nats) of each string, EOS included."""
        x = np.asarray(strings)
        if len(x) == 0:
            return np.zeros(0)
        out = np.empty(len(x))
        for a in range(0, len(x), 4096):
            seq, mask = _positions(x[a: a + 4096], self.order)
            lp = np.log(self._prob_codes(seq))
            out[a: a + 4096] = np.where(mask, lp, 0.0).sum(axis=1)
        return out

    def _next_dist(self, hist: np.ndarray) -> np.ndarray:
        """Next-symbol distributions ``(m, 98)`` for histories ``(m, order-1)`` of symbol ids."""
        m = len(hist)
        p = np.full((m, N_OUT), 1.0 / N_OUT)
        for k in range(1, self.order + 1):
            t = self.tables_[k]
            ctx = np.zeros(m, dtype=np.int64)
            for j in range(self.order - k, self.order - 1):
                ctx = ctx * B + hist[:, j]
            arr = t["ctx"]
            if not len(arr):
                continue
            i = np.minimum(np.searchsorted(arr, ctx), len(arr) - 1)
            hit = arr[i] == ctx
            rows = np.flatnonzero(hit)
            if not len(rows):
                continue
            ci = i[rows]
            st = t["start"][ci]
            ln = np.diff(np.append(t["start"], len(t["grams"])))[ci]
            rr = np.repeat(np.arange(len(rows)), ln)
            pos = np.repeat(st - np.cumsum(np.append(0, ln[:-1])), ln) + np.arange(ln.sum())
            dense = np.zeros((len(rows), N_OUT))
            dense[rr, t["grams"][pos] % B] = t["counts"][pos]
            tot, n1p, d = t["total"][ci][:, None], t["n1p"][ci][:, None], t["d"]
            p[rows] = np.maximum(dense - d, 0) / tot + d * n1p / tot * p[rows]
        return p

    def sample(self, n: int, *, rng: np.random.Generator, conditions=None) -> Data:
        out = []
        for a in range(0, n, self.sample_batch):
            out.append(self._sample(min(self.sample_batch, n - a), rng))
        from scloop.text.encoding import as_strings

        return Data(as_strings(np.concatenate(out)) if out else as_strings([]))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        from scloop.text.models import apply_temperature_top_p

        L = self.max_len
        hist = np.full((n, self.order - 1), BOS, dtype=np.int64)
        ids = np.zeros((n, L), dtype=np.int16)
        lengths = np.full(n, L, dtype=np.int64)
        alive = np.ones(n, dtype=bool)
        for t in range(L + 1):
            rows = np.flatnonzero(alive)
            if not len(rows):
                break
            p = apply_temperature_top_p(self._next_dist(hist[rows]), self.temperature, self.top_p)
            if t == L:
                break
            u = rng.random(len(rows))
            cdf = np.cumsum(p, axis=1)
            sym = np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), N_OUT - 1)
            ended = sym == 0
            lengths[rows[ended]] = t
            alive[rows[ended]] = False
            go = rows[~ended]
            ids[go, t] = sym[~ended]
            if self.order > 1:
                hist[go] = np.concatenate([hist[go, 1:], sym[~ended, None]], axis=1)
        return decode(ids, lengths)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        return {"grams": self.grams_.copy(), "counts": self.counts_.copy(), "order": np.array(self.order)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> "NGramLM":
        if int(state["order"]) != self.order:
            raise ConfigError(f"ngram: checkpoint has order {int(state['order'])}, the model {self.order}")
        self.grams_ = np.asarray(state["grams"], dtype=np.int64).copy()
        self.counts_ = np.asarray(state["counts"], dtype=np.float64).copy()
        self._build()
        return self


@scloop.register_model("ngram", domain="text")
def make_ngram(order: int = 6, keep: float = 1.0, discount: float | None = None, temperature: float = 1.0, top_p: float = 1.0, max_len: int = 128,
               sample_batch: int = 4096) -> NGramLM:
    """Interpolated Kneser-Ney character n-gram LM.  ``order`` 1..9; ``keep``: weight of the old
    counts in ``update`` (finetune); ``discount``: a fixed Kneser-Ney discount in (0, 1) for every
    order (default: estimated per order); ``temperature`` > 0 and ``top_p`` in (0, 1] shape sampling;
    ``max_len``: longest sampled string."""
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 9:
        raise ConfigError(f"model.order: got {order!r}; allowed: an integer from 1 to 9")
    if not 0 <= float(keep) <= 1:
        raise ConfigError(f"model.keep: got {keep!r}; allowed: a number in [0, 1]")
    if discount is not None and not 0 < float(discount) < 1:
        raise ConfigError(f"model.discount: got {discount!r}; allowed: a number in (0, 1), or null (estimated)")
    if not float(temperature) > 0:
        raise ConfigError(f"model.temperature: got {temperature!r}; allowed: a number > 0")
    if not 0 < float(top_p) <= 1:
        raise ConfigError(f"model.top_p: got {top_p!r}; allowed: a number in (0, 1]")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ConfigError(f"model.max_len: got {max_len!r}; allowed: an integer >= 1")
    return NGramLM(order=order, keep=float(keep), discount=None if discount is None else float(discount),
                   temperature=float(temperature), top_p=float(top_p),
                   max_len=max_len, sample_batch=int(sample_batch))
