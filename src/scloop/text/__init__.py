"""scloop's text modality: self-consuming language-model loops corrected by programs.

A plugin package registered only through scloop's public decorators (``scloop.register_*``
with ``domain="text"``).  Load it with ``plugins: [scloop.text]`` in a config (or through the
``scloop.plugins`` entry point when installed with the ``text`` extra).  See docs/text.md.

- tasks (:mod:`scloop.text.tasks`): ``pcfg``, ``arithmetic``, ``python-stdlib``;
- models (:mod:`scloop.text.ngram`, :mod:`scloop.text.models`): ``ngram``, ``char-transformer``;
- corrections (:mod:`scloop.text.corrections`): ``text-oracle-mixture``, ``grammar``,
  ``checker``, ``compile``, ``biased-verifier``, ``top-likelihood``;
- metrics (:mod:`scloop.text.metrics`): ``validity``, ``kl``, ``cross-entropy``, ``rare-mass``,
  ``tail-coverage``, ``distinct-1/2/3``, ``unique-fraction``, ``self-bleu``, ``length-tv``,
  ``perplexity``, ``answer-accuracy``.
"""

from scloop.text import corrections as _corrections  # noqa: F401
from scloop.text import metrics as _metrics  # noqa: F401
from scloop.text import models as _models  # noqa: F401
from scloop.text import tasks as _tasks  # noqa: F401
