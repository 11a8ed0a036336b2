"""scikit-learn's 8x8 handwritten digits (1,797 real images, UCI; ship with scikit-learn)."""

from __future__ import annotations

import numpy as np

DIGITS_LEVELS = 17  # pixel values are integers 0..16


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as ``x`` float32 (1797, 1, 8, 8) in [0, 1] (value/16) and ``y`` int64 (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    return x, d.target.astype(np.int64)
