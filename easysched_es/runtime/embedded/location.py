"""Where the embedded data directory is, without importing the log (the CLI needs it on every call)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = ".easysched"


def resolve(data_dir: str | Path | None) -> Path:
    """The data directory: the argument, else $EASYSCHED_DATA_DIR, else ./.easysched."""
    chosen = data_dir or os.environ.get("EASYSCHED_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).absolute()
