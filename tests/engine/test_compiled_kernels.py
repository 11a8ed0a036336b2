"""The compiled (numba) kernels of the vectorised Gaussian engine give the numbers of the numpy
path to the bit, for every policy and correction; and how seeds are split into blocks and
gammas into pieces changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from scloop.core.config import load_spec  # noqa: E402
from scloop.core.registry import TASKS  # noqa: E402
from scloop.plugins import load_plugins  # noqa: E402
from scloop.tasks.gaussian_ensemble import GaussianEnsemble, Group, run_ensemble  # noqa: E402


def _run(kernels: str, policy, correction: str, seeds: int = 6, gens: int = 30, gammas=(0.0, 0.3, 5.0),
         arm: str = "correction", lam: float = 0.5, stream_seed: int = 0, options=None):
    load_plugins()
    spec = load_spec("gaussian-paper")
    task = TASKS.create(spec.task.name, **spec.task.kwargs)
    name, opts = (policy, {}) if isinstance(policy, str) else (policy["name"], {k: v for k, v in policy.items()
                                                                                    if k != "name"})
    ens = GaussianEnsemble(task=task, group=Group(arm, lam, correction, options or {}, tuple(gammas)), n_real=50,
                           n_seeds=seeds, base_seed=spec.seed, policy=name, policy_options=opts,
                           metrics=spec.metrics, init_offset=0.3, reg_covar=1e-6, kernels=kernels,
                           stream_seed=stream_seed)
    steps = []
    st = run_ensemble(ens, gens, state=None, on_step=steps.append)
    return st, steps


def _same(a, b):
    (sa, ra), (sb, rb) = a, b
    for k in ("mean", "cov", "acc_s1", "acc_s2", "dead"):
        assert np.array_equal(sa[k], sb[k]), k
    for x, y in zip(ra, rb):
        assert x.metrics.keys() == y.metrics.keys() and x.diagnostics.keys() == y.diagnostics.keys()
        for k in x.metrics:
            np.testing.assert_array_equal(x.metrics[k], y.metrics[k])
        for k in x.diagnostics:
            np.testing.assert_array_equal(x.diagnostics[k], y.diagnostics[k], err_msg=k)
        assert np.array_equal(x.status_bad, y.status_bad) and x.provenance == y.provenance


@pytest.mark.parametrize("policy, correction", [
    ("paper-toy", "paper-histogram"), ("augment", "paper-histogram"), ("paper-toy", "oracle-mixture"),
    ("replace", "oracle-mixture"), ("accumulate", "oracle-ot"), ({"name": "accumulate-subsample", "budget": 40},
                                                                 "oracle-mixture"),
])
def test_compiled_equals_numpy(policy, correction):
    _same(_run("numpy", policy, correction), _run("compiled", policy, correction))


def test_compiled_equals_numpy_with_few_bins_and_small_blocks():
    # small candidate blocks: several rounds per generation; 3 bins: candidates off the grid
    opts = {"bins": 3, "block": 16}
    _same(_run("numpy", "paper-toy", "paper-histogram", options=opts),
          _run("compiled", "paper-toy", "paper-histogram", options=opts))


def test_gamma_pieces_change_nothing():
    whole = _run("numpy", "paper-toy", "paper-histogram", gammas=(0.0, 0.3, 5.0))
    for i, g in enumerate((0.0, 0.3, 5.0)):
        part = _run("numpy", "paper-toy", "paper-histogram", gammas=(g,))
        for k in ("mean", "cov"):
            assert np.array_equal(whole[0][k][:, i:i + 1], part[0][k])
        for x, y in zip(whole[1], part[1]):
            np.testing.assert_array_equal(x.metrics["w2-gaussian"][:, i:i + 1], y.metrics["w2-gaussian"])


def test_blocks_draw_from_their_own_streams():
    a = _run("numpy", "augment", "oracle-mixture", seeds=3, stream_seed=0)
    b = _run("numpy", "augment", "oracle-mixture", seeds=3, stream_seed=1)
    assert not np.array_equal(a[0]["mean"], b[0]["mean"])
    again = _run("numpy", "augment", "oracle-mixture", seeds=3, stream_seed=1)
    assert np.array_equal(b[0]["mean"], again[0]["mean"])


def test_unfillable_rejection_sampling_same_in_both_paths(monkeypatch):
    import scloop.tasks.gaussian_ensemble as ens

    monkeypatch.setattr(ens, "MAX_BLOCKS", 2)  # 2 rounds of 8 candidates cannot always yield 25 points
    a = _run("numpy", "paper-toy", "paper-histogram", options={"block": 8}, gens=5)
    b = _run("compiled", "paper-toy", "paper-histogram", options={"block": 8}, gens=5)
    assert a[1][0].failed.any()
    _same(a, b)
