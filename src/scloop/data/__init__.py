"""Real datasets, read through scloop's own data directory (``--data-dir`` / ``SCLOOP_DATA_DIR``).

Nothing here is imported by the engine; image tasks (:mod:`scloop.tasks.images`) call these
readers.  Data are never copied into a run directory.
"""

from scloop.data.idx import IDXError, read_idx
from scloop.data.mnist import MNIST_FILES, download_mnist, find_mnist, load_mnist
from scloop.data.digits import load_digits_images
from scloop.data.paths import default_data_dir

__all__ = [
    "IDXError",
    "MNIST_FILES",
    "default_data_dir",
    "download_mnist",
    "find_mnist",
    "load_digits_images",
    "load_mnist",
    "read_idx",
]
