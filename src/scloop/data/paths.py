"""Where scloop looks for real data."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$SCLOOP_DATA_DIR`` if set, else ``~/.cache/scloop/data``."""
    env = os.environ.get("SCLOOP_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scloop" / "data"
