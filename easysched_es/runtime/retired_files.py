"""The files a retired instance leaves on a worker (its claim/run directory and task logs), removed.

Retention is decided in the fold (`ApplyRetention`, core/retention.py); its `InstancesRetired`
event names the instances that left the hot state. A Kafka worker reads it from the events topic
(every partition) and removes, for each named instance, the per-instance directories under its
work dir: `runs/<instance>` (claim files) and `logs/<instance>` (task logs), named as
`runtime.worker.Worker` names them. An instance with an attempt this worker still watches is
left alone (a retired instance is final, so that is only a process not reaped yet).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from easysched_es.runtime.worker import Worker


def remove_retired(worker: Worker, instances: Iterable[str]) -> list[Path]:
    """Remove the run and log directories of `instances` under `worker`'s dirs; the ones removed."""
    busy = {key[0] for key in worker.running()}
    removed = []
    for instance in instances:
        if instance in busy:
            continue
        for parent in (worker.runs_dir, worker.logs_dir):
            d = parent / quote(instance, safe="")
            worker._dirs.discard(d)  # its mkdir cache: a directory made again must be made for real
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed
