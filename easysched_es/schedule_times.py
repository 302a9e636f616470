"""Times a person types for schedules: `--start 2026-12-01`, `--catchup-window 1d`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from easysched_es.core.zones import zone

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_window(text: str | int) -> int:
    """A catch-up window: `latest` or 0 (the latest missed fire), `unlimited` or -1, or a duration
    like `90s`, `15m`, `2h`, `1d`, `1w`, `1h30m` (ms). Raises ValueError."""
    if isinstance(text, int):
        if text < -1:
            raise ValueError(f"catch-up window {text} must be -1, 0 or a positive number of ms")
        return text
    t = text.strip().lower()
    if t in ("latest", "0", "one"):
        return 0
    if t in ("unlimited", "all", "-1"):
        return -1
    pos, total = 0, 0
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t or total <= 0:
        raise ValueError(f"catch-up window {text!r}: use latest, unlimited, or a duration such as 90s, 15m, 2h, 1d")
    return total


def parse_bound(text: str | None, tz: str, *, end: bool = False) -> int | None:
    """`--start`/`--end`: an ISO date (midnight in the schedule's zone; an end date includes its whole
    day) or an ISO date-time (with or without offset; without, in the schedule's zone), as epoch ms."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or date-time (2026-12-01, 2026-12-01T02:00:00Z)") from None
    date_only = len(text.strip()) == 10
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    if end and date_only:
        dt = dt + timedelta(days=1) - timedelta(milliseconds=1)
    return int(dt.timestamp() * 1000)
