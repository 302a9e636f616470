"""The code checks the project holds itself to: ruff everywhere, mypy --strict on the pure core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", "easysched_es", "projections", "tests", "bench")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_passes_mypy_strict() -> None:
    proc = _run("mypy", "--strict", "easysched_es/core")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_imports_nothing_from_the_edges() -> None:
    """Dependencies point inward: the core may import msgspec and the standard library only."""
    banned = (
        "easysched_es.log",
        "easysched_es.runtime",
        "easysched_es.debug",
        "easysched_es.cli",
        "projections",
        "time",
        "random",
        "uuid",
        "os",
        "socket",
        "subprocess",
        "threading",
    )
    for path in (ROOT / "easysched_es" / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                assert not any(module == b or module.startswith(b + ".") for b in banned), f"{path.name}: {stripped}"
