"""Name -> factory registries for models, corrections, metrics, tasks and data policies.

A plugin is a factory (a function or a class) registered under a name; its keyword
parameters with defaults are the plugin's config options.  The public decorators
(:func:`scloop.register_model`, ``register_correction``, ``register_metric``,
``register_task``, ``register_policy``) fill the registries defined here; scloop's own plugins
register themselves when :func:`scloop.plugins.load_plugins` imports them.

Each entry keeps, besides the factory, the data domain it works on, where its code comes from
(``module:qualname``), a fingerprint of that code (part of a run's identity: editing a plugin
makes a stored run with the old code a different run) and free-form metadata: a metric's
orientation ``higher_is_better``, its ``label`` and ``unit`` for plots, the ``capabilities``
an engine may use (``gaussian-ensemble``: the plugin has a batched kernel in the vectorised
Gaussian engine).

Re-registering a name with the same origin (a re-run notebook cell, a plugin module imported
again in a worker process) replaces the entry; a different plugin under a taken name raises a
:class:`ConfigError` naming both.  An unknown name or option raises a :class:`ConfigError` that
lists what is known, with close matches.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, TypeVar

T = TypeVar("T")
ANY_DOMAIN = "any"  # a plugin registered with this domain works on every kind of array data
DOMAINS = ("vector", "image", "motion", "text", ANY_DOMAIN)


class ConfigError(ValueError):
    """Invalid user input (config key, value, CLI option).  The message names the key, the
    value and what is allowed."""


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


# ---------------------------------------------------------------------- code fingerprints
def origin(obj: Any) -> str:
    """``module:qualname`` of a factory (``__main__:make`` for a notebook or script)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"


def _is_builtin(obj: Any) -> bool:
    mod = str(getattr(obj, "__module__", ""))
    return mod == "scloop" or mod.startswith("scloop.")


def _code_blob(code: Any) -> bytes:
    """The parts of a code object that decide what it computes (bytecode, constants, names),
    recursively -- not its file name or line numbers."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for c in code.co_consts:
        parts.append(_code_blob(c) if inspect.iscode(c) else repr(c).encode())
    return b"\0".join(parts)


def code_fingerprint(obj: Any) -> str:
    """A short digest of a plugin's code.

    scloop's own plugins: the package version (a released version fixes the code).  A plugin in
    a module file: the file's whole text (a helper it calls may change the numbers as well).
    Code without a source file (``exec`` in a notebook): its bytecode and constants."""
    if _is_builtin(obj):
        from scloop import __version__

        return f"scloop=={__version__}"
    h = hashlib.sha256()
    mod = sys.modules.get(getattr(obj, "__module__", ""))
    try:
        src_file = inspect.getsourcefile(obj)
        if src_file and mod is not None and getattr(mod, "__file__", None) and src_file == inspect.getsourcefile(mod):
            h.update(open(src_file, "rb").read())
        else:
            h.update(inspect.getsource(obj).encode())
        return h.hexdigest()[:16]
    except (OSError, TypeError):
        pass
    members = [obj] if not inspect.isclass(obj) else [v for _, v in sorted(vars(obj).items())]
    for m in members:
        fn = getattr(m, "__func__", m)
        code = getattr(fn, "__code__", None)
        if code is not None:
            h.update(_code_blob(code))
        elif not callable(m):
            h.update(repr(m).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- entries
@dataclass(frozen=True)
class PluginInfo:
    """What a registry knows of one plugin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    domain: str
    origin: str
    fingerprint: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.origin.startswith("scloop.")

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(self.meta.get("capabilities", ()))


@dataclass
class Registry(Generic[T]):
    """A ``dict[str, factory]`` for one kind of plugin."""

    kind: str

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, PluginInfo] = {}

    def register(self, name: str, *, domain: str = "vector", **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register ``factory`` under ``name``.  ``domain`` says what data the plugin works on
        (``vector``: (n, d) arrays; ``image``: (n, C, H, W) arrays in [0, 1]; ``motion``;
        ``text``; or ``any``: any (n, ...) array, e.g. the ``ot-real`` correction), so that the
        runner can check a config and contract tests can feed each plugin data it accepts.
        ``meta``: e.g. ``higher_is_better``, ``label``, ``unit`` (metrics), ``capabilities``."""
        if not isinstance(name, str) or not name or any(c in name for c in " /\\\n"):
            raise ConfigError(f"{self.kind} name: got {name!r}; allowed: a non-empty string without spaces or slashes")
        if domain not in DOMAINS:
            raise ConfigError(f"{self.kind} {name!r}: domain {domain!r}; allowed: {', '.join(DOMAINS)}")

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if not callable(factory):
                raise ConfigError(f"{self.kind} {name!r}: expected a function or class, got {type(factory).__name__}")
            self.add(PluginInfo(self.kind, name, factory, domain, origin(factory), code_fingerprint(factory),
                                dict(meta)))
            return factory

        return deco

    def add(self, info: PluginInfo) -> None:
        old = self._entries.get(info.name)
        if old is not None and old.origin != info.origin and old.factory is not info.factory:
            # the same module imported under two names (``__main__`` and ``__mp_main__`` in a
            # spawned worker) is the same plugin when its code is the same
            if old.fingerprint != info.fingerprint or old.builtin or info.builtin:
                raise ConfigError(
                    f"{self.kind} {info.name!r} is already registered by {old.origin}; {info.origin} cannot "
                    f"register another {self.kind} under that name (choose another name)"
                )
        self._entries[info.name] = info

    def unregister(self, name: str) -> None:
        """Remove a plugin (tests, interactive sessions)."""
        self._entries.pop(name, None)

    def names(self, domain: str | None = None) -> list[str]:
        """All names, or those usable on ``domain`` data (its own plugins and the ``any`` ones)."""
        return sorted(n for n, e in self._entries.items() if domain is None or e.domain in (domain, ANY_DOMAIN))

    def info(self, name: str, key: str | None = None) -> PluginInfo:
        if name not in self._entries:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}; known {self.kind}s: "
                f"{', '.join(self.names())}.{_suggest(str(name), self.names())}"
            )
        return self._entries[name]

    def entries(self) -> list[PluginInfo]:
        return [self._entries[n] for n in sorted(self._entries)]

    def domain(self, name: str) -> str:
        return self.info(name).domain

    def accepts(self, name: str, domain: str) -> bool:
        """Whether plugin ``name`` works on ``domain`` data (its own domain, or ``any``)."""
        return self.domain(name) in (domain, ANY_DOMAIN)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, key: str | None = None) -> Callable[..., T]:
        return self.info(name, key).factory

    def options(self, name: str) -> dict[str, Any]:
        """The options a factory accepts (its keyword-capable parameters), with their defaults
        (``None`` where a parameter has none)."""
        return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
                for p in _option_params(self.get(name))}

    def required(self, name: str) -> list[str]:
        """Options without a default (the config must give them)."""
        return [p.name for p in _option_params(self.get(name)) if p.default is inspect.Parameter.empty]

    def create(self, name: str, /, key: str | None = None, **kwargs: Any) -> T:
        """Build a plugin.  Unknown or missing options raise, naming the accepted ones."""
        factory = self.get(name, key)
        params = _option_params(factory)
        accepted = sorted(p.name for p in params)
        takes_any = _takes_var_keyword(factory)
        where = f"{key}: " if key else ""
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown and not takes_any:
            raise ConfigError(
                f"{where}unknown option(s) {', '.join(map(repr, unknown))} for {self.kind} "
                f"{name!r}; accepted: {', '.join(accepted) or '(none: it takes no options)'}."
                f"{_suggest(unknown[0], accepted)}"
            )
        missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs]
        if missing:
            raise ConfigError(f"{where}{self.kind} {name!r} needs option(s) {', '.join(map(repr, missing))} "
                              f"(no default); give them in the config, e.g. {{name: {name}, {missing[0]}: ...}}")
        return factory(**kwargs)


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature
        return inspect.Signature()


def _option_params(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """Parameters that a config can set by keyword (``def make(shrink=0.9)`` and
    ``def make(*, shrink=0.9)`` alike; a class's ``__init__`` without ``self``)."""
    return [p for p in _signature(factory).parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _takes_var_keyword(factory: Callable[..., Any]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _signature(factory).parameters.values())


MODELS: Registry[Any] = Registry("model")
CORRECTIONS: Registry[Any] = Registry("correction")
METRICS: Registry[Any] = Registry("metric")
POLICIES: Registry[Any] = Registry("policy")
TASKS: Registry[Any] = Registry("task")
REGISTRIES: dict[str, Registry[Any]] = {r.kind: r for r in (MODELS, CORRECTIONS, METRICS, POLICIES, TASKS)}


# ---------------------------------------------------------------------- metric facts
@dataclass(frozen=True)
class MetricFacts:
    """How to read a metric: ``higher_is_better`` (None: unknown -- no verdict is drawn),
    an axis ``label`` and a ``unit`` (may be empty)."""

    name: str
    higher_is_better: bool | None
    label: str
    unit: str = ""

    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


# Rows of the results table that are not metrics: each correction's diagnostics and the stage
# timings.  Their orientation is fixed here because no plugin declares them.
_DIAGNOSTIC_FACTS = {
    "sample_seconds": (False, "sample time", "s"),
    "correct_seconds": (False, "correction time", "s"),
    "train_seconds": (False, "training time", "s"),
    "eval_seconds": (False, "evaluation time", "s"),
}


def metric_facts(name: str) -> MetricFacts:
    """Orientation, label and unit of a metric, as its plugin declared them
    (``register_metric(..., higher_is_better=..., label=..., unit=...)``).  A name that is not
    a registered metric (a correction diagnostic, say) has ``higher_is_better=None``."""
    if name in METRICS:
        meta = METRICS.info(name).meta
        hib = meta.get("higher_is_better")
        return MetricFacts(name, None if hib is None else bool(hib), str(meta.get("label") or name),
                           str(meta.get("unit") or ""))
    if name in _DIAGNOSTIC_FACTS:
        hib, label, unit = _DIAGNOSTIC_FACTS[name]
        return MetricFacts(name, hib, label, unit)
    return MetricFacts(name, None, name, "")
