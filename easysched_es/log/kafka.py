"""The Kafka log: each stream is a topic `<prefix>.<name>` (kafka-python, `crc32c` for CRCs).

- `commands` and `events` have the same partition count (default 3); `snapshots` is compacted.
  Topics are created on first use (`ensure_topics`); an existing topic keeps its partition count.
- Offsets are Kafka offsets. A record's `next` is `offset + 1`: transaction markers and aborted
  records leave gaps, which a reader simply skips.
- Readers use `read_committed`: a transaction the master did not commit is never seen.
- Security settings (SASL/SSL) pass through unchanged to kafka-python: `KafkaSettings.client`
  is merged into every producer, consumer and admin client (see `load_client_config`).

Driver exceptions are translated into `LogError` with a message that says what to check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr

from easysched_es.log.base import LogError, Record
from easysched_es.log.json_commands import is_json, to_msgpack

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_PREFIX",
    "KafkaSettings",
    "KafkaStream",
    "ensure_topics",
    "load_client_config",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "easysched"
DEFAULT_PARTITIONS = 3
STREAMS = ("commands", "events", "snapshots")
# Per-record (batch) limit of our topics: snapshots of a busy partition are big.
MAX_RECORD_BYTES = 32 << 20

# How long the broker may hold a reader's fetch that finds nothing. `read` never waits for new
# records, and the broker answers one connection's requests in order: with kafka-python's 500 ms
# a reader's next end-offset lookup waited behind the fetch it had sent ahead (0.2 s a read).
READ_FETCH_WAIT_MS = 10

# Fetch sizes for folding: big fetches and polls make per-request overhead vanish.
FAST_CONSUMER: dict[str, Any] = {
    "fetch_max_bytes": 64 << 20,
    "max_partition_fetch_bytes": 32 << 20,
    "max_poll_records": 100_000,
    "receive_buffer_bytes": 4 << 20,
}


def load_client_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """kafka-python settings for every client (security: SASL/SSL), from a file and the environment.

    The file (argument, else `$EASYSCHED_KAFKA_CONFIG`) is JSON (`{"security_protocol": "SASL_SSL", ...}`)
    or Java-style properties (`security.protocol=SASL_SSL`; dots become underscores). Environment
    variables `EASYSCHED_KAFKA_<SETTING>` (e.g. `EASYSCHED_KAFKA_SASL_PLAIN_PASSWORD`) override it.
    """
    config: dict[str, Any] = {}
    chosen = path or os.environ.get("EASYSCHED_KAFKA_CONFIG")
    if chosen:
        text = Path(chosen).read_text()
        if text.lstrip().startswith("{"):
            config.update(json.loads(text))
        else:
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "!")) and "=" in line:
                    key, _, value = line.partition("=")
                    config[key.strip().replace(".", "_")] = value.strip()
    for key, value in os.environ.items():
        if key.startswith("EASYSCHED_KAFKA_") and key not in ("EASYSCHED_KAFKA_CONFIG", "EASYSCHED_KAFKA_PREFIX",
                                                              "EASYSCHED_KAFKA_PARTITIONS", "EASYSCHED_KAFKA_JARS",
                                                              "EASYSCHED_KAFKA_POM"):
            config[key[len("EASYSCHED_KAFKA_"):].lower()] = value
    return config


@dataclass(frozen=True)
class KafkaSettings:
    """Where the log lives: bootstrap servers, topic prefix, partition count, client settings."""

    bootstrap: str
    prefix: str = DEFAULT_PREFIX
    partitions: int = DEFAULT_PARTITIONS
    client: Mapping[str, Any] = field(default_factory=dict)
    # Seconds any one broker operation may take (connect, metadata, a request) before it fails
    # with a LogError naming the bootstrap; None keeps kafka-python's own, longer defaults.
    timeout: float | None = None

    @classmethod
    def from_env(cls, bootstrap: str, prefix: str | None = None, partitions: int | None = None,
                 timeout: float | None = None) -> KafkaSettings:
        """Settings with prefix/partitions from `$EASYSCHED_KAFKA_PREFIX` / `$EASYSCHED_KAFKA_PARTITIONS`."""
        return cls(
            bootstrap=bootstrap,
            prefix=prefix or os.environ.get("EASYSCHED_KAFKA_PREFIX", DEFAULT_PREFIX),
            partitions=partitions or int(os.environ.get("EASYSCHED_KAFKA_PARTITIONS", DEFAULT_PARTITIONS)),
            client=load_client_config(),
            timeout=timeout,
        )

    def topic(self, stream: str) -> str:
        """The topic of a stream: `<prefix>.<stream>`."""
        return f"{self.prefix}.{stream}"

    def common(self) -> dict[str, Any]:
        """Settings shared by every kafka-python client (bounded by `timeout` when it is set)."""
        bounds: dict[str, Any] = {}
        if self.timeout is not None:
            ms = max(int(self.timeout * 1000), 1000)
            # Reconnect often: kafka-python's backoff grows to 30 s, past any bound we set.
            bounds = {"bootstrap_timeout_ms": ms, "reconnect_backoff_max_ms": min(ms, 1000)}
        return {"bootstrap_servers": self.bootstrap.split(","), **bounds, **self.client}

    def consumer(self) -> dict[str, Any]:
        """`common()` plus the request bound of a consumer or admin client."""
        if self.timeout is None:
            return self.common()
        return {"request_timeout_ms": max(int(self.timeout * 1000), 1000), **self.common()}

    def producer(self) -> dict[str, Any]:
        """`common()` plus the bounds of a producer (metadata wait, request, delivery)."""
        if self.timeout is None:
            return self.common()
        ms = max(int(self.timeout * 1000), 1000)
        # kafka-python wants delivery >= linger + request (our producers linger 1 ms).
        return {"max_block_ms": ms, "request_timeout_ms": ms, "delivery_timeout_ms": ms + 1000, **self.common()}


def describe_failure(exc: BaseException, settings: KafkaSettings) -> str:
    """One line for a user: which broker failed, how, and what to check."""
    if "Authentication" in type(exc).__name__:  # SaslAuthenticationFailedError and kin
        user = settings.client.get("sasl_plain_username") or settings.client.get("sasl_kerberos_service_name")
        return (f"Kafka at {settings.bootstrap} refused the credentials{f' of user {user}' if user else ''} "
                f"({exc}); check the user and password in EASYSCHED_KAFKA_CONFIG")
    from easysched_es.log.kafka_auth import auth_problem

    # The broker may be up and want (or not want) SASL: a silent timeout would hide that.
    problem = auth_problem(settings.bootstrap, settings.client, min(2.0, settings.timeout or 2.0))
    if problem is not None:
        return problem
    within = f" within {settings.timeout:g}s" if settings.timeout is not None else ""
    reason = str(exc) or type(exc).__name__
    if not reason.startswith(type(exc).__name__):
        reason = f"{type(exc).__name__}: {reason}"
    return (f"Kafka at {settings.bootstrap} did not answer{within} ({reason}); "
            "check the broker runs (easysched kafka-local status) and --kafka / EASYSCHED_KAFKA")


_describe = describe_failure


_created: set[tuple[str, str]] = set()
_created_lock = threading.Lock()


def ensure_topics(settings: KafkaSettings, streams: Sequence[str] = STREAMS, timeout: float = 60.0) -> dict[str, int]:
    """Create the topics of `streams` if they are missing; return each topic's partition count.

    `snapshots` is compacted, the others keep every record. Partition counts of existing topics are kept as they are.
    """
    wanted = {settings.topic(s): s for s in streams}
    if settings.timeout is not None:
        timeout = min(timeout, settings.timeout)
    try:
        admin = KafkaAdminClient(**{"request_timeout_ms": int(timeout * 1000),
                                    "bootstrap_timeout_ms": int(timeout * 1000), **settings.common()})
    except kerr.KafkaError as exc:
        raise LogError(_describe(exc, settings)) from exc
    try:
        missing = {}
        existing = {}
        for info in admin.describe_topics(list(wanted)):
            name = info.get("topic") or info.get("name")
            if info.get("error_code", 0) == 0 and info.get("partitions"):
                existing[name] = len(info["partitions"])
        for topic, stream in wanted.items():
            if topic not in existing:
                configs = {"max.message.bytes": str(MAX_RECORD_BYTES)}
                if stream == "snapshots":
                    configs["cleanup.policy"] = "compact"
                else:  # the log is the truth: keep every command and event (log/kafka_retention.py)
                    configs.update({"retention.ms": "-1", "retention.bytes": "-1"})
                missing[topic] = {"num_partitions": settings.partitions, "replication_factor": -1, "configs": configs}
        if missing:
            with contextlib.suppress(kerr.TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=int(timeout * 1000), raise_errors=False,
                                    wait_for_metadata=True)
            for info in admin.describe_topics(list(missing)):
                name = info.get("topic") or info.get("name")
                if info.get("partitions"):
                    existing[name] = len(info["partitions"])
        lost = [t for t in wanted if t not in existing]
        if lost:
            raise LogError(f"could not create Kafka topics {lost} at {settings.bootstrap}; check the broker log")
        return existing
    except kerr.KafkaError as exc:
        raise LogError(_describe(exc, settings)) from exc
    finally:
        admin.close()


class _Reader:
    """One assigned (group-less) consumer for one partition, with a look-ahead buffer."""

    def __init__(self, settings: KafkaSettings, tp: TopicPartition, consumer_config: Mapping[str, Any]) -> None:
        self.tp = tp
        self.consumer = KafkaConsumer(
            **settings.consumer(), group_id=None, enable_auto_commit=False, isolation_level="read_committed",
            auto_offset_reset="earliest", **{"fetch_max_wait_ms": READ_FETCH_WAIT_MS, **consumer_config},
        )
        self.consumer.assign([tp])
        self.buffer: list[Record] = []
        self.covered_from = -1  # the buffer holds every record at or after this offset up to `fetched_to`
        self.fetched_to = -1

    def seek(self, start: int) -> None:
        self.consumer.seek(self.tp, start)
        self.buffer = []
        self.covered_from = self.fetched_to = start

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def record_of(r: Any) -> Record:
    """Our Record of a kafka-python ConsumerRecord (a JSON command becomes its msgpack form)."""
    value = r.value if r.value is not None else b""
    if r.headers and is_json(r.headers):  # a JSON-encoded command (log/json_commands.py)
        payload, reason = to_msgpack(value)
        return Record(r.offset, payload, r.offset + 1, reason)
    return Record(r.offset, value, r.offset + 1)


def within_budget(records: Sequence[Record], max_bytes: int) -> list[Record]:
    """The first `records` whose payloads fit in `max_bytes` (always at least one, if any)."""
    out: list[Record] = []
    budget = max_bytes
    for record in records:
        if out and len(record.payload) > budget:
            break
        out.append(record)
        budget -= len(record.payload)
    return out


class KafkaStream:
    """One stream (`commands`, `events` or `snapshots`) as a Kafka topic. Thread-safe.

    `read` does not wait for new records: it returns what the broker holds below its current
    (last stable) end offset, waiting only for the fetches needed to get there.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        name: str,
        *,
        create: bool = True,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        read_timeout: float = 10.0,
        partitions: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.topic = settings.topic(name)
        self.read_timeout = read_timeout
        self._producer_config = dict(producer_config or {})
        self._consumer_config = {**FAST_CONSUMER, **(consumer_config or {})}
        if partitions is not None:  # the caller looked it up already (one metadata request for all streams)
            self._partitions = partitions
        elif create:
            counts = ensure_topics(settings, [name])
            self._partitions = counts[self.topic]
        else:
            self._partitions = self._count_partitions()
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()
        self._readers: dict[int, _Reader] = {}
        self._read_locks = [threading.Lock() for _ in range(self._partitions)]
        self._readers_lock = threading.Lock()
        self._end_consumer: KafkaConsumer | None = None
        self._closed = False

    def _count_partitions(self) -> int:
        try:
            consumer = KafkaConsumer(**self.settings.consumer(), group_id=None, enable_auto_commit=False)
        except kerr.KafkaError as exc:
            raise LogError(_describe(exc, self.settings)) from exc
        try:
            parts = consumer.partitions_for_topic(self.topic)
        except kerr.KafkaError as exc:
            raise LogError(_describe(exc, self.settings)) from exc
        finally:
            consumer.close()
        if not parts:
            raise LogError(f"topic {self.topic} does not exist at {self.settings.bootstrap}; start a master first")
        return len(parts)

    @property
    def partitions(self) -> int:
        """The topic's partition count."""
        return self._partitions

    # ------------------------------------------------------------------------------ append

    def producer(self) -> KafkaProducer:
        """The shared idempotent producer (acks=all), created on first use."""
        with self._producer_lock:
            self._check_open()
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        **self.settings.producer(), acks="all", enable_idempotence=True, linger_ms=1,
                        batch_size=1 << 20, max_request_size=MAX_RECORD_BYTES, **self._producer_config,
                    )
                except kerr.KafkaError as exc:
                    raise LogError(_describe(exc, self.settings)) from exc
            return self._producer

    def append(self, payloads: Sequence[bytes], partition: int = 0, key: bytes | None = None) -> list[int]:
        """Produce `payloads` in order to `partition`; return their offsets once acknowledged by all ISR."""
        self._check_partition(partition)
        if not payloads:
            return []
        producer = self.producer()
        try:
            futures = [producer.send(self.topic, value=p, key=key, partition=partition) for p in payloads]
            producer.flush(timeout=self.read_timeout)
            return [f.get(timeout=self.read_timeout).offset for f in futures]
        except kerr.KafkaError as exc:
            raise LogError(_describe(exc, self.settings)) from exc

    # -------------------------------------------------------------------------------- read

    def _reader(self, partition: int) -> _Reader:
        with self._readers_lock:
            self._check_open()
            reader = self._readers.get(partition)
            if reader is None:
                try:
                    reader = _Reader(self.settings, TopicPartition(self.topic, partition), self._consumer_config)
                except kerr.KafkaError as exc:
                    raise LogError(_describe(exc, self.settings)) from exc
                self._readers[partition] = reader
            return reader

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        """The committed records at or after `start` that the broker holds now (maybe none)."""
        self._check_partition(partition)
        with self._read_locks[partition]:
            reader = self._reader(partition)
            try:
                if not (reader.covered_from <= start <= reader.fetched_to):
                    if start >= reader.consumer.end_offsets([reader.tp])[reader.tp]:
                        return []  # at or past the end (seeking there would reset to the start)
                    reader.seek(start)
                else:
                    reader.buffer = [r for r in reader.buffer if r.offset >= start]
                    reader.covered_from = start
                if not reader.buffer:
                    self._fill(reader)
            except kerr.KafkaError as exc:
                raise LogError(_describe(exc, self.settings)) from exc
            return within_budget(reader.buffer, max_bytes)

    def _fill(self, reader: _Reader) -> None:
        consumer, tp = reader.consumer, reader.tp
        deadline = time.monotonic() + self.read_timeout
        end: int | None = None
        while True:
            batch = consumer.poll(timeout_ms=20, max_records=self._consumer_config["max_poll_records"])
            records = batch.get(tp, [])
            if records:
                reader.buffer.extend(record_of(r) for r in records)
                reader.fetched_to = records[-1].offset + 1
                return
            position = consumer.position(tp)
            reader.fetched_to = max(reader.fetched_to, position)
            if end is None:
                end = consumer.end_offsets([tp])[tp]
            if position >= end or time.monotonic() > deadline:
                return

    def iter_records(self, partition: int = 0, start: int = 0) -> Iterator[Record]:
        """Every record from `start` to the end as of now (for replay and tools)."""
        pos = start
        while True:
            batch = self.read(pos, partition)
            if not batch:
                return
            yield from batch
            pos = batch[-1].next

    def end(self, partition: int = 0) -> int:
        """The (last stable) end offset: the next record lands at or after it."""
        self._check_partition(partition)
        tp = TopicPartition(self.topic, partition)
        with self._readers_lock:
            self._check_open()
            try:
                if self._end_consumer is None:
                    self._end_consumer = KafkaConsumer(**self.settings.consumer(), group_id=None,
                                                       enable_auto_commit=False, isolation_level="read_committed")
                return int(self._end_consumer.end_offsets([tp])[tp])
            except kerr.KafkaError as exc:
                raise LogError(_describe(exc, self.settings)) from exc

    # ------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Close the producer and consumers (idempotent)."""
        with self._producer_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            if self._producer is not None:
                self._producer.close(timeout=10)
            for reader in self._readers.values():
                reader.close()
            if self._end_consumer is not None:
                self._end_consumer.close()
            self._readers.clear()

    def __enter__(self) -> KafkaStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"the Kafka stream {self.topic} is closed; open a new KafkaStream")

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"topic {self.topic} has partitions 0..{self._partitions - 1}, not {partition}")

    def __repr__(self) -> str:
        return f"KafkaStream({self.topic!r} at {self.settings.bootstrap})"
