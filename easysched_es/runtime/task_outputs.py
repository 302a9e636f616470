"""Collect a finished SHELL attempt's output parameters from its log and its output file.

The parsing and the limits are the core's (`core/outputs.py`): the worker only reads, keeps
the data bounded, and reports what it found; the fold decides whether it is acceptable.
"""

from __future__ import annotations

from pathlib import Path

from easysched_es.core import outputs

_CHUNK = 1 << 20
_MARKER = outputs.MARKER.encode()


def _log_lines_with_marker(log_path: Path) -> list[str]:
    """The lines of the task log that contain `${setValue(`, scanning in chunks (logs can be large)."""
    found: list[str] = []
    try:
        f = log_path.open("rb")
    except OSError:
        return found
    with f:
        tail = b""
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            lines, tail = data[:cut], data[cut:]
            if _MARKER in lines:
                found.extend(ln.decode(errors="replace") for ln in lines.split(b"\n") if _MARKER in ln)
            if len(tail) > outputs.MAX_TOTAL * 2:
                # One very long line: look at it now, keep only its end for the next chunk.
                if _MARKER in tail:
                    found.append(tail.decode(errors="replace"))
                tail = tail[-len(_MARKER):]
        if _MARKER in tail:
            found.append(tail.decode(errors="replace"))
    return found


def collect(log_path: Path, output_path: Path) -> dict[str, str]:
    """Output parameters set by `${setValue(k=v)}` in the log, then by the `$EASYSCHED_OUTPUT` file."""
    collector = outputs.Collector()
    for line in _log_lines_with_marker(log_path):
        collector.add(outputs.from_output_line(line))
    try:
        with output_path.open("rb") as f:
            text = f.read(outputs.MAX_TOTAL * 2 + 1).decode(errors="replace")
    except OSError:
        text = ""
    collector.add(outputs.from_output_file(text))
    return collector.values
