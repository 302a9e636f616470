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
partitions while tasks keep running). It starts a little before the end of the topic as of the
worker's start (twice the heartbeat timeout back): it catches up on claims won by a previous run
of the same worker name that did not spawn yet (an attempt superseded, finished or killed later in
that stretch of the log is skipped), then acts live. A kill seen for an attempt not (yet) claimed
here is remembered: if the dispatch of that attempt comes later, the attempt is killed before it
starts instead of running. The process handling (claim files, process groups, kill grace,
adoption) is `runtime.worker.Worker`, with its claim files in the worker's own directory: they
make a spawn seen twice by one worker directory idempotent. The same reader removes the claim
and log directories of the instances an `InstancesRetired` event names (`runtime/retired_files.py`),
so a worker's files follow the retention policy the masters append to the log.

Reports are produced (acks=all) to the partition of their instance; heartbeats go to every
partition with the worker's timeout, so a worker that disappears has its attempts declared lost
by the masters (through `CheckDue`).

Testing hook: `EASYSCHED_TEST_CRASH=after_claim` makes the worker SIGKILL itself after its claims
are durable and before it commits its offsets; `after_spawn` right after it spawned an attempt.
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
from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.events import (
    AttemptClaimed,
    DispatchTask,
    Event,
    InstancesRetired,
    KillTaskProcess,
    TaskStateChanged,
)
from easysched_es.core.slots import share
from easysched_es.log.kafka import KafkaSettings, ensure_topics
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.kafka.client import instance_partition
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
    ) -> None:
        self.settings = settings
        self.group = group
        self.slots = slots
        self.heartbeat_timeout = heartbeat_timeout
        counts = ensure_topics(settings)
        self.partitions = counts[settings.topic("commands")]
        self.commands_topic = settings.topic("commands")
        work_dir = Path(work_dir)
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
        # Every events partition, for the claims won and the kills (see the module doc).
        self.kill_consumer = KafkaConsumer(**settings.common(), group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed")
        events = [TopicPartition(settings.topic("events"), p) for p in range(counts[settings.topic("events")])]
        self.kill_consumer.assign(events)
        self._catch_up_to = self.kill_consumer.end_offsets(events)
        since = wall_ms() - round(2 * heartbeat_timeout * 1000)
        found = self.kill_consumer.offsets_for_times({tp: since for tp in events})
        for tp in events:
            at = found.get(tp)
            self.kill_consumer.seek(tp, at.offset if at is not None else self._catch_up_to[tp])
        self._caught_up = False
        self._apply_lock = threading.Lock()
        # key -> the kill effect while not acted on (the dispatch may come later), None once acted on.
        self._kills: OrderedDict[Key, KillTaskProcess | None] = OrderedDict()
        self._claimed: OrderedDict[Key, None] = OrderedDict()
        # Claims won by this worker name and not spawned yet (held while the reader catches up).
        self._won: OrderedDict[Key, DispatchTask] = OrderedDict()
        self._crash = os.environ.get(CRASH_HOOK, "")

    def _report(self, command: c.Command) -> None:
        partition = instance_partition(command.instance)  # type: ignore[union-attr]
        self.producer.send(self.commands_topic, value=encode(command), partition=partition)

    def heartbeat(self) -> None:
        """Tell every partition's master this worker is alive, with its share of the slots.

        Partitions are independent shards, each with its own fold: the worker's slots are split
        between them (slots // partitions each, the remainder to the first ones), so that all
        partitions together never dispatch more than `slots` attempts to it. 0 slots = no limit.
        """
        timeout_ms = round(self.heartbeat_timeout * 1000)
        for p in range(self.partitions):
            slots = None if self.slots <= 0 else share(self.slots, self.partitions, p)
            hb = c.Heartbeat(at=wall_ms(), worker=self.name, timeout_ms=timeout_ms, slots=slots, group=self.group)
            self.producer.send(self.commands_topic, value=encode(hb), partition=p)

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
                               worker=self.name)
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

    @staticmethod
    def _effects(records: list[Any], kinds: tuple[type, ...] = (DispatchTask, KillTaskProcess)) -> list[Event]:
        """The events of `kinds` (by default the dispatch and kill effects) in polled events records."""
        out: list[Event] = []
        for record in records:
            try:
                batch = decode_batch(record.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("undecodable events record at offset %d: %s", record.offset, exc)
                continue
            out.extend(ev for ev in batch.events if isinstance(ev, kinds))
        return out

    @staticmethod
    def _poll(consumer: KafkaConsumer) -> dict[Any, list[Any]]:
        """One poll of `consumer`; nothing (after a pause) when the broker cannot be reached."""
        try:
            return consumer.poll(timeout_ms=100)
        except kerr.KafkaError as exc:
            log.warning("poll failed (%s); retrying", exc)
            time.sleep(0.5)
            return {}

    def _kill_loop(self, stop: threading.Event) -> None:
        """The effect reader over every events partition: claims won by this worker, and kills."""
        kinds = (AttemptClaimed, KillTaskProcess, TaskStateChanged, InstancesRetired)
        while not stop.is_set():
            polled = self._poll(self.kill_consumer)
            for records in polled.values():
                for ev in self._effects(records, kinds):
                    self._on_reader_event(ev)
            if not self._caught_up:
                self._caught_up = all(self.kill_consumer.position(tp) >= end
                                      for tp, end in self._catch_up_to.items())
            if self._caught_up:
                while self._won:
                    _, dispatch = self._won.popitem(last=False)
                    self._spawn(dispatch)

    def _on_reader_event(self, ev: Event) -> None:
        if isinstance(ev, AttemptClaimed):
            if ev.worker == self.name:
                self._won[(ev.instance, ev.task, ev.attempt)] = ev.dispatch
            return
        if isinstance(ev, TaskStateChanged):
            # While catching up: an attempt superseded or ended later in the log is not spawned.
            for key in [k for k in self._won if k[0] == ev.instance and k[1] == ev.task]:
                if key[2] != ev.attempt or ev.state not in ("DISPATCH", "RUNNING_EXECUTION"):
                    del self._won[key]
            return
        if isinstance(ev, InstancesRetired):
            removed = remove_retired(self.worker, ev.instances)
            if removed:
                log.info("retention: removed %d directories of %d retired instances", len(removed),
                         len(ev.instances))
            return
        assert isinstance(ev, KillTaskProcess)
        key = (ev.instance, ev.task, ev.attempt)
        if self._won.pop(key, None) is not None:
            # Won, then killed before we spawned it: never start it, confirm the kill.
            with self._apply_lock:
                self._remember(ev, acted=True)
                try:
                    self.worker._kill(ev)
                except Exception:
                    log.exception("effect %r failed", ev)
        elif self._caught_up:
            self.apply(ev)
        else:
            with self._apply_lock:
                if key not in self._kills:
                    self._remember(ev, acted=False)

    def _claim_batch(self, batches: dict[Any, list[Any]]) -> int | None:
        """Claim the dispatches and act on the kills of one poll: how many claims are now durable,
        or None if some could not be produced."""
        sent = []
        for records in batches.values():
            for ev in self._effects(records):
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

    def run(self, stop: threading.Event) -> None:
        """Consume effects, heartbeat, until `stop`; task processes keep running (a restart adopts them)."""
        self.worker.start()
        kills = threading.Thread(target=self._kill_loop, args=(stop,), name="worker-effects-reader", daemon=True)
        kills.start()
        last_beat = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_beat >= self.heartbeat_timeout / 3:
                    self.heartbeat()
                    last_beat = time.monotonic()
                batches = self._poll(self.consumer)
                if not batches:
                    continue
                claimed = self._claim_batch(batches)
                if claimed is None:
                    # Not every claim is in the log: read this poll again rather than commit past it.
                    for tp, records in batches.items():
                        self.consumer.seek(tp, records[0].offset)
                    continue
                if claimed and self._crash == "after_claim":
                    os.kill(os.getpid(), signal.SIGKILL)
                try:
                    self.consumer.commit()
                except kerr.KafkaError as exc:
                    log.warning("could not commit the events offsets (%s); dispatches may be claimed again", exc)
        finally:
            stop.set()
            kills.join(5)
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
