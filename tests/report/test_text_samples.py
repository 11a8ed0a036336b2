"""The report shows a text run's generated strings per generation and unit, escaped."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lark")

import scloop  # noqa: E402
from scloop.store.atomic import save_npz  # noqa: E402


def test_report_has_an_escaped_table_of_generated_strings(tmp_path):
    run = scloop.run("text-quick", seeds=1, overrides=["n_generations=2", "correction=[text-oracle-mixture]",
                                                       "gamma=[1]", "n_real=200", "task.n_eval=100",
                                                       "metrics=[kl, validity]"], out=tmp_path, workers=1)
    kept = np.load(run.path / "samples" / "unit000001" / "gen0000.npz")["text"]
    assert kept.dtype.kind == "U" and len(kept) > 0
    save_npz(run.path / "samples" / "unit000001" / "gen0002.npz", {"text": np.array(["<script>x</script>"])})
    page = run.report().read_text()
    assert "generated strings" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert str(kept[0]).replace("&", "&amp;") in page  # a real sample of generation 0 is shown
