"""Tasks: where the real data (and, for synthetic tasks, the known target) come from."""

from scloop.tasks import gaussian as _gaussian  # noqa: F401
from scloop.tasks.gaussian import GaussianTarget, GaussianTask

__all__ = [
    "GaussianTarget",
    "GaussianTask",
]
