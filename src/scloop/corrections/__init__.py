"""Self-correction plugins.  Importing this package registers them in ``CORRECTIONS``.

Every correction has a strength ``gamma`` >= 0 (``.inf`` allowed) and the mixing weight
``t = gamma / (1 + gamma)`` of docs/paper.md §1.3.
"""

from scloop.corrections import histogram as _histogram  # noqa: F401
from scloop.corrections import identity as _identity  # noqa: F401
from scloop.corrections import motion as _motion  # noqa: F401
from scloop.corrections import images as _images  # noqa: F401
from scloop.corrections import oracle as _oracle  # noqa: F401
from scloop.corrections import ot_real as _ot_real  # noqa: F401
from scloop.corrections.base import mixing_weight
from scloop.corrections.histogram import PaperHistogramCorrection
from scloop.corrections.identity import NoCorrection
from scloop.corrections.images import KMeansCorrection, NearestRealCorrection, VerifierCorrection
from scloop.corrections.oracle import OracleMixtureCorrection, OracleOTCorrection
from scloop.corrections.ot_real import OTRealCorrection

__all__ = [
    "KMeansCorrection",
    "NearestRealCorrection",
    "NoCorrection",
    "OracleMixtureCorrection",
    "OracleOTCorrection",
    "OTRealCorrection",
    "PaperHistogramCorrection",
    "VerifierCorrection",
    "mixing_weight",
]
