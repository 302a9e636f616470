"""Run the real `easysched` CLI as a subprocess, without a data directory chosen for you."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`easysched ARGS...` as a user types it (no --data-dir added)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("EASYSCHED_DATA_DIR", "EASYSCHED_KAFKA")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "easysched_es", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=full_env)


def json_error(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON error object a `--json` failure prints on stdout (and no traceback anywhere)."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    value = json.loads(proc.stdout)
    assert isinstance(value, dict) and set(value) >= {"error", "kind"}, value
    assert isinstance(value["error"], str) and value["error"], value
    return value


def write_flow(path: Path, name: str, command: str = "true", *, tasks: str | None = None) -> Path:
    """A one-SHELL-task workflow file (or the given `tasks:` YAML)."""
    body = tasks if tasks is not None else f"  - {{name: a, type: SHELL, command: {command!r}}}\n"
    path.write_text(f"name: {name}\ntasks:\n{body}")
    return path
