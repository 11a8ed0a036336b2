"""Name -> factory registries for models, corrections, metrics and data policies.

Registries are filled by explicit imports in each plugin subpackage (``scloop.models``,
``scloop.corrections``, ``scloop.metrics``); an unknown name or an unknown option raises a
:class:`ConfigError` that lists what is known, with close matches.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")
ANY_DOMAIN = "any"  # a plugin registered with this domain works on every kind of array data


class ConfigError(ValueError):
    """Invalid user input (config key, value, CLI option).  The message names the key, the
    value and what is allowed."""


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


@dataclass
class Registry(Generic[T]):
    """A ``dict[str, factory]`` for one kind of plugin."""

    kind: str
    _factories: dict[str, Callable[..., T]]

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories = {}
        self._domains: dict[str, str] = {}

    def register(self, name: str, *, domain: str = "vector") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register ``factory`` under ``name``.  ``domain`` says what data the plugin works on
        (``vector``: (n, d) arrays; ``image``: (n, C, H, W) arrays in [0, 1]; ``motion``; or
        ``any``: any (n, ...) array, e.g. the ``ot-real`` correction), so that the runner can
        check a config and contract tests can feed each plugin data it accepts."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._factories[name] = factory
            self._domains[name] = domain
            return factory

        return deco

    def names(self, domain: str | None = None) -> list[str]:
        """All names, or those usable on ``domain`` data (its own plugins and the ``any`` ones)."""
        return sorted(n for n in self._factories if domain is None or self._domains[n] in (domain, ANY_DOMAIN))

    def domain(self, name: str) -> str:
        self.get(name)
        return self._domains[name]

    def accepts(self, name: str, domain: str) -> bool:
        """Whether plugin ``name`` works on ``domain`` data (its own domain, or ``any``)."""
        return self.domain(name) in (domain, ANY_DOMAIN)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def get(self, name: str, key: str | None = None) -> Callable[..., T]:
        if name not in self._factories:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}; known {self.kind}s: "
                f"{', '.join(self.names())}.{_suggest(str(name), self.names())}"
            )
        return self._factories[name]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options a factory accepts, with their defaults."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def create(self, name: str, /, key: str | None = None, **kwargs: Any) -> T:
        """Build a plugin.  Unknown options raise, naming the accepted ones."""
        factory = self.get(name, key)
        accepted = self.options(name)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown option(s) {', '.join(map(repr, unknown))} for {self.kind} "
                f"{name!r}; accepted: {', '.join(sorted(accepted)) or '(none)'}."
                f"{_suggest(unknown[0], sorted(accepted))}"
            )
        return factory(**kwargs)


MODELS: Registry[Any] = Registry("model")
CORRECTIONS: Registry[Any] = Registry("correction")
METRICS: Registry[Any] = Registry("metric")
POLICIES: Registry[Any] = Registry("policy")
TASKS: Registry[Any] = Registry("task")


def load_plugins() -> None:
    """Import the plugin subpackages so that their registrations run (idempotent)."""
    import scloop.corrections  # noqa: F401
    import scloop.loop.policies  # noqa: F401
    import scloop.metrics  # noqa: F401
    import scloop.models  # noqa: F401
    import scloop.tasks  # noqa: F401
