"""Contract suite run over every registered plugin.

Names are read from the registries at collection time, after ``load_plugins()``, so a new
model, correction, metric, policy or task joins these checks without editing this file.
The fixture is a 2-D Gaussian task (``TASKS.create("gaussian", dim=2)``) with 200 real points.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from scloop.core.registry import CORRECTIONS, METRICS, MODELS, POLICIES, TASKS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.types import Corrected, CorrectionContext, Data, Evaluation, Provenance

load_plugins()

# This suite feeds vector data; image and motion plugins have their own contract files.
MODEL_NAMES = MODELS.names("vector")
CORRECTION_NAMES = CORRECTIONS.names("vector")
METRIC_NAMES = METRICS.names("vector")
POLICY_NAMES = POLICIES.names()
GAMMAS = (0.0, 1.0, math.inf)

# Corrections that are not the identity at gamma = 0 *by design*: paper-histogram resamples
# from a histogram of the batch (docs/paper.md §4, item 2).  Every other correction is a
# pointwise map pi_gamma with pi_0 = identity.
NOT_IDENTITY_AT_ZERO = {"paper-histogram"}
# The identity correction never moves anything, so it does not reach the target at gamma = inf.
NEVER_CORRECTS = {"none"}

MOMENT_METRICS = [m for m in METRIC_NAMES if not METRICS.create(m).needs_samples]
SAMPLE_METRICS = [m for m in METRIC_NAMES if METRICS.create(m).needs_samples]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def task():
    return TASKS.create("gaussian", dim=2)


@pytest.fixture(scope="module")
def target(task):
    return task.target


@pytest.fixture(scope="module")
def real(target):
    return Data(target.sample(200, rng=np.random.default_rng(0)))


@pytest.fixture(scope="module")
def other_data(target):
    """A second, different data set (shifted and stretched) for refit checks."""
    x = target.sample(200, rng=np.random.default_rng(1))
    return Data(2.0 * x + np.array([3.0, -1.0]))


@pytest.fixture(scope="module")
def fitted_gaussian(real):
    return MODELS.create("gaussian").fit(real, rng=np.random.default_rng(0))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_states_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-10, atol=1e-12, err_msg=k)


def _global_rng_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, keys.copy(), pos, has_gauss, cached


def _same_global_state(s1, s2) -> bool:
    return s1[0] == s2[0] and np.array_equal(s1[1], s2[1]) and s1[2:] == s2[2:]


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_fit_returns_self(name, real):
    m = MODELS.create(name)
    assert m.fit(real, rng=_rng(0)) is m


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_update_returns_self(name, real, other_data):
    m = MODELS.create(name).fit(real, rng=_rng(0))
    assert m.update(other_data, rng=_rng(1)) is m


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_sample_shape_and_dtype(name, real):
    m = MODELS.create(name).fit(real, rng=_rng(0))
    out = m.sample(37, rng=_rng(1))
    assert isinstance(out, Data)
    assert out.x.shape == (37, 2)
    assert np.issubdtype(out.x.dtype, np.floating)
    assert np.all(np.isfinite(out.x))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_same_seed_same_samples(name, real):
    a = MODELS.create(name).fit(real, rng=_rng(3)).sample(50, rng=_rng(4)).x
    b = MODELS.create(name).fit(real, rng=_rng(3)).sample(50, rng=_rng(4)).x
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_different_seed_different_samples(name, real):
    m = MODELS.create(name).fit(real, rng=_rng(3))
    a = m.sample(50, rng=_rng(4)).x
    b = m.sample(50, rng=_rng(5)).x
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_sampling_advances_the_generator(name, real):
    """Two draws from one generator differ (no re-seeding from stored state, STYLE item 6)."""
    m = MODELS.create(name).fit(real, rng=_rng(3))
    rng = _rng(4)
    assert not np.array_equal(m.sample(50, rng=rng).x, m.sample(50, rng=rng).x)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_refit_replaces_state(name, real, other_data):
    refit = MODELS.create(name).fit(real, rng=_rng(7)).fit(other_data, rng=_rng(8))
    fresh = MODELS.create(name).fit(other_data, rng=_rng(8))
    before = MODELS.create(name).fit(real, rng=_rng(7)).state_dict()
    _assert_states_equal(refit.state_dict(), fresh.state_dict())
    # and the refit really changed something (otherwise the check above is vacuous)
    assert any(not np.allclose(before[k], fresh.state_dict()[k]) for k in before)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_state_dict_round_trip(name, real):
    m = MODELS.create(name).fit(real, rng=_rng(0))
    state = {k: np.array(v, copy=True) for k, v in m.state_dict().items()}
    clone = MODELS.create(name)
    assert clone.load_state_dict(state) is clone
    np.testing.assert_array_equal(m.sample(40, rng=_rng(9)).x, clone.sample(40, rng=_rng(9)).x)
    _assert_states_equal(m.state_dict(), clone.state_dict())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_no_global_rng_leakage(name, real, other_data):
    np.random.seed(12345)
    before = _global_rng_state()
    m = MODELS.create(name).fit(real, rng=_rng(0))
    m.update(other_data, rng=_rng(1))
    m.sample(100, rng=_rng(2))
    after = _global_rng_state()
    assert _same_global_state(before, after)


# ---------------------------------------------------------------------- corrections
def _prepared(name: str, gamma: float, real: Data, target):
    return CORRECTIONS.create(name, gamma=gamma).prepare(CorrectionContext(real, target), rng=_rng(11))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_output_type_shape_dtype(name, gamma, real, target, fitted_gaussian):
    corr = _prepared(name, gamma, real, target)
    batch = fitted_gaussian.sample(60, rng=_rng(1))
    out = corr(batch, model=fitted_gaussian, rng=_rng(2))
    assert isinstance(out, Corrected)
    assert isinstance(out.data, Data)
    assert out.data.x.shape == batch.x.shape
    assert np.issubdtype(out.data.x.dtype, np.floating)
    assert np.all(np.isfinite(out.data.x))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_deterministic(name, gamma, real, target, fitted_gaussian):
    batch = fitted_gaussian.sample(60, rng=_rng(1))
    a = _prepared(name, gamma, real, target)(batch, model=fitted_gaussian, rng=_rng(2))
    b = _prepared(name, gamma, real, target)(batch, model=fitted_gaussian, rng=_rng(2))
    np.testing.assert_array_equal(a.data.x, b.data.x)
    assert dict(a.diagnostics) == dict(b.diagnostics)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_diagnostics(name, gamma, real, target, fitted_gaussian):
    batch = fitted_gaussian.sample(60, rng=_rng(1))
    out = _prepared(name, gamma, real, target)(batch, model=fitted_gaussian, rng=_rng(2))
    diag = dict(out.diagnostics)
    assert {"displacement", "fraction_changed"} <= set(diag)
    assert 0.0 <= diag["fraction_changed"] <= 1.0
    assert math.isfinite(diag["displacement"]) and diag["displacement"] >= 0.0
    # the diagnostics describe the output actually returned
    moved = np.sqrt(((out.data.x - batch.x) ** 2).sum(axis=1))
    assert diag["fraction_changed"] == pytest.approx(float((moved > 0).mean()))
    expected_disp = float(moved[moved > 0].mean()) if (moved > 0).any() else 0.0
    assert diag["displacement"] == pytest.approx(expected_disp)


@pytest.mark.parametrize("name", CORRECTION_NAMES)
@pytest.mark.parametrize("gamma", [-1.0, float("nan")])
def test_correction_rejects_invalid_gamma(name, gamma):
    with pytest.raises(ConfigError, match="gamma"):
        CORRECTIONS.create(name, gamma=gamma)


@pytest.mark.parametrize("name", [n for n in CORRECTION_NAMES if n not in NOT_IDENTITY_AT_ZERO])
def test_correction_gamma_zero_is_identity(name, real, target, fitted_gaussian):
    batch = fitted_gaussian.sample(60, rng=_rng(1))
    out = _prepared(name, 0.0, real, target)(batch, model=fitted_gaussian, rng=_rng(2))
    np.testing.assert_array_equal(out.data.x, batch.x)
    assert out.diagnostics["fraction_changed"] == 0.0
    assert out.diagnostics["displacement"] == 0.0


@pytest.mark.parametrize("name", [n for n in CORRECTION_NAMES if n not in NEVER_CORRECTS])
def test_correction_gamma_inf_gives_target(name, real, target):
    """pi_inf p = p_target: even a batch from a badly shifted model comes out as the target."""
    shifted = MODELS.create("gaussian").fit(real, rng=_rng(0)).shift(3.0)
    batch = shifted.sample(2000, rng=_rng(1))
    assert np.abs(batch.x.mean(axis=0) - target.mean).min() > 2.5  # the input really is off-target
    out = _prepared(name, math.inf, real, target)(batch, model=shifted, rng=_rng(2)).data.x
    np.testing.assert_allclose(out.mean(axis=0), target.mean, atol=0.1)
    np.testing.assert_allclose(np.cov(out, rowvar=False), target.cov, atol=0.15)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_oracle_ot_is_permutation_of_oracle_mixture(gamma, real, target):
    shifted = MODELS.create("gaussian").fit(real, rng=_rng(0)).shift(1.0)
    batch = shifted.sample(300, rng=_rng(1))
    mix = _prepared("oracle-mixture", gamma, real, target)(batch, model=shifted, rng=_rng(2)).data.x
    ot_ = _prepared("oracle-ot", gamma, real, target)(batch, model=shifted, rng=_rng(2)).data.x

    def rows_sorted(a):
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_array_equal(rows_sorted(ot_), rows_sorted(mix))
    # OT minimises the total squared displacement over all re-pairings; the mixture's own
    # pairing is one of them.
    sq_ot = ((ot_ - batch.x) ** 2).sum(axis=1).mean()
    sq_mix = ((mix - batch.x) ** 2).sum(axis=1).mean()
    assert sq_ot <= sq_mix + 1e-9
    if gamma > 0:  # something was replaced, and re-pairing strictly helps on 300 points
        assert sq_ot < sq_mix


def test_paper_histogram_rejects_3d_target(real):
    task3 = TASKS.create("gaussian", dim=3)
    real3 = Data(task3.target.sample(50, rng=_rng(0)))
    corr = CORRECTIONS.create("paper-histogram", gamma=1.0)
    with pytest.raises(ConfigError, match="2-D"):
        corr.prepare(CorrectionContext(real3, task3.target), rng=_rng(0))


# ---------------------------------------------------------------------- metrics
def _evaluation(model, target, *, n: int = 500, seed: int = 0) -> Evaluation:
    samples = model.sample(n, rng=_rng(seed + 1))
    reference = Data(target.sample(n, rng=_rng(seed + 2)))
    return Evaluation(model, samples, reference, target)


def _gaussian_at(mean, cov):
    return MODELS.create("gaussian").set_params(np.asarray(mean, float), np.asarray(cov, float))


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_returns_finite_float(name, target, fitted_gaussian):
    value = METRICS.create(name)(_evaluation(fitted_gaussian, target))
    assert isinstance(value, float)
    assert math.isfinite(value)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_depends_on_its_input(name, target):
    m = METRICS.create(name)
    a = m(_evaluation(_gaussian_at(target.mean + 0.5, 1.5 * target.cov), target))
    b = m(_evaluation(_gaussian_at(target.mean - 2.0, 3.0 * target.cov), target))
    assert a != b


@pytest.mark.parametrize("name", MOMENT_METRICS)
def test_moment_metric_zero_at_target(name, target):
    assert abs(METRICS.create(name)(_evaluation(_gaussian_at(target.mean, target.cov), target))) < 1e-9


@pytest.mark.parametrize("name", MOMENT_METRICS)
def test_moment_metric_positive_off_target(name, target):
    """Mean shifted and covariance stretched: every moment metric sees at least one of them."""
    off = _gaussian_at(target.mean + 1.0, 2.0 * target.cov)
    assert METRICS.create(name)(_evaluation(off, target)) > 1e-3


@pytest.mark.parametrize("name", ["w2-gaussian", "mean_error"])
def test_mean_sensitive_metrics_see_a_mean_shift(name, target):
    if name not in METRIC_NAMES:
        pytest.skip(f"{name} not registered")
    off = _gaussian_at(target.mean + 1.0, target.cov)
    assert METRICS.create(name)(_evaluation(off, target)) == pytest.approx(math.sqrt(2.0), rel=1e-9)


@pytest.mark.parametrize("name", SAMPLE_METRICS)
def test_sample_metric_larger_for_shifted_sample(name, target):
    m = METRICS.create(name)
    same = m(_evaluation(_gaussian_at(target.mean, target.cov), target, seed=10))
    shifted = m(_evaluation(_gaussian_at(target.mean + 1.0, target.cov), target, seed=10))
    assert shifted > same
    assert shifted > 0


# ---------------------------------------------------------------------- policies
N_REAL, M, G = 10, 4, 3


def _policy_inputs():
    real = Data(np.column_stack([np.arange(N_REAL, dtype=float), -np.ones(N_REAL)]))
    # row r of generation j is (100 j + r, j): every row is unique and names its generation
    history = [Data(np.column_stack([100.0 * j + np.arange(M), np.full(M, float(j))])) for j in range(1, G + 1)]
    return real, history


def _build(name: str, **options):
    policy = POLICIES.create(name, **options)
    real, history = _policy_inputs()
    hist = history if policy.keeps_history else history[-1:]
    train, prov = policy.build(real, hist, G, True, rng=_rng(0))
    return policy, real, history, train, prov


def _generation_parts(prov: Provenance) -> dict[int, int]:
    return {g: n for g, _, n in prov.parts}


# expected (rows of the real data, {generation: rows kept}) at generation G = 3 with m = 4
POLICY_RULES = {
    "augment": ({}, N_REAL, {3: 4}),
    "replace": ({}, 0, {3: 4}),
    "accumulate": ({}, N_REAL, {1: 4, 2: 4, 3: 4}),
    "accumulate-subsample": ({"budget": 5}, N_REAL, None),  # 5 rows, split decided by the draw
    "paper-toy": ({}, N_REAL, {1: 1, 2: 2, 3: 4}),  # floor(4 j / 3), j = 1..3
}


def test_every_policy_has_a_documented_rule():
    assert sorted(POLICY_RULES) == POLICY_NAMES


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_policy_provenance_sums_to_training_set(name):
    options = POLICY_RULES.get(name, ({},))[0]
    _, _, _, train, prov = _build(name, **options)
    assert isinstance(prov, Provenance)
    assert sum(n for _, _, n in prov.parts) == len(train)
    assert all(c for g, c, _ in prov.parts if g >= 0)  # the corrected flag is carried through
    assert not any(c for g, c, _ in prov.parts if g < 0)


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if POLICY_RULES.get(n, (None, None, None))[2] is not None])
def test_policy_documented_rule(name):
    options, n_real, kept = POLICY_RULES[name]
    _, real, history, train, prov = _build(name, **options)
    expected_rows = [real.x] if n_real else []
    expected_rows += [history[j - 1].x[:k] for j, k in sorted(kept.items())]
    np.testing.assert_array_equal(train.x, np.concatenate(expected_rows))
    parts = _generation_parts(prov)
    assert parts.pop(-1, 0) == n_real
    assert parts == kept


def test_policy_accumulate_subsample_rule():
    _, real, history, train, prov = _build("accumulate-subsample", budget=5)
    assert len(train) == N_REAL + 5
    np.testing.assert_array_equal(train.x[:N_REAL], real.x)
    chosen = train.x[N_REAL:]
    pool = np.concatenate([h.x for h in history])
    pool_rows = {tuple(r) for r in pool}
    assert all(tuple(r) in pool_rows for r in chosen)
    assert len({tuple(r) for r in chosen}) == 5  # without replacement
    parts = _generation_parts(prov)
    assert parts.pop(-1) == N_REAL
    from_gen = np.bincount(chosen[:, 1].astype(int), minlength=G + 1)
    assert parts == {j: int(from_gen[j]) for j in range(1, G + 1) if from_gen[j]}
    # a different policy stream picks a different subset (some seed among a few must differ)
    policy = POLICIES.create("accumulate-subsample", budget=5)
    picks = {tuple(map(tuple, policy.build(real, history, G, True, rng=_rng(s))[0].x[N_REAL:])) for s in range(5)}
    assert len(picks) > 1


# ---------------------------------------------------------------------- registries
REGISTRIES = {"model": MODELS, "correction": CORRECTIONS, "metric": METRICS, "policy": POLICIES, "task": TASKS}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_registry_unknown_name_lists_known(kind):
    reg = REGISTRIES[kind]
    with pytest.raises(ConfigError) as info:
        reg.create("no-such-plugin-xyz")
    msg = str(info.value)
    assert "no-such-plugin-xyz" in msg
    for known in reg.names():
        assert known in msg


@pytest.mark.parametrize(
    "kind,name", [(k, n) for k in sorted(REGISTRIES) for n in REGISTRIES[k].names()]
)
def test_registry_unknown_option_raises(kind, name):
    with pytest.raises(ConfigError, match="bogus"):
        REGISTRIES[kind].create(name, bogus=1)


def test_registry_close_match_suggestion():
    with pytest.raises(ConfigError, match="gaussian"):
        MODELS.create("gausian")


# ---------------------------------------------------------------------- public surface
PUBLIC_MODULES = ["scloop.models", "scloop.corrections", "scloop.metrics", "scloop.store", "scloop.theory", "scloop.tasks"]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_names_resolve(module):
    mod = importlib.import_module(module)
    assert mod.__all__, f"{module}.__all__ is empty"
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ lists missing names: {missing}"
    assert len(set(mod.__all__)) == len(mod.__all__)
