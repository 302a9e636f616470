"""`status --since --limit`: the newest instances first, narrowed after the workflow/state filters."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from easysched_es.debug.views import iso

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_since(text: str, now_ms: int) -> int:
    """`1d`, `12h`, `30m`, `2w` ago, or an ISO-8601 time with a zone, as epoch ms (ValueError if neither)."""
    m = _DURATION.match(text.strip())
    if m:
        return now_ms - int(m.group(1)) * _UNIT_MS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: use a duration like 30m, 12h, 1d, 2w or an ISO-8601 time") from None
    if when.tzinfo is None:
        raise ValueError(f"--since {text!r}: give the time zone (for example 2024-03-04T10:00:00Z)")
    return round(when.timestamp() * 1000)


def narrow(view: list[dict[str, Any]], since_ms: int | None, limit: int | None) -> list[dict[str, Any]]:
    """Instances started at or after `since_ms`, newest first, at most `limit` of them."""
    if since_ms is None and limit is None:
        return view
    keep = view
    if since_ms is not None:
        since = iso(since_ms) or ""
        keep = [i for i in keep if (i.get("started_at") or "") >= since]  # one ISO format: text order is time order
    keep = sorted(keep, key=lambda i: i.get("started_at") or "", reverse=True)
    return keep if limit is None else keep[:limit]
