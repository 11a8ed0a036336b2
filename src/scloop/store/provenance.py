"""Provenance of a run or sweep: which code, libraries, machine and command produced it.

Written to ``provenance.json`` beside the results; it never enters the results table (the
export stays a pure function of config and seeds).  Layout::

    {"created_at": ..., "scloop_version": ..., "git_commit": ..., "git_dirty": ...,
     "python": ..., "packages": {"numpy": ..., "torch": ..., ...}, "device": ...,
     "platform": ..., "started_at": ..., "ended_at": ..., "state": ..., "command": ...,
     "sessions": [<the same keys for every earlier start>]}

The top-level keys describe the latest start (a resumed run has several).
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scloop.store.atomic import atomic_write_text

PACKAGES = ("numpy", "scipy", "scikit-learn", "pandas", "torch", "diffusers", "mujoco", "ray", "pot")
SESSION_KEYS = ("scloop_version", "git_commit", "git_dirty", "python", "packages", "device", "platform",
                "started_at", "ended_at", "state", "command")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _git() -> tuple[str | None, bool | None]:
    """Commit and dirty flag of the checkout scloop is imported from (None when installed from
    a wheel or git is missing)."""
    import scloop

    root = Path(scloop.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty if commit else None


def _device(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    torch = sys.modules.get("torch")  # importing torch only to say "cpu" would cost seconds
    if torch is not None and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})" if requested in ("auto", "cuda") else requested
    return "cpu" if requested == "auto" else requested


def session(device: str = "auto") -> dict[str, Any]:
    from scloop import __version__

    commit, dirty = _git()
    return {
        "scloop_version": __version__, "git_commit": commit, "git_dirty": dirty,
        "python": platform.python_version(), "packages": _versions(), "device": _device(device),
        "platform": f"{platform.platform()} ({platform.machine()}, {__import__('os').cpu_count()} CPUs)",
        "started_at": now(), "ended_at": None, "state": "running",
        "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else "python",
    }


def read(directory: Path) -> dict[str, Any]:
    p = Path(directory) / "provenance.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except (ValueError, OSError):
        return {}


def start(directory: Path, device: str = "auto") -> dict[str, Any]:
    """Record a new start of the run/sweep in ``directory``; earlier starts move to ``sessions``."""
    old = read(directory)
    new = session(device)
    sessions = list(old.get("sessions", []))
    if old.get("started_at"):
        sessions.append({k: old.get(k) for k in SESSION_KEYS})
    doc = {"created_at": old.get("created_at") or new["started_at"], **new, "sessions": sessions}
    atomic_write_text(Path(directory) / "provenance.json", json.dumps(doc, indent=2))
    return doc


def finish(directory: Path, state: str) -> None:
    doc = read(directory)
    if not doc:
        return
    doc.update(ended_at=now(), state=state)
    atomic_write_text(Path(directory) / "provenance.json", json.dumps(doc, indent=2))
