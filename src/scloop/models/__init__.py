"""Generative model plugins.  Importing this package registers them in ``MODELS``."""

from scloop.models import ddpm as _ddpm  # noqa: F401
from scloop.models import gaussian as _gaussian  # noqa: F401  (registers "gaussian")
from scloop.models import gmm as _gmm  # noqa: F401  (registers "gmm")
from scloop.models import mdm as _mdm  # noqa: F401  (registers "mdm", domain motion)
from scloop.models.gaussian import GaussianModel
from scloop.models.gmm import GMMModel

__all__ = [
    "GaussianModel",
    "GMMModel",
]
