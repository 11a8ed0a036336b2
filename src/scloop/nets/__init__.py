"""Small torch networks shared by image plugins (the feature/verifier classifier) and the
device helper.  torch is imported lazily, so importing this package does not load it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scloop.core.registry import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> "torch.device":
    """Turn a device request into a ``torch.device``.

    ``auto``: CUDA if available, else CPU; ``cpu``; ``cuda`` (ConfigError if CUDA is not
    available).  Anything else raises ConfigError.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: got 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
        return torch.device("cuda")
    raise ConfigError(f"device: got {name!r}; allowed: {', '.join(DEVICES)}")


__all__ = ["DEVICES", "resolve_device"]
