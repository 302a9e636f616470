"""Worker incarnations: the fold accepts an attempt's reports only from its claimant's current incarnation.

A Kafka worker gets a new incarnation (a number that grows) each time it starts and each time it
comes back after being declared lost; it carries it in its heartbeats, claims and reports. The
fold keeps, per worker name, the newest incarnation heard of (`State.incarnations`) and the
newest declared lost (`State.lost_incarnations`). Then:

- a heartbeat of an incarnation declared lost, or older than one already heard of, is rejected:
  a worker paused past its timeout cannot revive itself by heartbeating again;
- a claim or report about an attempt claimed by an incarnation (`TaskInstance.incarnation` > 0)
  is ignored, with the reason, unless it comes from the claimant worker, from an incarnation not
  older than the claimant's, not declared lost and not superseded. A newer incarnation of the
  claimant (the same worker restarted, never declared lost) takes the attempt over: it adopts the
  process the previous one left, or starts the attempt that one never started.

Incarnation 0 means "a worker without incarnations" (the embedded worker, logs written before
incarnations existed): nothing about it is fenced, so old logs replay exactly as before.
"""

from __future__ import annotations

from typing import Any

from easysched_es.core import events as e
from easysched_es.core.state import State, TaskInstance


def heartbeat_refused(state: State, worker: str, incarnation: int) -> str:
    """Why a heartbeat of `worker` at `incarnation` is refused, or "" (then it is the newest known)."""
    if incarnation <= 0:
        return ""
    lost = state.lost_incarnations.get(worker, 0)
    if incarnation <= lost:
        return (f"incarnation {incarnation} of worker {worker} was declared lost (its newest lost incarnation is "
                f"{lost}); the worker must come back with a new incarnation")
    newest = state.incarnations.get(worker, 0)
    if incarnation < newest:
        return f"incarnation {incarnation} of worker {worker} is superseded by incarnation {newest}"
    return ""


def heard(state: State, worker: str, incarnation: int) -> None:
    """An accepted command of `worker` carried `incarnation`: remember it if it is the newest."""
    if incarnation > state.incarnations.get(worker, 0):
        state.incarnations[worker] = incarnation


def report_refused(state: State, ti: TaskInstance, cmd: Any) -> str:
    """Why a claim or report about `ti`'s attempt is not from its claimant's current incarnation, or ""."""
    worker, incarnation = cmd.worker, cmd.incarnation
    if incarnation <= 0 and ti.incarnation <= 0 and worker not in state.incarnations:
        return ""  # nobody here has incarnations: not fenced (old logs, the embedded worker)
    if ti.incarnation > 0 and ti.worker is not None and worker != ti.worker:
        return (f"not the claimant: attempt {ti.attempt} is claimed by worker {ti.worker} incarnation "
                f"{ti.incarnation}, not by {worker or '(unnamed)'}")
    if incarnation < ti.incarnation:
        return (f"incarnation {incarnation} of worker {worker} is older than the claimant's incarnation "
                f"{ti.incarnation}")
    lost = state.lost_incarnations.get(worker, 0)
    if 0 < incarnation <= lost:
        return f"incarnation {incarnation} of worker {worker} was declared lost"
    newest = state.incarnations.get(worker, 0)
    if incarnation < newest:
        return f"incarnation {incarnation} of worker {worker} is superseded by incarnation {newest}"
    return ""


def take_over(state: State, ti: TaskInstance, cmd: Any) -> None:
    """A claim or start report was accepted: the attempt is that incarnation's (a restart takes it over)."""
    heard(state, cmd.worker, cmd.incarnation)
    if cmd.incarnation > ti.incarnation:
        ti.incarnation = cmd.incarnation


def declare_lost(state: State, worker: str, last_seen: int, out: list[e.Event]) -> None:
    """`worker` missed its heartbeat timeout: fence its current incarnation (if it has one)."""
    incarnation = state.incarnations.get(worker, 0)
    if incarnation > 0:
        state.lost_incarnations[worker] = incarnation
        out.append(e.WorkerLost(worker=worker, incarnation=incarnation, last_seen=last_seen))
