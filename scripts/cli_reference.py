"""Regenerate the ``--help`` blocks of docs/cli.md from the installed CLI.

Each ``## scloop COMMAND`` (or ``### scloop GROUP COMMAND``) section of docs/cli.md holds one
```text block that starts with ``Usage: scloop ...``; this script replaces those blocks with the
command's current help, rendered as on a 100-column terminal without boxes.

    python scripts/cli_reference.py          # rewrite docs/cli.md
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
BLOCK = re.compile(r"(^#{2,3} scloop (?P<cmd>[a-z -]+?)\n.*?```text\n)(?P<help>Usage: scloop .*?)(\n```)",
                   re.S | re.M)


def help_text(command: list[str]) -> str:
    os.environ["TYPER_USE_RICH"] = "0"
    os.environ["COLUMNS"] = "100"
    import typer.core
    from typer.testing import CliRunner

    from scloop.cli import app

    # typer reads TYPER_USE_RICH when it is first imported: in a process that imported it
    # before (the test suite), switch the boxes off here
    before, typer.core.HAS_RICH = typer.core.HAS_RICH, False
    try:
        res = CliRunner().invoke(app, [*command, "--help"], terminal_width=100, prog_name="scloop")
    finally:
        typer.core.HAS_RICH = before
    if res.exit_code != 0:
        raise SystemExit(f"scloop {' '.join(command)} --help exited {res.exit_code}: {res.output}")
    return "\n".join(line.rstrip() for line in res.output.strip("\n").splitlines())


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + help_text(m.group("cmd").split()) + m.group(4), text)


def main(argv: list[str]) -> int:
    old = DOC.read_text()
    new = render(old)
    if "--check" in argv:
        if new != old:
            print(f"{DOC} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
