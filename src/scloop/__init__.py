"""scloop: self-consuming generative training loops with self-correction.

Implements the method of Gillman et al., "Self-Correcting Self-Consuming Loops for
Generative Model Training" (ICML 2024): a generative model is retrained generation after
generation on real data mixed with its own (optionally corrected) samples.

Public entry points (imported lazily so that ``import scloop`` stays cheap):

- :func:`scloop.runner.run_experiment` -- run one experiment spec into a run store.
- :func:`scloop.loop.engine.run_loop` -- the generic loop engine.
- :mod:`scloop.theory` -- closed-form contraction factors (Theorem 4.3).
- :mod:`scloop.store` -- run directories and tidy result tables.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
