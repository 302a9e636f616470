"""Client verdicts in O(1): read the master's decision for one offset from the events log's tail.

While `easysched run` holds the master lock, the master folds every command and writes its
events batch with the command's offset. A client that appended a command at offset N reads
the events log from where it ended just before the append until the batch of N shows up: the
cost does not grow with the log. Only when no master runs (or it stops before deciding) does
the client fold the log itself (snapshot + tail); the command is durable in the log either
way, and `easysched run` will decide it exactly as that fold did.
"""

from __future__ import annotations

import time
from pathlib import Path

from easysched_es.core.codec import decode_batch
from easysched_es.core.events import Event
from easysched_es.log.base import Stream
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import pid_alive

PENDING_NOTE = ("no `easysched run` is running on {root}: the command is durable in the log and takes "
                "effect when `easysched run` starts (verdict computed by folding the log)")


def master_pid(data: DataDir) -> int | None:
    """The pid of the running master of a data directory, or None.

    Read from the master lock file (the holder writes its pid, a clean release clears it) and
    checked alive, so no lock is taken: a client never delays a master's start.
    """
    try:
        text = data.master_lock.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid_alive(pid) else None


def await_decision(
    events: Stream, offset: int, start: int, pid: int, timeout: float = 30.0, halted: Path | None = None
) -> list[Event] | None:
    """The events the master decided for the command at `offset`, read from events position `start`.

    Returns None if the master dies, `timeout` passes or the file `halted` appears first (the
    master stopped at a command that raised), and the caller folds instead.
    """
    deadline = time.monotonic() + timeout
    position = start
    pause = 0.0005
    while True:
        for record in events.read(position):
            position = record.next
            if record.corrupt is not None:
                continue
            batch = decode_batch(record.payload)
            if batch.offset == offset:
                return list(batch.events)
            if batch.offset > offset:
                return None  # decided past us without our batch: never expected; fold instead
        if time.monotonic() > deadline or not pid_alive(pid) or (halted is not None and halted.exists()):
            return None
        time.sleep(pause)
        pause = min(0.005, pause * 2)
