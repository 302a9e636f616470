"""The Kafka worker: acts on the effects in `<prefix>.events`, reports to `<prefix>.commands`.

Workers of one worker group form a consumer group (`<prefix>-workers-<group>`) over the events
topic: each events partition is read by one worker of the group, which runs the `DispatchTask`
effects of its group found there and the `KillTaskProcess` effects for attempts it claimed. An
attempt's dispatch and kill are in the same partition, in that order, so the worker that ran it
sees its kill. The process handling (claim files, process groups, kill grace, adoption after a
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
from pathlib import Path

import msgspec
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kerr

from easysched_es.core import commands as c
from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.events import DispatchTask, Event, KillTaskProcess
from easysched_es.kafka_client import instance_partition
from easysched_es.log.kafka import KafkaSettings, ensure_topics
from easysched_es.runtime.worker import Worker, now_ms

log = logging.getLogger(__name__)


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
        claim, _ = self.worker._paths(*key)  # noqa: SLF001 - the claim file decides ownership
        return claim.exists()

    def apply(self, effect: Event) -> None:
        """Run one effect now, on this thread (the offset is committed after it)."""
        try:
            if isinstance(effect, DispatchTask):
                if effect.worker_group == self.group:
                    self.worker._dispatch(effect)  # noqa: SLF001
            elif isinstance(effect, KillTaskProcess) and self._mine(effect):
                self.worker._kill(effect)  # noqa: SLF001
        except Exception:
            log.exception("effect %r failed", effect)

    def run(self, stop: threading.Event) -> None:
        """Consume effects, heartbeat, until `stop`; task processes keep running (a restart adopts them)."""
        self.worker.start()
        last_beat = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_beat >= self.heartbeat_timeout / 3:
                    self.heartbeat()
                    last_beat = time.monotonic()
                try:
                    batches = self.consumer.poll(timeout_ms=100)
                except kerr.KafkaError as exc:
                    log.warning("poll failed (%s); retrying", exc)
                    time.sleep(0.5)
                    continue
                if not batches:
                    continue
                for records in batches.values():
                    for record in records:
                        try:
                            batch = decode_batch(record.value)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            log.error("undecodable events record at offset %d: %s", record.offset, exc)
                            continue
                        for ev in batch.events:
                            if isinstance(ev, (DispatchTask, KillTaskProcess)):
                                self.apply(ev)
                self.producer.flush()
                try:
                    self.consumer.commit()
                except kerr.KafkaError as exc:
                    log.warning("could not commit the events offsets (%s); effects may be seen again", exc)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker threads, flush reports, leave the group."""
        self.worker.stop()
        try:
            self.producer.flush(timeout=10)
            self.producer.close(timeout=10)
        finally:
            self.consumer.close(autocommit=False)
