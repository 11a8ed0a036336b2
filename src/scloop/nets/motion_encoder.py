"""A motion encoder trained by scloop on real motion windows: the feature space of the motion
distribution metrics (FID, diversity, multimodality, recognition accuracy), as the paper's
evaluator is a pretrained action-recognition network (docs/paper.md §3.3) that is not open.

Network: the features are standardised with the training windows' per-dimension mean and a
*per-group* std (:func:`scloop.motion.representation.standardisation`), then Conv1d(F, 128, 5) -
ReLU - Conv1d(128, 128, 5, stride 2) - ReLU - mean over time (the
128-d embedding) - Linear(128, 64) - tanh - Linear(64, n_classes), trained with cross-entropy on
the window labels.  The embedding is taken before the classification head: a head layer
trained on a few action classes collapses the variation within a class (measured: adding noise
as large as the data did not move a FID computed there) (Adam, deterministic ``torch.Generator``).  Weights and the standardisation are
cached as ``<cache_dir>/motion-encoder-<digest>.pt`` (digest over the data, labels, architecture
and hyper-parameters; written atomically, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scloop.core.types import Data

ARCH_VERSION = "motion-conv-v3"  # v3: per-group std (v2: per-feature std + 1e-6)
EMBED_DIM = 128
_MEMO: dict[str, "MotionEncoderHandle"] = {}


def _net(n_features: int, n_classes: int):
    import torch.nn as nn

    class Encoder(nn.Module):
        num_features = EMBED_DIM

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(n_features, 128, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(128, 128, 5, stride=2, padding=2), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(EMBED_DIM, 64), nn.Tanh(), nn.Linear(64, n_classes))

        def features(self, x):  # x (n, T, F) standardised -> (n, 128)
            return self.conv(x.transpose(1, 2)).mean(dim=2)

        def forward(self, x):
            return self.head(self.features(x))

    return Encoder()


@dataclass
class MotionEncoderHandle:
    module: Any
    mean: np.ndarray
    std: np.ndarray
    digest: str
    n_classes: int
    source: str

    def features_and_proba(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, T, F) windows -> embeddings (n, 128) float64 and class probabilities (n, C)."""
        import torch

        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, EMBED_DIM)), np.zeros((0, self.n_classes))
        z = torch.from_numpy(np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32))
        feats, probs = [], []
        with torch.no_grad():
            for i in range(0, len(z), 512):
                f = self.module.features(z[i: i + 512])
                feats.append(f.double().numpy())
                probs.append(torch.softmax(self.module.head(f), dim=1).double().numpy())
        return np.concatenate(feats), np.concatenate(probs)


def train_motion_encoder(data: Data, *, seed: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                         cache_dir: Path | str | None = None,
                         groups: Sequence[slice] | None = None) -> MotionEncoderHandle:
    """Train (or load from the cache) the encoder on labelled windows ``x`` (n, T, F), ``y`` (n,);
    ``groups``: feature groups of the standardisation
    (:func:`scloop.motion.representation.standardisation`)."""
    import torch

    x = np.ascontiguousarray(data.x, dtype=np.float32)
    if data.y is None or x.ndim != 3:
        raise ValueError(f"motion encoder: needs labelled windows (n, T, F); got x {x.shape}, y {data.y is not None}")
    y = np.asarray(data.y, dtype=np.int64)
    n_classes = int(y.max()) + 1
    h = hashlib.sha256()
    group_key = [(g.start, g.stop) for g in groups] if groups is not None else None
    for part in (x.tobytes(), y.tobytes(), str(x.shape).encode(), ARCH_VERSION.encode(),
                 repr((seed, epochs, batch_size, lr, group_key)).encode()):
        h.update(part)
    digest = h.hexdigest()[:16]
    if digest in _MEMO:
        return _MEMO[digest]
    from scloop.motion.representation import standardisation

    mean, std = standardisation(x, groups)
    path = Path(cache_dir) / f"motion-encoder-{digest}.pt" if cache_dir is not None else None
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = _net(x.shape[2], n_classes)
    if path is not None and path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        source = "file"
    else:
        z = torch.from_numpy((x - mean) / std)
        t = torch.from_numpy(y)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(z), generator=gen)
            for i in range(0, len(z), batch_size):
                idx = perm[i: i + batch_size]
                loss = torch.nn.functional.cross_entropy(net(z[idx]), t[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        source = "trained"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as f:
                torch.save(net.state_dict(), f)
            os.replace(tmp, path)
    net.eval()
    handle = MotionEncoderHandle(net, mean, std, digest, n_classes, source)
    _MEMO[digest] = handle
    return handle
