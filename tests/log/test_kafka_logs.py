"""kafka-python's reconnect chatter is rate-limited in services (issue 14: "logging at WARNING and rate-limited")."""

from __future__ import annotations

import logging

from easysched_es.log.kafka_logs import DriverLogLimit


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)


def test_one_line_per_kind_per_interval_and_the_count_of_the_rest() -> None:
    now = [0.0]
    limit = DriverLogLimit(interval=30.0, clock=lambda: now[0])
    passed = []
    for i in range(100):  # ten lines a second for ten seconds, two kinds
        now[0] = i / 10
        for msg in ("Connection failed: %s", "Bootstrap %s not ready"):
            record = _record("kafka.net.manager", msg)
            if limit.filter(record):
                passed.append(record.msg)
    assert passed == ["Connection failed: %s", "Bootstrap %s not ready"]
    now[0] = 31.0
    record = _record("kafka.net.manager", "Connection failed: %s")
    assert limit.filter(record)
    assert "[99 similar lines in the last 30s not shown]" in str(record.msg)


def test_our_own_lines_are_never_held_back() -> None:
    limit = DriverLogLimit(interval=30.0, clock=lambda: 0.0)
    assert all(limit.filter(_record("easysched_es.runtime.kafka.master", "x")) for _ in range(10))
