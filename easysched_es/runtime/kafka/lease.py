"""A Kafka worker's lease and incarnation: when it may start the attempts it claimed.

The masters declare a worker lost when a partition's fold sees no heartbeat from it for its
heartbeat timeout (measured from the heartbeat's `at`). So a heartbeat the fold of partition P
ACCEPTED proves that, in P's log up to it, this incarnation was not declared lost, and that P
will not declare it lost before `at + timeout`. The lease of P is therefore: the monotonic time
the newest accepted heartbeat was sent, plus the timeout minus a safety margin (for clock skew
between this machine and the master's, and for the time a spawn takes). A worker starts an
attempt of partition P only while P's lease holds by its own monotonic clock. A worker paused
(SIGSTOP) past its timeout wakes with an expired lease, and the heartbeat it then sends is
rejected by a fold that declared it lost: the lease is not renewed, so nothing it claimed before
the pause is started; the `WorkerLost` event then makes it come back with a new incarnation.

The verdict is read from the events topic (the master writes a batch for every command), at the
heartbeat's offset, which the producer's acknowledgement gives.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from easysched_es.runtime.clock import wall_ms


class Lease:
    """Per partition: until when (monotonic seconds) this incarnation may start attempts."""

    def __init__(self, partitions: int, duration: float) -> None:
        self.duration = duration
        self._lock = threading.Lock()
        self._until = [0.0] * partitions
        # (partition, offset) of a heartbeat of this incarnation -> monotonic time it was sent.
        self._sent: dict[tuple[int, int], float] = {}

    def sent(self, partition: int, offset: int, at: float) -> None:
        """A heartbeat sent at monotonic `at` is in the log of `partition` at `offset`."""
        with self._lock:
            self._sent[(partition, offset)] = at

    def verdict(self, partition: int, offset: int, accepted: bool) -> bool:
        """The fold's verdict on the command at (partition, offset); True if it was one of our heartbeats.

        A verdict read before the acknowledgement registered the offset is missed: the lease is
        then renewed by the next heartbeat (a shorter lease, never a longer one).
        """
        with self._lock:
            at = self._sent.pop((partition, offset), None)
            if at is None:
                return False
            for key in [k for k in self._sent if k[0] == partition and k[1] < offset]:
                del self._sent[key]  # older heartbeats whose verdict we will not see again
            if accepted:
                self._until[partition] = max(self._until[partition], at + self.duration)
            return True

    def valid(self, partition: int) -> bool:
        """Whether this incarnation may start an attempt of `partition` now."""
        with self._lock:
            return time.monotonic() < self._until[partition]

    def remaining(self, partition: int) -> float:
        """Seconds left on the lease of `partition` (negative once expired)."""
        with self._lock:
            return self._until[partition] - time.monotonic()

    def revoke(self) -> None:
        """Forget every lease and pending heartbeat (a new incarnation starts from nothing)."""
        with self._lock:
            self._until = [0.0] * len(self._until)
            self._sent.clear()


def next_incarnation(work_dir: Path) -> int:
    """A new incarnation for the worker of `work_dir`: above any before it, kept on disk.

    Written (fsynced) before it is used, so a worker killed at any instant never reuses one. At
    least the wall clock in milliseconds, so a worker that lost its directory (a new container
    with the same name) still comes back above the incarnations the fold has fenced.
    """
    path = work_dir / "incarnation"
    try:
        last = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        last = 0
    value = max(last + 1, wall_ms())
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"incarnation.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{value}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        fd = os.open(work_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return value
