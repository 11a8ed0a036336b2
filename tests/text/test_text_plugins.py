"""Contract tests for every text plugin, and what each correction and metric computes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scloop
import scloop.text  # noqa: F401
from scloop import Corrected, CorrectionContext, Data, Evaluation, MetricContext
from scloop.core.registry import CORRECTIONS, METRICS, MODELS, TASKS, metric_facts
from scloop.text.encoding import as_strings

TEXT_TASKS = {"pcfg": {"n_eval": 200}, "arithmetic": {"n_eval": 200}}
CORR_TASK = {"text-oracle-mixture": "pcfg", "grammar": "pcfg", "checker": "arithmetic", "compile": "code",
             "biased-verifier": "pcfg", "top-likelihood": "pcfg"}


def _names(reg):
    return [e.name for e in reg.entries() if e.domain == "text"]


def test_every_text_plugin_is_registered_through_the_public_api():
    assert set(_names(TASKS)) == {"pcfg", "arithmetic", "python-stdlib"}
    assert set(_names(MODELS)) == {"ngram", "char-transformer"}
    assert set(_names(CORRECTIONS)) == set(CORR_TASK)
    for reg in (TASKS, MODELS, CORRECTIONS, METRICS):
        for name in _names(reg):
            assert reg.info(name).origin.startswith("scloop.text."), name
    for m in _names(METRICS):
        assert metric_facts(m).higher_is_better in (True, False), m


@pytest.mark.parametrize("name", sorted(TEXT_TASKS))
def test_task_contract(name):
    t = TASKS.create(name, **TEXT_TASKS[name])
    assert t.domain == "text" and t.n_eval == 200
    a = t.real_data(30, np.random.default_rng(0))
    b = t.real_data(30, np.random.default_rng(0))
    assert isinstance(a, Data) and a.x.dtype.kind == "U" and a.x.shape == (30,) and a.y is None
    np.testing.assert_array_equal(a.x, b.x)
    ref = t.reference(np.random.default_rng(1))
    assert len(ref) == 200
    tg = t.target
    assert tg.is_valid(a.x).all() and np.isfinite(tg.log_prob(a.x)).all() and tg.entropy > 0
    np.testing.assert_allclose(tg.length_pmf.sum(), 1.0)


@pytest.fixture(scope="module")
def fitted():
    task = TASKS.create("pcfg", grammar="english", n_eval=300)
    real = task.real_data(500, np.random.default_rng(0))
    model = MODELS.create("ngram", order=5, max_len=80).fit(real, rng=np.random.default_rng(0))
    return task, real, model


def _context(task, real):
    return CorrectionContext(real, task.target, None, "cpu", task.meta)


@pytest.mark.parametrize("model_name", ["ngram", "char-transformer"])
def test_model_contract(model_name, fitted):
    task, real, _ = fitted
    opts = {"max_len": 80} if model_name == "ngram" else {"max_len": 40, "layers": 1, "dim": 16, "heads": 2,
                                                          "steps": 20, "finetune_steps": 5, "threads": 1}
    m = MODELS.create(model_name, **opts).fit(real, rng=np.random.default_rng(0))
    s = m.sample(17, rng=np.random.default_rng(1))
    assert isinstance(s, Data) and s.x.dtype.kind == "U" and s.x.shape == (17,)
    assert m.update(real, rng=np.random.default_rng(2)) is m
    lp = m.log_prob(s.x)
    assert lp.shape == (17,) and np.isfinite(lp).all() and (lp < 0).all()
    st = m.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in st.values())
    m2 = MODELS.create(model_name, **opts).load_state_dict(st)
    np.testing.assert_array_equal(m.sample(9, rng=np.random.default_rng(4)).x, m2.sample(9, rng=np.random.default_rng(4)).x)


@pytest.mark.parametrize("name", sorted(set(CORR_TASK) - {"compile"}))
def test_correction_contract(name, fitted):
    task, real, model = fitted
    if CORR_TASK[name] == "arithmetic":
        task = TASKS.create("arithmetic", n_eval=50)
        real = task.real_data(300, np.random.default_rng(0))
        model = MODELS.create("ngram", order=4, max_len=task.target.max_len).fit(real, rng=np.random.default_rng(0))
    batch = model.sample(200, rng=np.random.default_rng(3))
    c0 = CORRECTIONS.create(name, gamma=0.0).prepare(_context(task, real), rng=np.random.default_rng(0))
    out0 = c0(batch, model=model, rng=np.random.default_rng(5))
    assert isinstance(out0, Corrected)
    if name != "top-likelihood":  # gamma = 0: the identity
        np.testing.assert_array_equal(out0.data.x, batch.x)
    c = CORRECTIONS.create(name, gamma=math.inf).prepare(_context(task, real), rng=np.random.default_rng(0))
    out = c(batch, model=model, rng=np.random.default_rng(5))
    again = c(batch, model=model, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(out.data.x, again.data.x)  # deterministic given the stream
    assert out.data.x.dtype.kind == "U" and out.data.y is None
    for k in ("fraction_changed", "kept_fraction", "diversity_removed", "acceptance", "inspected"):
        assert k in out.diagnostics and math.isfinite(out.diagnostics[k]), k
    assert out.diagnostics["inspected"] == 1.0
    with pytest.raises(scloop.ConfigError):
        CORRECTIONS.create(name, gamma=-1.0)


def test_corrections_do_what_they_say(fitted):
    task, real, model = fitted
    ctx = _context(task, real)
    batch = model.sample(300, rng=np.random.default_rng(3))
    valid0 = task.target.is_valid(batch.x).mean()
    assert valid0 < 0.7
    g = CORRECTIONS.create("grammar", gamma=math.inf, mode="resample", max_rounds=10).prepare(ctx)
    out = g(batch, model=model, rng=np.random.default_rng(0))
    assert task.target.is_valid(out.data.x).all()  # on_fail: drop
    assert math.isclose(out.diagnostics["acceptance"], valid0)
    r = CORRECTIONS.create("grammar", gamma=math.inf, mode="repair").prepare(ctx)
    out = r(batch, model=model, rng=np.random.default_rng(0))
    assert len(out.data) == len(batch) and task.target.is_valid(out.data.x).all()
    assert out.diagnostics["edit_chars"] > 0
    half = CORRECTIONS.create("text-oracle-mixture", gamma=1.0).prepare(ctx)
    out = half(batch, model=model, rng=np.random.default_rng(0))
    assert 0.4 < out.diagnostics["inspected"] < 0.6
    assert task.target.is_valid(out.data.x).mean() > valid0
    bv = CORRECTIONS.create("biased-verifier", gamma=math.inf, quantile=0.5).prepare(ctx)
    out = bv(batch, model=model, rng=np.random.default_rng(0))
    assert (np.char.str_len(out.data.x) <= bv.threshold_).all()
    top = CORRECTIONS.create("top-likelihood", gamma=1.0).prepare(ctx)
    out = top(batch, model=model, rng=np.random.default_rng(0))
    assert len(out.data) == len(batch)
    assert model.log_prob(out.data.x).mean() > model.log_prob(batch.x).mean()


def test_checker_recomputes_answers():
    task = TASKS.create("arithmetic", n_eval=50)
    real = task.real_data(100, np.random.default_rng(0))
    c = CORRECTIONS.create("checker", gamma=math.inf, max_rounds=0, on_fail="keep").prepare(_context(task, real))
    x = Data(as_strings(["1+1=3", "12*3=36", "7-9=", "x"]))
    out = c(x, model=None, rng=np.random.default_rng(0))
    assert out.data.x.tolist() == ["1+1=2", "12*3=36", "7-9=-2", "x"]
    assert out.diagnostics["acceptance"] == 0.25


def test_compile_modes():
    from scloop.text.tasks import CodeTarget

    tg = CodeTarget(["x = 1", "y = f(2)"], "line", 60)
    ctx = CorrectionContext(Data(as_strings(["x = 1"])), tg, None, "cpu", {"target": tg})

    class Echo:
        def sample(self, n, *, rng, conditions=None):
            return Data(as_strings(["z = 3"] * n))

    x = Data(as_strings(["a = (1", "b = 2", "c = [1, 2"]))
    outs = {m: CORRECTIONS.create("compile", gamma=math.inf, mode=m).prepare(ctx)(x, model=Echo(),
                                                                                  rng=np.random.default_rng(0))
            for m in ("filter", "resample", "truncate")}
    assert outs["filter"].data.x.tolist() == ["b = 2"]
    assert outs["resample"].data.x.tolist() == ["z = 3", "b = 2", "z = 3"]
    assert outs["truncate"].data.x.tolist() == ["a", "b = 2", "c"]


def _ev(task, model, samples):
    return Evaluation(model, Data(as_strings(samples)), task.reference(np.random.default_rng(7)), task.target)


@pytest.mark.parametrize("name", ["validity", "rare-mass", "rare-share", "tail-kl", "tail-coverage", "distinct-1", "distinct-2",
                                  "distinct-3", "unique-fraction", "self-bleu", "length-tv", "kl", "cross-entropy",
                                  "perplexity"])
def test_metric_contract(name, fitted):
    task, real, model = fitted
    m = METRICS.create(name)
    assert m.name == name and isinstance(m.needs_samples, bool)
    m.prepare(MetricContext(real, task.reference(np.random.default_rng(7)), None, "cpu", task.meta))
    v = m(_ev(task, model, model.sample(300, rng=np.random.default_rng(0)).x))
    assert isinstance(v, float) and math.isfinite(v)


def test_metric_values(fitted):
    task, real, model = fitted
    truth = task.target.sample(2000, rng=np.random.default_rng(11))
    ctx = MetricContext(real, task.reference(np.random.default_rng(7)), None, "cpu", task.meta)

    def val(name, samples, mdl=model):
        return METRICS.create(name).prepare(ctx)(_ev(task, mdl, samples))

    assert val("validity", truth) == 1.0
    assert abs(val("rare-share", truth) - task.target.rare_mass) < 0.04
    assert val("tail-coverage", truth) == 1.0
    assert val("length-tv", truth) < 0.1
    assert val("self-bleu", ["the dog runs"] * 50) > 0.99
    assert val("self-bleu", truth) < val("self-bleu", list(truth[:20]) * 50)
    assert val("unique-fraction", ["a", "a", "b", "c"]) == 0.75
    assert val("distinct-1", ["a b", "a c"]) == 0.75
    assert val("kl", truth) > 0  # the model is not the truth (ngram KL is always positive)

    class Truth:
        def log_prob(self, x):
            return task.target.log_prob(x)

    ref_lp = task.target.log_prob(ctx.reference.x)
    se = ref_lp.std() / math.sqrt(len(ref_lp))
    assert abs(val("kl", truth, Truth())) < 4 * se  # the Monte-Carlo error of the reference only
    rare = task.target.uses_rare(ctx.reference.x)
    assert val("rare-mass", truth) == val("rare-share", truth)  # every true string is valid
    assert val("tail-kl", truth, Truth()) == 0.0
    assert val("tail-kl", truth) > 0 and val("tail-kl", truth) > val("kl", truth)
    arith = TASKS.create("arithmetic", n_eval=50)
    m = METRICS.create("answer-accuracy").prepare(MetricContext(Data(as_strings(["1+1=2"])), None, None, "cpu",
                                                                arith.meta))
    assert m(Evaluation(None, Data(as_strings(["1+1=2", "1+1=3"])), None, arith.target)) == 0.5
    with pytest.raises(scloop.ConfigError):
        METRICS.create("rare-share").prepare(MetricContext(Data(as_strings(["1+1=2"])), None, None, "cpu", arith.meta))
