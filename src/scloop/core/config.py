"""Frozen, typed experiment specs, with YAML/dict round-trip and validation.

A config is a YAML mapping whose keys use the paper's names::

    base: gaussian-paper        # optional: a preset (or another YAML file) to start from
    name: my-run
    task: {name: gaussian, dim: 2}
    model: gaussian             # or {name: gmm, k: 3}
    correction: oracle-mixture  # a name, {name: ..., option: ...}, or a list of those
    lambda: 0.5                 # synthetic fraction; a list is a grid
    gamma: [0, 1, 5]            # correction strength; a list is a grid (.inf allowed)
    n_real: 50
    n_generations: 500
    policy: augment             # or {name: accumulate-subsample, budget: 100}
    train: scratch              # or finetune
    arms: [baseline, no-correction, correction]
    metrics: [w2-gaussian, mean_error]
    init: {offset: 0.0}         # generation-0 sub-optimality (mean offset)
    seed: 0                     # base seed
    seeds: 1                    # number of seeds
    engine: auto                # auto | generic | vectorized
    checkpoint_every: 1
    plugins: [my_plugins.py]    # modules or .py files (relative to this file) to import first
    description: one line shown by `scloop presets`

Validation raises :class:`~scloop.core.registry.ConfigError` naming the key, the value and
what is allowed.  Nothing here imports a plugin: names are checked against the registries by
:func:`scloop.runner.validate`, after the plugins are loaded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from scloop.core.registry import ConfigError

TRAIN_MODES = ("scratch", "finetune")
ENGINES = ("auto", "generic", "vectorized")
ARM_NAMES = ("baseline", "no-correction", "correction")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ComponentSpec:
    """A registry name plus its options (a frozen, sorted tuple of ``(key, value)``)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.options}

    def label(self) -> str:
        if not self.options:
            return self.name
        inner = ",".join(f"{k}={_thaw(v)}" for k, v in self.options)
        return f"{self.name}({inner})"

    def to_plain(self) -> Any:
        if not self.options:
            return self.name
        return {"name": self.name, **self.kwargs}


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment: every (arm, lambda, correction, gamma, seed) unit of it shares the
    same real data and generation 0 per seed."""

    name: str
    task: ComponentSpec
    model: ComponentSpec
    corrections: tuple[ComponentSpec, ...]
    lambdas: tuple[float, ...]
    gammas: tuple[float, ...]
    n_real: int
    n_generations: int
    policy: ComponentSpec
    train: str = "scratch"
    arms: tuple[str, ...] = ("correction",)
    metrics: tuple[str, ...] = ("w2-gaussian",)
    init_offset: float = 0.0
    seed: int = 0
    seeds: int = 1
    engine: str = "auto"
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    description: str = ""

    # ------------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task.to_plain(),
            "model": self.model.to_plain(),
            "correction": [c.to_plain() for c in self.corrections],
            "lambda": list(self.lambdas),
            "gamma": [_gamma_plain(g) for g in self.gammas],
            "n_real": self.n_real,
            "n_generations": self.n_generations,
            "policy": self.policy.to_plain(),
            "train": self.train,
            "arms": list(self.arms),
            "metrics": list(self.metrics),
            "init": {"offset": self.init_offset},
            "seed": self.seed,
            "seeds": self.seeds,
            "engine": self.engine,
            "checkpoint_every": self.checkpoint_every,
            # only when set, so that configs stored before these keys existed compare equal
            **({"plugins": list(self.plugins)} if self.plugins else {}),
            **({"description": self.description} if self.description else {}),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """Content hash of the config keys that determine the numbers: not the name, the
        description, the checkpoint interval or where the plugins are loaded from (the runner's
        run identity adds each plugin's code fingerprint and the engine ``auto`` resolves to).
        ``engine: auto`` is left out so that run ids stay those of earlier versions."""
        d = self.to_dict()
        for k in ("name", "checkpoint_every", "plugins", "description"):
            d.pop(k, None)
        if d["engine"] == "auto":
            d.pop("engine")
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def _gamma_plain(g: float) -> Any:
    return ".inf" if math.isinf(g) else g


# ---------------------------------------------------------------------- parsing
DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "task": "gaussian",
    "model": "gaussian",
    "correction": "none",
    "lambda": 0.5,
    "gamma": 0.0,
    "n_real": 50,
    "n_generations": 10,
    "policy": "augment",
    "train": "scratch",
    "arms": ["correction"],
    "metrics": ["w2-gaussian"],
    "init": {"offset": 0.0},
    "seed": 0,
    "seeds": 1,
    "engine": "auto",
    "checkpoint_every": 1,
    "plugins": [],
    "description": "",
}
KNOWN_KEYS = set(DEFAULTS) | {"base"}


def _err(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: got {value!r}; allowed: {allowed}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(key: str, value: Any, *, lo: float = 0.0, allow_inf: bool = False) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", ".inf", "infinity") and allow_inf:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(key, value, f"a number >= {lo:g}" + (" (or .inf)" if allow_inf else ""))
    v = float(value)
    if math.isnan(v) or v < lo or (math.isinf(v) and not allow_inf):
        raise _err(key, value, f"a number >= {lo:g}" + (" (or .inf)" if allow_inf else ", finite"))
    return v


def _integer(key: str, value: Any, *, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise _err(key, value, f"an integer >= {lo}")
    if int(value) < lo:
        raise _err(key, value, f"an integer >= {lo}")
    return int(value)


def _component(key: str, value: Any) -> ComponentSpec:
    if isinstance(value, str) and value:
        return ComponentSpec(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        opts = {str(k): v for k, v in value.items() if k != "name"}
        return ComponentSpec(value["name"], _freeze(opts))
    raise _err(key, value, "a name, or a mapping with a 'name' key and options")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _err(key, value, " | ".join(allowed))
    return value


def spec_from_dict(raw: Mapping[str, Any]) -> ExperimentSpec:
    """Validate a fully merged config mapping into an :class:`ExperimentSpec`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a mapping of keys to values, got {type(raw).__name__}")
    unknown = sorted(map(str, set(raw) - KNOWN_KEYS))
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, sorted(KNOWN_KEYS), n=1) for u in unknown]
        hint = "".join(f" ({u!r}: did you mean {h[0]!r}?)" for u, h in zip(unknown, hints) if h)
        raise ConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))}; allowed keys: "
            f"{', '.join(sorted(KNOWN_KEYS))}.{hint}"
        )
    cfg = {**DEFAULTS, **{k: v for k, v in raw.items() if k != "base"}}

    name = cfg["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise _err("name", name, "a non-empty string without slashes or spaces")
    lambdas = tuple(_number("lambda", v) for v in _as_list(cfg["lambda"]))
    gammas = tuple(_number("gamma", v, allow_inf=True) for v in _as_list(cfg["gamma"]))
    if not lambdas:
        raise _err("lambda", cfg["lambda"], "a number >= 0 or a non-empty list of them")
    if not gammas:
        raise _err("gamma", cfg["gamma"], "a number >= 0 or a non-empty list of them")
    corrections = tuple(_component("correction", v) for v in _as_list(cfg["correction"]))
    if not corrections:
        raise _err("correction", cfg["correction"], "a correction name or a non-empty list")
    arms = tuple(_as_list(cfg["arms"]))
    for a in arms:
        _choice("arms", a, ARM_NAMES)
    if not arms or len(set(arms)) != len(arms):
        raise _err("arms", cfg["arms"], f"a non-empty list of distinct arms from {', '.join(ARM_NAMES)}")
    metrics = tuple(_as_list(cfg["metrics"]))
    if not metrics or not all(isinstance(m, str) for m in metrics):
        raise _err("metrics", cfg["metrics"], "a non-empty list of metric names")
    init = cfg["init"]
    if not isinstance(init, Mapping) or set(init) - {"offset"}:
        raise _err("init", init, "a mapping with the key 'offset' (a number)")
    offset = init.get("offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset):
        raise _err("init.offset", offset, "a finite number")

    plugins = cfg["plugins"]
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in plugins):
        raise _err("plugins", cfg["plugins"], "a list of module names or .py paths")
    description = cfg["description"]
    if not isinstance(description, str):
        raise _err("description", description, "a string")

    return ExperimentSpec(
        name=name,
        task=_component("task", cfg["task"]),
        model=_component("model", cfg["model"]),
        corrections=corrections,
        lambdas=lambdas,
        gammas=gammas,
        n_real=_integer("n_real", cfg["n_real"], lo=1),
        n_generations=_integer("n_generations", cfg["n_generations"], lo=0),
        policy=_component("policy", cfg["policy"]),
        train=_choice("train", cfg["train"], TRAIN_MODES),
        arms=arms,
        metrics=metrics,
        init_offset=float(offset),
        seed=_integer("seed", cfg["seed"], lo=0),
        seeds=_integer("seeds", cfg["seeds"], lo=1),
        engine=_choice("engine", cfg["engine"], ENGINES),
        checkpoint_every=_integer("checkpoint_every", cfg["checkpoint_every"], lo=1),
        plugins=tuple(dict.fromkeys(p.strip() for p in plugins)),
        description=" ".join(description.split()),
    )


# ---------------------------------------------------------------------- presets / files
def preset_names() -> list[str]:
    files = resources.files("scloop.presets")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def _load_yaml_text(text: str, where: str) -> dict[str, Any]:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_raw(ref: str, _depth: int = 0) -> dict[str, Any]:
    """Load a preset name or a YAML path into a merged raw mapping (``base`` resolved)."""
    if _depth > 8:
        raise ConfigError(f"config 'base' chain too deep at {ref!r}")
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {ref!r} does not exist")
        raw = _load_yaml_text(path.read_text(), str(path))
        resolve_plugin_paths(raw, path.resolve().parent, str(path))
    elif ref in preset_names():
        raw = _load_yaml_text((resources.files("scloop.presets") / f"{ref}.yaml").read_text(), f"preset {ref}")
        raw.setdefault("name", ref)
    else:
        import difflib

        close = difflib.get_close_matches(ref, preset_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{ref!r} is neither a config file nor a preset; presets: {', '.join(preset_names())}.{hint}"
        )
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise _err("base", base, "a preset name or a YAML path")
        merged = load_raw(base, _depth + 1)
        merged.pop("name", None)
        merged.pop("description", None)
        plugins = list(merged.get("plugins") or []) + [p for p in raw.get("plugins") or [] if p not in (merged.get("plugins") or [])]
        merged.update(raw)
        if plugins:
            merged["plugins"] = plugins
        raw = merged
    return raw


def resolve_plugin_paths(raw: dict[str, Any], base: Path, where: str) -> None:
    """``plugins:`` entries that are ``.py`` paths are relative to the config file."""
    plugins = raw.get("plugins")
    if plugins is None:
        return
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, list):
        raise ConfigError(f"{where}: config key 'plugins': got {plugins!r}; allowed: a list of module names or .py paths")
    out = []
    for p in plugins:
        if isinstance(p, str) and (p.endswith(".py") or "/" in p) and not Path(p).expanduser().is_absolute():
            p = str((base / p).resolve())
        out.append(p)
    raw["plugins"] = out


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``3e-4`` (no dot) is a string; YAML 1.2 and every user
    read it as a number, so it resolves as a float here."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads ``1e-3`` as a float (config files, sweeps, ``--set``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(item: str) -> tuple[list[str], Any]:
    """``key=value`` or ``a.b=value``; the value is parsed as YAML (``[0,1]``, ``.inf``, ``3``)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value (e.g. gamma=[0,1] or n_generations=10)")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        if path[0] not in KNOWN_KEYS - {"base"}:
            raise ConfigError(
                f"--set {item!r}: unknown key {path[0]!r}; allowed keys: {', '.join(sorted(KNOWN_KEYS - {'base'}))}"
            )
        set_path(out, path, value)
    return out


def set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[a][b]... = value`` in place for the key path ``[a, b, ...]``; a component given
    by name (``model: ddpm``) becomes ``{name: ddpm}`` so that one of its options can be set."""
    node = raw
    for i, part in enumerate(path[:-1]):
        cur = node.get(part, DEFAULTS.get(part) if i == 0 else None)
        if isinstance(cur, str):  # "gaussian" -> {"name": "gaussian"} so options can be set
            cur = {"name": cur}
        if not isinstance(cur, dict):
            cur = {}
        node[part] = dict(cur)
        node = node[part]
    node[path[-1]] = copy.deepcopy(value)


def load_spec(ref: str, overrides: list[str] | None = None, **direct: Any) -> ExperimentSpec:
    """Preset or YAML file + ``--set`` overrides + direct keyword overrides -> spec."""
    raw = load_raw(ref)
    raw = apply_overrides(raw, list(overrides or []))
    raw.update({k: v for k, v in direct.items() if v is not None})
    return spec_from_dict(raw)


def spec_fields() -> list[str]:
    return [f.name for f in fields(ExperimentSpec)]





def check_id(value: Any, key: str) -> str:
    """A run id or sweep name: one path component of the runs root -- not empty, no path
    separator, not ``.`` or ``..``, not absolute, no control characters (raises ConfigError)."""
    ok = (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
          and not value.startswith("~") and all(c.isprintable() for c in value) and value.strip() == value)
    if not ok:
        raise ConfigError(f"{key}: got {value!r}; allowed: a plain name (letters, digits, '-', '_', '.'; no path "
                          "separators, not '.' or '..', not absolute)")
    return value
