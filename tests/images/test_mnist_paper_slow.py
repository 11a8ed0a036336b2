"""mnist-paper for 2 generations on CPU through the real shared MNIST files, at a reduced size
(fewer images, a smaller UNet, 20 diffusion steps, 100 evaluation samples)."""

from __future__ import annotations

import numpy as np
import pytest

from scloop.core.config import load_spec
from scloop.runner import run_experiment
from scloop.store import RunStore


@pytest.mark.slow
def test_mnist_paper_two_generations(shared_data, tmp_path):
    spec = load_spec("mnist-paper", [
        f"task.data_dir={shared_data}", "task.n_eval=100", "n_real=300", "n_generations=2", "lambda=[0.5]",
        "model.channels=[16, 32, 32]", "model.attention=false", "model.timesteps=20", "model.epochs=2",
        "model.batch_size=64",
    ])
    s = run_experiment(spec, out=tmp_path, workers=2)
    st = RunStore(s.path)
    df = st.table(include_timing=False)
    st.close()
    fid = df[df.metric == "fid"]
    assert set(fid.generation) == {0, 1, 2} and np.isfinite(fid.value).all()
    assert set(fid.arm) == {"baseline", "no-correction", "correction"}
    assert (df[df.metric == "correction_fraction_changed"].value == 1.0).all()
    x = np.load(s.path / "samples" / "unit000001" / "gen0002.npz")["x"]
    assert x.shape[1:] == (1, 28, 28)
