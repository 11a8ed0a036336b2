"""Image tasks (docs/paper.md §3.2): real handwritten digits, class-conditional.

``digits``: scikit-learn's 1,797 8x8 digits (offline everywhere).  A fixed permutation
(``split_seed``) puts ``n_holdout`` images (default 597) in the held-out reference and the
rest (1,200) in the training split.

``mnist``: the original IDX files from the data directory (``data_dir`` option, ``--data-dir``
on the CLI, else ``$SCLOOP_DATA_DIR`` or ``~/.cache/scloop/data``).  With the training split
present, the training split is MNIST train in file order (the paper takes the first 20 %,
12,000 images) and the reference is the 10,000 test images.  With only the test set present
(the project's shared data), the first ``10000 - n_holdout`` test images (file order) train
and the last ``n_holdout`` (default 2,000) are the reference.

``size`` (MNIST only; 28 = native): 14 or 7 average-pools 2x2 or 4x4 blocks and rounds to the
256 grey levels, a cheaper image for CPU studies (the 8x8 digits' MLP denoiser learns 14x14
MNIST; it does not learn 28x28 in a CPU budget, docs/images.md).

Both: ``real_data(n_real)`` is the first ``n_real`` images of the training split -- the same
for every seed, so feature networks and correction prototypes are shared; seeds differ in
model initialisation, sampling and training.  ``n_eval`` is the number of generated images
every metric sees per generation (>= 1,000 by default: a 100-sample FID has a standard
deviation larger than the effects being compared, see docs/images.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.core.registry import TASKS, ConfigError
from scloop.core.types import Data


MNIST_SIZES = (28, 14, 7)


def downsample(x: np.ndarray, f: int) -> np.ndarray:
    """(n, 1, H, W) -> (n, 1, H/f, W/f): mean over f x f blocks, rounded to the 256 grey levels
    (the data stay on MNIST's uint8 grid, as the model's quantisation assumes)."""
    n, c, h, w = x.shape
    if h % f or w % f:
        raise ValueError(f"downsample: {h}x{w} is not divisible by {f}")
    m = x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5), dtype=np.float64)
    return (np.round(m * 255.0) / 255.0).astype(np.float32)


class ImageTask:
    """Real images ``x`` float32 (n, 1, H, W) in [0, 1] and labels ``y`` int64 (n,)."""

    domain = "image"
    n_classes = 10

    def __init__(self, *, dataset: str, data_dir: str | None, n_eval: int, n_holdout: int | None,
                 split_seed: int, cap_n_real: bool, download: bool, size: int | None = None) -> None:
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 10:
            raise ConfigError(f"task.n_eval: got {n_eval!r}; allowed: an integer >= 10")
        if size is not None and (isinstance(size, bool) or size not in MNIST_SIZES):
            raise ConfigError(f"task.size: got {size!r}; allowed: one of {', '.join(map(str, MNIST_SIZES))}")
        self.name = dataset
        self.n_eval = n_eval
        self.cap_n_real = bool(cap_n_real)
        if dataset == "digits":
            from scloop.data.digits import DIGITS_LEVELS, load_digits_images

            x, y = load_digits_images()
            hold = 597 if n_holdout is None else n_holdout
            self._check_holdout(hold, len(x))
            perm = np.random.default_rng(split_seed).permutation(len(x))
            self._train = Data(x[perm[hold:]], y[perm[hold:]])
            self._ref = Data(x[perm[:hold]], y[perm[:hold]])
            self.levels = DIGITS_LEVELS
            self.source = "sklearn.datasets.load_digits"
        elif dataset == "mnist":
            from scloop.data.idx import IDXError
            from scloop.data.mnist import download_mnist, find_mnist, load_mnist
            from scloop.data.paths import default_data_dir

            root = Path(data_dir).expanduser() if data_dir else default_data_dir()
            try:
                if download:
                    download_mnist(root)
                found = find_mnist(root)
                if "test" not in found:
                    raise IDXError(f"MNIST test files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) "
                                   f"not found in {root}/mnist or {root}; set task.data_dir (--data-dir) or "
                                   "task.download: true")
                xt, yt = load_mnist(root, "test")
                if "train" in found:
                    xr, yr = load_mnist(root, "train")
                    self._train, self._ref = Data(xr, yr), Data(xt, yt)
                    if n_holdout is not None:
                        self._check_holdout(n_holdout, len(xt) + 1)
                        self._ref = self._ref.take(slice(len(xt) - n_holdout, None))
                else:
                    hold = 2000 if n_holdout is None else n_holdout
                    self._check_holdout(hold, len(xt))
                    self._train = Data(xt[: len(xt) - hold], yt[: len(xt) - hold])
                    self._ref = Data(xt[len(xt) - hold:], yt[len(xt) - hold:])
            except IDXError as exc:
                raise ConfigError(f"task.data_dir: {exc}") from None
            if size is not None and size != 28:
                self._train = Data(downsample(self._train.x, 28 // size), self._train.y)
                self._ref = Data(downsample(self._ref.x, 28 // size), self._ref.y)
            self.levels = 256
            self.source = str(root)
        else:  # pragma: no cover - guarded by the factories
            raise ConfigError(f"task: unknown image dataset {dataset!r}")
        self.image_shape = tuple(self._train.x.shape[1:])

    @staticmethod
    def _check_holdout(hold: object, total: int) -> None:
        if isinstance(hold, bool) or not isinstance(hold, int) or not 10 <= hold < total:
            raise ConfigError(f"task.n_holdout: got {hold!r}; allowed: an integer in [10, {total - 1}]")

    @property
    def n_available(self) -> int:
        return len(self._train)

    def real_data(self, n_real: int, rng: np.random.Generator | None = None) -> Data:
        """The first ``n_real`` images of the training split (deterministic; ``rng`` unused).
        More than available: a ConfigError, or all of them with ``cap_n_real: true``."""
        if n_real > len(self._train):
            if not self.cap_n_real:
                raise ConfigError(
                    f"config key 'n_real': got {n_real}; the {self.name} training split has {len(self._train)} "
                    f"images ({self.source}); lower n_real or set task.cap_n_real: true to use all of them"
                )
            n_real = len(self._train)
        return self._train.take(slice(0, n_real))

    def reference(self, rng: np.random.Generator | None = None) -> Data:
        """The held-out real images (every metric compares against these)."""
        return self._ref


@TASKS.register("digits", domain="image")
def make_digits(*, n_eval: int = 1000, n_holdout: int | None = None, split_seed: int = 0,
                cap_n_real: bool = False) -> ImageTask:
    return ImageTask(dataset="digits", data_dir=None, n_eval=n_eval, n_holdout=n_holdout, split_seed=split_seed,
                     cap_n_real=cap_n_real, download=False)


@TASKS.register("mnist", domain="image")
def make_mnist(*, data_dir: str | None = None, n_eval: int = 1000, n_holdout: int | None = None,
               cap_n_real: bool = False, download: bool = False, size: int = 28) -> ImageTask:
    return ImageTask(dataset="mnist", data_dir=data_dir, n_eval=n_eval, n_holdout=n_holdout, split_seed=0,
                     cap_n_real=cap_n_real, download=download, size=size)
