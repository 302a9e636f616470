"""The Kafka master: one member of the consumer group over `<prefix>.commands`.

Each partition is folded by exactly one master (the group assigns it); the others stand by.
Per owned partition:

- on assignment: a transactional producer (`transactional_id = <prefix>-master-p<N>`) is
  initialised first, which fences any previous owner (a zombie's later writes are aborted);
  then the newest snapshot of the partition is loaded and the commands are folded (state only)
  from it up to the group's committed offset, the first command without recorded events;
- live: each polled run of commands becomes `EventBatch` records on `<prefix>.events` (same
  partition), forwarded `UpstreamFinished` commands to every other partition, now and then a
  snapshot, and the consumer offset, all in ONE Kafka transaction;
- time: when the earliest timer (or a worker heartbeat deadline) is due, a `CheckDue(now)` is
  produced to the partition, in a transaction of the same producer (so a zombie's tick never lands);
  every `retention_every_ms` (first when the partition is ready) an `ApplyRetention(now)` likewise,
  so the retention decision is in the log and replays (core/retention.py).

Effects (`DispatchTask`, `KillTaskProcess`) are in the events topic, written atomically with
the decision; workers consume them from there. So, unlike the embedded master, a new owner
does not publish `pending_effects` again: they are already in the log, and publishing them twice
would make the log say "dispatched twice". It logs how many are owed. Alerts are the exception:
the owner sends them itself (`runtime/kafka/alerts.py`), the owed ones again on takeover.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from easysched_es.core.codec import encode
from easysched_es.core.commands import ApplyRetention, CheckDue, Command, UpstreamFinished
from easysched_es.core.events import Event, EventBatch, WorkflowFinished
from easysched_es.core.state import State, worker_deadline
from easysched_es.core.step import CommandFailed, pending_effects, reject_record, step_record
from easysched_es.debug.verify import VerifyReport, verify_partition_into
from easysched_es.log.kafka import FAST_CONSUMER, KafkaSettings, KafkaStream, ensure_topics, record_of
from easysched_es.log.kafka_retention import warn_about_retention
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.kafka.alerts import KafkaAlerts
from easysched_es.runtime.kafka.halts import Halts
from easysched_es.runtime.kafka.snapshots import SNAPSHOT_LIMIT, load_snapshot, snapshot_key

log = logging.getLogger(__name__)
__all__ = ["KafkaLog", "KafkaMaster", "load_snapshot", "snapshot_key", "verify_partition"]

TICK_RETRY_MS = 5_000
RETENTION_EVERY_MS = 3_600_000
"""Default time between the retention passes a master appends to each partition it owns (hourly,
like `easysched run`)."""
TXN_TIMEOUT_MS = 15_000


@dataclass
class _Owned:
    partition: int
    producer: KafkaProducer
    state: State
    replay_until: int
    ready: bool = False
    since_snapshot: int = 0
    tick_sent_at: int | None = None
    retention_at: int | None = None  # when the next ApplyRetention is due (None: at ready)
    replayed: int = 0
    owed: int = 0
    recovered_at: float = field(default_factory=time.monotonic)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, master: KafkaMaster) -> None:
        self.master = master

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.master._drop(tp.partition, "revoked")

    def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self.master._to_recover.add(tp.partition)


class KafkaMaster:
    """A master process's share of the partitions; `run(stop)` until stopped."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        name: str | None = None,
        session_timeout_ms: int = 10_000,
        snapshot_every: int = 20_000,
        retention_every_ms: int = RETENTION_EVERY_MS,
        clock: Callable[[], int] = wall_ms,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.snapshot_every = snapshot_every
        self.retention_every_ms = retention_every_ms  # 0: this master appends no retention pass
        self.snapshot_limit = SNAPSHOT_LIMIT
        self.clock = clock
        self.on_event = on_event
        counts = ensure_topics(settings)
        # Finite retention on commands/events can lose what no snapshot covers yet: say so loudly.
        self.retention_warnings = warn_about_retention(settings, snapshot_every)
        self.partitions = counts[settings.topic("commands")]
        self.commands_topic = settings.topic("commands")
        self.events_topic = settings.topic("events")
        self.snapshots_topic = settings.topic("snapshots")
        self.group = f"{settings.prefix}-masters"
        self.snapshots = KafkaStream(settings, "snapshots", create=False)
        self.owned: dict[int, _Owned] = {}
        self._to_recover: set[int] = set()
        self.consumer = KafkaConsumer(
            **settings.common(),
            group_id=self.group,
            client_id=f"easysched-master-{self.name}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 5),
            max_poll_interval_ms=max(60_000, session_timeout_ms * 2),
            **FAST_CONSUMER,
        )
        self.consumer.subscribe([self.commands_topic], listener=_Listener(self))
        self.alerts = KafkaAlerts(settings)
        self.halts = Halts(settings)

    # ---- ownership ---------------------------------------------------------------------

    def _emit(self, what: str, **data: Any) -> None:
        log.info("%s %s", what, " ".join(f"{k}={v}" for k, v in data.items()))
        if self.on_event is not None:
            self.on_event(what, {**data, "t": time.time()})

    def _drop(self, partition: int, why: str) -> None:
        self._to_recover.discard(partition)
        owned = self.owned.pop(partition, None)
        if owned is None:
            return
        self._emit("partition_dropped", partition=partition, why=why, master=self.name)
        try:
            owned.producer.close(timeout=2)
        except Exception:
            log.debug("closing the producer of partition %d failed", partition, exc_info=True)

    def _producer(self, partition: int) -> KafkaProducer:
        producer = KafkaProducer(
            **self.settings.common(),
            client_id=f"easysched-master-{self.name}-p{partition}",
            transactional_id=f"{self.settings.prefix}-master-p{partition}",
            transaction_timeout_ms=30_000,
            max_block_ms=TXN_TIMEOUT_MS,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            batch_size=1 << 20,
            max_request_size=32 << 20,
        )
        producer.init_transactions()
        return producer

    def _recover(self, partition: int) -> None:
        """Fence the previous owner, load the newest snapshot, and seek to fold the tail."""
        tp = TopicPartition(self.commands_topic, partition)
        producer = self._producer(partition)
        self.halts.halted.pop(partition, None)  # the fold meets the command again if it still raises
        committed = self.consumer.committed(tp, timeout_ms=TXN_TIMEOUT_MS) or 0
        state = load_snapshot(self.snapshots, partition, committed) or State(partition)
        state.partition = partition
        self.consumer.seek(tp, state.position)
        owned = _Owned(partition, producer, state, committed)
        self.owned[partition] = owned
        self._emit("partition_assigned", partition=partition, master=self.name, snapshot=state.last_offset,
                   committed=committed)
        if state.position >= committed:
            self._ready(owned)

    def _ready(self, owned: _Owned) -> None:
        owned.ready = True
        owned.owed = len(pending_effects(owned.state))
        alerts = self.alerts.send_owed(owned.state)
        self._emit("partition_ready", partition=owned.partition, master=self.name, replayed=owned.replayed,
                   owed_effects=owned.owed, owed_alerts=alerts, timers=len(owned.state.queue.entries()),
                   seconds=round(time.monotonic() - owned.recovered_at, 3))

    # ---- the loop ----------------------------------------------------------------------

    def poll_once(self, timeout_ms: int) -> int:
        """Poll, recover new partitions, decide what arrived, tick; return how many commands were decided."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        fresh = set(self._to_recover)
        self._to_recover.clear()
        for partition in sorted(fresh):
            try:
                self._recover(partition)
            except kerr.KafkaError as exc:
                log.warning("recovery of partition %d failed (%s); retrying", partition, exc)
                self._drop(partition, f"recovery failed: {exc}")
                self._to_recover.add(partition)
                time.sleep(0.5)
        decided = 0
        for tp, records in batches.items():
            owned = self.owned.get(tp.partition)
            if owned is None or tp.partition in fresh:
                continue  # fetched before the seek of a recovery: refetched from the snapshot position
            decided += self._apply(owned, records)
        self._tick()
        return decided

    def _apply(self, owned: _Owned, records: list[Any]) -> int:
        state = owned.state
        payloads: list[bytes] = []
        forwards: list[bytes] = []
        decided: list[Event] = []
        partition = owned.partition
        # A command that raised spoils the state (no snapshot of it); with a skip of it in the log,
        # the partition is folded again from its snapshot (see halts.py).
        spoilt = refold = False
        for record in records:
            offset = record.offset
            if offset < state.position:
                continue
            rec = record_of(record)  # the same record every reader of the log sees (JSON commands too)
            if partition in self.halts.halted:
                refold = self.halts.watch(partition, rec)
                if refold:
                    break
                continue
            if rec.corrupt is not None:
                _, events, tag = reject_record(state, offset, f"corrupt record: {rec.corrupt}")
            else:
                try:
                    _, events, tag = step_record(state, rec.payload, offset, self.halts.skip_of(partition, offset))
                except CommandFailed as failure:
                    spoilt, refold = True, self.halts.failed(partition, failure)
                    if refold:
                        break
                    self._halted(owned, failure)
                    continue
            state.position = offset + 1
            if offset < owned.replay_until:
                owned.replayed += 1
                if state.position >= owned.replay_until:
                    self._ready(owned)
                continue
            if tag == "check_due":
                owned.tick_sent_at = None
            payloads.append(encode(EventBatch(offset=offset, at=state.now, command=tag, events=events,
                                              partition=partition)))
            decided.extend(events)
            for ev in events:
                if isinstance(ev, WorkflowFinished):
                    forwards.append(encode(UpstreamFinished(
                        at=state.now, workflow=ev.workflow, instance=ev.instance, state=ev.state,
                        base_time=ev.base_time, task_states=ev.task_states, scheduled=ev.scheduled,
                        ended=state.now)))
        committed = self._commit_decided(owned, payloads, forwards, decided, snapshot_ok=not spoilt)
        if refold and partition in self.owned:
            log.warning("a skip of a command that raised is in partition %d: folding it again from its snapshot",
                        partition)
            self._drop(partition, "folding again past a skipped command")
            self._to_recover.add(partition)
        return committed

    def _halted(self, owned: _Owned, failure: CommandFailed) -> None:
        """Say loudly that the partition stopped at a command that raised (what it decided before is kept)."""
        halt = self.halts.halted[owned.partition]
        log.error("%s", halt)
        self._emit("partition_halted", partition=owned.partition, master=self.name, offset=failure.offset,
                   command=failure.command, error=failure.error)

    def _commit_decided(self, owned: _Owned, payloads: list[bytes], forwards: list[bytes], decided: list[Event],
                        *, snapshot_ok: bool) -> int:
        """Commit the batches decided by one `_apply`; how many (0 if the transaction failed)."""
        if not payloads:
            return 0
        owned.since_snapshot += len(payloads)
        snapshot = None
        if snapshot_ok and owned.since_snapshot >= self.snapshot_every:
            snapshot = self._snapshot(owned)
        try:
            self._commit(owned, payloads, forwards, snapshot)
        except kerr.KafkaError as exc:
            self._failed(owned, exc)
            return 0
        self.alerts.send(decided)  # only what the log now holds
        if snapshot is not None:
            owned.since_snapshot = 0
        return len(payloads)

    def _snapshot(self, owned: _Owned) -> bytes | None:
        """The partition's snapshot record, or None (and a warning) if it is over the record limit.

        A record over the limit fails the whole transaction, so the partition would be recovered
        and fail again at each snapshot, deciding nothing more. Without it, recovery replays from
        the last snapshot written: slower, never wrong.
        """
        snapshot = encode(owned.state.snapshot())
        if len(snapshot) <= self.snapshot_limit:
            return snapshot
        owned.since_snapshot = 0  # the next try is `snapshot_every` commands on, not every batch
        log.warning("the snapshot of partition %d is %.1f MiB, over the record limit of %.1f MiB: not written "
                    "(a new owner replays from the last one written). Fewer hot instances (retention_days) or more "
                    "partitions make it smaller", owned.partition, len(snapshot) / 2**20, self.snapshot_limit / 2**20)
        self._emit("snapshot_skipped", partition=owned.partition, master=self.name, bytes=len(snapshot),
                   limit=self.snapshot_limit)
        return None

    def _commit(self, owned: _Owned, payloads: list[bytes], forwards: list[bytes], snapshot: bytes | None) -> None:
        producer, p = owned.producer, owned.partition
        producer.begin_transaction()
        for payload in payloads:
            producer.send(self.events_topic, value=payload, partition=p)
        for fwd in forwards:
            for q in range(self.partitions):
                if q != p:
                    producer.send(self.commands_topic, value=fwd, partition=q)
        if snapshot is not None:
            producer.send(self.snapshots_topic, key=snapshot_key(p), value=snapshot, partition=p)
        offsets = {TopicPartition(self.commands_topic, p): OffsetAndMetadata(owned.state.position, "", -1)}
        _bounded(producer, producer._transaction_manager.send_offsets_to_transaction(
            offsets, self.consumer.group_metadata()))
        _bounded(producer, producer._transaction_manager.begin_commit())

    def _failed(self, owned: _Owned, exc: BaseException) -> None:
        """A transaction failed: what was folded since the last commit may not be in the log."""
        p = owned.partition
        fenced = isinstance(exc, (kerr.ProducerFencedError, kerr.CommitFailedError)) or "Fenced" in type(exc).__name__
        self._emit("transaction_failed", partition=p, master=self.name, error=f"{type(exc).__name__}: {exc}",
                   fenced=fenced)
        with _suppress():
            _bounded(owned.producer, owned.producer._transaction_manager.begin_abort(), 5_000)
        self._drop(p, "fenced" if fenced else f"transaction failed: {exc}")
        tp = TopicPartition(self.commands_topic, p)
        if fenced:
            # Another master owns it now; wait for the group to tell us what we own.
            with _suppress():
                self.consumer.pause(tp)
        else:
            self._to_recover.add(p)

    def _tick(self) -> None:
        now = self.clock()
        for owned in list(self.owned.values()):
            if not owned.ready or owned.partition in self.halts.halted:
                continue  # a stopped partition decides nothing, its time included
            if self.retention_every_ms > 0 and (owned.retention_at is None or now >= owned.retention_at):
                if not self._append(owned, ApplyRetention(at=now, now=now)):
                    continue
                owned.retention_at = now + self.retention_every_ms
            state = owned.state
            due = state.queue.earliest()
            deadline = worker_deadline(state)
            if deadline is not None and (due is None or deadline < due):
                due = deadline
            if due is None or now < due:
                continue
            if owned.tick_sent_at is not None and now - owned.tick_sent_at < TICK_RETRY_MS:
                continue
            if self._append(owned, CheckDue(at=now, now=now)):
                owned.tick_sent_at = now

    def _append(self, owned: _Owned, command: Command) -> bool:
        """Produce one command of the master's own (a tick, a retention pass) to the partition, in a
        transaction of its producer (a zombie's never lands); False if the partition was dropped."""
        try:
            owned.producer.begin_transaction()
            owned.producer.send(self.commands_topic, value=encode(command), partition=owned.partition)
            _bounded(owned.producer, owned.producer._transaction_manager.begin_commit())
            return True
        except kerr.KafkaError as exc:
            self._failed(owned, exc)
            return False

    def next_due(self) -> int | None:
        """The earliest due time over the owned partitions (for the loop's wait)."""
        dues = [d for o in self.owned.values() if o.ready and o.partition not in self.halts.halted
                for d in (o.state.queue.earliest(), worker_deadline(o.state)) if d is not None]
        return min(dues) if dues else None

    def run(self, stop: threading.Event) -> None:
        """Poll, decide and tick until `stop` is set; then leave the group."""
        try:
            while not stop.is_set():
                due = self.next_due()
                wait = 100
                if due is not None:
                    wait = max(0, min(wait, due - self.clock()))
                try:
                    self.poll_once(wait)
                except kerr.KafkaError as exc:
                    log.warning("poll failed (%s); retrying", exc)
                    time.sleep(0.5)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group and close the producers."""
        for p in list(self.owned):
            self._drop(p, "master stopping")
        with _suppress():
            self.consumer.close(autocommit=False)
        self.snapshots.close()
        self.alerts.close()


def _bounded(producer: KafkaProducer, result: Any, timeout_ms: int = TXN_TIMEOUT_MS) -> None:
    """Wait for a transactional request like kafka-python's own methods do, but not forever.

    `commit_transaction()` and `send_offsets_to_transaction()` wait without a bound; while the broker
    restarts that can outlast the group's poll interval. A timeout fails the transaction instead: the
    partition is recovered from the log (the transaction commits or aborts as a whole either way).
    """
    producer._sender.wakeup()
    if not result.wait(timeout_ms=timeout_ms):
        raise kerr.KafkaTimeoutError(f"transactional request not answered within {timeout_ms} ms")


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        if exc[0] is not None:
            log.debug("ignored: %s", exc[1])
        return True


# ---- the log as a fold source: status, trace, replay, verify (tools and tests) ----------------


class KafkaLog:
    """The Kafka topics as a `runtime.fold.LogSource`: the queries fold each partition like the master."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._partitions: int | None = None

    @property
    def partitions(self) -> int:
        """The commands topic's partition count."""
        if self._partitions is None:
            with self.commands() as commands:
                self._partitions = commands.partitions
        return self._partitions

    def commands(self) -> KafkaStream:
        """Open the commands topic (it must exist: a master, worker or client creates it)."""
        return KafkaStream(self.settings, "commands", create=False)

    def events(self) -> KafkaStream:
        """Open the events topic."""
        return KafkaStream(self.settings, "events", create=False)

    def load_snapshot(self, partition: int, until: int | None = None) -> State | None:
        """The newest snapshot of `partition` covering at most command offset `until` (None: any)."""
        with KafkaStream(self.settings, "snapshots", create=False) as snapshots:
            return load_snapshot(snapshots, partition, None if until is None else until + 1)


def verify_partition(settings: KafkaSettings, partition: int) -> tuple[State, list[str]]:
    """Replay `partition` from scratch and compare with its recorded event batches (`debug.verify`).

    Returns the replayed state and the problems found (the first divergence), empty when the
    recorded batches equal the replay. Commands after the last decided one are not decided yet.
    """
    report = VerifyReport()
    log_ = KafkaLog(settings)
    with log_.commands() as commands, log_.events() as events:
        state = verify_partition_into(report, commands, events, partition)
    return state, [] if report.ok else [f"p{partition}: {report.divergence}"]
