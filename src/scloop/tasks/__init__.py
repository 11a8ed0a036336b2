"""Tasks: where the real data (and, for synthetic tasks, the known target) come from."""

from scloop.tasks import gaussian as _gaussian  # noqa: F401
from scloop.tasks import images as _images  # noqa: F401
from scloop.tasks import motion as _motion  # noqa: F401
from scloop.tasks.gaussian import GaussianTarget, GaussianTask
from scloop.tasks.images import ImageTask

__all__ = [
    "GaussianTarget",
    "GaussianTask",
    "ImageTask",
]
