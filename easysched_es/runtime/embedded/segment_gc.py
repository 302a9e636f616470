"""Deleting old segments of the embedded log once a kept snapshot covers them (part of `easysched gc`).

A segment of the commands stream may go only when it lies entirely before the read position of
the OLDEST kept snapshot (so every kept snapshot stays a valid start), and a segment of the
events stream only when it lies entirely before the events position that snapshot records (so
`verify` from it still finds its batches). The active (last) segment of a stream is never
deleted, and deletion goes oldest first without gaps, so what remains is one contiguous log
starting at the base of its first kept segment (readers report "retention deleted the log
before offset N"). Beyond that, segments written within `keep_days` (by mtime) and the newest
`keep_bytes` of each stream are kept: the defaults keep everything newer than the instance
retention period, so young installs lose nothing. Nor does a segment go that the DuckDB
projection has not read yet (a projector stopped for a while would otherwise lose that stretch
of history): its position comes from the running service, else from the projection file (the same query); a
file held by a process that serves no API keeps every segment, since its position is unknown.

Settings: `gc --keep-days/--keep-bytes`, else `EASYSCHED_LOG_KEEP_DAYS` (default: the retention
period, 30 days) and `EASYSCHED_LOG_KEEP_BYTES` (default 0); `gc --ignore-projection`.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from easysched_es.core.retention import DEFAULT_RETENTION_DAYS
from easysched_es.runtime.embedded.datadir import DataDir

DAY_MS = 86_400_000


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set it to a number of days/bytes or unset it") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} is negative; set it to 0 or more")
    return value


def log_keep_settings() -> tuple[float, int]:
    """(days, bytes) of log to keep beyond what the oldest kept snapshot covers, from the environment."""
    return (_env_float("EASYSCHED_LOG_KEEP_DAYS", DEFAULT_RETENTION_DAYS),
            int(_env_float("EASYSCHED_LOG_KEEP_BYTES", 0)))


# How far the projection has read, as committed with its rows (`projection_offsets`).
_READ_SQL = "SELECT stream, min(next_offset) FROM projection_offsets WHERE partition = 0 GROUP BY stream"


def projection_read(data: DataDir) -> tuple[dict[str, int] | None, str]:
    """How far the projection has read each stream ({} of offsets; None: there is no projection),
    and a note when that is unknown (then every stream counts as unread, so nothing is deleted).

    Asked of the running service (`/query`), else of the projection file itself."""
    from projections.client import find_service
    from projections.errors import ProjectionError

    service = find_service(data.root)
    if service is not None:
        try:
            rows = service.query(_READ_SQL)["rows"]
        except (ProjectionError, KeyError, TypeError) as exc:
            return {}, f"the projection service did not say how far it has read ({exc})"
    elif not data.duckdb.exists():
        return None, ""
    else:
        import duckdb

        try:
            with duckdb.connect(str(data.duckdb), read_only=True) as conn:
                rows = conn.execute(_READ_SQL).fetchall()
        except duckdb.Error as exc:
            return {}, f"the projection file is held or unreadable, so how far it has read is unknown ({exc})"
    return {str(stream): int(offset) for stream, offset in rows}, ""


def _segments(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for p in directory.glob("*.seg") if directory.is_dir() else []:
        if len(p.stem) == 20 and p.stem.isdigit():
            out.append((int(p.stem), p))
    return sorted(out)


def _deletable(directory: Path, limit: int, keep_days: float, keep_bytes: int, now_ms: int) -> list[Path]:
    """Segments of `directory` entirely before `limit`, older than the keep window, oldest first."""
    segs = _segments(directory)
    if len(segs) < 2:
        return []
    end = segs[-1][0] + segs[-1][1].stat().st_size
    horizon = now_ms - keep_days * DAY_MS
    out = []
    for (_base, path), (nxt, _) in itertools.pairwise(segs):
        # A segment ends where the next one begins (the next is named after that offset).
        if nxt > limit or end - nxt < keep_bytes or path.stat().st_mtime * 1000 > horizon:
            break
        out.append(path)
    return out


def log_segments_gc(
    data: DataDir, *, dry_run: bool, now_ms: int, keep_days: float | None = None, keep_bytes: int | None = None,
    ignore_projection: bool = False,
) -> dict[str, Any]:
    """Delete (or, with `dry_run`, list) the segments the oldest kept snapshot makes unnecessary
    and the projection has read (unless `ignore_projection`)."""
    days, size = log_keep_settings()
    days = days if keep_days is None else keep_days
    size = size if keep_bytes is None else keep_bytes
    metas = data.snapshot_store().metas()
    read, unknown = (None, "") if ignore_projection else projection_read(data)
    report: dict[str, Any] = {"segments": [], "bytes": 0, "kept_from": {}, "reason": "", "projection_read": read}
    if not metas:
        report["reason"] = "no kept snapshot: the whole log is needed"
        return report
    oldest = metas[0]
    if oldest.position < 0:
        report["reason"] = f"the oldest snapshot (offset {oldest.offset}) has no sidecar: nothing deleted"
        return report
    plans = [(data.root / "commands", oldest.position)]
    if oldest.events_position is not None:
        plans.append((data.root / "events", oldest.events_position))
    held = []
    for directory, limit in plans:
        if read is not None and read.get(directory.name, 0) < limit:
            limit = read.get(directory.name, 0)
            held.append(f"{directory.name} from offset {limit}")
        for path in _deletable(directory, limit, days, size, now_ms):
            report["bytes"] += path.stat().st_size
            report["segments"].append(str(path))
            if not dry_run:
                path.unlink()
        left = _segments(directory)
        report["kept_from"][directory.name] = left[0][0] if left else 0
    if held:
        report["reason"] = (unknown or f"the DuckDB projection has not read {', '.join(held)} yet")
        report["reason"] += ": those segments are kept (`gc --ignore-projection` deletes them anyway)"
    return report
