"""Contract suite for the image plugins (``domain="image"``): corrections, metrics and the
shared classifier.

Data: sklearn's 8x8 digits scaled to [0, 1], float32 (n, 1, 8, 8), split by a fixed
permutation into 800 "real training" images, 400 held-out reference images and 597 spare
real images used as well-behaved "samples".  The two classifiers (metric features, seed 0;
verifier, seed 1) train once per process (~2 s each) and are memoised.
"""

from __future__ import annotations

import contextlib
import io
import math
import os

import numpy as np
import pytest

from scloop.core.registry import CORRECTIONS, METRICS, ConfigError
from scloop.plugins import load_plugins
from scloop.core.types import Corrected, CorrectionContext, Data, Evaluation, MetricContext

load_plugins()

CORRECTION_NAMES = CORRECTIONS.names("image")
METRIC_NAMES = METRICS.names("image")
GAMMAS = (0.0, 1.0, math.inf)
PROJECTIONS = [n for n in CORRECTION_NAMES if n in ("kmeans", "nearest-real")]
# corrections that map each image to one output image of the same label: the projections and
# the plugins registered for any data (ot-real)
SAME_SIZE = PROJECTIONS + [n for n in CORRECTION_NAMES if CORRECTIONS.domain(n) == "any"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def split():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = _rng(0).permutation(len(x))
    tr, ref, spare = perm[:800], perm[800:1200], perm[1200:]
    return Data(x[tr], y[tr]), Data(x[ref], y[ref]), Data(x[spare], y[spare])


@pytest.fixture(scope="module")
def real(split):
    return split[0]


@pytest.fixture(scope="module")
def reference(split):
    return split[1]


@pytest.fixture(scope="module")
def spare(split):
    return split[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _noise(n: int, seed: int = 5) -> np.ndarray:
    return _rng(seed).random((n, 1, 8, 8)).astype(np.float32)


class FakeModel:
    """Stands in for a class-conditional generator: ``sample`` returns real images of the
    requested labels (drawn from a pool with the given rng) and counts its calls."""

    def __init__(self, pool: Data) -> None:
        self.pool = pool
        self.calls = 0
        self.drawn = 0

    def sample(self, n: int, *, rng: np.random.Generator, conditions: np.ndarray | None = None) -> Data:
        self.calls += 1
        self.drawn += n
        labels = rng.integers(10, size=n) if conditions is None else np.asarray(conditions)
        idx = np.array([rng.choice(np.flatnonzero(self.pool.y == c)) for c in labels], dtype=int)
        return Data(self.pool.x[idx], labels.astype(np.int64))


def _batch(spare: Data, n: int = 200, noise_share: float = 0.0) -> Data:
    """n spare real images, the last ``noise_share`` of them replaced by uniform noise."""
    x, y = spare.x[:n].copy(), spare.y[:n].copy()
    k = int(round(noise_share * n))
    if k:
        x[n - k :] = _noise(k)
    return Data(x, y)


def _prepared(name: str, real: Data, cache_dir, rng_seed: int = 11, **options):
    corr = CORRECTIONS.create(name, **options)
    return corr.prepare(CorrectionContext(real, cache_dir=cache_dir, device="cpu"), rng=_rng(rng_seed))


def _rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(len(x), -1)


# ---------------------------------------------------------------------- corrections
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_shape_dtype_labels(name, gamma, real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    out = _prepared(name, real, cache_dir, gamma=gamma)(batch, model=FakeModel(real), rng=_rng(2))
    assert isinstance(out, Corrected)
    x, y = out.data.x, out.data.y
    assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == batch.x.shape[1:]
    assert y is not None and len(y) == len(x) <= len(batch)
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0
    if name in SAME_SIZE:
        assert len(x) == len(batch)
        np.testing.assert_array_equal(y, batch.y)
    else:  # verifier: an output row equal to an input row keeps that row's label
        label_of = {r.tobytes(): lab for r, lab in zip(_rows(batch.x), batch.y)}
        for r, lab in zip(_rows(x), y):
            if r.tobytes() in label_of:
                assert label_of[r.tobytes()] == lab


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_deterministic(name, gamma, real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    a = _prepared(name, real, cache_dir, gamma=gamma)(batch, model=FakeModel(real), rng=_rng(2))
    b = _prepared(name, real, cache_dir, gamma=gamma)(batch, model=FakeModel(real), rng=_rng(2))
    np.testing.assert_array_equal(a.data.x, b.data.x)
    np.testing.assert_array_equal(a.data.y, b.data.y)
    assert dict(a.diagnostics) == dict(b.diagnostics)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_diagnostics(name, gamma, real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    out = _prepared(name, real, cache_dir, gamma=gamma)(batch, model=FakeModel(real), rng=_rng(2))
    diag = dict(out.diagnostics)
    expected = {"displacement", "fraction_changed", "distinct_before", "distinct_after"}
    expected |= {"pairwise_before", "pairwise_after"}
    if name == "verifier":
        expected |= {"acceptance_rate", "kept_fraction", "rounds", "resampled"}
    assert expected <= set(diag)
    assert all(isinstance(v, float) and math.isfinite(v) for v in diag.values())
    assert 0.0 <= diag["fraction_changed"] <= 1.0
    assert diag["distinct_before"] == len(batch)  # 160 real + 40 noise images, all different
    assert diag["distinct_after"] == len(np.unique(_rows(out.data.x), axis=0))
    if name in SAME_SIZE:  # displacement describes the output actually returned
        moved = np.sqrt(((out.data.x - batch.x).reshape(len(batch), -1) ** 2).sum(axis=1))
        assert diag["fraction_changed"] == pytest.approx(float((moved > 0).mean()))


@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_gamma_zero_is_identity(name, real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    model = FakeModel(real)
    out = _prepared(name, real, cache_dir, gamma=0.0)(batch, model=model, rng=_rng(2))
    np.testing.assert_array_equal(out.data.x, batch.x)
    np.testing.assert_array_equal(out.data.y, batch.y)
    assert out.diagnostics["fraction_changed"] == 0.0 and out.diagnostics["displacement"] == 0.0
    assert model.calls == 0


def test_correction_gamma_one_replaces_about_half(real, spare, cache_dir):
    batch = _batch(spare, n=597)
    out = _prepared("kmeans", real, cache_dir, gamma=1.0)(batch, rng=_rng(2))
    assert 0.4 < out.diagnostics["fraction_changed"] < 0.6


def test_kmeans_gamma_inf_outputs_centroids_of_own_class(real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    corr = _prepared("kmeans", real, cache_dir, gamma=math.inf, k=16)
    out = corr(batch, rng=_rng(2))
    for r, c in zip(_rows(out.data.x), out.data.y):
        assert (corr.prototypes_[int(c)] == r).all(axis=1).any()
    assert all(len(p) == 16 for p in corr.prototypes_.values())
    assert out.diagnostics["distinct_after"] <= 160 < out.diagnostics["distinct_before"]
    assert out.diagnostics["pairwise_after"] < out.diagnostics["pairwise_before"]


def test_kmeans_caps_k_at_distinct_class_size(real, cache_dir):
    few = real.take(np.flatnonzero(real.y < 2)[:6])  # a handful of images of classes 0 and 1
    few = Data(np.concatenate([few.x, few.x]), np.concatenate([few.y, few.y]))  # duplicated
    corr = _prepared("kmeans", few, cache_dir, k=16)
    for c, protos in corr.prototypes_.items():
        assert len(protos) == len(np.unique(_rows(few.x[few.y == c]), axis=0))


def test_kmeans_seed_option_fixes_prototypes(real, cache_dir):
    """``seed`` fixes k-means' random_state whatever prepare's rng; None draws it from the rng."""

    def protos(rng_seed: int, **options):
        p = _prepared("kmeans", real, cache_dir, rng_seed=rng_seed, k=4, **options).prototypes_
        return np.concatenate([p[c] for c in sorted(p)])

    np.testing.assert_array_equal(protos(1, seed=0), protos(2, seed=0))
    np.testing.assert_array_equal(protos(1), protos(1))
    assert not np.array_equal(protos(1), protos(2))


def test_nearest_real_outputs_real_images_of_own_class(real, spare, cache_dir):
    batch = _batch(spare, noise_share=0.2)
    out = _prepared("nearest-real", real, cache_dir)(batch, rng=_rng(2))
    for r, c in zip(_rows(out.data.x), out.data.y):
        assert (_rows(real.x[real.y == c]) == r).all(axis=1).any()
    # a real training image is its own nearest real image
    same = _prepared("nearest-real", real, cache_dir)(real.take(slice(0, 50)), rng=_rng(2))
    np.testing.assert_array_equal(same.data.x, real.x[:50])


@pytest.mark.parametrize("name", SAME_SIZE)
def test_projection_rejects_unknown_class(name, real, spare, cache_dir):
    no_nines = real.take(real.y != 9)
    batch = _batch(spare)
    assert (batch.y == 9).any()
    with pytest.raises(ConfigError, match="class"):
        _prepared(name, no_nines, cache_dir)(batch, rng=_rng(2))


@pytest.mark.parametrize("name", CORRECTION_NAMES)
def test_correction_needs_labels_and_prepare(name, real, spare, cache_dir):
    with pytest.raises(ConfigError, match="prepare"):
        CORRECTIONS.create(name)(_batch(spare), model=FakeModel(real), rng=_rng(0))
    with pytest.raises(ConfigError, match="label"):
        _prepared(name, real, cache_dir)(Data(spare.x[:20]), model=FakeModel(real), rng=_rng(0))


@pytest.mark.parametrize(
    "name,options",
    [
        ("kmeans", {"k": 0}),
        ("kmeans", {"k": 2.5}),
        ("kmeans", {"n_init": 0}),
        ("kmeans", {"n_init": "many"}),
        ("kmeans", {"seed": -1}),
        ("verifier", {"tau": 1.5}),
        ("verifier", {"on_reject": "keep"}),
        ("verifier", {"max_rounds": -1}),
        ("verifier", {"classifier_seed": "one"}),
    ]
    + [(n, {"gamma": g}) for n in CORRECTION_NAMES for g in (-1.0, float("nan"))],
)
def test_correction_bad_options(name, options):
    key = next(iter(options))
    with pytest.raises(ConfigError, match=key):
        CORRECTIONS.create(name, **options)


def test_verifier_accepts_real_rejects_noise(real, spare, cache_dir):
    corr = _prepared("verifier", real, cache_dir, on_reject="drop")
    assert corr.classifier_.digest != _prepared_metric("fid", real, None, cache_dir).classifier_.digest
    ok = corr(_batch(spare, n=300), rng=_rng(1))
    assert ok.diagnostics["acceptance_rate"] > 0.85
    noise = Data(_noise(200), np.arange(200) % 10)
    bad = corr(noise, rng=_rng(1))
    assert bad.diagnostics["acceptance_rate"] < 0.2
    assert len(bad.data) < 0.2 * len(noise)  # "drop" shrinks the output
    assert bad.diagnostics["kept_fraction"] == pytest.approx(len(bad.data) / len(noise))
    assert bad.diagnostics["rounds"] == 0.0 and bad.diagnostics["resampled"] == 0.0


def _is_subsequence(short: np.ndarray, long: np.ndarray) -> bool:
    it = iter(long.tolist())
    return all(any(v == w for w in it) for v in short.tolist())


def test_verifier_resamples_rejected_from_model(real, spare, cache_dir):
    corr = _prepared("verifier", real, cache_dir, on_reject="resample", max_rounds=3)
    batch = _batch(spare, n=100, noise_share=0.3)  # 70 real images, then 30 noise images
    model = FakeModel(spare)
    out = corr(batch, model=model, rng=_rng(1))
    diag = out.diagnostics
    assert model.calls == diag["rounds"] >= 1 and diag["rounds"] <= 3
    assert diag["resampled"] == model.drawn >= 30
    assert diag["kept_fraction"] > 0.9  # the replacements are real images, so they pass
    assert _is_subsequence(out.data.y, batch.y)  # labels stay with their slots
    changed = ~(_rows(out.data.x) == _rows(batch.x[: len(out.data)])).all(axis=1) if len(out.data) == 100 else None
    if changed is not None:  # nothing dropped: the noise slots were all replaced
        assert changed[70:].all()
    p = corr.classifier_.predict_proba(out.data.x)[np.arange(len(out.data)), out.data.y]
    assert (p >= 0.9).mean() > 0.95


def test_verifier_resample_needs_model(real, cache_dir):
    corr = _prepared("verifier", real, cache_dir)
    with pytest.raises(ConfigError, match="model"):
        corr(Data(_noise(10), np.arange(10)), model=None, rng=_rng(0))


# ---------------------------------------------------------------------- metrics
def _prepared_metric(name: str, real: Data, reference: Data | None, cache_dir, **options):
    return METRICS.create(name, **options).prepare(MetricContext(real, reference, cache_dir, "cpu"))


def _ev(samples: Data, reference: Data) -> Evaluation:
    return Evaluation(None, samples, reference)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_finite_float(name, real, reference, spare, cache_dir):
    m = _prepared_metric(name, real, reference, cache_dir)
    assert m.needs_samples and m.name == name
    value = m(_ev(spare, reference))
    assert isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_deterministic(name, real, reference, spare, cache_dir):
    a = _prepared_metric(name, real, reference, cache_dir)(_ev(spare, reference))
    b = _prepared_metric(name, real, reference, cache_dir)(_ev(Data(spare.x.copy(), spare.y.copy()), reference))
    assert a == b


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_requires_prepare(name, reference, spare):
    with pytest.raises(ConfigError, match="prepare"):
        METRICS.create(name)(_ev(spare, reference))


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_nan_samples_give_nan(name, real, reference, spare, cache_dir):
    x = spare.x.copy()
    x[3] = np.nan
    assert math.isnan(_prepared_metric(name, real, reference, cache_dir)(_ev(Data(x, spare.y), reference)))


@pytest.mark.parametrize("name", [n for n in METRIC_NAMES if n in ("class_accuracy", "diversity")])
def test_metric_needs_labels(name, real, reference, spare, cache_dir):
    with pytest.raises(ConfigError, match="label"):
        _prepared_metric(name, real, reference, cache_dir)(_ev(Data(spare.x), reference))


def test_fid_real_much_smaller_than_noise_and_grows_with_noise(real, reference, spare, cache_dir):
    fid = _prepared_metric("fid", real, reference, cache_dir)
    values = []
    for sd in (0.0, 0.25, 0.5):
        x = np.clip(spare.x + sd * _rng(3).standard_normal(spare.x.shape), 0, 1).astype(np.float32)
        values.append(fid(_ev(Data(x, spare.y), reference)))
    pure_noise = fid(_ev(Data(_noise(len(spare)), spare.y), reference))
    assert values[0] < values[1] < values[2] < pure_noise
    assert pure_noise > 10 * values[0]


def test_fid_matches_scipy_formula(real, reference, spare, cache_dir):
    """Independent oracle: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy."""
    from scipy import linalg

    fid = _prepared_metric("fid", real, reference, cache_dir)
    space = fid.space_
    f1, f2 = space.handle.features(spare.x), space.handle.features(reference.x)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid(_ev(spare, reference)) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_prdc_matches_prdc_package():
    import prdc

    from scloop.metrics.images import knn_radii, prdc_from_radii

    real_f = _rng(0).standard_normal((300, 8))
    fake_f = _rng(1).standard_normal((250, 8)) + 0.3
    with contextlib.redirect_stdout(io.StringIO()):
        expected = prdc.compute_prdc(real_f, fake_f, nearest_k=3)
    got = prdc_from_radii(real_f, knn_radii(real_f, 3), fake_f, 3)
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-12), key


def test_precision_real_high_noise_low(real, reference, spare, cache_dir):
    """k-NN precision of uniform noise is far below that of real images.  It is not ~0 on 8x8
    digits (measured ~0.2): outlying real images have large k-NN balls that catch some noise
    features; density, which discounts such balls, is ~0."""
    prec = _prepared_metric("precision", real, reference, cache_dir)
    dens = _prepared_metric("density", real, reference, cache_dir)
    noise = Data(_noise(len(spare)), spare.y)
    assert prec(_ev(spare, reference)) > 0.8
    assert prec(_ev(noise, reference)) < 0.35
    assert dens(_ev(noise, reference)) < 0.2 < 0.8 < dens(_ev(spare, reference))


def test_diversity_of_repeated_images_is_zero(real, reference, spare, cache_dir):
    div = _prepared_metric("diversity", real, reference, cache_dir)
    first = np.array([np.flatnonzero(spare.y == c)[0] for c in range(10)])
    labels = np.repeat(np.arange(10), 20)
    repeated = Data(spare.x[first[labels]], labels)
    assert div(_ev(repeated, reference)) == pytest.approx(0.0, abs=1e-12)
    assert 0.6 < div(_ev(spare, reference)) < 1.5


def test_class_accuracy_real_high_shuffled_low(real, reference, spare, cache_dir):
    acc = _prepared_metric("class_accuracy", real, reference, cache_dir)
    assert acc(_ev(spare, reference)) > 0.9
    assert acc(_ev(Data(spare.x, (spare.y + 1) % 10), reference)) < 0.1


def test_metrics_share_one_forward_pass(real, reference, spare, cache_dir):
    metrics = [_prepared_metric(n, real, reference, cache_dir) for n in METRIC_NAMES]
    space = metrics[0].space_
    assert all(m.space_ is space for m in metrics)
    calls = []
    handle = space.handle

    class Counting:
        def __getattr__(self, attr):
            return getattr(handle, attr)

        def features_and_proba(self, x):
            calls.append(len(x))
            return handle.features_and_proba(x)

    space.handle = Counting()
    try:
        samples = Data(spare.x.copy(), spare.y.copy())  # a new array: not memoised yet
        for m in metrics:
            m(_ev(samples, reference))
    finally:
        space.handle = handle
    assert calls == [len(samples)]  # reference embedded in prepare, samples once


def test_metric_uses_context_reference_when_evaluation_has_none(real, reference, spare, cache_dir):
    fid = _prepared_metric("fid", real, reference, cache_dir)
    assert fid(Evaluation(None, spare, None)) == fid(_ev(spare, reference))


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_prdc_bad_k(k):
    with pytest.raises(ConfigError, match="k"):
        METRICS.create("precision", k=k)


# ---------------------------------------------------------------------- classifier and cache
def test_classifier_cache_written_once_and_reused(real, reference, tmp_path):
    from scloop.nets.classifier import clear_memo

    clear_memo()
    first = _prepared_metric("fid", real, reference, tmp_path).classifier_
    files = list(tmp_path.glob("classifier-*.pt"))
    assert first.source == "trained" and files == [first.path] and first.digest in first.path.name
    mtime = os.stat(first.path).st_mtime_ns
    clear_memo()
    second = _prepared_metric("recall", real, reference, tmp_path).classifier_
    assert second.source == "file" and second.digest == first.digest
    assert os.stat(first.path).st_mtime_ns == mtime and list(tmp_path.glob("*")) == files  # no temp files left
    third = _prepared_metric("coverage", real, reference, tmp_path).classifier_
    assert third.source == "memo"
    x = reference.x[:64]
    np.testing.assert_array_equal(first.features(x), second.features(x))


def test_classifier_deterministic_and_leaves_global_rng_alone(real):
    import torch

    from scloop.nets.classifier import clear_memo, train_classifier

    small = real.take(slice(0, 200))
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = train_classifier(small, seed=3, epochs=2, device="cpu")
    clear_memo()
    b = train_classifier(small, seed=3, epochs=2, device="cpu")
    assert a.source == b.source == "trained" and a.digest == b.digest
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])
    c = train_classifier(small, seed=4, epochs=2, device="cpu")
    assert c.digest != a.digest
    f = a.features(small.x[:5])
    assert f.shape == (5, 84) and f.dtype == np.float64 and (f > 0).all() and (f < 1).all()
    p = a.predict_proba(small.x[:5])
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1.0)
    assert a.extractor(torch.from_numpy(small.x[:5])).shape == (5, 84)


def test_classifier_handles_28x28():
    from scloop.nets.classifier import train_classifier

    x = _rng(0).random((40, 1, 28, 28)).astype(np.float32)
    h = train_classifier(Data(x, np.arange(40) % 10), epochs=1, device="cpu")
    assert h.features(x[:3]).shape == (3, 84)


@pytest.mark.parametrize("options", [{"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}, {"device": "tpu"}])
def test_classifier_bad_options(options, real):
    from scloop.nets.classifier import train_classifier

    with pytest.raises(ConfigError, match=next(iter(options))):
        train_classifier(real.take(slice(0, 20)), **options)


def test_resolve_device():
    import torch

    from scloop.nets import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")
