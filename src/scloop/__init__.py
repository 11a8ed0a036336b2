"""scloop: self-consuming generative training loops with self-correction.

Implements the method of Gillman et al., "Self-Correcting Self-Consuming Loops for
Generative Model Training" (ICML 2024; see docs/paper.md): a generative model is retrained
generation after generation on real data mixed with its own (optionally corrected) samples.

Public API (imported lazily, so that ``import scloop`` stays cheap)::

    scloop.run, scloop.sweep, scloop.load_spec, scloop.open_results      # scloop.api
    scloop.Run, scloop.Sweep                                              # result handles
    scloop.register_model / register_correction / register_metric / register_task / register_policy
    scloop.load_plugins
    scloop.Data, scloop.Corrected, scloop.GenerationRecord                # records
    scloop.GenerativeModel, scloop.Correction, scloop.Metric, scloop.Task, scloop.DataPolicy  # protocols
    scloop.CorrectionContext, scloop.MetricContext, scloop.Evaluation, scloop.Degenerate
    scloop.Callback, scloop.GenerationEvent, scloop.RunInfo               # per-generation hooks
    scloop.ConfigError, scloop.RunConflict, scloop.ExperimentSpec
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "scloop.api", "sweep": "scloop.api", "load_spec": "scloop.api", "open_results": "scloop.api",
    "Run": "scloop.api", "Sweep": "scloop.api",
    "register_model": "scloop.plugins", "register_correction": "scloop.plugins", "register_metric": "scloop.plugins",
    "register_task": "scloop.plugins", "register_policy": "scloop.plugins", "load_plugins": "scloop.plugins",
    "Data": "scloop.core.types", "Corrected": "scloop.core.types", "GenerationRecord": "scloop.core.types",
    "GenerativeModel": "scloop.core.types", "Correction": "scloop.core.types", "Metric": "scloop.core.types",
    "Task": "scloop.core.types", "DataPolicy": "scloop.core.types", "CorrectionContext": "scloop.core.types",
    "MetricContext": "scloop.core.types", "Evaluation": "scloop.core.types", "Degenerate": "scloop.core.types",
    "Provenance": "scloop.core.types",
    "Callback": "scloop.runner.hooks", "GenerationEvent": "scloop.runner.hooks", "RunInfo": "scloop.runner.hooks",
    "ConfigError": "scloop.core.registry", "RunConflict": "scloop.runner.run", "RunExists": "scloop.runner.run",
    "ExperimentSpec": "scloop.core.config",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scloop' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
