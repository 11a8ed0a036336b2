"""Image tasks: deterministic splits, n_real limits, data-dir errors."""

from __future__ import annotations

import numpy as np
import pytest

from scloop.core.registry import TASKS, ConfigError
from scloop.plugins import load_plugins

load_plugins()


def test_digits_split_is_fixed_and_disjoint():
    a, b = TASKS.create("digits"), TASKS.create("digits")
    ra, rb = a.real_data(1200, np.random.default_rng(1)), b.real_data(1200, np.random.default_rng(2))
    assert np.array_equal(ra.x, rb.x) and np.array_equal(ra.y, rb.y)  # same for every seed
    ref = a.reference()
    assert len(ra) == 1200 and len(ref) == 597 and ra.x.shape[1:] == (1, 8, 8)
    flat = {r.tobytes() for r in ra.x}
    assert sum(r.tobytes() in flat for r in ref.x) < 10  # load_digits has a few exact duplicates
    assert set(np.unique(ra.x * 16)) <= set(range(17))


def test_n_real_beyond_data_is_an_error_unless_capped():
    t = TASKS.create("digits")
    with pytest.raises(ConfigError, match="n_real.*1300.*1200 images"):
        t.real_data(1300)
    assert len(TASKS.create("digits", cap_n_real=True).real_data(5000)) == 1200


def test_mnist_from_test_set_only(shared_data):
    t = TASKS.create("mnist", data_dir=str(shared_data))
    real, ref = t.real_data(8000), t.reference()
    assert real.x.shape == (8000, 1, 28, 28) and len(ref) == 2000
    assert t.real_data(100).y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # file order
    assert t.levels == 256 and t.image_shape == (1, 28, 28)


def test_mnist_missing_data_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"task.data_dir: .*t10k-images.*not found"):
        TASKS.create("mnist", data_dir=str(tmp_path))


@pytest.mark.parametrize("bad", [{"n_holdout": 5}, {"n_holdout": 1797}, {"n_eval": 3}])
def test_bad_options(bad):
    with pytest.raises(ConfigError):
        TASKS.create("digits", **bad)


def test_cli_data_info(shared_data, tmp_path):
    from typer.testing import CliRunner

    from scloop.cli import app

    r = CliRunner().invoke(app, ["data", "info", "--data-dir", str(shared_data), "--quick"])
    assert r.exit_code == 0, r.output
    assert "bandai-namco at" in r.output and "524/524 indexed files found" in r.output
    assert "CC BY-NC 4.0" in r.output and "mnist at" in r.output
    (tmp_path / "mnist").mkdir()
    src = shared_data / "mnist"
    blob = (src / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes((src / "t10k-labels-idx1-ubyte.gz").read_bytes())
    r = CliRunner().invoke(app, ["data", "info", "--data-dir", str(tmp_path), "--dataset", "mnist"])
    assert r.exit_code == 1 and "t10k-images-idx3-ubyte" in r.output and "PROBLEMS" in r.output
    r = CliRunner().invoke(app, ["data", "download", "cifar"])
    assert r.exit_code == 2 and "allowed: mnist" in r.output
