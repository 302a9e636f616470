"""`/metrics`: Prometheus text format, computed from the projection at each scrape.

A collector (not counters bumped by the runtime) so that the figures are the log's, exact
after a restart, a rebuild or a failover, and agree with `status` and SQL. Latencies are
histograms over every attempt in the projection:

- dispatch latency: from the command that dispatched an attempt to the worker's report that
  its process runs (the `task_state` events DISPATCH -> RUNNING_EXECUTION of the attempt);
- kill latency: from the command that asked to kill a process to the worker's confirmation
  that it is gone (`kill_requested_at` -> `kill_confirmed_at`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from easysched_es.web.data import overview, rows
from projections.queries import LocalReader

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REASON_CHARS = 80

DISPATCH_SQL = """
SELECT epoch_ms(max(time) FILTER (WHERE payload->>'state' = 'RUNNING_EXECUTION'))
     - epoch_ms(min(time) FILTER (WHERE payload->>'state' = 'DISPATCH')) AS ms
FROM events WHERE type = 'task_state' AND payload->>'state' IN ('DISPATCH', 'RUNNING_EXECUTION')
GROUP BY instance, task, CAST(payload->>'attempt' AS INTEGER)
HAVING ms IS NOT NULL"""
KILL_SQL = """SELECT epoch_ms(kill_confirmed_at) - epoch_ms(kill_requested_at) AS ms FROM task_instances
WHERE kill_confirmed_at IS NOT NULL AND kill_requested_at IS NOT NULL"""
# The current attempt of every task: the row of its highest attempt.
TASKS_SQL = """SELECT state, count(*) AS n FROM (
    SELECT arg_max(state, attempt) AS state FROM task_instances GROUP BY instance, task) GROUP BY state"""


def normalise_reason(reason: str) -> str:
    """A rejection reason as a label of bounded cardinality: ids, numbers and quoted names folded."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    reason = re.sub(r"\d+(-\d+)?", "N", reason)
    return reason[:REASON_CHARS]


class ProjectionCollector(Collector):
    """Collects the scheduler's metrics from a projection reader and the log's directory."""

    def __init__(self, reader: Callable[[], LocalReader], log_dirs: dict[str, Path] | None = None) -> None:
        self._reader = reader
        self._log_dirs = log_dirs or {}

    def collect(self) -> Iterator[Metric]:
        reader = self._reader()
        view = overview(reader)
        g = GaugeMetricFamily("easysched_workflow_instances", "Workflow instances by state", labels=["state"])
        for state, n in view["instances_by_state"].items():
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily("easysched_task_instances", "Task instances (current attempt) by state", labels=["state"])
        for r in rows(reader, TASKS_SQL):
            g.add_metric([r["state"]], r["n"])
        yield g
        g = GaugeMetricFamily("easysched_timers_pending", "Delay-queue entries pending, by kind", labels=["kind"])
        for r in rows(reader, "SELECT kind, count(*) AS n FROM timers GROUP BY kind ORDER BY kind"):
            g.add_metric([r["kind"]], r["n"])
        yield g
        g = GaugeMetricFamily("easysched_slots", "Worker slots: used = attempts that may have a live process",
                              labels=["state"])
        g.add_metric(["used"], view["slots_used"])
        yield g
        lag = view["fold_lag"]
        yield GaugeMetricFamily("easysched_fold_lag_records", "Commands appended but not yet decided by the master",
                                value=lag["records"])
        yield GaugeMetricFamily("easysched_fold_lag_seconds", "Age of the oldest command not yet decided",
                                value=lag["seconds"])
        yield GaugeMetricFamily("easysched_projection_lag_bytes", "Log bytes not yet in the projection",
                                value=lag["projection_pending_bytes"])
        yield _histogram("easysched_dispatch_latency_seconds",
                         "From the dispatch decision to the worker's report that the process runs",
                         [r["ms"] for r in rows(reader, DISPATCH_SQL)])
        yield _histogram("easysched_kill_latency_seconds",
                         "From the command that asked for a kill to the worker's confirmation that the process is gone",
                         [r["ms"] for r in rows(reader, KILL_SQL)])
        g = GaugeMetricFamily("easysched_commands_rejected", "Commands the master rejected, by command and reason",
                              labels=["command", "reason"])
        counts: dict[tuple[str, str], int] = {}
        for r in rows(reader, """SELECT payload->>'command' AS command, payload->>'reason' AS reason, count(*) AS n
                                 FROM events WHERE type = 'command_rejected' GROUP BY ALL"""):
            key = (r["command"] or "?", normalise_reason(r["reason"] or ""))
            counts[key] = counts.get(key, 0) + r["n"]
        for (command, reason), n in sorted(counts.items()):
            g.add_metric([command, reason], n)
        yield g
        g = GaugeMetricFamily("easysched_log_records", "Records in the log (as projected), by stream",
                              labels=["stream"])
        g.add_metric(["commands"], rows(reader, "SELECT count(*) AS n FROM commands")[0]["n"])
        g.add_metric(["events"], rows(reader, "SELECT count(DISTINCT event_offset) AS n FROM events")[0]["n"])
        yield g
        if self._log_dirs:
            g = GaugeMetricFamily("easysched_log_bytes", "Bytes of the log's segment files, by stream",
                                  labels=["stream"])
            for name, path in sorted(self._log_dirs.items()):
                g.add_metric([name], _du(path))
            yield g


def _histogram(name: str, doc: str, millis: list[Any]) -> HistogramMetricFamily:
    seconds = sorted(max(float(ms), 0.0) / 1000 for ms in millis if ms is not None)
    buckets: list[tuple[str, float]] = []
    i = 0
    for bound in BUCKETS:
        while i < len(seconds) and seconds[i] <= bound:
            i += 1
        buckets.append((repr(bound), i))
    buckets.append(("+Inf", len(seconds)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=sum(seconds))


def _du(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def render(collector: ProjectionCollector) -> bytes:
    """The Prometheus text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
