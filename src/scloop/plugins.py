"""Plugins: the public registration decorators and plugin discovery.

Write a plugin in your own file and register it with a decorator::

    import scloop

    @scloop.register_correction("shrink")
    def make_shrink(gamma=0.0, factor=0.9):
        return Shrink(gamma, factor)

Its keyword parameters with defaults are its config options (``correction: {name: shrink,
factor: 0.5}``).  scloop finds plugins in three places, in every process that runs a part of
an experiment (the main process, each ``--workers`` process, each sweep job and Ray task):

1. installed packages that declare the entry-point group ``scloop.plugins``
   (``[project.entry-points."scloop.plugins"] mine = "mypkg.plugins"``);
2. a ``plugins:`` list in a config (module names or ``.py`` paths, relative to the config file);
3. ``--plugin MODULE_OR_FILE`` on ``scloop run`` / ``scloop sweep``, or ``plugins=`` of
   :func:`scloop.run` / :func:`scloop.sweep`.

Plugins defined in a notebook or a script (``__main__``) need none of these: worker processes
receive them by value (cloudpickle) from the process that started the run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, REGISTRIES, TASKS, ConfigError, PluginInfo

F = TypeVar("F", bound=Callable[..., Any])
ENTRY_POINT_GROUP = "scloop.plugins"

_BUILTINS_LOADED = False
_ENTRY_POINTS_LOADED = False
_LOADED_REFS: dict[str, str] = {}  # ref (absolute path or module name) -> digest of the file when loaded


# ---------------------------------------------------------------------- decorators
def register_model(name: str, *, domain: str = "vector", **meta: Any) -> Callable[[F], F]:
    """Register a generative-model factory (see :class:`scloop.GenerativeModel`)."""
    _load_builtins()  # scloop's own names are taken first, whatever the import order
    return MODELS.register(name, domain=domain, **meta)


def register_correction(name: str, *, domain: str = "vector", **meta: Any) -> Callable[[F], F]:
    """Register a correction factory; it receives ``gamma`` (the correction strength) and its
    options as keywords (see :class:`scloop.Correction`)."""
    _load_builtins()
    return CORRECTIONS.register(name, domain=domain, **meta)


def register_metric(name: str, *, higher_is_better: bool, domain: str = "vector", label: str | None = None,
                    unit: str = "", **meta: Any) -> Callable[[F], F]:
    """Register a metric factory (see :class:`scloop.Metric`).  ``higher_is_better`` is
    required: verdicts, phase diagrams and collapse thresholds read it.  ``label`` and ``unit``
    name the plot axis."""
    if not isinstance(higher_is_better, bool):
        raise ConfigError(f"metric {name!r}: higher_is_better: got {higher_is_better!r}; allowed: True or False")
    _load_builtins()
    return METRICS.register(name, domain=domain, higher_is_better=higher_is_better, label=label or name, unit=unit,
                            **meta)


def register_task(name: str, *, domain: str = "vector", **meta: Any) -> Callable[[F], F]:
    """Register a task factory (see :class:`scloop.Task`)."""
    _load_builtins()
    return TASKS.register(name, domain=domain, **meta)


def register_policy(name: str, **meta: Any) -> Callable[[F], F]:
    """Register a data-policy factory (see :class:`scloop.DataPolicy`)."""
    _load_builtins()
    return POLICIES.register(name, domain="any", **meta)


# ---------------------------------------------------------------------- discovery
def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    import scloop.corrections  # noqa: F401
    import scloop.loop.policies  # noqa: F401
    import scloop.metrics  # noqa: F401
    import scloop.models  # noqa: F401
    import scloop.tasks  # noqa: F401

    _BUILTINS_LOADED = True


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError(f"plugin entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} failed to "
                              f"import: {type(exc).__name__}: {exc}") from exc
        if callable(obj) and not isinstance(obj, type):
            obj()  # an entry point may name a function that registers the plugins


def resolve_ref(ref: str, base: Path | None = None) -> str:
    """A plugin reference as stored in a config: a ``.py`` path made absolute (relative to
    ``base``, default the working directory), or a module name unchanged."""
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"plugins: got {ref!r}; allowed: a module name or a path to a .py file")
    ref = ref.strip()
    if ref.endswith(".py") or "/" in ref or "\\" in ref:
        p = Path(ref).expanduser()
        if not p.is_absolute():
            p = (base or Path.cwd()) / p
        p = p.resolve()
        if not p.is_file():
            raise ConfigError(f"plugins: {ref!r}: no such file ({p})")
        return str(p)
    return ref


def _file_module_name(path: Path) -> str:
    return f"scloop_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def _import_ref(ref: str) -> None:
    if ref.endswith(".py"):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"plugin file {ref!r} does not exist")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if _LOADED_REFS.get(ref) == digest:
            return
        name = _file_module_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"plugin file {ref!r} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            sys.modules.pop(name, None)
            raise
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ConfigError(f"plugin file {ref!r} failed to import: {type(exc).__name__}: {exc}") from exc
        _LOADED_REFS[ref] = digest
        return
    if ref in _LOADED_REFS:
        return
    try:
        importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"plugin module {ref!r} not found ({exc}); give a module on the Python path or a path to a "
                          ".py file") from exc
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"plugin module {ref!r} failed to import: {type(exc).__name__}: {exc}") from exc
    _LOADED_REFS[ref] = ""


def load_plugins(refs: Iterable[str] = ()) -> list[str]:
    """Import scloop's own plugins, the installed ``scloop.plugins`` entry points and ``refs``
    (module names or absolute ``.py`` paths, see :func:`resolve_ref`).  Idempotent: a file is
    imported again only when its content changed.  Returns the references loaded so far."""
    _load_builtins()
    _load_entry_points()
    for ref in refs:
        _import_ref(resolve_ref(ref))
    return list(_LOADED_REFS)


# ---------------------------------------------------------------------- worker processes
def _needs_by_value(info: PluginInfo) -> bool:
    """A plugin whose module a fresh process cannot import by name (a notebook's or a script's
    ``__main__``, code exec'd into a module that is not on the path)."""
    if info.builtin:
        return False
    mod = info.origin.split(":", 1)[0]
    if mod in ("__main__", "__mp_main__", "builtins") or mod.startswith("scloop_plugin_"):
        return mod != "builtins" and not any(r.endswith(".py") and _file_module_name(Path(r)) == mod
                                             for r in _LOADED_REFS)
    m = sys.modules.get(mod)
    return m is None or getattr(m, "__spec__", None) is None


def plugin_payload() -> dict[str, Any]:
    """What a new process needs to see the same plugins as this one: the references loaded,
    the modules of plugins registered by import, and the ``__main__`` plugins by value."""
    modules: list[str] = []
    by_value: list[PluginInfo] = []
    for reg in REGISTRIES.values():
        for info in reg.entries():
            if info.builtin:
                continue
            if _needs_by_value(info):
                by_value.append(info)
            else:
                mod = info.origin.split(":", 1)[0]
                if not mod.startswith("scloop_plugin_") and mod not in modules:
                    modules.append(mod)
    blob = b""
    if by_value:
        import cloudpickle

        blob = cloudpickle.dumps(by_value)
    # the module search path too: a plugin module found through a path this process added (a
    # test runner's rootdir, a notebook's sys.path.append) must be found by a Ray worker as well
    return {"refs": list(_LOADED_REFS), "modules": modules, "by_value": blob, "sys_path": list(sys.path)}


def install_plugin_payload(payload: dict[str, Any] | None) -> None:
    """Load the plugins described by :func:`plugin_payload` (in a worker process)."""
    load_plugins()
    if not payload:
        return
    for p in payload.get("sys_path", ()):
        if p not in sys.path:
            sys.path.append(p)
    load_plugins(payload.get("refs", ()))
    for mod in payload.get("modules", ()):
        if mod not in sys.modules:
            try:
                importlib.import_module(mod)
            except ImportError as exc:
                raise ConfigError(f"plugin module {mod!r} (registered in the parent process) cannot be imported in a "
                                  f"worker process: {exc}") from exc
    if payload.get("by_value"):
        import pickle

        for info in pickle.loads(payload["by_value"]):  # noqa: S301 - our own parent's payload
            REGISTRIES[info.kind].add(info)


def plugin_fingerprints(names: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{"kind:name": fingerprint}`` for the ``(kind, name)`` pairs a run uses."""
    out: dict[str, str] = {}
    for kind, name in names:
        reg = REGISTRIES[kind]
        if name in reg:
            out[f"{kind}:{name}"] = reg.info(name).fingerprint
    return out
