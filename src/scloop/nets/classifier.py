"""LeNet-style digit classifier: the feature network of the image metrics and the verifier of
the ``verifier`` correction.

The paper's MNIST metric is FID in the 84-d sigmoid ``fc2`` layer of a LeNet-5 trained on
MNIST (docs/paper.md §3.2).  :class:`LeNet` keeps that head for every input size

    conv block -> fc1 (120, ReLU) -> fc2 (84, sigmoid) = features -> fc3 (n_classes) = logits

and picks the conv block from the image size:

* ``H, W >= 16`` (MNIST 28x28): LeNet-5 proper, conv 5x5 (6, padding 2 -- the same as the
  original's 32x32 padding of the input) -> max-pool 2 -> conv 5x5 (16) -> max-pool 2
  (28x28 -> 16 x 5 x 5);
* smaller images (8x8 sklearn digits): conv 3x3 (32, padding 1) -> conv 3x3 (64, padding 1)
  -> max-pool 2 (8x8 -> 64 x 4 x 4), as the CPU probe's feature net.

Hidden activations are ReLU (faster to train than LeNet's sigmoids/tanh); the feature layer
keeps LeNet's sigmoid, so features lie in (0, 1) and FID values are small numbers.  Inputs are
(n, 1, H, W) in [0, 1] and are normalised inside the network as (x - 0.5) / 0.5.

:func:`train_classifier` trains with Adam and cross-entropy, deterministically from ``seed``
(a ``torch.Generator`` drives the initialisation and the shuffles; no global RNG state is
touched), and caches the weights under ``cache_dir / f"classifier-{digest}.pt"``, where the
digest hashes the training data, the architecture version, the hyperparameters and the device
type (CUDA kernels do not reproduce CPU weights bit for bit).  An in-process memo keyed by the
digest avoids reloading.  On the CPU, training and features are bitwise reproducible for a
fixed torch thread count (more threads reorder float reductions); on CUDA up to cuDNN's
nondeterminism.

Defaults: 20 epochs, batch 64, Adam lr 1e-3.  Training time and held-out accuracy on 8x8
digits and on MNIST are measured in docs/images.md ("Metrics"), with the command that
regenerates them.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scloop.core.registry import ConfigError
from scloop.core.types import Data

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Bump when the architecture, the normalisation or the training procedure changes: it is part
# of the cache digest, so old weight files are then ignored.
ARCH_VERSION = "lenet-v1"
NUM_FEATURES = 84
EPOCHS = 20
BATCH_SIZE = 64
LR = 1e-3
EVAL_BATCH = 1024
SMALL_IMAGE = 16  # below this side length the small-image conv block is used

_MEMO: dict[str, "ClassifierHandle"] = {}


def _torch_modules():
    """Build the module classes on first use (torch is imported lazily)."""
    import torch
    from torch import nn

    class LeNet(nn.Module):
        """LeNet-style classifier for (n, 1, H, W) images in [0, 1]; see the module docstring.

        ``forward(x)`` -> logits (n, n_classes); ``features(x)`` -> sigmoid fc2 (n, 84).
        """

        num_features = NUM_FEATURES

        def __init__(self, image_shape: tuple[int, int, int], n_classes: int) -> None:
            super().__init__()
            c, h, w = image_shape
            if c != 1:
                raise ValueError(f"LeNet: expected 1-channel images, got shape {image_shape}")
            if min(h, w) >= SMALL_IMAGE:
                self.conv = nn.Sequential(
                    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (6, H/2, W/2)
                    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # (16, (H/2-4)/2, (W/2-4)/2)
                )
                flat = 16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2)
            elif min(h, w) >= 2:
                self.conv = nn.Sequential(
                    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),  # (32, H, W)
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (64, H/2, W/2)
                )
                flat = 64 * (h // 2) * (w // 2)
            else:
                raise ValueError(f"LeNet: images of shape {image_shape} are too small (need H, W >= 2)")
            self.fc1 = nn.Linear(flat, 120)
            self.fc2 = nn.Linear(120, NUM_FEATURES)
            self.fc3 = nn.Linear(NUM_FEATURES, n_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """x (n, 1, H, W) in [0, 1] -> sigmoid fc2 activations (n, 84)."""
            h = self.conv((x - 0.5) / 0.5).flatten(1)  # (n, flat)
            h = torch.relu(self.fc1(h))  # (n, 120)
            return torch.sigmoid(self.fc2(h))  # (n, 84)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc3(self.features(x))  # (n, n_classes) logits

    class FeatureExtractor(nn.Module):
        """Wraps a :class:`LeNet` so that ``forward`` returns the 84-d features (the form
        torchmetrics' ``FrechetInceptionDistance(feature=...)`` expects)."""

        num_features = NUM_FEATURES

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.features(x)

    return LeNet, FeatureExtractor


_CLASSES: tuple | None = None


def _classes():
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _torch_modules()
    return _CLASSES


def build_lenet(image_shape: tuple[int, int, int], n_classes: int):
    """A fresh, *uninitialised* :class:`LeNet` on the meta device (no RNG consumed); call
    ``to_empty(device=...)`` and then :func:`init_parameters` or ``load_state_dict``."""
    import torch

    with torch.device("meta"):
        return _classes()[0](image_shape, n_classes)


def feature_extractor(net):
    """``nn.Module`` whose forward returns ``net.features(x)`` (n, 84); ``num_features = 84``."""
    return _classes()[1](net)


def init_parameters(module, generator: "torch.Generator") -> None:
    """PyTorch's default Conv/Linear initialisation (Kaiming-uniform weights with a = sqrt(5),
    bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn from ``generator`` instead of the global
    torch RNG."""
    import torch
    from torch import nn

    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            fan_in = layer.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _as_tensor(x: np.ndarray, device) -> "torch.Tensor":
    """Copy images into a fresh float32 tensor with canonical (NCHW-contiguous) strides.

    numpy gives size-1 axes arbitrary strides (``x[:, None]`` has channel stride 4), which torch
    can read as channels-last and then run different conv kernels: results differ in the last
    bit from those of an equal, canonically strided array.  The copy makes features and training
    depend on the values only."""
    import torch

    t = torch.empty(x.shape, dtype=torch.float32, device=device)
    t.copy_(torch.from_numpy(np.asarray(x, dtype=np.float32)))
    return t


def _check_data(data: Data, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(data.x)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{what}: expected images of shape (n, 1, H, W), got {x.shape}")
    if data.y is None:
        raise ValueError(f"{what}: the images need class labels (Data.y), got none")
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(data.y, dtype=np.int64)


def classifier_digest(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device_type: str,
) -> str:
    """sha256 over the training images and labels, their shape, ``ARCH_VERSION`` and the
    hyperparameters (first 16 hex digits)."""
    h = hashlib.sha256()
    parts = (ARCH_VERSION, tuple(x.shape), n_classes, int(seed), int(epochs), float(lr), int(batch_size), device_type)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class ClassifierHandle:
    """A trained (eval-mode) classifier and numpy entry points.

    Attributes
    ----------
    module : the torch :class:`LeNet` (on ``device``).   digest : cache key.
    image_shape : (1, H, W).   n_classes : number of classes.
    source : ``"trained"`` (trained in this call), ``"file"`` (loaded from the cache file) or
        ``"memo"`` (reused from this process).   seconds : training time (0 when loaded).
    path : the cache file, or None without a cache directory.
    validation_accuracy : accuracy on the ``validation`` data passed to
        :func:`train_classifier`, or None.
    """

    module: Any
    digest: str
    device: Any
    image_shape: tuple[int, int, int]
    n_classes: int
    source: str
    seconds: float
    path: Path | None = None
    validation_accuracy: float | None = None

    @property
    def extractor(self):
        """``nn.Module`` mapping (n, 1, H, W) in [0, 1] to the (n, 84) features."""
        return feature_extractor(self.module)

    def features_and_proba(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batched forward pass.  x (n, 1, H, W) in [0, 1] -> features (n, 84) and class
        probabilities (n, n_classes), both float64.  Non-finite pixels give NaN rows."""
        import torch

        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ValueError(f"classifier: expected images of shape (n, {expected}), got {x.shape}")
        feats = np.empty((len(x), NUM_FEATURES), dtype=np.float64)
        proba = np.empty((len(x), self.n_classes), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(x), EVAL_BATCH):
                xb = _as_tensor(x[start : start + EVAL_BATCH], self.device)
                f = self.module.features(xb)  # (b, 84)
                p = torch.softmax(self.module.fc3(f), dim=1)  # (b, n_classes)
                feats[start : start + len(xb)] = f.double().cpu().numpy()
                proba[start : start + len(xb)] = p.double().cpu().numpy()
        return feats, proba

    def features(self, x: np.ndarray) -> np.ndarray:
        """x (n, 1, H, W) in [0, 1] -> sigmoid fc2 features (n, 84) float64."""
        return self.features_and_proba(x)[0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x (n, 1, H, W) in [0, 1] -> class probabilities (n, n_classes) float64."""
        return self.features_and_proba(x)[1]

    def accuracy(self, data: Data) -> float:
        """Fraction of ``data`` whose most probable class is its label."""
        x, y = _check_data(data, "ClassifierHandle.accuracy")
        if len(x) == 0:
            return float("nan")
        return float((self.predict_proba(x).argmax(axis=1) == y).mean())


def _fit(module, x, y, *, generator, epochs: int, batch_size: int, lr: float, device) -> None:
    import torch

    xt = _as_tensor(x, device)  # (n, 1, H, W)
    yt = torch.from_numpy(y).to(device)  # (n,)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=generator).to(device)
        for start in range(0, len(xt), batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    module.eval()


def _save_atomic(state: dict, path: Path) -> None:
    """Write to a temporary file in the same directory, then ``os.replace`` (atomic on POSIX),
    so a concurrent reader never sees a half-written file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def train_classifier(
    data: Data,
    *,
    seed: int = 0,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    n_classes: int | None = None,
    cache_dir: Path | str | None = None,
    device: str = "auto",
    validation: Data | None = None,
) -> ClassifierHandle:
    """Train (or load) a :class:`LeNet` on labelled images.

    Parameters
    ----------
    data : images x (n, 1, H, W) float in [0, 1] with labels y (n,) in 0..n_classes-1.
    seed : seeds the ``torch.Generator`` used for initialisation and shuffling.
    epochs, batch_size, lr : Adam training schedule (cross-entropy loss).
    n_classes : number of classes; default ``max(y) + 1``.
    cache_dir : where ``classifier-{digest}.pt`` is read from / written to; None: no file.
    device : ``auto`` | ``cpu`` | ``cuda``.
    validation : optional labelled images; their accuracy is stored on the handle.

    Returns
    -------
    ClassifierHandle (its ``source`` says whether it was trained, loaded or memoised).

    Raises
    ------
    ConfigError for bad hyperparameters; ValueError for unlabelled or wrongly shaped data.
    """
    import torch

    from scloop.nets import resolve_device

    for key, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}: got {value!r}; allowed: an integer >= 1")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr: got {lr!r}; allowed: a number > 0")
    x, y = _check_data(data, "train_classifier")
    if len(x) == 0:
        raise ValueError("train_classifier: no training images")
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"train_classifier: labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    dev = resolve_device(device)
    digest = classifier_digest(
        x, y, n_classes=n_classes, seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, device_type=dev.type
    )
    path = Path(cache_dir) / f"classifier-{digest}.pt" if cache_dir is not None else None

    handle = _MEMO.get(digest)
    if handle is not None:
        handle = replace(handle, source="memo", seconds=0.0, path=path)
        if path is not None and not path.exists():  # memoised from another cache directory
            _save_atomic({k: v.detach().cpu() for k, v in handle.module.state_dict().items()}, path)
    else:
        image_shape = tuple(int(s) for s in x.shape[1:])
        # initialise / load on the CPU (the seed's generator is a CPU generator), then move
        module = build_lenet(image_shape, n_classes).to_empty(device="cpu")
        source, seconds = "trained", 0.0
        loaded = False
        if path is not None and path.exists():
            try:
                module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                loaded, source = True, "file"
            except Exception:  # noqa: BLE001 -- a corrupt or stale file is simply retrained
                loaded = False
        if not loaded:
            generator = torch.Generator().manual_seed(int(seed))
            init_parameters(module, generator)
            module.to(dev)
            t0 = time.perf_counter()
            _fit(module, x, y, generator=generator, epochs=epochs, batch_size=batch_size, lr=lr, device=dev)
            seconds = time.perf_counter() - t0
            if path is not None:
                _save_atomic({k: v.detach().cpu() for k, v in module.state_dict().items()}, path)
        module.to(dev).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        handle = ClassifierHandle(module, digest, dev, image_shape, n_classes, source, seconds, path)
        _MEMO[digest] = handle
    if validation is not None:
        handle = replace(handle, validation_accuracy=handle.accuracy(validation))
    return handle


def clear_memo() -> None:
    """Forget the in-process memo (the cache files stay)."""
    _MEMO.clear()


__all__ = [
    "ARCH_VERSION",
    "NUM_FEATURES",
    "ClassifierHandle",
    "build_lenet",
    "classifier_digest",
    "clear_memo",
    "feature_extractor",
    "init_parameters",
    "train_classifier",
]
