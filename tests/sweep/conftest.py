"""Small sweeps for the sweep tests: Gaussian runs through the generic engine (so that the
generation-0 cache, worker processes and checkpoints are exercised) that take about a second each."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

BASE = """
task: {name: gaussian, dim: 2}
model: gaussian
correction: oracle-mixture
gamma: [0, 1]
n_real: 50
n_generations: %(gens)d
policy: augment
arms: [baseline, no-correction, correction]
metrics: [w2-gaussian, mean_error]
seeds: %(seeds)d
engine: generic
checkpoint_every: 1
"""


def write_sweep(root: Path, *, name: str = "t-sweep", gens: int = 6, seeds: int = 2,
                grid: str = "lambda: [0.5, 1.0]\n  n_real: [50, 100]", extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "base.yaml").write_text(BASE % {"gens": gens, "seeds": seeds})
    text = f"name: {name}\nbase: base.yaml\n{extra}grid:\n  {grid}\n"
    p = root / f"{name}.yaml"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "spec")


@pytest.fixture(scope="session")
def make_sweep():
    """``make_sweep(root, gens=..., seeds=..., grid=...)`` writes a sweep file (and its base)."""
    return write_sweep
