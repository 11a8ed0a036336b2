"""`scloop report`: a static page whose every referenced file exists; in headless Chromium
(when installed) every image loads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scloop.core.registry import ConfigError
from scloop.report.html import first_crossing, write_report
from scloop.sweep import load_sweep, run_sweep


def _refs(html: str) -> list[str]:
    return re.findall(r"(?:src|href)='([^'#][^']*)'", html)


@pytest.fixture(scope="module")
def report(tmp_path_factory, make_sweep) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    spec = make_sweep(root / "spec", gens=5, seeds=3, grid="lambda: [0.5, 1.0]\n  policy: [augment, replace]")
    s = run_sweep(load_sweep(str(spec)), out=root / "out", jobs=1, quiet=True)
    return s.path, write_report(s.path)


def test_every_referenced_file_exists(report):
    sweep_dir, index = report
    assert index == sweep_dir / "report" / "index.html"
    html = index.read_text()
    refs = _refs(html)
    imgs = re.findall(r"<img src='([^']+)'", html)
    assert len(imgs) >= 8
    missing = [r for r in refs if not (index.parent / r).is_file()]
    assert not missing, missing
    assert not any(r.startswith(("http:", "https:", "//")) for r in refs)  # offline: nothing from the network
    for section in ("Runs", "Metrics vs generation", "Phase diagrams", "Compute per stage", "Resolved configs"):
        assert section in html
    # the facet is the policy (it varies across runs); both appear
    assert "policy = augment" in html and "policy = replace" in html


def test_report_of_a_single_run_and_bad_input(report, tmp_path):
    sweep_dir, _ = report
    run_dir = next(p for p in (sweep_dir / "runs").iterdir() if not p.name.startswith("."))
    index = write_report(run_dir)
    assert all((index.parent / r).is_file() for r in _refs(index.read_text()))
    with pytest.raises(ConfigError, match="neither"):
        write_report(tmp_path)
    with pytest.raises(ConfigError, match="no-such-metric"):
        write_report(sweep_dir, thresholds={"no-such-metric": 1.0})


def test_cli_report(report):
    sweep_dir, _ = report
    r = subprocess.run([sys.executable, "-m", "scloop", "report", str(sweep_dir), "--threshold", "w2-gaussian=0.5"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "> 0.5" in (sweep_dir / "report" / "index.html").read_text() or "&gt; 0.5" in \
        (sweep_dir / "report" / "index.html").read_text()
    # the verdict tables also land as Markdown and CSV, and the console summarises them
    rep = sweep_dir / "report"
    import pandas as pd

    v = pd.read_csv(rep / "verdicts.csv")
    assert len(v) and set(v["verdict"]) <= {"helps", "hurts", "no detectable effect"}
    md = (rep / "verdicts.md").read_text()
    assert all(f"## {m}" in md for m in v["metric"].unique())
    assert md.count("\n- ") == len(v)  # one sentence per comparison
    assert "verdicts (corrector vs no correction)" in r.stdout
    for m, g in v.groupby("metric"):
        assert f"hurts {int((g.verdict == 'hurts').sum())}" in r.stdout.split(m, 1)[1].splitlines()[0]
    r = subprocess.run([sys.executable, "-m", "scloop", "report", str(sweep_dir), "--threshold", "w2=abc"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--threshold" in r.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian packages chromium, chromium-driver)")
def test_every_image_loads_in_headless_chromium(report, tmp_path):
    _, index = report
    n_img = len(re.findall(r"<img ", index.read_text()))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tmp_path / 'chr'}",
           "--virtual-time-budget=15000", "--dump-dom", index.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", r.stdout)
    assert body, r.stderr[-2000:]
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("data-images") == str(n_img), attrs
    assert attrs.get("data-broken-images") == "0", attrs


def test_first_crossing():
    g = np.arange(1, 6)
    assert first_crossing(g, np.array([1, 1, 3, 1, 1.0]), 2.0, False) == 3
    assert np.isnan(first_crossing(g, np.ones(5), 2.0, False))
    assert first_crossing(g, np.array([1, 0.9, 0.4, 1, 1]), 0.5, True) == 3
    assert first_crossing(g, np.array([1, np.nan, 1, 1, 1]), 2.0, False) == 2
