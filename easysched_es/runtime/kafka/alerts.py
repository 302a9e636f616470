"""The alert sender of a Kafka master: the owner of a partition sends that partition's alerts.

The same `runtime.alerts.AlertSender` as the embedded runtime, in its own threads, so a failing
or hanging webhook never blocks the master loop. It is given the `SendAlert` effects of the
batches the master committed, and on takeover the ones the state still owes
(`pending_effects`: sent again with the same key and attempt; delivery is at least once). Its
reports (`AlertSent`/`AlertFailed`) are produced with a plain idempotent producer to the
instance's partition of the commands topic, where the owner folds them like any command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import errors as kerr

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.events import Event, SendAlert
from easysched_es.core.state import State
from easysched_es.core.step import pending_effects
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.alerts import AlertSender
from easysched_es.runtime.fold import instance_partition

log = logging.getLogger(__name__)

REPORT_TRIES = 5


class KafkaAlerts:
    """Sends the `SendAlert` effects of the owned partitions and reports back through the commands topic."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._commands = KafkaStream(settings, "commands", create=False)
        self._sender = AlertSender(self._report)
        self._sender.start()

    def send(self, events: Iterable[Event]) -> int:
        """Queue every `SendAlert` among `events` (never waits for a delivery); return how many."""
        sent = 0
        for event in events:
            if isinstance(event, SendAlert):
                self._sender.send(event)
                sent += 1
        return sent

    def send_owed(self, state: State) -> int:
        """Queue the alerts `state` still owes (a partition just became ready); return how many."""
        return self.send(pending_effects(state))

    def _report(self, command: c.Command) -> None:
        # Runs in a sender thread. A report that cannot be produced leaves the attempt in flight
        # in the fold; the next owner of the partition owes it again.
        partition = instance_partition(getattr(command, "instance", ""))
        for attempt in range(1, REPORT_TRIES + 1):
            try:
                self._commands.append([encode(command)], partition)
                return
            except kerr.KafkaError as exc:
                log.warning("alert report to partition %d failed (try %d): %s", partition, attempt, exc)
                time.sleep(min(5.0, 0.5 * attempt))

    def close(self) -> None:
        """Stop the sender threads (attempts in progress finish) and close the producer."""
        self._sender.stop()
        self._commands.close()
