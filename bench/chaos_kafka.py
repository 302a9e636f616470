"""Chaos on Kafka (`python bench/chaos.py --log kafka`): kill -9 masters, workers and the projector.

A PRIVATE local broker (`runtime/kafka/local_broker.LocalKafka`, never the shared one: it is
restarted once, half way) holds the topics. Two masters, two workers (fixed names and work
directories, so a restart reconciles) and the projector run as `easysched` processes; a client
thread starts workflows and stops some throughout. At random instants one of the five is killed
with SIGKILL and started again. Then the work drains and the checks of `bench/chaos.py` run on
the topics: every acknowledged command is in the log and decided, no attempt ran twice, every
instance is final, `verify` is clean on every partition, the projector's DuckDB file equals a
rebuild from the topics.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from easysched_es.core.codec import decode_batch
from easysched_es.core.state import WF_FINAL
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.embedded.local_run import wait_for
from easysched_es.runtime.fold import load_states, records
from easysched_es.runtime.kafka.client import KafkaClient
from easysched_es.runtime.kafka.local_broker import LocalKafka
from easysched_es.runtime.kafka.master import KafkaLog, verify_partition
from easysched_es.runtime.verdict import CommandRejectedError, instance_partition

PARTITIONS = 3
PREFIX = "chaos"
HEARTBEAT_TIMEOUT = 6.0
SESSION_TIMEOUT = 6.0
ROLES = ("master-a", "master-b", "worker-a", "worker-b", "projector")
CLIENTS = 3  # client threads: a start waits for its verdict, which a takeover delays by the session timeout


class Cluster:
    """The easysched processes of the bench, by name; each can be killed and started again."""

    def __init__(self, root: Path, bootstrap: str) -> None:
        self.root = root
        self.env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": PREFIX,
                    "EASYSCHED_KAFKA_PARTITIONS": str(PARTITIONS)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (root / "logs").mkdir(exist_ok=True)

    def args(self, name: str) -> list[str]:
        if name.startswith("master"):
            return ["master", "--name", name, "--session-timeout", str(SESSION_TIMEOUT), "--snapshot-every", "50"]
        if name.startswith("worker"):
            return ["worker", "--name", name, "--work-dir", str(self.root / name), "--kill-grace", "1",
                    "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT), "--session-timeout", str(SESSION_TIMEOUT)]
        return ["--data-dir", str(self.root / "projections"), "projector"]

    def start(self, name: str) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "easysched_es", *self.args(name)], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def client_loop(settings: KafkaSettings, ledger: Any, stop: threading.Event, seed: int) -> None:
    """Start workflows (and stop some) until `stop`; each acknowledgement (partition, offset) to the ledger."""
    rng = random.Random(seed)
    with KafkaClient(settings, timeout=60) as client:
        _client_loop(client, ledger, stop, rng)


def _client_loop(client: KafkaClient, ledger: Any, stop: threading.Event, rng: random.Random) -> None:
    while not stop.is_set():
        try:
            if ledger.started and rng.random() < 0.15:
                instance = rng.choice(ledger.started)
                partition = instance_partition(instance)
                try:
                    ledger.acked.append((partition, client.stop(instance).offset))
                    ledger.stopped.append(instance)
                except CommandRejectedError as exc:  # already final: in the log, rejected
                    ledger.acked.append((partition, exc.offset))
                    ledger.refused += 1
            else:
                instance = client.start("chaos")
                ledger.acked.append((instance_partition(instance), int(instance.split("-")[1])))
                ledger.started.append(instance)
        except Exception as exc:  # a bench reports, it does not stop
            ledger.errors[type(exc).__name__] += 1
        stop.wait(rng.uniform(0.01, 0.1))


def run_kafka(root: Path, kills: int, seed: int, ledger: Any, *, flow: Any) -> Any:
    """Kill -9 masters, workers and the projector `kills` times, restart the broker once; drain; keep the broker
    running for the checks (`check_kafka` stops it)."""
    from bench.chaos import Kills

    rng = random.Random(seed)
    broker = LocalKafka()
    broker.start(root / "kafka")
    settings = KafkaSettings(broker.bootstrap, prefix=PREFIX, partitions=PARTITIONS)
    cluster = Cluster(root, broker.bootstrap)
    ledger.broker, ledger.settings, ledger.cluster = broker, settings, cluster
    for name in ROLES:
        cluster.start(name)
    client = KafkaClient(settings, timeout=60)
    wait_for("a master deciding", lambda: _defined(client, flow), timeout=180, every=1.0)
    stop = threading.Event()
    appenders = [threading.Thread(target=client_loop, args=(settings, ledger, stop, seed + k), daemon=True)
                 for k in range(CLIENTS)]
    out = Kills()
    t0 = time.monotonic()
    for appender in appenders:
        appender.start()
    victims: Counter[str] = Counter()
    # Every role is killed as often as the others (in a random order), at random instants.
    order = [role for _ in range(kills // len(ROLES) + 1) for role in rng.sample(ROLES, len(ROLES))]
    try:
        for i in range(kills):
            time.sleep(rng.uniform(1.0, 8.0))
            if i == kills // 2:
                broker.restart()  # same ports, same data: every process reconnects
                victims["broker (restarted)"] += 1
            name = order[i]
            cluster.kill(name)
            victims[name] += 1
            out.total += 1
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 0.5))
                cluster.start(name)  # and killed again while it starts up, right away
                time.sleep(rng.uniform(0.0, 1.0))
                cluster.kill(name)
                out.total += 1
                out.during_recovery += 1
                victims[name] += 1
            cluster.start(name)
        stop.set()
        for appender in appenders:
            appender.join(90)
        out.seconds = time.monotonic() - t0
        ledger.victims = dict(victims)
        wait_for("every instance final", lambda: _all_final(settings), timeout=600, every=2.0)
        # The projector catches up, then stops (it holds its DuckDB file).
        wait_for("the projector caught up", lambda: _projected(root, settings), timeout=300, every=2.0)
    finally:
        stop.set()
        client.close()
        cluster.stop_all()
    return out


def _defined(client: KafkaClient, flow: Any) -> bool:
    try:
        client.define(flow)
        return True
    except Exception:
        return False


def _all_final(settings: KafkaSettings) -> bool:
    states = load_states(KafkaLog(settings))
    return all(inst.state in WF_FINAL for state in states for inst in state.instances.values())


def _projected(root: Path, settings: KafkaSettings) -> bool:
    """Whether the running projector's /health says it has caught up with the topics."""
    import json
    import urllib.request

    service = root / "projections" / "service.json"
    if not service.exists():
        return False
    try:
        port = json.loads(service.read_text())["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return bool(json.loads(answer.read()).get("caught_up"))
    except Exception:
        return False


def check_kafka(root: Path, ledger: Any, runs_file: Path) -> dict[str, Any]:
    """The figures of `bench/chaos.py`, on the topics; stops the private broker at the end."""
    settings = ledger.settings
    try:
        states = load_states(KafkaLog(settings))
        instances = {i: inst for state in states for i, inst in state.instances.items()}
        logged: set[tuple[int, int]] = set()
        decided: set[tuple[int, int]] = set()
        with KafkaStream(settings, "commands", create=False) as commands, \
                KafkaStream(settings, "events", create=False) as events:
            for p in range(PARTITIONS):
                logged |= {(p, r.offset) for r in records(commands, p) if r.corrupt is None}
                decided |= {(p, decode_batch(r.payload).offset) for r in records(events, p)}
        lost = [a for a in ledger.acked if a not in logged or a not in decided]
        missing = [i for i in ledger.started if i not in instances]
        lines = runs_file.read_text().splitlines() if runs_file.exists() else []
        twice = [line for line, n in Counter(lines).items() if n > 1]
        # The flow has no retries: a task with two attempt lines was rerun after its worker was
        # declared lost (the first attempt's process had run, its report died with the worker).
        rerun = [k for k, n in Counter(tuple(line.split()[:2]) for line in lines).items() if n > 1]
        stuck = [i for i, inst in instances.items() if inst.state not in WF_FINAL]
        problems = [problem for p in range(PARTITIONS) for problem in verify_partition(settings, p)[1]]
        return {
            "kills by victim": ledger.victims,
            "acknowledged commands": len(ledger.acked),
            "instances started": len(ledger.started),
            "stops (rejected as already final)": f"{len(ledger.stopped) + ledger.refused} ({ledger.refused})",
            "client errors while processes were down": dict(ledger.errors),
            "attempts run": len(lines),
            "acknowledged commands lost": len(lost) + len(missing),
            "attempts run twice": len(twice),
            "tasks rerun as a new attempt after a worker loss": len(rerun),
            "instances not final": len(stuck),
            "verify": "clean" if not problems else f"DIVERGENCE {problems[0]}",
            "projection equals a rebuild": _projection_equals_rebuild(root, settings),
            "final states": dict(Counter(inst.state for inst in instances.values())),
        }
    finally:
        ledger.broker.stop()


def _projection_equals_rebuild(root: Path, settings: KafkaSettings) -> bool:
    from projections.projector import Projector
    from tests.projections.helpers import dump

    with KafkaStream(settings, "events", create=False) as events, \
            KafkaStream(settings, "commands", create=False) as commands:
        with Projector(root / "projections" / "projections.duckdb", events, commands) as live:
            live.catch_up()
            kept = dump(live.cursor())
        with Projector(root / "rebuilt.duckdb", events, commands) as fresh:
            fresh.catch_up()
            rebuilt = dump(fresh.cursor())
    for table in sorted(set(kept) | set(rebuilt)):  # what differs, to look into it
        a, b = set(kept.get(table, [])), set(rebuilt.get(table, []))
        if a != b:
            only_live, only_rebuilt = sorted(a - b, key=repr), sorted(b - a, key=repr)
            print(f"projection table {table}: {len(only_live)} row(s) only in the live file, e.g. {only_live[:3]}; "
                  f"{len(only_rebuilt)} only in the rebuild, e.g. {only_rebuilt[:3]}", file=sys.stderr)
    return kept == rebuilt
