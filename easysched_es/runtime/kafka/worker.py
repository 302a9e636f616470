"""The Kafka worker: acts on the effects in `<prefix>.events`, reports to `<prefix>.commands`.

Workers of one worker group form a consumer group (`<prefix>-workers-<group>`) over the events
topic: each events partition is read by one worker of the group.

Claims (no attempt runs twice): a worker that reads a `DispatchTask` of its group does NOT spawn
it. It produces a `ClaimAttempt` (acks=all, to the instance's commands partition; the claims of
one poll are produced together, then flushed once) and only then commits its events offset. The
master's fold decides: the first claim of the current attempt wins (`AttemptClaimed`, carrying
the dispatch), any other claim is recorded as ignored. A worker spawns an attempt only when it
reads `AttemptClaimed` naming itself. So a worker killed between the claim and the commit, or
between the spawn and anything else, cannot make the attempt run twice: the next owner of the
partition re-reads the dispatch, and its claim loses. A claimant that dies before spawning is
lost after its heartbeat timeout, and the master reruns the task as a NEW attempt.

A second, group-less consumer reads EVERY events partition (the "effect reader"): the
`AttemptClaimed` for this worker land in the instance's partition, which may belong to another
worker of the group by then, and so do the kills of the attempts it runs (a rebalance moves
partitions while tasks keep running). A kill seen for an attempt not (yet) claimed here is
remembered: if the dispatch of that attempt comes later, the attempt is killed before it starts
instead of running. The process handling (claim files, process groups, kill grace, adoption) is
`runtime.worker.Worker`, with its claim files in the worker's own directory: they make a spawn
seen twice by one worker directory idempotent (as in the embedded runtime, which re-runs the
effects its state owes after a restart and lets the claim files recognise them). The same reader
removes the claim and log directories of the instances an `InstancesRetired` event names
(`runtime/retired_files.py`), so a worker's files follow the retention policy the masters append
to the log.

Fencing (runtime/kafka/lease.py, core/fencing.py): each start and each comeback after being
declared lost is a new incarnation, carried in heartbeats, claims and reports. A won claim is
started only for this incarnation and while the lease of its partition holds (else it is held).
On `WorkerLost` about this incarnation the worker SIGKILLs every task process group it runs and
comes back as a new incarnation. At start and at each comeback it reconciles from the folded
state of every partition (`shell.worker_duties`: start or adopt its attempts, act on their kills,
claim what nobody claimed, kill the strays of attempts no longer its own); the effect reader goes
on from the end of the events topic as read before that fold.

Reports are produced (acks=all) to the partition of their instance; heartbeats go to every
partition with the worker's timeout, so a worker that disappears has its attempts declared lost
by the masters (through `CheckDue`).

Testing hook: `EASYSCHED_TEST_CRASH=after_claim` makes the worker SIGKILL itself after its claims
are durable and before it commits its offsets; `after_spawn` right after it spawned an attempt;
`pause_after_claim` makes it SIGSTOP itself (once) after its claims are durable, and
`pause_before_spawn` once it holds a won claim, right before it checks its lease to start it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.events import (
    AttemptClaimed,
    CommandRejected,
    DispatchTask,
    Event,
    InstancesRetired,
    KillTaskProcess,
    TaskStateChanged,
    WorkerLost,
)
from easysched_es.core.slots import share
from easysched_es.core.tasks.shell import worker_duties
from easysched_es.log.kafka import KafkaSettings, ensure_topics
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.fold import load_states
from easysched_es.runtime.kafka.client import instance_partition
from easysched_es.runtime.kafka.lease import Lease, next_incarnation
from easysched_es.runtime.kafka.worker_io import batches, effects, pause_self, poll
from easysched_es.runtime.retired_files import remove_retired
from easysched_es.runtime.worker import Key, Worker

log = logging.getLogger(__name__)

# Kill effects remembered (acted on, or waiting for a dispatch this worker may still see).
REMEMBERED_KILLS = 100_000
# Attempts this worker process already claimed (a dispatch read again is not claimed again).
REMEMBERED_CLAIMS = 100_000
CRASH_HOOK = "EASYSCHED_TEST_CRASH"


class KafkaWorker:
    """One worker process on Kafka; `run(stop)` until stopped."""

    def __init__(
        self,
        settings: KafkaSettings,
        work_dir: Path,
        *,
        group: str = "default",
        name: str | None = None,
        kill_grace: float = 5.0,
        heartbeat_timeout: float = 30.0,
        session_timeout_ms: int = 10_000,
        slots: int = 0,
        lease_margin: float | None = None,
    ) -> None:
        self.settings = settings
        self.group = group
        self.slots = slots
        self.heartbeat_timeout = heartbeat_timeout
        counts = ensure_topics(settings)
        self.partitions = counts[settings.topic("commands")]
        self.commands_topic = settings.topic("commands")
        self.work_dir = work_dir = Path(work_dir)
        # The lease is shorter than the heartbeat timeout by a margin (default a third of it);
        # heartbeats go every third of the timeout, so a live worker's lease never lapses.
        margin = heartbeat_timeout / 3 if lease_margin is None else lease_margin
        if not 0 < margin < heartbeat_timeout:
            raise ValueError(f"the lease margin must be between 0 and the heartbeat timeout, not {margin}")
        self.lease = Lease(self.partitions, heartbeat_timeout - margin)
        self.incarnation = next_incarnation(work_dir)
        self.producer = KafkaProducer(**settings.common(), acks="all", enable_idempotence=True, linger_ms=1)
        self.worker = Worker(work_dir / "runs", work_dir / "logs", self._report, name=name, kill_grace=kill_grace)
        self.name = self.worker.name
        self.consumer = KafkaConsumer(
            settings.topic("events"),
            **settings.common(),
            group_id=f"{settings.prefix}-workers-{group}",
            client_id=f"easysched-worker-{self.name}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 5),
        )
        # Every events partition, for the claims won, the kills and the heartbeat verdicts (see the
        # module doc). It starts at the end as of now; `run` reconciles from the folded state first.
        self.kill_consumer = KafkaConsumer(**settings.common(), group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed")
        events = [TopicPartition(settings.topic("events"), p) for p in range(counts[settings.topic("events")])]
        self.kill_consumer.assign(events)
        for tp, end in self.kill_consumer.end_offsets(events).items():
            self.kill_consumer.seek(tp, end)
        self._apply_lock = threading.Lock()
        # key -> the kill effect while not acted on (the dispatch may come later), None once acted on.
        self._kills: OrderedDict[Key, KillTaskProcess | None] = OrderedDict()
        self._claimed: OrderedDict[Key, None] = OrderedDict()
        # Claims won by this incarnation (or owed by the state) and not started yet: held until the
        # lease of their partition holds.
        self._held: OrderedDict[Key, DispatchTask] = OrderedDict()
        self._beat_now = threading.Event()
        self._crash = os.environ.get(CRASH_HOOK, "")

    def _report(self, command: c.Command) -> None:
        command = msgspec.structs.replace(command, incarnation=self.incarnation)
        partition = instance_partition(command.instance)  # type: ignore[union-attr]
        self.producer.send(self.commands_topic, value=encode(command), partition=partition)

    def heartbeat(self) -> None:
        """Tell every partition's master this worker is alive, with its share of the slots.

        Partitions are independent shards, each with its own fold: the worker's slots are split
        between them (slots // partitions each, the remainder to the first ones), so that all
        partitions together never dispatch more than `slots` attempts to it. 0 slots = no limit.
        Each partition's verdict on its heartbeat renews that partition's lease (see lease.py).
        """
        timeout_ms = round(self.heartbeat_timeout * 1000)
        incarnation = self.incarnation
        sent_at = time.monotonic()
        for p in range(self.partitions):
            slots = None if self.slots <= 0 else share(self.slots, self.partitions, p)
            hb = c.Heartbeat(at=wall_ms(), worker=self.name, timeout_ms=timeout_ms, slots=slots, group=self.group,
                             incarnation=incarnation)
            future = self.producer.send(self.commands_topic, value=encode(hb), partition=p)
            future.add_callback(self._beat_acked, incarnation, sent_at)

    def _beat_acked(self, incarnation: int, sent_at: float, meta: Any) -> None:
        if incarnation == self.incarnation:
            self.lease.sent(meta.partition, meta.offset, sent_at)

    def _mine(self, effect: KillTaskProcess) -> bool:
        key = (effect.instance, effect.task, effect.attempt)
        if key in self.worker.running():
            return True
        claim, _ = self.worker._paths(*key)
        return claim.exists()

    def _claim(self, effect: DispatchTask) -> Any:
        """Produce the claim of a dispatched attempt; the send's future (None if not claimed now)."""
        key = (effect.instance, effect.task, effect.attempt)
        with self._apply_lock:
            if key in self._kills:
                kill = self._kills[key]
                if kill is not None:  # its kill came first (another partition's reader): never start it
                    self._remember(kill, acted=True)
                    try:
                        self.worker._kill(kill)
                    except Exception:
                        log.exception("effect %r failed", kill)
                return None
            if key in self._claimed:
                return None
            self._claimed[key] = None
            while len(self._claimed) > REMEMBERED_CLAIMS:
                self._claimed.popitem(last=False)
        claim = c.ClaimAttempt(at=wall_ms(), instance=effect.instance, task=effect.task, attempt=effect.attempt,
                               worker=self.name, incarnation=self.incarnation)
        return self.producer.send(self.commands_topic, value=encode(claim),
                                  partition=instance_partition(effect.instance))

    def _spawn(self, dispatch: DispatchTask) -> None:
        """Run an attempt this worker won the claim of (unless its kill was seen already)."""
        key = (dispatch.instance, dispatch.task, dispatch.attempt)
        with self._apply_lock:
            try:
                kill = self._kills.get(key)
                if kill is not None:
                    self._remember(kill, acted=True)
                    self.worker._kill(kill)
                elif key not in self._kills:
                    self.worker._dispatch(dispatch)
                    if self._crash == "after_spawn":
                        os.kill(os.getpid(), signal.SIGKILL)
            except Exception:
                log.exception("dispatch %r failed", dispatch)

    def _release(self) -> None:
        """Start the held attempts whose partition's lease holds (the others wait for a heartbeat)."""
        for key in list(self._held):
            if self._crash == "pause_before_spawn":
                self._crash = ""
                pause_self(f"before starting {key}")
            partition = instance_partition(key[0])
            if self.lease.valid(partition):
                dispatch = self._held.pop(key, None)
                if dispatch is not None:
                    log.info("starting %s/%s attempt %d (lease of partition %d: %.2fs left)", *key, partition,
                             self.lease.remaining(partition))
                    self._spawn(dispatch)

    def apply(self, effect: Event) -> None:
        """Act on a kill effect now; effects are applied one at a time."""
        with self._apply_lock:
            try:
                if isinstance(effect, KillTaskProcess):
                    key = (effect.instance, effect.task, effect.attempt)
                    if key in self._kills and self._kills[key] is None:
                        return  # acted on already (seen by both readers)
                    mine = self._mine(effect)
                    self._remember(effect, acted=mine)
                    if mine:
                        self.worker._kill(effect)
            except Exception:
                log.exception("effect %r failed", effect)

    def _remember(self, kill: KillTaskProcess, *, acted: bool) -> None:
        key = (kill.instance, kill.task, kill.attempt)
        self._kills[key] = None if acted else kill
        self._kills.move_to_end(key)
        while len(self._kills) > REMEMBERED_KILLS:
            self._kills.popitem(last=False)

    def _kill_now(self, kill: KillTaskProcess) -> None:
        """Act on a kill of an attempt of ours whatever we know of it (a claim file forbids a later start)."""
        with self._apply_lock:
            self._remember(kill, acted=True)
            try:
                self.worker._kill(kill)
            except Exception:
                log.exception("effect %r failed", kill)

    def _kill_loop(self, stop: threading.Event) -> None:
        """The effect reader over every events partition: claims won, kills, heartbeat verdicts, loss."""
        while not stop.is_set():
            polled = poll(self.kill_consumer)
            for records in polled.values():
                for batch in batches(records):
                    if batch.command == "heartbeat":
                        accepted = not any(isinstance(ev, CommandRejected) for ev in batch.events)
                        self.lease.verdict(batch.partition, batch.offset, accepted)
                    for ev in batch.events:
                        if isinstance(ev, (AttemptClaimed, KillTaskProcess, TaskStateChanged, WorkerLost,
                                           InstancesRetired)):
                            self._on_reader_event(ev)
            self._release()

    def _on_reader_event(self, ev: Event) -> None:
        if isinstance(ev, WorkerLost):
            if ev.worker == self.name and ev.incarnation == self.incarnation:
                self._come_back(ev)
            return
        if isinstance(ev, AttemptClaimed):
            if ev.worker == self.name and ev.incarnation == self.incarnation:
                self._held[(ev.instance, ev.task, ev.attempt)] = ev.dispatch
            return
        if isinstance(ev, TaskStateChanged):
            # An attempt superseded or ended before we started it is not started.
            for key in [k for k in self._held if k[0] == ev.instance and k[1] == ev.task]:
                if key[2] != ev.attempt or ev.state not in ("DISPATCH", "RUNNING_EXECUTION"):
                    del self._held[key]
            return
        if isinstance(ev, InstancesRetired):
            removed = remove_retired(self.worker, ev.instances)
            if removed:
                log.info("retention: removed %d directories of %d retired instances", len(removed),
                         len(ev.instances))
            return
        assert isinstance(ev, KillTaskProcess)
        if self._held.pop((ev.instance, ev.task, ev.attempt), None) is not None:
            self._kill_now(ev)  # won, then killed before we started it: never start it, confirm the kill
        else:
            self.apply(ev)

    def _come_back(self, lost: WorkerLost) -> None:
        """This incarnation was declared lost: kill what it runs, and return as a new incarnation."""
        with self._apply_lock:
            killed = self.worker.kill_all()
            self._held.clear()
            self._claimed.clear()
            self.lease.revoke()
            self.incarnation = next_incarnation(self.work_dir)
        log.warning("worker %s was declared lost (no heartbeat since %d): killed %d task process group(s), "
                    "back as incarnation %d", self.name, lost.last_seen, len(killed), self.incarnation)
        self._beat_now.set()
        self.reconcile()

    def reconcile(self) -> None:
        """Act on what the folded state of every partition says this worker owes (see the module doc)."""
        from easysched_es.runtime.kafka.master import KafkaLog  # the master module imports the client

        try:
            states = load_states(KafkaLog(self.settings))
        except Exception:
            log.exception("could not fold the partitions to reconcile; the effects read from now on still apply")
            return
        sent = []
        duties = [worker_duties(state, self.name, self.group) for state in states]
        keep = {(d.instance, d.task, d.attempt) for runs, kills, _ in duties for d in [*runs, *kills]}
        strays = self.worker.kill_strays(keep)
        if strays:
            log.warning("killed the processes of %d attempt(s) no longer this worker's (rerun or ended): %s",
                        len(strays), ", ".join(f"{i}/{t}/{a}" for i, t, a in strays[:10]))
        for runs, kills, unclaimed in duties:
            for kill in kills:
                self._kill_now(kill)
            for dispatch in runs:
                self._held[(dispatch.instance, dispatch.task, dispatch.attempt)] = dispatch
            sent += [(d, f) for d in unclaimed if (f := self._claim(d)) is not None]
        self.producer.flush()
        for dispatch, future in sent:
            if future.failed():  # the group's reader may claim it again
                with self._apply_lock:
                    self._claimed.pop((dispatch.instance, dispatch.task, dispatch.attempt), None)
        if any(not future.failed() for _, future in sent):
            self._claims_durable()
        log.info("worker %s incarnation %d reconciled: %d attempt(s) to start or adopt, %d claim(s)",
                 self.name, self.incarnation, len(self._held), len(sent))

    def _claims_durable(self) -> None:
        """Claims are in the log and not acted on yet: where the testing hooks strike."""
        if self._crash == "after_claim":
            os.kill(os.getpid(), signal.SIGKILL)
        if self._crash == "pause_after_claim":
            self._crash = ""
            pause_self("after a claim")

    def _claim_batch(self, batches: dict[Any, list[Any]]) -> int | None:
        """Claim the dispatches and act on the kills of one poll: how many claims are now durable,
        or None if some could not be produced."""
        sent = []
        for records in batches.values():
            for ev in effects(records):
                if isinstance(ev, DispatchTask):
                    if ev.worker_group == self.group:
                        future = self._claim(ev)
                        if future is not None:
                            sent.append((ev, future))
                else:
                    self.apply(ev)
        self.producer.flush()
        ok = True
        for ev, future in sent:
            if future.failed():
                ok = False
                log.warning("claim of %s/%s attempt %d failed (%s); the dispatch will be read again",
                            ev.instance, ev.task, ev.attempt, future.exception)
                with self._apply_lock:
                    self._claimed.pop((ev.instance, ev.task, ev.attempt), None)
        return len(sent) if ok else None

    def _beat_loop(self, stop: threading.Event) -> None:
        """Heartbeat every third of the timeout (at once after a comeback), whatever the other threads do."""
        while not stop.is_set():
            try:
                self.heartbeat()
            except Exception:
                log.exception("heartbeat failed; retrying")
            self._beat_now.wait(self.heartbeat_timeout / 3)
            self._beat_now.clear()

    def run(self, stop: threading.Event) -> None:
        """Consume effects, heartbeat, until `stop`; task processes keep running (a restart adopts them)."""
        self.worker.start()
        beats = threading.Thread(target=self._beat_loop, args=(stop,), name="worker-heartbeat", daemon=True)
        beats.start()
        self.reconcile()
        kills = threading.Thread(target=self._kill_loop, args=(stop,), name="worker-effects-reader", daemon=True)
        kills.start()
        try:
            while not stop.is_set():
                batches = poll(self.consumer)
                if not batches:
                    continue
                claimed = self._claim_batch(batches)
                if claimed is None:
                    # Not every claim is in the log: read this poll again rather than commit past it.
                    for tp, records in batches.items():
                        self.consumer.seek(tp, records[0].offset)
                    continue
                if claimed:
                    self._claims_durable()
                try:
                    self.consumer.commit()
                except kerr.KafkaError as exc:
                    log.warning("could not commit the events offsets (%s); dispatches may be claimed again", exc)
        finally:
            stop.set()
            self._beat_now.set()
            kills.join(5)
            beats.join(5)
            self.close()

    def close(self) -> None:
        """Stop the worker threads, flush reports, leave the group."""
        self.worker.stop()
        try:
            self.producer.flush(timeout=10)
            self.producer.close(timeout=10)
        finally:
            self.consumer.close(autocommit=False)
            self.kill_consumer.close(autocommit=False)

