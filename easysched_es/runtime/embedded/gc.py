"""`easysched gc`: apply the retention policy now, then remove the files retired instances left.

The decision is the fold's (`ApplyRetention`, core/retention.py); this module only appends
the command and deletes, for every instance no longer in the hot state, its task logs and its
claim/run directory. A live or retained instance's files are never touched: a directory is
removed only when its instance is absent from the state the fold has after the command.
Old log segments that the oldest kept snapshot covers go too (`segment_gc.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from easysched_es.core import commands as c
from easysched_es.core.events import InstancesRetired
from easysched_es.core.retention import due_for_retirement
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.segment_gc import log_segments_gc
from easysched_es.runtime.fold import load_state


def _orphans(data: DataDir, hot: set[str], also: frozenset[str] | set[str] = frozenset()) -> list[Path]:
    """Per-instance directories (runs/, logs/) whose instance is not hot (or is in `also`)."""
    found = []
    for parent in (data.runs, data.logs):
        if not parent.is_dir():
            continue
        for d in sorted(parent.iterdir()):
            instance = unquote(d.name)
            if d.is_dir() and (instance not in hot or instance in also):
                found.append(d)
    return found


def gc(
    data: DataDir, *, dry_run: bool = False, now: int | None = None, keep_days: float | None = None,
    keep_bytes: int | None = None, ignore_projection: bool = False,
) -> dict[str, Any]:
    """Apply retention as of `now` (default: the wall clock) and delete what retired instances left;
    the `keep_*` and `ignore_projection` settings are those of `log_segments_gc`."""
    now = wall_ms() if now is None else now

    def segments(dry: bool) -> dict[str, Any]:
        return log_segments_gc(data, dry_run=dry, now_ms=now, keep_days=keep_days, keep_bytes=keep_bytes,
                               ignore_projection=ignore_projection)
    if dry_run:
        state = load_state(data)
        retiring = due_for_retirement(state, now)
        dirs = _orphans(data, set(state.instances), set(retiring))
        log = segments(True)
        return {"dry_run": True, "instances": retiring, "directories": [str(d) for d in dirs], "log": log}
    verdict = Client(data.root).submit(c.ApplyRetention(now=now))
    retired = [i for ev in verdict.events if isinstance(ev, InstancesRetired) for i in ev.instances]
    hot = set(load_state(data).instances)
    dirs = _orphans(data, hot)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    log = segments(False)
    return {"dry_run": False, "offset": verdict.offset, "instances": retired, "directories": [str(d) for d in dirs],
            "log": log}
