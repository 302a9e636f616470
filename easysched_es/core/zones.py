"""IANA time zones from the pinned `tzdata` package, never from the machine's own zone files.

`zoneinfo.ZoneInfo(key)` prefers the operating system's database, so two machines with
different zone rules would fold the same log into different fire times. The fold loads
every zone from the `tzdata` package pinned in pyproject.toml instead (immutable package
data, like the module code itself), so replay is the same everywhere that package version
is installed; each fire's nominal time is also recorded in UTC in its event, so a machine
whose rules differ is reported by `verify`.
"""

from __future__ import annotations

import functools
import importlib.resources
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo

import tzdata  # type: ignore[import-untyped]

TZDATA_VERSION: str = tzdata.IANA_VERSION


class ZoneError(ValueError):
    """An unknown or malformed time zone name."""


@functools.cache
def zone_names() -> frozenset[str]:
    """Every zone key the pinned tzdata package holds."""
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(text.split())


@functools.lru_cache(maxsize=256)
def zone(key: str) -> tzinfo:
    """The zone named `key` (e.g. `Asia/Shanghai`; `UTC` is the fast path). Raises ZoneError."""
    if key in ("UTC", "Etc/UTC", "Z"):
        return UTC
    if key not in zone_names():
        lower = key.lower()
        close = sorted(n for n in zone_names() if n.lower() == lower or n.lower().endswith("/" + lower))
        hint = f" (did you mean {close[0]}?)" if close else " (an IANA name such as Europe/Paris or Asia/Shanghai)"
        raise ZoneError(f"unknown time zone {key!r}{hint}")
    resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*key.split("/"))
    with resource.open("rb") as f:
        return ZoneInfo.from_file(f, key=key)
