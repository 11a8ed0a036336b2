"""Plug your own (torch) generative model into the loop.

    python examples/custom_model.py               # ~20-40 s on a laptop CPU

A model is an object with ``fit(data, *, rng)`` (train from scratch), ``update(data, *, rng)``
(continue training: ``train: finetune``), ``sample(n, *, rng, conditions=None) -> Data``,
``state_dict() -> dict[str, np.ndarray]`` and ``load_state_dict(state)``.  scloop stores
checkpoints with ``state_dict`` (numpy arrays, no pickles) and resumes runs with
``load_state_dict``, so the round trip must be exact: the same state and the same random
generator must give the same samples.  All randomness comes from the ``rng`` arguments
(numpy Generators scloop derives per seed, generation and stage), which makes runs
reproducible and independent of the number of worker processes.

The model here is a tiny RealNVP normalizing flow on 2-D data (4 affine coupling layers with
16-unit MLPs, trained by maximum likelihood with Adam), fitted to the paper's Gaussian toy.
Torch stays inside the plugin: scloop sees numpy arrays only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import scloop
from scloop import Data

DTYPE = torch.float64  # float64 parameters: numpy state arrays round-trip bit for bit


class Coupling(nn.Module):
    """x_b <- x_b * exp(s(x_a)) + t(x_a) for the half b of the coordinates not in mask a."""

    def __init__(self, dim: int, hidden: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Linear(dim, hidden, dtype=DTYPE), nn.Tanh(),
                                 nn.Linear(hidden, 2 * dim, dtype=DTYPE))
        nn.init.zeros_(self.net[-1].weight)  # start at the identity map
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, xa: torch.Tensor):
        s, t = self.net(xa).chunk(2, dim=-1)
        return torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # latent -> data
        s, t = self._st(z * self.mask)
        return z * torch.exp(s) + t

    def inverse(self, x: torch.Tensor):  # data -> latent, log|det d z / d x|
        s, t = self._st(x * self.mask)
        return (x - t) * torch.exp(-s), -s.sum(dim=-1)


class TinyFlow:
    """RealNVP on standardized data; options are the factory's keyword parameters."""

    def __init__(self, *, layers: int = 4, hidden: int = 16, steps: int = 300, finetune_steps: int = 100,
                 lr: float = 1e-2) -> None:
        self.layers, self.hidden, self.steps, self.finetune_steps, self.lr = layers, hidden, steps, finetune_steps, lr

    # -- building blocks
    def _build(self, dim: int, seed: int) -> None:
        masks = [torch.tensor([(i + k) % 2 for i in range(dim)], dtype=DTYPE) for k in range(self.layers)]
        with torch.random.fork_rng(devices=[]):  # seed the initialization without touching torch's global RNG
            torch.manual_seed(seed)
            self.flow_ = nn.ModuleList(Coupling(dim, self.hidden, m) for m in masks)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z, logdet = (x - self.shift_) / self.scale_, -torch.log(self.scale_).sum()
        for layer in reversed(self.flow_):
            z, ld = layer.inverse(z)
            logdet = logdet + ld
        return -0.5 * (z**2).sum(dim=-1) - 0.5 * z.shape[-1] * np.log(2 * np.pi) + logdet

    def _train(self, data: Data, steps: int, rng: np.random.Generator) -> "TinyFlow":
        x = torch.as_tensor(np.asarray(data.x, dtype=float), dtype=DTYPE)
        opt = torch.optim.Adam(self.flow_.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = min(len(x), 256)
        for _ in range(steps):
            idx = torch.randperm(len(x), generator=g)[:batch]
            loss = -self._log_prob(x[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return self

    # -- the GenerativeModel protocol
    def fit(self, data: Data, *, rng: np.random.Generator) -> "TinyFlow":
        x = np.asarray(data.x, dtype=float)
        self.shift_ = torch.as_tensor(x.mean(axis=0), dtype=DTYPE)
        self.scale_ = torch.as_tensor(x.std(axis=0) + 1e-6, dtype=DTYPE)
        self._build(x.shape[1], int(rng.integers(2**62)))
        return self._train(data, self.steps, rng)

    def update(self, data: Data, *, rng: np.random.Generator) -> "TinyFlow":
        return self._train(data, self.finetune_steps, rng)  # keeps the standardization of fit

    @torch.no_grad()
    def sample(self, n: int, *, rng: np.random.Generator, conditions=None) -> Data:
        z = torch.as_tensor(rng.standard_normal((n, len(self.shift_))), dtype=DTYPE)
        for layer in self.flow_:
            z = layer(z)
        return Data((z * self.scale_ + self.shift_).numpy())

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"flow.{k}": v.detach().cpu().numpy().copy() for k, v in self.flow_.state_dict().items()}
        return {**state, "shift": self.shift_.numpy().copy(), "scale": self.scale_.numpy().copy()}

    def load_state_dict(self, state) -> "TinyFlow":
        self.shift_ = torch.as_tensor(np.asarray(state["shift"]), dtype=DTYPE)
        self.scale_ = torch.as_tensor(np.asarray(state["scale"]), dtype=DTYPE)
        self._build(len(self.shift_), 0)
        self.flow_.load_state_dict({k[5:]: torch.as_tensor(np.asarray(v)) for k, v in state.items()
                                    if k.startswith("flow.")})
        return self


@scloop.register_model("tiny-flow")
def make_tiny_flow(layers: int = 4, hidden: int = 16, steps: int = 300, finetune_steps: int = 100,
                   lr: float = 1e-2) -> TinyFlow:
    return TinyFlow(layers=layers, hidden=hidden, steps=steps, finetune_steps=finetune_steps, lr=lr)


def check_round_trip() -> None:
    """state_dict -> load_state_dict gives a model that samples exactly the same points."""
    rng = np.random.default_rng(0)
    data = Data(rng.standard_normal((100, 2)) * [2.0, 0.5] + 1.0)
    model = make_tiny_flow(steps=50).fit(data, rng=np.random.default_rng(1))
    copy = make_tiny_flow().load_state_dict(model.state_dict())
    a = model.sample(5, rng=np.random.default_rng(7)).x
    b = copy.sample(5, rng=np.random.default_rng(7)).x
    assert np.array_equal(a, b), "state_dict round trip changed the samples"
    print("state_dict round trip: exact")


CONFIG = {
    "name": "custom-model",
    "task": {"name": "gaussian", "dim": 2, "n_eval": 500},
    "model": {"name": "tiny-flow", "steps": 300, "finetune_steps": 100},
    "train": "finetune",                      # generation g >= 1 continues from g - 1 (update)
    "n_real": 100,
    "policy": "replace",                      # fully synthetic loop
    "lambda": 1.0,
    "arms": ["no-correction", "correction"],
    "correction": "oracle-mixture",
    "gamma": [1.0],
    "metrics": ["sliced-wasserstein", "mmd"],  # sample-based: work for any model
    "n_generations": 5,
    "checkpoint_every": 5,
}


def main() -> None:
    torch.set_num_threads(1)
    check_round_trip()
    run = scloop.run(CONFIG, seeds=2, out="runs", force=True, workers=1)
    df = run.table(include_timing=False)
    df = df[df.metric.isin(["sliced-wasserstein", "mmd"])]
    table = df[df.generation.isin([0, df.generation.max()])].pivot_table(
        index=["arm", "generation"], columns="metric", values="value", aggfunc="mean")
    print("seed mean (2 seeds), generation 0 and the last generation:")
    print(table.round(4).to_string())
    print(f"\nrun directory: {run.path}")


if __name__ == "__main__":
    main()
