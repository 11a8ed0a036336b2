"""MNIST from its original IDX files in a data directory, with an optional download.

Looked up in ``<data_dir>/mnist/`` and then ``<data_dir>/``; each file may be gzipped
(``.gz``) or raw.  The training images are optional: with only the 10,000-image test set
present (as in the project's shared data), tasks split that set deterministically.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from scloop.data.idx import IDXError, read_idx

N_CLASSES = 10

# split -> (images file, labels file, count)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
# md5 of the *decompressed* files: mirrors re-gzip the originals, so the .gz bytes differ
# between copies while the contents do not.
_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class MNISTLabelError(IDXError):
    """An MNIST labels file holds a value outside the digit classes 0..9."""


def _locate(data_dir: Path, stem: str) -> Path | None:
    for folder in (data_dir / "mnist", data_dir):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def find_mnist(data_dir: str | Path) -> dict[str, tuple[Path, Path]]:
    """The splits whose image *and* label files exist under ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    found = {}
    for split, (img, lab, _) in MNIST_FILES.items():
        pi, pl = _locate(data_dir, img), _locate(data_dir, lab)
        if pi is not None and pl is not None:
            found[split] = (pi, pl)
    return found


def load_mnist(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as ``x`` float32 (n, 1, 28, 28) in [0, 1] (value/255) and ``y`` int64 (n,).

    Raises :class:`IDXError` naming the file when a file is missing, truncated or of the wrong
    kind, or when the image and label counts disagree; :class:`MNISTLabelError` (an
    ``IDXError``) naming the labels file, the first bad value and its index when a label is
    not a digit 0..9."""
    if split not in MNIST_FILES:
        raise IDXError(f"MNIST split {split!r} unknown; allowed: {', '.join(MNIST_FILES)}")
    data_dir = Path(data_dir).expanduser()
    img, lab, count = MNIST_FILES[split]
    pi, pl = _locate(data_dir, img), _locate(data_dir, lab)
    if pi is None or pl is None:
        missing = img if pi is None else lab
        raise IDXError(f"MNIST {split} split: {missing}[.gz] not found in {data_dir}/mnist or {data_dir} "
                       "(run `scloop data download mnist --data-dir DIR` on a machine with internet)")
    x = read_idx(pi, magic=2051, shape=(None, 28, 28))
    y = read_idx(pl, magic=2049, shape=(None,))
    if len(x) != len(y):
        raise IDXError(f"{pi} has {len(x)} images but {pl} has {len(y)} labels")
    if len(x) != count:
        raise IDXError(f"{pi}: {len(x)} images, the MNIST {split} split has {count}")
    bad = np.flatnonzero(y >= N_CLASSES)  # uint8 (the magic number fixes the dtype): never < 0
    if len(bad):
        k = int(bad[0])
        raise MNISTLabelError(f"{pl}: label {int(y[k])} at index {k} is not a digit; allowed: 0..{N_CLASSES - 1} "
                              f"({len(bad)} of {len(y)} labels out of range)")
    return (x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)


def _content_md5(blob: bytes) -> str:
    import gzip

    try:
        return hashlib.md5(gzip.decompress(blob)).hexdigest()
    except (OSError, EOFError):
        return ""


def download_mnist(data_dir: str | Path, *, splits: tuple[str, ...] = ("train", "test"), quiet: bool = False) -> Path:
    """Download the gzipped IDX files into ``<data_dir>/mnist/`` (md5 of the decompressed
    content checked, written atomically).
    Files already present and valid are kept.  Returns the folder."""
    import urllib.request

    folder = Path(data_dir).expanduser() / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for stem in MNIST_FILES[split][:2]:
            name = stem + ".gz"
            dest = folder / name
            if dest.is_file() and _content_md5(dest.read_bytes()) == _MD5[stem]:
                continue
            errors = []
            for mirror in MIRRORS:
                try:
                    with urllib.request.urlopen(mirror + name, timeout=60) as r:
                        blob = r.read()
                except OSError as exc:
                    errors.append(f"{mirror}: {exc}")
                    continue
                if _content_md5(blob) != _MD5[stem]:
                    errors.append(f"{mirror}: md5 mismatch")
                    continue
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, dest)
                if not quiet:
                    print(f"[scloop] downloaded {dest} ({len(blob):,} bytes)")
                break
            else:
                raise IDXError(f"could not download {name}: " + "; ".join(errors))
    return folder
