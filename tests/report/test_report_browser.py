"""The HTML report of a real run opened in headless Chromium: every <img> loads (complete,
naturalWidth > 0) and the page logs no error (console.error, an uncaught exception, a rejected
promise, a resource that fails to load).

A copy of ``report/index.html`` beside it gets a probe script as the first element of <head>
(so that it sees everything the page does); on window load it makes lazy images eager, waits
until every image has settled and writes its findings as JSON into a <pre id="scloop-probe">,
which ``--dump-dom`` returns.  Chromium's own console log (stderr) is checked for uncaught
errors as well.  A deliberately broken copy checks that the probe does see failures.

Skips when Chromium is not installed; fails under CI (``CI=true``), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """<script>
(function () {
  var errors = [];
  function note(kind, msg) { errors.push(kind + ': ' + msg); }
  var original = console.error;
  console.error = function () {
    note('console.error', Array.prototype.map.call(arguments, String).join(' '));
    return original.apply(console, arguments);
  };
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      note('resource', t.tagName.toLowerCase() + ' ' + (t.getAttribute('src') || t.getAttribute('href')));
    } else {
      note('uncaught', e.message + ' at ' + e.filename + ':' + e.lineno);
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) { note('unhandled rejection', String(e.reason)); });
  function settle(img) {
    return new Promise(function (resolve) {
      if (img.complete) { resolve(); return; }
      img.addEventListener('load', resolve);
      img.addEventListener('error', resolve);
    });
  }
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.images);
    imgs.forEach(function (img) { img.loading = 'eager'; });
    Promise.all(imgs.map(settle)).then(function () {
      setTimeout(function () {  // after the page's own load handlers
        var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                         .map(function (i) { return i.getAttribute('src'); });
        var out = document.createElement('pre');
        out.id = 'scloop-probe';
        out.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: errors,
                                          widths: imgs.map(function (i) { return i.naturalWidth; })});
        document.body.appendChild(out);
      }, 0);
    });
  });
})();
</script>"""


def _probe_copy(index: Path, name: str, *, extra_body: str = "") -> Path:
    """A copy of ``index`` in the same folder (relative figure paths stay valid) with the probe."""
    text = index.read_text()
    head = re.search(r"<head[^>]*>", text)
    text = text[: head.end()] + PROBE + text[head.end():] if head else PROBE + text
    if extra_body:
        text = text.replace("</body>", extra_body + "</body>", 1)
    out = index.with_name(name)
    out.write_text(text)
    return out


def _open(chromium: str, page: Path, profile: Path) -> tuple[dict, str, list[str]]:
    """Load ``page`` headless; the probe's findings, the <body> tag and Chromium's console lines."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1280,2000",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    found = re.search(r"<pre id=\"scloop-probe\">(.*?)</pre>", r.stdout, re.S)
    assert found, f"the probe did not report (rc {r.returncode}); stdout tail:\n{r.stdout[-1500:]}\n" \
                  f"stderr tail:\n{r.stderr[-3000:]}"
    body = re.search(r"<body[^>]*>", r.stdout)
    return json.loads(html.unescape(found.group(1))), body.group(0) if body else "", console


@pytest.fixture(scope="module")
def chromium(require_tool) -> str:
    return require_tool("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """``scloop run gaussian-paper --seeds 2 --set n_generations=5``, then ``scloop report`` on it."""
    root = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if k != "SCLOOP_RUNS"}
    scloop = [sys.executable, "-m", "scloop"]
    run = subprocess.run(scloop + ["run", "gaussian-paper", "--seeds", "2", "--set", "n_generations=5",
                                   "--out", str(root), "--run-id", "tiny", "--workers", "1", "--quiet"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rep = subprocess.run(scloop + ["report", str(root / "tiny")], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert rep.returncode == 0, rep.stderr[-3000:]
    index = root / "tiny" / "report" / "index.html"
    assert index.is_file()
    return index


def test_report_images_load_and_no_console_error(chromium, report, tmp_path):
    n_img = len(re.findall(r"<img\b", report.read_text()))
    assert n_img >= 3  # a curve per metric at least
    probe, body, console = _open(chromium, _probe_copy(report, ".probe-index.html"), tmp_path / "profile")
    assert probe["images"] == n_img, probe
    assert probe["broken"] == [] and min(probe["widths"]) > 0, probe
    assert probe["errors"] == [], probe
    assert not [ln for ln in console if "Uncaught" in ln], console
    # the page's own check ran and agrees (its banner stays hidden)
    assert f'data-images="{n_img}"' in body and 'data-broken-images="0"' in body, body


def test_probe_sees_a_broken_image_and_a_console_error(chromium, report, tmp_path):
    """The control: the same page with a missing figure, a console.error and a throwing script."""
    bad = _probe_copy(report, ".probe-broken.html", extra_body="<img src='fig/no-such-figure.png'>"
                      "<script>console.error('deliberate'); window.addEventListener('load', function () "
                      "{ undefinedFunction(); });</script>")
    probe, body, console = _open(chromium, bad, tmp_path / "profile")
    assert probe["broken"] == ["fig/no-such-figure.png"], probe
    kinds = sorted(e.split(":", 1)[0] for e in probe["errors"])
    assert kinds == ["console.error", "resource", "uncaught"], probe
    assert any("deliberate" in e for e in probe["errors"]) and any("undefinedFunction" in e for e in probe["errors"])
    assert any("Uncaught" in ln for ln in console), console
    assert 'data-broken-images="1"' in body, body
