"""The Kafka worker: acts on the effects in `<prefix>.events`, reports to `<prefix>.commands`.

Workers of one worker group form a consumer group (`<prefix>-workers-<group>`) over the events
topic: each events partition is read by one worker of the group, which runs the `DispatchTask`
effects of its group found there and the `KillTaskProcess` effects for attempts it claimed.

Kills are also read from EVERY events partition by a second, group-less consumer (from the end
of the topic as of the worker's start): a rebalance can move an events partition to another
worker while this one still runs tasks dispatched from it, and the kills for those tasks then
land with the new owner, which ignores them (not its claims). Each worker therefore acts on a
kill for any attempt it claimed, whoever owns the partition now. A kill seen for an attempt not
(yet) claimed here is remembered: if the dispatch of that attempt comes later (the group consumer
lags), the attempt is killed before it starts instead of running. Each kill is acted on once per
worker process. The process handling (claim files, process groups, kill grace, adoption after a
restart) is `runtime.worker.Worker`, with its claims in the worker's own directory.

The consumer offset is committed after the effects of a poll were applied; an effect seen twice
(after a crash) is recognised by its claim file. Reports are produced (acks=all) to the partition
of their instance; heartbeats go to every partition with the worker's timeout, so a worker that
disappears has its attempts declared lost by the masters (through `CheckDue`).
"""

from __future__ import annotations

import logging
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
from easysched_es.core.events import DispatchTask, Event, KillTaskProcess
from easysched_es.kafka_client import instance_partition
from easysched_es.log.kafka import KafkaSettings, ensure_topics
from easysched_es.runtime.worker import Key, Worker, now_ms

log = logging.getLogger(__name__)

# Kill effects remembered (acted on, or waiting for a dispatch this worker may still see).
REMEMBERED_KILLS = 100_000


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
    ) -> None:
        self.settings = settings
        self.group = group
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
        # Every events partition, for the kills (see the module doc); positioned at the end now.
        self.kill_consumer = KafkaConsumer(**settings.common(), group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed")
        events = [TopicPartition(settings.topic("events"), p) for p in range(counts[settings.topic("events")])]
        self.kill_consumer.assign(events)
        self.kill_consumer.seek_to_end(*events)
        for tp in events:
            self.kill_consumer.position(tp)
        self._apply_lock = threading.Lock()
        # key -> the kill effect while not acted on (the dispatch may come later), None once acted on.
        self._kills: OrderedDict[Key, KillTaskProcess | None] = OrderedDict()

    def _report(self, command: c.Command) -> None:
        partition = instance_partition(command.instance)  # type: ignore[union-attr]
        self.producer.send(self.commands_topic, value=encode(command), partition=partition)

    def heartbeat(self) -> None:
        """Tell every partition's master this worker is alive."""
        hb = encode(c.Heartbeat(at=now_ms(), worker=self.name, timeout_ms=round(self.heartbeat_timeout * 1000)))
        for p in range(self.partitions):
            self.producer.send(self.commands_topic, value=hb, partition=p)

    def _mine(self, effect: KillTaskProcess) -> bool:
        key = (effect.instance, effect.task, effect.attempt)
        if key in self.worker.running():
            return True
        claim, _ = self.worker._paths(*key)
        return claim.exists()

    def apply(self, effect: Event) -> None:
        """Run one effect now (the offset is committed after it); effects are applied one at a time."""
        with self._apply_lock:
            try:
                if isinstance(effect, DispatchTask):
                    if effect.worker_group != self.group:
                        return
                    kill = self._kills.get((effect.instance, effect.task, effect.attempt))
                    if kill is None:
                        self.worker._dispatch(effect)
                    else:  # its kill came first (from another partition's reader): never start it
                        self._remember(kill, acted=True)
                        self.worker._kill(kill)
                elif isinstance(effect, KillTaskProcess):
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
    def _effects(records: list[Any]) -> list[Event]:
        """The dispatch and kill effects in polled events records."""
        out: list[Event] = []
        for record in records:
            try:
                batch = decode_batch(record.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("undecodable events record at offset %d: %s", record.offset, exc)
                continue
            out.extend(ev for ev in batch.events if isinstance(ev, (DispatchTask, KillTaskProcess)))
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
        """Act on the kills of every events partition (for attempts this worker claimed)."""
        while not stop.is_set():
            for records in self._poll(self.kill_consumer).values():
                for ev in self._effects(records):
                    if isinstance(ev, KillTaskProcess):
                        self.apply(ev)

    def run(self, stop: threading.Event) -> None:
        """Consume effects, heartbeat, until `stop`; task processes keep running (a restart adopts them)."""
        self.worker.start()
        kills = threading.Thread(target=self._kill_loop, args=(stop,), name="worker-kills", daemon=True)
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
                for records in batches.values():
                    for ev in self._effects(records):
                        self.apply(ev)
                self.producer.flush()
                try:
                    self.consumer.commit()
                except kerr.KafkaError as exc:
                    log.warning("could not commit the events offsets (%s); effects may be seen again", exc)
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
