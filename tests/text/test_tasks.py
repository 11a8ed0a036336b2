"""Text tasks: the arithmetic target's exact probabilities, the code corpus split."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import scloop
import scloop.text  # noqa: F401
from scloop.core.registry import TASKS
from scloop.text import code


def test_arithmetic_exact_distribution():
    t = TASKS.create("arithmetic", operators="+-*/", min_digits=1, max_digits=2)
    tg = t.target
    support = []
    for op in tg.ops:
        for a, b in itertools.product(range(100), range(100)):
            if op == "/" and b == 0:
                continue
            c = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a // b}[op]()
            support.append(f"{a}{op}{b}={c}")
    p = np.exp(tg.log_prob(support))
    assert math.isclose(p.sum(), 1.0, rel_tol=1e-12)
    assert math.isclose(tg.entropy, float(-(p * np.log(p)).sum()), rel_tol=1e-12)
    pmf = np.zeros(tg.max_len + 1)
    np.add.at(pmf, [len(s) for s in support], p)
    np.testing.assert_allclose(tg.length_pmf, pmf, atol=1e-14)
    assert tg.log_prob(["1+1=3", "01+1=2", "1+1"]).tolist() == [-math.inf] * 3
    s = t.real_data(500, np.random.default_rng(0)).x
    assert s.dtype.kind == "U" and tg.is_correct(s).all() and np.isfinite(tg.log_prob(s)).all()
    assert tg.fix("12+30=7") == "12+30=42" and tg.fix("12+=3") is None
    assert tg.is_valid(["1+1=3"])[0] and not tg.is_correct(["1+1=3"])[0]


def _fake_stdlib(root, n_files=60):
    for i in range(n_files):
        sub = root / ("pkg" if i % 3 == 0 else "") / f"mod{i}.py"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(f"import os\nX{i} = {i}\n\ndef f{i}(a, b):\n    y = a + b * {i}\n    return y\n")
    (root / "site-packages").mkdir(exist_ok=True)
    (root / "site-packages" / "third.py").write_text("Z = 1\n")
    (root / "broken.py").write_text("def (:\n")


def test_code_split_deterministic_and_leak_free(tmp_path, monkeypatch):
    root = tmp_path / "lib"
    _fake_stdlib(root)
    monkeypatch.setattr(code, "stdlib_root", lambda: root)
    monkeypatch.setenv("SCLOOP_TEXT_CACHE", str(tmp_path / "cache"))
    code.corpus.cache_clear()
    try:
        c1 = code.corpus("line", 100, 4, 0.3)
        files = code.stdlib_files(root)
        assert "site-packages/third.py" not in files
        assert set(c1["train_files"]).isdisjoint(c1["heldout_files"])
        assert sorted(c1["train_files"] + c1["heldout_files"]) == sorted(f for f in files if f != "broken.py")
        assert 0 < len(c1["heldout_files"]) < len(c1["train_files"])
        # every unit comes from its half's files only
        held_ids = {f.split("mod")[1].split(".")[0] for f in c1["heldout_files"]}
        for u in c1["train"]:
            if u.startswith("X"):
                assert u.split()[0][1:] not in held_ids
        for u in c1["heldout"]:
            if u.startswith("X"):
                assert u.split()[0][1:] in held_ids
        # the split depends on the path only: the same after a rebuild, and a file keeps its
        # side when another file disappears
        code.corpus.cache_clear()
        c2 = code.corpus("line", 100, 4, 0.3)
        assert c2 == c1
        assert [code.is_heldout(f, 0.3) for f in files] == [code.is_heldout(f, 0.3) for f in reversed(files)][::-1]
        fns = code.corpus("function", 400, 4, 0.3)
        assert all(u.startswith("def f") for u in fns["train"] + fns["heldout"])
    finally:
        code.corpus.cache_clear()


@pytest.mark.slow
def test_real_stdlib_corpus():
    c = code.corpus("line", 100, 8, 0.1)
    assert c["n_files"] > 1000
    assert len(c["train"]) > 100_000 and len(c["heldout"]) > 10_000
    assert set(c["train_files"]).isdisjoint(c["heldout_files"])
    t = TASKS.create("python-stdlib", unit="line", n_eval=500)
    rng = np.random.default_rng(0)
    real, ref = t.real_data(300, rng), t.reference(rng)
    assert t.target.is_valid(real.x).all() and t.target.is_valid(ref.x).all()
    assert set(real.x.tolist()) <= set(c["train"])


def test_unit_validity():
    assert code.is_valid_unit("x = f(a,\n      b)", "line")
    assert not code.is_valid_unit("x = (", "line")
    assert code.is_valid_unit("def f(x):\n    return x", "function")
    assert not code.is_valid_unit("def f(x):\n    return x\nx = 1", "function")
    assert code.longest_valid_prefix("def f(x):\n    return x\n  oops(", "function") == "def f(x):\n    return x"
    assert code.longest_valid_prefix("x = 1 +", "line") == "x = 1"


def test_pcfg_task_facts():
    t = TASKS.create("pcfg", grammar="arithmetic", n_eval=50)
    assert t.domain == "text" and t.meta["target"] is t.target
    x = t.real_data(20, np.random.default_rng(0)).x
    assert x.shape == (20,) and x.dtype.kind == "U"
    with pytest.raises(scloop.ConfigError):
        TASKS.create("pcfg", grammar="klingon")


def test_python_stdlib_task_contract(tmp_path, monkeypatch):
    """The code task on a small synthetic library (the real one: the slow test above)."""
    import math

    from scloop import CorrectionContext
    from scloop.core.registry import CORRECTIONS, MODELS

    root = tmp_path / "lib"
    _fake_stdlib(root, n_files=200)
    monkeypatch.setattr(code, "stdlib_root", lambda: root)
    monkeypatch.setenv("SCLOOP_TEXT_CACHE", str(tmp_path / "cache"))
    code.corpus.cache_clear()
    try:
        t = TASKS.create("python-stdlib", unit="line", min_len=4, holdout=0.3, n_eval=20)
        assert t.domain == "text" and t.meta["kind"] == "code"
        rng = np.random.default_rng(0)
        real, ref = t.real_data(50, rng), t.reference(rng)
        assert real.x.dtype.kind == "U" and len(ref) == 20 and t.target.is_valid(real.x).all()
        model = MODELS.create("ngram", order=4, max_len=100).fit(real, rng=rng)
        ctx = CorrectionContext(real, t.target, None, "cpu", t.meta)
        batch = model.sample(40, rng=rng)
        for mode in ("filter", "resample", "truncate"):
            c0 = CORRECTIONS.create("compile", gamma=0.0, mode=mode).prepare(ctx)
            np.testing.assert_array_equal(c0(batch, model=model, rng=rng).data.x, batch.x)
            out = CORRECTIONS.create("compile", gamma=math.inf, mode=mode).prepare(ctx)(batch, model=model, rng=rng)
            assert t.target.is_valid(out.data.x).all()
            assert math.isfinite(out.diagnostics["kept_fraction"])
        with pytest.raises(scloop.ConfigError):
            TASKS.create("python-stdlib", unit="class")
    finally:
        code.corpus.cache_clear()
