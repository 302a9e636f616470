"""The Kafka worker's reading helpers and testing hooks (runtime/kafka/worker.py)."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import msgspec
from kafka import KafkaConsumer
from kafka import errors as kerr

from easysched_es.core.codec import decode_batch
from easysched_es.core.events import DispatchTask, Event, EventBatch, KillTaskProcess

log = logging.getLogger("easysched_es.runtime.kafka.worker")


def batches(records: list[Any]) -> list[EventBatch]:
    """The decodable event batches of polled events records."""
    out: list[EventBatch] = []
    for record in records:
        try:
            out.append(decode_batch(record.value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("undecodable events record at offset %d: %s", record.offset, exc)
    return out


def effects(records: list[Any]) -> list[Event]:
    """The dispatch and kill effects in polled events records."""
    return [ev for batch in batches(records) for ev in batch.events if isinstance(ev, (DispatchTask, KillTaskProcess))]


def poll(consumer: KafkaConsumer) -> dict[Any, list[Any]]:
    """One poll of `consumer`; nothing (after a pause) when the broker cannot be reached."""
    try:
        polled: dict[Any, list[Any]] = consumer.poll(timeout_ms=100)
        return polled
    except kerr.KafkaError as exc:
        log.warning("poll failed (%s); retrying", exc)
        time.sleep(0.5)
        return {}


def pause_self(where: str) -> None:
    """Testing hook: SIGSTOP this process, and return only once it was stopped and continued.

    A signal sent to a multi-threaded process may be taken by another thread: the caller can run
    on for a while before the stop reaches it, so it waits for the gap in its clock.
    """
    log.warning("testing hook: pausing (SIGSTOP) %s", where)
    last = time.monotonic()
    os.kill(os.getpid(), signal.SIGSTOP)
    while True:
        time.sleep(0.01)
        now = time.monotonic()
        if now - last > 1.0:
            break
        last = now
    log.warning("testing hook: continued after %.1fs", now - last)
