"""TensorBoardTracker: hand-made generation events are written as TensorBoard scalars and read
back offline; end to end through ``scloop.run`` when the public API is there."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")

from scloop.core.types import GenerationRecord, Provenance  # noqa: E402
from scloop.runner.hooks import GenerationEvent, RunInfo  # noqa: E402
from scloop.store.run_store import Unit  # noqa: E402
from scloop.trackers import TensorBoardTracker, read_scalars, unit_tag  # noqa: E402


def _unit(i=0, arm="correction", seed=0, lam=0.5, gamma=1.0, correction="oracle-mixture"):
    return Unit(i, arm, seed, lam, gamma, correction, "paper-toy", 50, "gaussian")


def _event(unit, gen, metrics, *, run_id="r1", seconds=None, status="ok", reason="", n_syn=25, diag=None):
    secs = {"sample": 0.1 * gen, "correct": 0.2, "train": 0.3, "eval": 0.4} if seconds is None else seconds
    rec = GenerationRecord(gen, metrics, 50, n_syn, Provenance(()), secs, status, reason, diag or {})
    return GenerationEvent(run_id, unit, rec)


def _info(path: Path, run_id="r1", state="running"):
    return RunInfo(run_id, path, None, state)


def _series(df, tag):
    sub = df[df.tag == tag].sort_values("step")
    return list(sub.step), list(sub.value)


def test_unit_tag_formats():
    assert unit_tag(_unit()) == "correction_lam0.5_oracle-mixture_g1_seed0"
    assert unit_tag(_unit(arm="baseline", lam=0.0, gamma=0.0, correction="none", seed=3)) == \
        "baseline_lam0_none_g0_seed3"
    assert unit_tag(_unit(gamma=math.inf, correction="kmeans(k=16,seed=0)")) == \
        "correction_lam0.5_kmeans_k-16_seed-0_ginf_seed0"


def test_hand_made_events_round_trip(tmp_path):
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: {name: gaussian}\nn_real: 50\n")
    u0, u1 = _unit(0, seed=0), _unit(1, arm="baseline", lam=0.0, gamma=0.0, correction="none", seed=1)
    tracker = TensorBoardTracker()
    tracker.on_run_start(_info(run_dir))
    for g in range(4):
        tracker.on_generation_end(_event(u0, g, {"w2-gaussian": 1.0 / (g + 1), "mean_error": float(g)}))
        tracker.on_generation_end(_event(u1, g, {"w2-gaussian": 2.0 + g, "mean_error": None},
                                         n_syn=0, diag={"displacement": 0.5} if g == 2 else None))
    tracker.on_run_end(_info(run_dir, state="complete"))

    log_dir = run_dir / "tensorboard"
    assert list(log_dir.glob("events.out.tfevents.*")), "no event file in the default log dir"
    df = read_scalars(log_dir)
    assert set(df.run) == {"."}
    t0, t1 = unit_tag(u0), unit_tag(u1)
    steps, vals = _series(df, f"w2-gaussian/{t0}")
    assert steps == [0, 1, 2, 3]
    assert vals == pytest.approx([1.0, 0.5, 1 / 3, 0.25], rel=1e-6)  # simple_value is float32
    assert _series(df, f"w2-gaussian/{t1}") == ([0, 1, 2, 3], pytest.approx([2.0, 3.0, 4.0, 5.0]))
    assert _series(df, f"mean_error/{t0}")[1] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert all(math.isnan(v) for v in _series(df, f"mean_error/{t1}")[1])  # NULL in SQLite -> NaN
    assert _series(df, f"seconds/sample/{t0}")[1] == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-6)
    for stage in ("correct", "train", "eval"):
        assert _series(df, f"seconds/{stage}/{t0}")[0] == [0, 1, 2, 3]
    assert _series(df, f"n_synthetic/{t0}")[1] == [25.0] * 4
    assert _series(df, f"diagnostics/displacement/{t1}") == ([2], [0.5])


def test_explicit_log_dir_one_folder_per_run_and_text(tmp_path):
    root = tmp_path / "tb"
    tracker = TensorBoardTracker(log_dir=root, log_seconds=False)
    u = _unit()
    for rid in ("run-a", "run-b"):
        tracker.on_run_start(_info(tmp_path / rid, run_id=rid))
        tracker.on_generation_end(_event(u, 0, {"w2-gaussian": 1.0}, run_id=rid))
        tracker.on_generation_end(_event(u, 1, {"w2-gaussian": math.nan}, run_id=rid, status="degenerate",
                                         reason="singular covariance"))
        tracker.on_run_end(_info(tmp_path / rid, run_id=rid, state="complete"))
    df = read_scalars(root)
    assert set(df.run) == {"run-a", "run-b"}
    assert not df.tag.str.startswith("seconds/").any()
    a = df[df.run == "run-a"]
    steps, vals = _series(a, f"w2-gaussian/{unit_tag(u)}")
    assert steps == [0, 1] and vals[0] == 1.0 and math.isnan(vals[1])
    # the degenerate reason is a text entry
    from tensorboardX.proto import event_pb2

    from scloop.trackers.tensorboard import _records

    texts = []
    for f in (root / "run-a").glob("events.out.tfevents.*"):
        for raw in _records(f):
            ev = event_pb2.Event.FromString(raw)
            texts += [(v.tag, ev.step, v.tensor.string_val[0].decode()) for v in ev.summary.value
                      if v.tensor.string_val]
    assert (f"status/{unit_tag(u)}/text_summary", 1, "degenerate: singular covariance") in texts


def test_event_without_run_start_needs_log_dir(tmp_path):
    with pytest.raises(ValueError, match="log_dir"):
        TensorBoardTracker().on_generation_end(_event(_unit(), 0, {"w2-gaussian": 1.0}))
    t = TensorBoardTracker(log_dir=tmp_path)
    t.on_generation_end(_event(_unit(), 0, {"w2-gaussian": 1.0}, run_id="x"))
    t.close()
    assert len(read_scalars(tmp_path)) > 0


def test_resume_purges_recomputed_steps(tmp_path):
    run_dir = tmp_path / "r1"
    u = _unit()
    tag = f"w2-gaussian/{unit_tag(u)}"
    t = TensorBoardTracker(log_seconds=False)
    t.on_run_start(_info(run_dir))
    for g in range(5):  # killed after generation 4 ...
        t.on_generation_end(_event(u, g, {"w2-gaussian": float(g)}))
    t.on_run_end(_info(run_dir, state="failed"))
    t = TensorBoardTracker(log_seconds=False)  # ... resumed from the checkpoint of generation 2
    t.on_run_start(_info(run_dir))
    for g in range(3, 6):
        t.on_generation_end(_event(u, g, {"w2-gaussian": 10.0 + g}))
    t.on_run_end(_info(run_dir, state="complete"))
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert _series(read_scalars(run_dir / "tensorboard"), tag) == ([0, 1, 2, 3, 4, 5],
                                                                   [0.0, 1.0, 2.0, 13.0, 14.0, 15.0])


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX` fail
    with pytest.raises(ImportError, match=r"pip install 'scloop\[tensorboard\]'"):
        TensorBoardTracker()


def test_import_is_lazy():
    import subprocess

    code = "import sys, scloop.trackers; print('tensorboardX' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _has_public_run() -> bool:
    import scloop

    return hasattr(scloop, "run")


@pytest.mark.skipif(not _has_public_run(), reason="scloop.run (public API) not available yet")
def test_end_to_end_gaussian_paper(tmp_path):
    import scloop

    tracker = TensorBoardTracker()
    run = scloop.run("gaussian-paper", seeds=2, overrides=["n_generations=3"], out=tmp_path, callbacks=[tracker])
    log_dir = Path(run.path) / "tensorboard"
    df = read_scalars(log_dir)
    table = run.table()
    table = table[table.metric == "w2-gaussian"]
    assert len(table) > 0
    n_units = len(table.groupby(["arm", "lambda", "correction", "gamma", "seed"]))
    w2 = df[df.tag.str.startswith("w2-gaussian/")]
    assert w2.tag.nunique() == n_units
    assert sorted(set(w2.step)) == sorted(set(table.generation))
    # every value in the run's own table is in TensorBoard at the same step (float32)
    for _, row in table.sample(n=min(20, len(table)), random_state=0).iterrows():
        u = Unit(0, row["arm"], int(row["seed"]), float(row["lambda"]), float(row["gamma"]), row["correction"],
                 row["policy"], int(row["n_real"]), row["task"])
        hit = w2[(w2.tag == f"w2-gaussian/{unit_tag(u)}") & (w2.step == int(row["generation"]))]
        assert len(hit) == 1
        assert hit.value.iloc[0] == pytest.approx(float(row["value"]), rel=1e-6, abs=1e-7)
    assert df.tag.str.startswith("seconds/train/").any()


@pytest.mark.skipif(not _has_public_run(), reason="scloop.run (public API) not available yet")
def test_end_to_end_generic_engine_with_workers(tmp_path):
    """Records written by worker processes reach the tracker in this process."""
    import scloop

    tracker = TensorBoardTracker(log_dir=tmp_path / "tb")
    run = scloop.run("gaussian-paper", seeds=2, overrides=["n_generations=3", "engine=generic", "gamma=[0,1]",
                                                           "correction=oracle-mixture"],
                     out=tmp_path / "runs", callbacks=[tracker], workers=2)
    df = read_scalars(tmp_path / "tb")
    assert set(df.run) == {run.run_id}
    table = run.table(metric="w2-gaussian", include_timing=False)
    w2 = df[df.tag.str.startswith("w2-gaussian/")]
    assert len(w2) == len(table) == 2 * 2 * 4  # 2 gammas x 2 seeds x generations 0..3
    assert sorted(w2.value) == pytest.approx(sorted(table.value), rel=1e-6, abs=1e-7)
