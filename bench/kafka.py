"""Kafka figures: fold throughput, and fan-out, kill latency and failover with real processes.

    python bench/kafka.py [--bootstrap HOST:PORT] [-n 200000] [--fanout 200] [--kills 20] [--failovers 5]
                          [--skip-cli] [--cli-records 10000]

Without --bootstrap (or $EASYSCHED_KAFKA) a local broker is started for the run. Prints figures;
asserts nothing about time. Measures, on one partition of a fresh topic prefix:

- produce: commands/s produced by kafka-python (acks=all, idempotent, linger 5 ms);
- bare consume: kafka-python's consume rate of the same records with default consumer settings;
- consume+fold: the takeover path of a master (fetch with large fetch sizes, decode, `step`);
- live master: `KafkaMaster` deciding every command (events + offsets in transactions).

Then the CLI as a user meets it, each call a process (`bench/kafka_cli.py`): `start`, `status
INSTANCE` and `projections rebuild` beside `KafkaClient` in a warm process, with Python start-up
and import time (targets: start < 200 ms, status INSTANCE < 300 ms, rebuild of 10,000 records < 2 s).

Then, with separate `easysched master` and `easysched worker` processes on 3 partitions:

- fan-out: a workflow of N independent SHELL `true` tasks, tasks/s from its start command to its
  last task's report (target >= 100 tasks/s);
- kill: `kill-task` on a running `sleep 300` (produce + verdict) until the process is gone, p50/p99
  over K kills (target p99 < 0.5 s);
- failover: two masters; kill -9 of the one owning the partition, then a command to that
  partition: time from the kill to the new owner's decision of it (its first action), over F runs
  (target < 10 s; the group session timeout, printed, is most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named kafka.py: keep its own directory off the path so `import kafka` finds kafka-python.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from easysched_es.core import commands as c  # noqa: E402
from easysched_es.core.codec import encode  # noqa: E402
from easysched_es.core.definitions import ShellTask, WorkflowDefinition  # noqa: E402
from easysched_es.core.state import State  # noqa: E402
from easysched_es.core.step import step_record  # noqa: E402
from easysched_es.log.kafka import FAST_CONSUMER, KafkaSettings, ensure_topics  # noqa: E402
from easysched_es.runtime.embedded.local_run import pid_alive, stop_run, wait_for  # noqa: E402
from easysched_es.runtime.fold import fold_stream, start_state  # noqa: E402
from easysched_es.runtime.kafka.client import KafkaClient  # noqa: E402
from easysched_es.runtime.kafka.master import KafkaLog, KafkaMaster  # noqa: E402


def commands(n: int) -> list[bytes]:
    t0 = 1_709_546_400_000
    out = [encode(c.DefineWorkflow(at=t0, definition=WorkflowDefinition(
        name="bench", tasks=[ShellTask(name="t", command="true")])))]
    for i in range(1, n):
        if i % 2:
            out.append(encode(c.StartWorkflow(at=t0 + i, workflow="bench")))
        else:
            out.append(encode(c.Heartbeat(at=t0 + i, worker="w1")))
    return out


def consume(bootstrap: str, topic: str, n: int, **config: object) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **config)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for records in consumer.poll(timeout_ms=500).values():
            got += len(records)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return n / elapsed


def consume_fold(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", **FAST_CONSUMER)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    state = State(0)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                step_record(state, r.value, r.offset)
                state.position = r.offset + 1
            got += len(records)
    elapsed = time.perf_counter() - t0
    consumer.close()
    assert len(state.instances) == n // 2, len(state.instances)
    return n / elapsed


def live_master(settings: KafkaSettings, n: int) -> float:
    master = KafkaMaster(settings, name="bench", snapshot_every=10**9)
    t0 = time.perf_counter()
    decided = 0
    while decided < n:
        decided += master.poll_once(200)
    elapsed = time.perf_counter() - t0
    master.close()
    return decided / elapsed


class Processes:
    """`easysched master` / `worker` child processes on one topic prefix, and a folded view of each partition."""

    def __init__(self, bootstrap: str, root: Path, session_timeout: float) -> None:
        self.root = root
        self.session_timeout = session_timeout
        self.settings = KafkaSettings(bootstrap, prefix=f"benchp{os.getpid()}", partitions=3)
        ensure_topics(self.settings)
        self.env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": self.settings.prefix,
                    "EASYSCHED_KAFKA_PARTITIONS": "3"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.client = KafkaClient(self.settings, timeout=60.0)
        self.log = KafkaLog(self.settings)
        self.commands = self.log.commands()
        self.states = [start_state(self.log, p) for p in range(3)]

    def spawn(self, name: str, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "easysched_es", *args]
        with open(self.root / f"{name}.out", "wb") as out, open(self.root / f"{name}.err", "wb") as err:
            self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=out, stderr=err, cwd=self.root)
        return ["easysched", *args]

    def master(self, name: str) -> list[str]:
        return self.spawn(name, "master", "--name", name, "--events-to-stdout",
                          "--session-timeout", str(self.session_timeout))

    def worker(self, name: str) -> list[str]:
        return self.spawn(name, "worker", "--name", name, "--work-dir", str(self.root / name),
                          "--session-timeout", str(self.session_timeout))

    def owner(self, partition: int) -> str | None:
        """The live master whose latest word on `partition` is that it is ready."""
        for name, proc in self.procs.items():
            if name.startswith("master") and proc.poll() is None:
                lines = (self.root / f"{name}.out").read_text().splitlines()
                mine = [json.loads(x) for x in lines if f'"partition": {partition},' in x]
                if mine and mine[-1]["event"] == "partition_ready":
                    return name
        return None

    def state(self, partition: int) -> State:
        """The partition's state with every command produced so far (folded incrementally)."""
        fold_stream(self.commands, self.states[partition], partition=partition)
        return self.states[partition]

    def close(self) -> None:
        for proc in self.procs.values():
            stop_run(proc)
        self.client.close()
        self.commands.close()


def shell_workflow(name: str, n: int, command: str) -> WorkflowDefinition:
    return WorkflowDefinition(name=name, tasks=[ShellTask(name=f"t{i}", command=command) for i in range(n)])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fanout_and_kills(procs: Processes, fanout: int, kills: int, rounds: int = 3) -> None:
    argv = [*procs.master("master-0"), "&", *procs.worker("worker-0")]
    print(f"processes: {' '.join(argv)}")
    procs.client.define(shell_workflow("fan", fanout, "true"))
    procs.client.define(shell_workflow("sleeper", 1, "sleep 300"))
    rates = []
    for r in range(rounds):
        instance = procs.client.start("fan", partition=r % 3)
        p = int(instance.split("-")[0])
        inst = wait_for("fan-out done", lambda i=instance, p=p: (x := procs.state(p).instances[i]).ended and x,
                        timeout=120, every=0.05)
        rates.append(fanout / ((inst.ended - inst.started) / 1000))
    print(f"fan-out ({fanout} x `true`, separate master and worker): {statistics.median(rates):8.0f} tasks/s "
          f"(median of {rounds}; all: {', '.join(f'{x:.0f}' for x in rates)}; target >= 100)")
    latencies = []
    for k in range(kills):
        instance = procs.client.start("sleeper", partition=k % 3)
        p = int(instance.split("-")[0])
        pid = wait_for("sleep running", lambda i=instance, p=p: procs.state(p).instances[i].tasks["t0"].pid,
                       timeout=30)
        t0 = time.perf_counter()
        procs.client.kill_task(instance, "t0")
        wait_for("process gone", lambda pid=pid: not pid_alive(pid), timeout=10, every=0.0005)
        latencies.append((time.perf_counter() - t0) * 1000)
    print(f"kill ({kills} kills, kill-task to the `sleep` process gone): p50 {statistics.median(latencies):.1f} ms,"
          f" p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms (target p99 < 500 ms)")


def failovers(procs: Processes, runs: int) -> None:
    procs.master("master-1")  # master-0 runs already: now one of two owns each partition
    procs.client.define(shell_workflow("noop", 1, "true"))
    times = []
    for run in range(runs):
        p = run % 3
        live = {n for n, x in procs.procs.items() if n.startswith("master") and x.poll() is None}
        # Settled: every partition has a ready owner and every live master owns one (none still joining).
        wait_for("the group settled", lambda live=live: {procs.owner(q) for q in range(3)} == live,
                 timeout=60, every=0.05)
        owner = procs.owner(p)
        t0 = time.perf_counter()
        procs.procs[owner].send_signal(signal.SIGKILL)
        procs.procs[owner].wait()
        procs.client.start("noop", partition=p)  # returns once the new owner decided it
        times.append(time.perf_counter() - t0)
        procs.master(f"master-{len(procs.procs)}")  # a fresh standby for the next run
    print(f"failover ({runs} runs, kill -9 of the owner to the new owner's first decision, group session timeout "
          f"{procs.session_timeout:g} s): median {statistics.median(times):.1f} s, max {max(times):.1f} s, "
          f"all: {', '.join(f'{x:.1f}' for x in times)} (target < 10 s)")


def cli_figures(bootstrap: str, records: int, runs: int) -> None:
    """`bench/kafka_cli.py`: start, status INSTANCE and rebuild as CLI processes, beside KafkaClient."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kafka_cli", _here / "kafka_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.figures(bootstrap, records, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("EASYSCHED_KAFKA"))
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--skip-live", action="store_true", help="skip the live-master measurement")
    parser.add_argument("--fanout", type=int, default=200, help="tasks of the fan-out workflow (default 200)")
    parser.add_argument("--kills", type=int, default=20, help="kills to time (default 20)")
    parser.add_argument("--failovers", type=int, default=5, help="failovers to time (default 5)")
    parser.add_argument("--session-timeout", type=float, default=6.0,
                        help="masters' group session timeout in s (default 6, as in tests/e2e; the broker's minimum)")
    parser.add_argument("--skip-processes", action="store_true", help="skip fan-out, kill and failover")
    parser.add_argument("--skip-cli", action="store_true", help="skip the CLI figures (bench/kafka_cli.py)")
    parser.add_argument("--cli-records", type=int, default=10_000,
                        help="records of the log the CLI's rebuild refolds (default 10000)")
    parser.add_argument("--cli-runs", type=int, default=5, help="runs per CLI figure, median (default 5)")
    args = parser.parse_args()
    broker = None
    if not args.bootstrap:
        from easysched_es.runtime.kafka.local_broker import LocalKafka

        broker = LocalKafka()
        broker.start(Path(tempfile.mkdtemp(prefix="bench-kafka-")))
        args.bootstrap = broker.bootstrap
    try:
        settings = KafkaSettings(args.bootstrap, prefix=f"bench{os.getpid()}", partitions=1)
        ensure_topics(settings)
        topic = settings.topic("commands")
        payloads = commands(args.n)
        producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5, batch_size=1 << 20)
        t0 = time.perf_counter()
        for p in payloads:
            producer.send(topic, value=p, partition=0)
        producer.flush()
        produce = args.n / (time.perf_counter() - t0)
        producer.close()
        import crc32c  # noqa: F401 - kafka-python picks it up for record CRCs

        bare = consume(args.bootstrap, topic, args.n)
        fold = consume_fold(args.bootstrap, topic, args.n)
        print(f"commands: {args.n} on {args.bootstrap} (crc32c installed)")
        print(f"produce:                      {produce:>10,.0f} commands/s")
        print(f"bare consume (default config): {bare:>10,.0f} records/s")
        print(f"consume+fold (takeover path):  {fold:>10,.0f} commands/s  ratio {fold / bare:.2f}x")
        if not args.skip_live:
            live = live_master(settings, args.n)
            print(f"live master (events+offsets in transactions): {live:>10,.0f} commands/s")
        if not args.skip_cli:  # the CLI targets beside the Python client, in this same run
            cli_figures(args.bootstrap, args.cli_records, args.cli_runs)
        if not args.skip_processes:
            root = Path(tempfile.mkdtemp(prefix="bench-kafka-procs-"))
            procs = Processes(args.bootstrap, root, args.session_timeout)
            try:
                fanout_and_kills(procs, args.fanout, args.kills)
                failovers(procs, args.failovers)
            finally:
                procs.close()
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
