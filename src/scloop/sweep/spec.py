"""Sweep files: a base experiment plus a grid over any config keys, expanded into runs.

A sweep file is a YAML mapping::

    name: gaussian-phase
    description: one line shown by `scloop presets` and in the report
    base: gaussian-theory          # an experiment preset or a config YAML path
    config: {seeds: 50}            # overrides applied to the base (optional)
    cases:                         # optional list of override mappings
      - {policy: augment}
      - {policy: paper-toy, lambda: 0.5}
    grid:                          # optional: key -> list of values, cartesian product
      n_real: [50, 100]
      model.reg_covar: [0, 1.0e-6] # dotted keys set one option of a component
    zip:                           # optional: key -> equal-length lists, advanced together
      seed: [0, 1, 2]
      n_generations: [10, 20, 30]

The runs are ``cases x grid x zip`` (each factor is one empty point when absent), in that
nesting order.  Each point is one experiment config, i.e. one run directory; within a run the
``lambda``/``gamma``/``correction`` lists, ``arms`` and ``seeds`` stay the run's own grid of units.

Run ids are stable: a slug of the point's overrides plus the content digest of the resolved
config (:meth:`ExperimentSpec.digest`), so editing a grid never renames the runs it keeps, and
two points that resolve to the same experiment are one run.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from scloop.core.config import (KNOWN_KEYS, ExperimentSpec, resolve_plugin_paths, check_id, load_raw, load_yaml,
                                set_path, spec_from_dict)
from scloop.core.registry import ConfigError

SWEEP_KEYS = ("name", "description", "base", "config", "cases", "grid", "zip")


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its id, the overrides that define it, and the resolved spec."""

    run_id: str
    params: tuple[tuple[str, Any], ...]
    spec: ExperimentSpec

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring); ``description`` is its one-line
    summary (whitespace collapsed, ``""`` when the file has none)."""

    name: str
    description: str
    base: str
    config: Mapping[str, Any]
    cases: tuple[Mapping[str, Any], ...]
    grid: Mapping[str, tuple[Any, ...]]
    zip: Mapping[str, tuple[Any, ...]]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "base": self.base,
                "config": dict(self.config), "cases": [dict(c) for c in self.cases],
                "grid": {k: list(v) for k, v in self.grid.items()},
                "zip": {k: list(v) for k, v in self.zip.items()}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def points(self) -> list[SweepPoint]:
        """Expand into runs (validated specs; raises ConfigError naming the offending point)."""
        base = load_raw(self.base)
        base.pop("description", None)  # the base preset's description does not describe the sweep's runs
        base = _apply(base, self.config, "config")
        grid_keys = list(self.grid)
        grid_combos = list(itertools.product(*(self.grid[k] for k in grid_keys))) if grid_keys else [()]
        n_zip = len(next(iter(self.zip.values()))) if self.zip else 1
        out: dict[str, SweepPoint] = {}
        for ci, case in enumerate(self.cases or ({},)):
            for combo in grid_combos:
                for zi in range(n_zip):
                    over: dict[str, Any] = dict(case)
                    over.update(zip(grid_keys, combo))
                    over.update({k: v[zi] for k, v in self.zip.items()})
                    raw = _apply(base, over, f"cases[{ci}]/grid/zip")
                    raw["name"] = self.name
                    try:
                        spec = spec_from_dict(raw)
                    except ConfigError as exc:
                        raise ConfigError(f"sweep {self.name!r}, point {_slug(over) or '(base)'}: {exc}") from None
                    rid = _run_id(over, spec)
                    out.setdefault(rid, SweepPoint(rid, tuple(over.items()), spec))
        return list(out.values())


def _apply(raw: dict[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        path = str(key).split(".")
        if path[0] not in KNOWN_KEYS - {"base", "name"}:
            raise ConfigError(f"sweep key {where}.{key}: unknown config key {path[0]!r}; allowed: "
                              f"{', '.join(sorted(KNOWN_KEYS - {'base', 'name'}))}")
        set_path(out, path, value)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, Mapping):
        return "-".join(_fmt(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return "+".join(_fmt(x) for x in v)
    if isinstance(v, float) and v == float("inf"):
        return "inf"
    return str(v)


def _slug(over: Mapping[str, Any]) -> str:
    parts = [f"{k.split('.')[-1]}-{_fmt(v)}" for k, v in over.items()]
    return re.sub(r"[^A-Za-z0-9_.+-]+", "", "_".join(parts))[:60]


def _run_id(over: Mapping[str, Any], spec: ExperimentSpec) -> str:
    slug = _slug(over)
    return f"{slug}-{spec.digest()[:8]}" if slug else f"run-{spec.digest()[:8]}"


def sweep_preset_names() -> list[str]:
    files = resources.files("scloop.presets") / "sweeps"
    if not files.is_dir():
        return []
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def _list(key: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"sweep key {key!r}: got {value!r}; allowed: a non-empty list of values")
    return tuple(value)


def sweep_from_dict(raw: Mapping[str, Any], source: str = "") -> SweepSpec:
    """Validate a sweep mapping; every error names the key, the value and what is allowed."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source or 'sweep'}: a sweep must be a YAML mapping, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{source or 'sweep'}: unknown sweep key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(SWEEP_KEYS)}")
    name = raw.get("name")
    check_id(name, "sweep key 'name'")
    if " " in name:
        raise ConfigError(f"sweep key 'name': got {name!r}; allowed: a non-empty string without slashes or spaces")
    base = raw.get("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"sweep key 'base': got {base!r}; allowed: an experiment preset name or a config YAML path")
    if source and not Path(base).is_absolute() and (Path(source).parent / base).is_file():
        base = str(Path(source).parent / base)  # a base file next to the sweep file
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"sweep key 'config': got {config!r}; allowed: a mapping of config keys to values")
    if source and "plugins" in config:  # plugin files are relative to the sweep file
        config = dict(config)
        resolve_plugin_paths(config, Path(source).resolve().parent, f"{source}: config")
    cases = raw.get("cases") or []
    if not isinstance(cases, list) or not all(isinstance(c, Mapping) for c in cases):
        raise ConfigError(f"sweep key 'cases': got {cases!r}; allowed: a list of mappings of config keys to values")
    grid = raw.get("grid") or {}
    zipped = raw.get("zip") or {}
    for key, val in (("grid", grid), ("zip", zipped)):
        if not isinstance(val, Mapping):
            raise ConfigError(f"sweep key {key!r}: got {val!r}; allowed: a mapping of config keys to lists")
    grid_t = {str(k): _list(f"grid.{k}", v) for k, v in grid.items()}
    zip_t = {str(k): _list(f"zip.{k}", v) for k, v in zipped.items()}
    if len({len(v) for v in zip_t.values()}) > 1:
        lens = {k: len(v) for k, v in zip_t.items()}
        raise ConfigError(f"sweep key 'zip': lists of different lengths {lens}; allowed: equal lengths")
    desc = raw.get("description")
    if desc is None:
        desc = ""
    if not isinstance(desc, str):
        raise ConfigError(f"sweep key 'description': got {desc!r}; allowed: a string (one line shown by "
                          "`scloop presets`)")
    return SweepSpec(name, " ".join(desc.split()), base, dict(config), tuple(dict(c) for c in cases), grid_t, zip_t, source)


def load_sweep(ref: str) -> SweepSpec:
    """A sweep preset name (``scloop presets``) or a sweep YAML path."""
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"sweep file {ref!r} does not exist")
        text, where = path.read_text(), str(path)
    elif ref in sweep_preset_names():
        text = (resources.files("scloop.presets") / "sweeps" / f"{ref}.yaml").read_text()
        where = ""
    else:
        import difflib

        names = sweep_preset_names()
        close = difflib.get_close_matches(ref, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{ref!r} is neither a sweep file nor a sweep preset; sweep presets: "
                          f"{', '.join(names) or '(none)'}.{hint}")
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where or ref}: not valid YAML ({exc})") from None
    return sweep_from_dict(raw, where)
