"""Metric plugins.  Importing this package registers them in ``METRICS``."""

from scloop.metrics import distribution as _distribution  # noqa: F401
from scloop.metrics import motion as _motion  # noqa: F401
from scloop.metrics import gaussian as _gaussian  # noqa: F401
from scloop.metrics import images as _images  # noqa: F401
from scloop.metrics.distribution import mmd_rbf, sliced_wasserstein
from scloop.metrics.gaussian import cov_error, mean_error, w2_gaussian
from scloop.metrics.images import frechet_distance, prdc_from_radii

__all__ = [
    "cov_error",
    "frechet_distance",
    "mean_error",
    "mmd_rbf",
    "prdc_from_radii",
    "sliced_wasserstein",
    "w2_gaussian",
]
