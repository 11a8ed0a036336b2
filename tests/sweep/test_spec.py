"""Sweep files: expansion (cases x grid x zip, dotted keys), stable run ids, loud errors."""

from __future__ import annotations

import pytest

from scloop.core.registry import ConfigError
from scloop.sweep import load_sweep, sweep_from_dict, sweep_preset_names


def _sweep(tmp_path, **kw):
    (tmp_path / "base.yaml").write_text("task: {name: gaussian, dim: 2}\nmodel: gaussian\nn_generations: 3\n")
    raw = {"name": "s", "base": str(tmp_path / "base.yaml"), **kw}
    return sweep_from_dict(raw)


def test_cases_grid_zip_product(tmp_path):
    s = _sweep(tmp_path, cases=[{"policy": "augment"}, {"policy": "replace", "lambda": 1.0}],
               grid={"n_real": [20, 40], "model.reg_covar": [0.0, 1e-3]},
               zip={"seed": [0, 1, 2], "n_generations": [2, 3, 4]})
    pts = s.points()
    assert len(pts) == 2 * 4 * 3
    by = {p.run_id: p for p in pts}
    assert len(by) == len(pts)
    p = pts[-1]
    assert p.spec.policy.name == "replace" and p.spec.lambdas == (1.0,)
    assert p.spec.n_real == 40 and p.spec.model.kwargs == {"reg_covar": 1e-3}
    assert (p.spec.seed, p.spec.n_generations) == (2, 4)
    assert all(q.spec.name == "s" for q in pts)


def test_run_ids_are_stable_when_the_grid_grows(tmp_path):
    a = _sweep(tmp_path, grid={"lambda": [0.5, 1.0]}).points()
    b = _sweep(tmp_path, grid={"lambda": [0.25, 0.5, 1.0]}).points()
    assert {p.run_id for p in a} <= {p.run_id for p in b}
    assert a[0].run_id.startswith("lambda-0.5-")


def test_identical_points_are_one_run(tmp_path):
    s = _sweep(tmp_path, grid={"lambda": [0.5, 0.5]})
    assert len(s.points()) == 1


@pytest.mark.parametrize("raw, needle", [
    ({"grid": {"lambdaa": [1]}}, "lambdaa"),
    ({"grid": {"lambda": 0.5}}, "grid.lambda"),
    ({"zip": {"seed": [0, 1], "n_real": [1]}}, "zip"),
    ({"grid": {"n_real": [0]}}, "n_real"),
    ({"cases": {"policy": "augment"}}, "cases"),
    ({"colour": 1}, "colour"),
])
def test_bad_sweeps_name_the_key(tmp_path, raw, needle):
    with pytest.raises(ConfigError, match=needle):
        _sweep(tmp_path, **raw).points()


def test_bad_base_and_name(tmp_path):
    with pytest.raises(ConfigError, match="base"):
        sweep_from_dict({"name": "s"}).points()
    with pytest.raises(ConfigError, match="name"):
        sweep_from_dict({"name": "a b", "base": "gaussian-paper"})
    with pytest.raises(ConfigError, match="neither"):
        load_sweep("no-such-sweep")


def test_presets_expand_and_validate():
    from scloop.runner import validate

    assert {"gaussian-phase", "gaussian-ray-scale"} <= set(sweep_preset_names())
    for name in ("gaussian-phase", "gaussian-ray-scale"):
        pts = load_sweep(name).points()
        for p in pts[:3]:
            validate(p.spec)
    assert len(load_sweep("gaussian-ray-scale").points()) >= 200
    phase = load_sweep("gaussian-phase").points()
    assert {p.spec.policy.name for p in phase} == {"augment", "paper-toy"}
    assert all(p.spec.seeds == 50 for p in phase)


def test_every_sweep_preset_expands():
    for name in sweep_preset_names():
        pts = load_sweep(name).points()
        assert pts and len({p.run_id for p in pts}) == len(pts), name
