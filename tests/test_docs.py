"""The user docs match the code: the CLI reference is the CLI's own help, and nothing in the
docs points outside the repository or at the project's internal bookkeeping."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "examples" / "README.md"]


def test_cli_reference_is_the_current_help(monkeypatch):
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.DOC.read_text()
    assert mod.render(text) == text, "docs/cli.md is out of date: run python scripts/cli_reference.py"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_do_not_point_outside_the_repository(doc):
    text = doc.read_text()
    bad = [m.group(0) for m in re.finditer(r"PAPER_NOTES|_PROBE\.md|\.\./shared|[Ii]ssue #\d+|\bstop \d+\b", text)]
    assert not bad, f"{doc.name}: {bad[:5]}"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
