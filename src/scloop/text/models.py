"""Text models: ``ngram`` (:mod:`scloop.text.ngram`) and ``char-transformer``, a small
nanoGPT-style causal decoder over characters (torch).

``char-transformer``: token + learned position embeddings, ``layers`` pre-LayerNorm blocks
(causal multi-head self-attention, GELU MLP 4x wide, dropout), a final LayerNorm and an output
head over the 98 output symbols (EOS + 97 characters).  Strings are ``BOS c_1 .. c_m`` ->
``c_1 .. c_m EOS``; the context is ``max_len + 1`` positions.  Trained with AdamW (``lr``,
``weight_decay``, gradient clipping 1.0) on random minibatches:

- ``fit`` (``train: scratch``): fresh weights, ``steps`` steps, the learning rate warmed up
  for the first 5% and decayed by cosine to ``lr / 10``;
- ``update`` (``train: finetune``): ``finetune_steps`` more steps at ``finetune_lr``, the
  AdamW state kept.

All randomness (initialisation, minibatches, dropout, sampling) comes from the generator the
loop passes, so a run is reproducible; ``state_dict`` holds the weights and the AdamW moments
as float32 arrays plus the step count, so resume is exact.  The device is ``cpu`` unless
``device: auto`` finds CUDA (or ``device: cuda``).  ``threads``: torch intra-op threads (0:
leave torch's setting).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

import scloop
from scloop import ConfigError, Data
from scloop.text import ngram as _ngram  # noqa: F401  (registers ``ngram``)
from scloop.text.encoding import BOS, N_IN, N_OUT, as_strings, decode, encode


def apply_temperature_top_p(p: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """Rows of next-symbol probabilities reshaped by a temperature and a nucleus (top-p)
    cut: the smallest set of most likely symbols whose mass reaches ``top_p`` is kept."""
    if temperature != 1.0:
        logp = np.log(np.maximum(p, 1e-300)) / temperature
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(axis=1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sp = np.take_along_axis(p, order, axis=1)
        csum = np.cumsum(sp, axis=1)
        keep_sorted = (csum - sp) < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    return p


def _torch():
    import torch

    return torch


def _build_net(vocab_in: int, vocab_out: int, block: int, layers: int, heads: int, dim: int, dropout: float):
    torch = _torch()
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(dim, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                 dropout_p=dropout if self.training else 0.0)
            x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
            return x + self.drop(self.mlp(self.ln2(x)))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab_in, dim)
            self.pos = nn.Embedding(block, dim)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, vocab_out)

        def forward(self, idx):
            t = idx.shape[1]
            x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))[None]
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x))

    return GPT()


class CharTransformer:
    def __init__(self, *, layers: int, heads: int, dim: int, dropout: float, max_len: int, steps: int,
                 finetune_steps: int, batch_size: int, lr: float, finetune_lr: float, weight_decay: float,
                 temperature: float, top_p: float, sample_batch: int, device: str, threads: int) -> None:
        self.layers, self.heads, self.dim, self.dropout, self.max_len = layers, heads, dim, dropout, max_len
        self.steps, self.finetune_steps, self.batch_size = steps, finetune_steps, batch_size
        self.lr, self.finetune_lr, self.weight_decay = lr, finetune_lr, weight_decay
        self.temperature, self.top_p, self.sample_batch = temperature, top_p, sample_batch
        self.device, self.threads = device, threads

    # ------------------------------------------------------------------ plumbing
    def _dev(self):
        torch = _torch()
        if self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available()):
            return torch.device("cuda")
        return torch.device("cpu")

    def _new(self, seed: int) -> None:
        torch = _torch()
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net_ = _build_net(N_IN, N_OUT, self.max_len + 1, self.layers, self.heads, self.dim,
                                   self.dropout).to(self._dev())
        self.opt_ = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                      betas=(0.9, 0.95))
        self.step_ = 0

    def _tensors(self, x: np.ndarray):
        torch = _torch()
        ids, lengths = encode(x)
        if (ids < 0).any():
            raise ConfigError("char-transformer: a string has a character outside the text vocabulary")
        n, w = ids.shape
        L = self.max_len
        ids, lengths = ids[:, :L], np.minimum(lengths, L)
        inp = np.zeros((n, L + 1), dtype=np.int64)
        inp[:, 0] = BOS
        inp[:, 1: 1 + ids.shape[1]] = ids
        tgt = np.full((n, L + 1), -100, dtype=np.int64)
        tgt[:, : ids.shape[1]] = ids
        pos = np.arange(L + 1)[None, :]
        tgt[pos == lengths[:, None]] = 0  # EOS
        tgt[pos > lengths[:, None]] = -100
        return torch.as_tensor(inp), torch.as_tensor(tgt), lengths

    def _train(self, data: Data, steps: int, lr: float, rng: np.random.Generator, schedule: bool) -> None:
        torch = _torch()
        inp, tgt, lengths = self._tensors(np.asarray(data.x))
        if len(inp) == 0 or steps <= 0:
            return
        dev = self._dev()
        inp, tgt = inp.to(dev), tgt.to(dev)
        seed = int(rng.integers(2**62))
        g = np.random.default_rng(seed)
        self.net_.train()
        warm = max(1, steps // 20)
        with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
            torch.manual_seed(seed)
            for s in range(steps):
                if schedule:
                    f = (s + 1) / warm if s < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
                else:
                    f = 1.0
                for group in self.opt_.param_groups:
                    group["lr"] = lr * f
                idx = torch.as_tensor(g.integers(len(inp), size=min(self.batch_size, len(inp))), device=dev)
                t = int(lengths[idx.cpu().numpy()].max()) + 1
                logits = self.net_(inp[idx, :t])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, N_OUT), tgt[idx, :t].reshape(-1),
                                                         ignore_index=-100)
                self.opt_.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                self.opt_.step()
                self.step_ += 1
        self.last_loss_ = float(loss.detach().cpu())

    # ------------------------------------------------------------------ protocol
    def fit(self, data: Data, *, rng: np.random.Generator) -> "CharTransformer":
        self._new(int(rng.integers(2**62)))
        self._train(data, self.steps, self.lr, rng, schedule=True)
        return self

    def update(self, data: Data, *, rng: np.random.Generator) -> "CharTransformer":
        if not hasattr(self, "net_"):
            return self.fit(data, rng=rng)
        self._train(data, self.finetune_steps, self.finetune_lr, rng, schedule=False)
        return self

    def log_prob(self, strings) -> np.ndarray:
        """log-probability (nats) of each string, EOS included (strings longer than
        ``max_len`` are scored on their first ``max_len`` characters, without EOS)."""
        torch = _torch()
        x = np.asarray(strings)
        out = np.zeros(len(x))
        self.net_.eval()
        dev = self._dev()
        with torch.no_grad():
            for a in range(0, len(x), 256):
                inp, tgt, lengths = self._tensors(x[a: a + 256])
                t = int(lengths.max()) + 1
                inp, tgt = inp[:, :t].to(dev), tgt[:, :t].to(dev)
                lp = torch.log_softmax(self.net_(inp).double(), dim=-1)
                tok = torch.gather(lp, 2, tgt.clamp(min=0)[..., None])[..., 0]
                out[a: a + 256] = (tok * (tgt >= 0)).sum(dim=1).cpu().numpy()
        return out

    def sample(self, n: int, *, rng: np.random.Generator, conditions=None) -> Data:
        parts = [self._sample(min(self.sample_batch, n - a), rng) for a in range(0, n, self.sample_batch)]
        return Data(as_strings(np.concatenate(parts)) if parts else as_strings([]))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        torch = _torch()
        L = self.max_len
        dev = self._dev()
        seq = torch.full((n, L + 1), BOS, dtype=torch.long, device=dev)
        lengths = np.full(n, L, dtype=np.int64)
        alive = np.ones(n, dtype=bool)
        self.net_.eval()
        with torch.no_grad():
            for t in range(L):
                rows = np.flatnonzero(alive)
                if not len(rows):
                    break
                r = torch.as_tensor(rows, device=dev)
                logits = self.net_(seq[r, : t + 1])[:, -1].double()
                p = torch.softmax(logits, dim=-1).cpu().numpy()
                p = apply_temperature_top_p(p, self.temperature, self.top_p)
                u = rng.random(len(rows))
                cdf = np.cumsum(p, axis=1)
                sym = np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), N_OUT - 1)
                ended = sym == 0
                lengths[rows[ended]] = t
                alive[rows[ended]] = False
                go = rows[~ended]
                if len(go):
                    seq[torch.as_tensor(go, device=dev), t + 1] = torch.as_tensor(sym[~ended], device=dev)
        ids = seq[:, 1:].cpu().numpy().astype(np.int16)
        return decode(ids, lengths)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.net_.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}
        params = list(self.net_.parameters())
        for i, p in enumerate(params):
            st = self.opt_.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    out[f"opt.{i}.{key}"] = st[key].detach().cpu().numpy().copy()
            if "step" in st:
                out[f"opt.{i}.step"] = np.array(float(st["step"]))
        out["step"] = np.array(self.step_)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> "CharTransformer":
        torch = _torch()
        self._new(0)
        dev = self._dev()
        self.net_.load_state_dict({k[4:]: torch.as_tensor(np.asarray(v)) for k, v in state.items()
                                   if k.startswith("net.")})
        for i, p in enumerate(self.net_.parameters()):
            if f"opt.{i}.exp_avg" in state:
                self.opt_.state[p] = {
                    "step": torch.tensor(float(state[f"opt.{i}.step"])),
                    "exp_avg": torch.as_tensor(np.asarray(state[f"opt.{i}.exp_avg"])).to(dev).clone(),
                    "exp_avg_sq": torch.as_tensor(np.asarray(state[f"opt.{i}.exp_avg_sq"])).to(dev).clone(),
                }
        self.step_ = int(state["step"])
        return self


@scloop.register_model("char-transformer", domain="text")
def make_char_transformer(layers: int = 2, heads: int = 4, dim: int = 64, dropout: float = 0.0, max_len: int = 96,
                          steps: int = 1500, finetune_steps: int = 300, batch_size: int = 64, lr: float = 3e-3,
                          finetune_lr: float = 1e-3, weight_decay: float = 0.01, temperature: float = 1.0,
                          top_p: float = 1.0, sample_batch: int = 1024, device: str = "cpu",
                          threads: int = 0) -> CharTransformer:
    """A small nanoGPT-style character decoder (default 2 layers x 4 heads x 64 wide, ~0.1 M
    parameters).  ``max_len``: longest string (the context is max_len + 1)."""
    for key, v, lo in (("layers", layers, 1), ("heads", heads, 1), ("dim", dim, 8), ("max_len", max_len, 1),
                       ("steps", steps, 0), ("finetune_steps", finetune_steps, 0), ("batch_size", batch_size, 1),
                       ("sample_batch", sample_batch, 1), ("threads", threads, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"model.{key}: got {v!r}; allowed: an integer >= {lo}")
    if dim % heads:
        raise ConfigError(f"model.dim: got {dim}; allowed: a multiple of heads ({heads})")
    if device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"model.device: got {device!r}; allowed: cpu, cuda, auto")
    if not float(temperature) > 0 or not 0 < float(top_p) <= 1:
        raise ConfigError(f"model.temperature / top_p: got {temperature!r} / {top_p!r}; allowed: > 0 / in (0, 1]")
    return CharTransformer(layers=layers, heads=heads, dim=dim, dropout=float(dropout), max_len=max_len, steps=steps,
                           finetune_steps=finetune_steps, batch_size=batch_size, lr=float(lr),
                           finetune_lr=float(finetune_lr), weight_decay=float(weight_decay),
                           temperature=float(temperature), top_p=float(top_p), sample_batch=sample_batch,
                           device=device, threads=threads)
