"""The run store's record files: commit, truncation, reading back, damaged files; and the sweep
store's results files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.store import RunStore, SweepStore, open_results
from scloop.store.atomic import CorruptFile
from scloop.store.columnar import Coded, RecordBatch
from scloop.store.run_store import Unit


@pytest.fixture(autouse=True)
def _files(monkeypatch):
    """Every batch to a record file (small ones would go to SQLite rows)."""
    import scloop.store.run_store as rs

    monkeypatch.setattr(rs, "ROWWISE_BELOW", 0)


def _store(tmp_path, n_units: int = 4) -> RunStore:
    s = RunStore(tmp_path / "r")
    s.create("task: gaussian\n", [Unit(u, "correction", u // 2, 0.5, [0.0, math.inf][u % 2], "oracle-mixture",
                                       "augment", 50, "gaussian") for u in range(n_units)])
    return s


def _batch(gens, units, metric_fn=lambda u, g: u + g / 10) -> RecordBatch:
    b = RecordBatch()
    for g in gens:
        u = np.asarray(units)
        b.add(unit=u, generation=g, status="ok", reason="", n_real=50, n_synthetic=25 * g,
              provenance='[[-1,false,50]]', seconds={"sample": 0.5, "train": 0.25},
              metrics={"w2-gaussian": [metric_fn(x, g) for x in u], **({"extra": u * 0.0} if g else {})})
    return b


def test_batch_round_trip_and_order(tmp_path):
    s = _store(tmp_path)
    s.write_batch(_batch([2, 3], [3, 1]))
    s.write_batch(_batch([0, 1], [0, 1, 2, 3]))
    df = s.table()
    keys = list(zip(df.seed, df.gamma, df.generation, df.metric))
    # units in order, generations in order, metric names sorted; the stage seconds after all
    body = df[~df.metric.str.endswith("_seconds")]
    assert list(zip(body.generation[:3], body.metric[:3])) == [(0, "w2-gaussian"), (1, "extra"), (1, "w2-gaussian")]
    assert df.metric.iloc[-4:].tolist() == ["sample_seconds", "correct_seconds", "train_seconds", "eval_seconds"]
    assert len(body) == 4 * 1 + 4 * 2 + 2 * 2 * 2 and len(df) == len(body) + 4 * (4 + 4 + 2 + 2)
    assert len(set(keys)) == len(keys)
    assert math.isinf(df.gamma.max())
    assert s.max_generation() == 3 and s.last_generation(3) == (3, "ok") and s.last_generation(2) == (1, "ok")
    assert df.dtypes["seed"] == np.int64 and df.dtypes["value"] == np.float64 and str(df.dtypes["metric"]) == "str"


def test_nan_is_kept_as_a_row_without_value_and_absent_metrics_have_no_row(tmp_path):
    s = _store(tmp_path, 2)
    b = RecordBatch()
    b.add(unit=np.array([0, 1]), generation=0, status=Coded(np.array([0, 1]), ["ok", "degenerate"]),
          reason=Coded(np.array([0, 1]), ["", "why"]), n_real=50, n_synthetic=0, provenance="[]",
          seconds={}, metrics={"a": [1.0, np.nan]})
    b.add(unit=np.array([0]), generation=1, status="ok", reason="", n_real=50, n_synthetic=0, provenance="[]",
          seconds={}, metrics={"b": [2.0]})
    s.write_batch(b)
    rows = [(r[3], r[9], r[10], r[11], r[12]) for r in s.tidy_rows(include_timing=False)]
    assert rows == [(0, 0, "a", 1.0, "ok"), (0, 1, "b", 2.0, "ok"), (0, 0, "a", None, "degenerate")]
    rec = s.records()
    assert rec.reason.tolist() == ["", "", "why"]


def test_truncate_rewrites_only_what_it_must(tmp_path):
    s = _store(tmp_path)
    s.write_batch(_batch(range(0, 5), [0, 1, 2, 3]))
    s.write_batch(_batch(range(5, 10), [0, 1, 2, 3]))
    files = sorted(p.name for p in s.records_dir.iterdir())
    s.truncate_after(7, units=[1, 2])
    left = s.load_records()
    by = {u: sorted(left.generation[left.unit == u].tolist()) for u in range(4)}
    assert by[0] == by[3] == list(range(10)) and by[1] == by[2] == list(range(8))
    after = sorted(p.name for p in s.records_dir.iterdir())
    assert files[0] in after or files[1] in after  # the first file was not touched
    assert len(after) == 2
    cut = np.array([-1, 2, 20, 4])
    s.truncate_each(cut)
    left = s.load_records()
    assert sorted(set(left.unit.tolist())) == [1, 2, 3]
    assert left.generation[left.unit == 1].max() == 2 and left.generation[left.unit == 3].max() == 4
    assert left.generation[left.unit == 2].max() == 7
    s.truncate_after(-1)
    assert len(s.load_records()) == 0 and s.max_generation() == -1
    assert not any(s.records_dir.iterdir())


def test_files_no_transaction_listed_are_ignored_and_removed(tmp_path):
    s = _store(tmp_path)
    s.write_batch(_batch([0], [0, 1]))
    stray = s.records_dir / "seg-stray.parquet"
    stray.write_bytes(b"half a file")
    assert len(s.table()) == 2 * 1 + 2 * 4
    s.remove_unlisted_files()
    assert not stray.exists() and len(list(s.records_dir.iterdir())) == 1


def test_damaged_record_file_is_a_named_error(tmp_path):
    s = _store(tmp_path)
    s.write_batch(_batch([0], [0, 1]))
    f = next(s.records_dir.iterdir())
    f.write_bytes(b"garbage")
    with pytest.raises(CorruptFile, match=f"{f.name}: unreadable results file"):
        s.table()
    f.unlink()
    with pytest.raises(CorruptFile, match="is missing"):
        s.table()


def test_sweep_results_files_replace_on_reingest_and_read_in_position_order(tmp_path):
    sw = SweepStore(tmp_path / "sw")
    sw.register([("b", {"x": 1}, "task: gaussian\n"), ("a", {"x": 2}, "task: gaussian\n")])
    for rid, off in (("a", 100.0), ("b", 0.0)):
        s = RunStore(sw.run_dir(rid))
        s.create("task: gaussian\n", [Unit(u, "correction", u, 0.5, 1.0, "oracle-mixture", "augment", 50, "gaussian")
                                      for u in range(2)])
        s.write_batch(_batch([0, 1], [1, 0], lambda u, g: off + u + g))
        s.close()
        assert sw.ingest(rid) == 2 * 2 * 1 + 2 * 1 + 2 * 2 * 4
    first = sorted(p.name for p in sw.results_dir.iterdir())
    sw.ingest("a")
    assert len(list(sw.results_dir.iterdir())) == 2 and sorted(p.name for p in sw.results_dir.iterdir()) != first
    df = open_results(sw.path)
    assert df.run_id.iloc[0] == "b" and df.run_id.iloc[-1] == "a" and df.x.tolist()[:1] == [1]
    body = df[df.run_id == "b"]
    assert body.metric.iloc[:6].tolist() == ["correct_seconds", "eval_seconds", "sample_seconds", "train_seconds",
                                             "w2-gaussian", "correct_seconds"]
    assert df[(df.metric == "w2-gaussian") & (df.run_id == "a")].value.min() >= 100
    only = open_results(sw.path, metric="w2-gaussian", generations=[1])
    assert len(only) == 4 and set(only.generation) == {1}
    assert not open_results(sw.path, include_timing=False).metric.str.endswith("_seconds").any()


def test_small_batches_go_to_sqlite_rows_and_read_the_same(tmp_path, monkeypatch):
    import scloop.store.run_store as rs

    a = _store(tmp_path / "a")
    a.write_batch(_batch(range(0, 4), [0, 1, 2, 3]))
    monkeypatch.setattr(rs, "ROWWISE_BELOW", 10**9)
    b = _store(tmp_path / "b")
    b.write_batch(_batch(range(0, 4), [0, 1, 2, 3]))
    assert not b.records_dir.exists() and b.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 16
    assert a.table().equals(b.table()) and a.records().equals(b.records())
