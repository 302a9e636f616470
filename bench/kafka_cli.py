"""The CLI on Kafka, measured as a user meets it (a subprocess each time), beside the Python client.

Called by `bench/kafka.py` (or alone: `python bench/kafka_cli.py --bootstrap HOST:PORT`). On a
fresh topic prefix with a master in this process (snapshots every `--snapshot-every` commands,
so a snapshot and a tail after it exist), it prints, in the same run:

- Python start-up (`python -c pass`) and the CLI's imports (`python -c "import ..."` minus start-up);
- `start` end to end: the `easysched start` process, and `KafkaClient.start` in a warm process;
- `status INSTANCE`: the process, and `KafkaClient.status` in a warm process;
- `projections rebuild` of about `--records` records (commands + event batches): the process, the
  rebuild it reports, and the same rebuild in this process through `KafkaStream` (the old reader);
- the machine's load average, since 5 engineers share 2 cores: wall times swing with it; the CPU
  time of each CLI process (user + sys, from wait4) does much less.

Targets (issue 14): start < 200 ms, status INSTANCE < 300 ms, rebuild of 10,000 records < 2 s.
Medians of `--runs`. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = "import easysched_es.cli.app, easysched_es.runtime.kafka.client, easysched_es.runtime.kafka.query_log"


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child: user + sys from wait4, stdout) of one process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, out.read().decode()


def median_run(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float, str]:
    results = [run(argv, env) for _ in range(runs)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[-1][2])


def verdict(value: float, target: float) -> str:
    return f"target < {target * 1000:.0f} ms: {'met' if value < target else 'MISSED'}"


def figures(bootstrap: str, records: int = 10_000, runs: int = 5, snapshot_every: int = 1000) -> dict[str, Any]:
    """Measure and print; returns the figures."""
    from kafka import KafkaProducer

    from easysched_es.core import commands as c
    from easysched_es.core.codec import encode
    from easysched_es.core.definitions import ShellTask, WorkflowDefinition
    from easysched_es.log.kafka import KafkaSettings, KafkaStream, ensure_topics
    from easysched_es.log.kafka_reader import projection_streams
    from easysched_es.runtime.kafka.client import KafkaClient
    from easysched_es.runtime.kafka.master import KafkaMaster
    from projections.local import LocalProjection

    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Without .pyc files every CLI call compiles our ~100 modules again: not what an install does.
        packages = [str(ROOT / "easysched_es"), str(ROOT / "projections")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, stdout=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    settings = KafkaSettings(bootstrap, prefix=f"benchcli{os.getpid()}", partitions=3, timeout=30.0)
    ensure_topics(settings)
    env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": settings.prefix}
    master = KafkaMaster(settings, name="bench-cli", snapshot_every=snapshot_every)
    stop = threading.Event()
    thread = threading.Thread(target=master.run, args=(stop,), daemon=True)
    thread.start()
    out: dict[str, Any] = {"load_average": os.getloadavg()}
    try:
        client = KafkaClient(settings, timeout=120)
        client.define(WorkflowDefinition(name="noop", tasks=[ShellTask(name="a", command="true")]))
        # The log: `records` records in all, about half commands and half event batches.
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for i in range(records // 2):
            producer.send(settings.topic("commands"), partition=i % 3,
                          value=encode(c.StartWorkflow(at=int(time.time() * 1000), workflow="noop")))
        producer.flush()
        producer.close()
        ends = [client.commands.end(p) for p in range(3)]
        while not all(p in master.owned and master.owned[p].state.position >= ends[p] for p in range(3)):
            time.sleep(0.1)
        client.start("noop")  # warm
        starts = []
        for _ in range(max(runs, 10)):
            t0 = time.perf_counter()
            instance = client.start("noop")
            starts.append(time.perf_counter() - t0)
        statuses = []
        for _ in range(runs):
            t0 = time.perf_counter()
            client.status(instance)
            statuses.append(time.perf_counter() - t0)
        out["client_start"], out["client_status"] = statistics.median(starts), statistics.median(statuses)

        bare, _, _ = median_run([sys.executable, "-c", "pass"], env, runs)
        imports, _, _ = median_run([sys.executable, "-c", IMPORTS], env, runs)
        out["python"], out["imports"] = bare, imports - bare
        cli = [sys.executable, "-m", "easysched_es"]
        out["cli_start"], out["cli_start_cpu"], _ = median_run([*cli, "start", "noop"], env, runs)
        out["cli_status"], out["cli_status_cpu"], shown = median_run([*cli, "status", instance, "--json"], env, runs)
        out["status_source"] = json.loads(shown)["source"]

        client.close()
        stop.set()  # the log is complete: no master competes with the rebuilds below
        thread.join(30)
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            argv = [*cli, "projections", "rebuild", "--data-dir", str(Path(tmp) / "p"), "--json"]
            walls, reported = [], []
            for _ in range(3):
                wall, _, text = run(argv, env)
                walls.append(wall)
                reported.append(json.loads(text))
            out["cli_rebuild"] = statistics.median(walls)
            out["rebuild_reported"] = statistics.median(r["seconds"] for r in reported)
            out["rebuild_records"] = reported[-1]["records"]
            # In this process, the rebuild alone, through the new reader and through the old one.
            times: dict[str, list[float]] = {"new": [], "old": []}
            for i in range(4):
                kind = "new" if i % 2 == 0 else "old"
                before = {"fetch_max_wait_ms": 500}  # kafka-python's default, as before this change
                streams = (projection_streams(settings) if kind == "new" else
                           (KafkaStream(settings, "events", create=False, consumer_config=before),
                            KafkaStream(settings, "commands", create=False, consumer_config=before)))
                where = Path(tmp) / f"{kind}{i}"
                where.mkdir()
                with streams[0], streams[1], LocalProjection(where, events=streams[0], commands=streams[1]) as local:
                    t0 = time.perf_counter()
                    local.projector.rebuild(progress=False)
                    times[kind].append(time.perf_counter() - t0)
            out["new_rebuild"], out["old_rebuild"] = (statistics.median(times["new"]), statistics.median(times["old"]))
    finally:
        stop.set()
        thread.join(30)
    _print(out)
    return out


def _print(f: dict[str, Any]) -> None:
    ms = 1000
    print(f"CLI on Kafka (load average {', '.join(f'{x:.1f}' for x in f['load_average'])} on {os.cpu_count()} cores;"
          " medians; wall, and the CLI process's own CPU)")
    print(f"  python start-up (python -c pass):     {f['python'] * ms:7.0f} ms")
    print(f"  CLI imports (beyond start-up):         {f['imports'] * ms:7.0f} ms")
    print(f"  start, CLI process end to end:         {f['cli_start'] * ms:7.0f} ms "
          f"(CPU {f['cli_start_cpu'] * ms:.0f} ms; {verdict(f['cli_start'], 0.2)})")
    print(f"  start, KafkaClient in a warm process:  {f['client_start'] * ms:7.0f} ms")
    source = "; ".join(f"p{r['partition']} snapshot at {r['snapshot_position']}, tail to {r['tail_end']}"
                       for r in f["status_source"]["partitions"])
    print(f"  status INSTANCE, CLI process:          {f['cli_status'] * ms:7.0f} ms (CPU {f['cli_status_cpu'] * ms:.0f}"
          f" ms; {verdict(f['cli_status'], 0.3)}; from {source})")
    print(f"  status INSTANCE, KafkaClient (warm):   {f['client_status'] * ms:7.0f} ms")
    print(f"  projections rebuild, CLI process:      {f['cli_rebuild'] * ms:7.0f} ms for {f['rebuild_records']} records"
          f" ({verdict(f['cli_rebuild'], 2.0)}; it reports {f['rebuild_reported'] * ms:.0f} ms from opening the"
          " topics and the file)")
    print(f"  rebuild alone in a warm process:       {f['new_rebuild'] * ms:7.0f} ms (one consumer per topic); through"
          f" the reader before (KafkaStream: a consumer per partition, fetches held 500 ms):"
          f" {f['old_rebuild'] * ms:.0f} ms ({f['old_rebuild'] / f['new_rebuild']:.1f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("EASYSCHED_KAFKA"), required=False)
    parser.add_argument("--records", type=int, default=10_000, help="records in the log to rebuild (default 10000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per CLI figure (median; default 5)")
    args = parser.parse_args()
    if not args.bootstrap:
        raise SystemExit("give --bootstrap HOST:PORT or set EASYSCHED_KAFKA (bench/kafka.py starts a broker)")
    figures(args.bootstrap, args.records, args.runs)
    return 0


if __name__ == "__main__":
    # bench/kafka.py would shadow kafka-python: keep this directory off the path.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
