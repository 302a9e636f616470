"""Chaos: kill -9 the scheduler at random instants while a client appends, then check nothing was lost.

    python bench/chaos.py [--log embedded|kafka] [--kills 24] [--seed 1]

Embedded log: `easysched run` (master, worker and projector in one process) is started and
killed with SIGKILL at random instants, a quarter of them during recovery (before it is
ready), while a client thread starts workflows and stops some throughout. Then one last run
drains the work, and the checks are:

- no acknowledged command lost: every offset the client was given is in the log, decided
  by the master (an events batch), and every acknowledged start made an instance;
- no attempt ran twice: each attempt's process appends a line "instance task attempt" to a
  file; no line appears twice;
- every instance is final; `verify` is clean;
- the DuckDB projection equals a rebuild of it from the log.

`--log kafka` torments the Kafka runtime instead (`bench/chaos_kafka.py`): two masters, two
workers and the projector killed -9 at random on a private local broker that is restarted once
half way, with the same client, the same checks on the topics.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.state import WF_FINAL
from easysched_es.debug.verify import verify
from easysched_es.runtime.embedded.client import Client, CommandRejectedError
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import stop_run, wait_for
from easysched_es.runtime.fold import load_state, records

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers (dump, kill_leftovers)
# bench/kafka.py would shadow kafka-python for the Kafka mode's imports: the repo root, not bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from tests.harness import kill_leftovers  # noqa: E402

RUNS_FILE = "attempts.txt"
_RECORD = 'echo "$EASYSCHED_INSTANCE $EASYSCHED_TASK $EASYSCHED_ATTEMPT" >> "$CHAOS_RUNS"'


def chaos_flow(runs: Path) -> WorkflowDefinition:
    """A small DAG whose every attempt leaves one line in `runs`."""
    def task(name: str, work: str, *ups: str) -> dict[str, Any]:
        return {"name": name, "type": "SHELL", "command": f"{work}; {_RECORD}", "upstream": list(ups)}

    return msgspec.convert({
        "name": "chaos", "params": {"CHAOS_RUNS": str(runs)},
        "tasks": [task("a", "sleep 0.$((RANDOM % 4))"), task("b", "sleep 0.$((RANDOM % 3))", "a"),
                  task("c", "true", "a"), task("d", "sleep 0.2", "b", "c")],
    }, WorkflowDefinition)


@dataclass
class Ledger:
    """What the client was told: the offsets of acknowledged commands and the instances it started."""

    acked: list[Any] = field(default_factory=list)  # offsets; (partition, offset) on Kafka
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def client_loop(client: Client, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    """Start workflows (and stop some) until `stop`; every acknowledgement goes to the ledger."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            if ledger.started and rng.random() < 0.15:
                instance = rng.choice(ledger.started)
                try:
                    ledger.acked.append(client.stop(instance).offset)
                    ledger.stopped.append(instance)
                except CommandRejectedError as exc:  # already final: in the log, rejected
                    ledger.acked.append(exc.offset)
                    ledger.refused += 1
            else:
                verdict = client.submit(client_start())
                ledger.acked.append(verdict.offset)
                ledger.started.append(f"0-{verdict.offset}")
        except Exception as exc:  # a bench reports, it does not stop
            ledger.errors[type(exc).__name__] += 1
        stop.wait(rng.uniform(0.005, 0.05))


def client_start() -> Any:
    from easysched_es.core.commands import StartWorkflow

    return StartWorkflow(workflow="chaos")


@dataclass
class Kills:
    """How the killing went."""

    total: int = 0
    during_recovery: int = 0
    seconds: float = 0.0


def run_embedded(root: Path, kills: int, seed: int, ledger: Ledger) -> Kills:
    """Kill -9 `easysched run` `kills` times at random instants while a client appends."""
    rng = random.Random(seed)
    data = DataDir(root)
    client = Client(root)
    client.define(chaos_flow(root / RUNS_FILE))
    stop = threading.Event()
    appender = threading.Thread(target=client_loop, args=(client, ledger, stop, seed), daemon=True)
    out = Kills()
    t0 = time.monotonic()
    log = open(root / "runs.log", "ab")  # noqa: SIM115 - closed below
    appender.start()
    try:
        for _ in range(kills):
            (root / "run.json").unlink(missing_ok=True)
            proc = started = _spawn_run(root, log)
            early = rng.random() < 0.25
            if early:
                time.sleep(rng.uniform(0.0, 0.4))  # the run is still importing or recovering
            else:
                wait_for("run ready", lambda p=started: (root / "run.json").exists() or p.poll() is not None, 60)
                time.sleep(rng.uniform(0.1, 2.0))
            ready = (root / "run.json").exists()
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            out.total += 1
            out.during_recovery += not ready
        stop.set()
        appender.join(30)
        out.seconds = time.monotonic() - t0
        # One last run drains the work.
        proc = _spawn_run(root, log)
        wait_for("run ready", lambda: (root / "run.json").exists(), 60)
        wait_for("every instance final", lambda: _all_final(data), timeout=300, every=0.5)
        stop_run(proc)
    finally:
        stop.set()
        log.close()
    return out


def _spawn_run(root: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "easysched_es", "--data-dir", str(root), "run", "--kill-grace", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def _all_final(data: DataDir) -> bool:
    state = load_state(data)
    return all(inst.state in WF_FINAL for inst in state.instances.values())


def run_kafka(root: Path, kills: int, seed: int, ledger: Ledger) -> Kills:
    """The Kafka mode: kill masters, workers and the projector, restart the broker once (bench/chaos_kafka.py)."""
    from bench.chaos_kafka import run_kafka as run

    return run(root, kills, seed, ledger, flow=chaos_flow(root / RUNS_FILE))  # type: ignore[no-any-return]


def check(root: Path, ledger: Ledger) -> dict[str, Any]:
    """The figures: what was lost, run twice, left unfinished; verify; projection against a rebuild."""
    data = DataDir(root)
    state = load_state(data)
    with data.commands() as commands, data.events() as events:
        logged = {r.offset for r in records(commands) if r.corrupt is None}
        decided = set()
        for r in records(events):
            from easysched_es.core.codec import decode_batch

            decided.add(decode_batch(r.payload).offset)
    lost = [o for o in ledger.acked if o not in logged or o not in decided]
    missing_instances = [i for i in ledger.started if i not in state.instances]
    lines = (root / RUNS_FILE).read_text().splitlines() if (root / RUNS_FILE).exists() else []
    twice = [line for line, n in Counter(lines).items() if n > 1]
    stuck = [i.id for i in state.instances.values() if i.state not in WF_FINAL]
    report = verify(data)
    return {
        "acknowledged commands": len(ledger.acked),
        "instances started": len(ledger.started),
        "stops (rejected as already final)": f"{len(ledger.stopped) + ledger.refused} ({ledger.refused})",
        "client errors while the run was down or killed": dict(ledger.errors),
        "attempts run": len(lines),
        "acknowledged commands lost": len(lost) + len(missing_instances),
        "attempts run twice": len(twice),
        "instances not final": len(stuck),
        "verify": "clean" if report.ok else f"DIVERGENCE {report.divergence}",
        "projection equals a rebuild": _projection_equals_rebuild(root),
        "final states": dict(Counter(i.state for i in state.instances.values())),
    }


def _projection_equals_rebuild(root: Path) -> bool:
    from projections.projector import Projector
    from tests.projections.helpers import dump

    data = DataDir(root)
    with data.events() as events, data.commands() as commands:
        with Projector(data.duckdb, events, commands) as live:
            live.catch_up()
            kept = dump(live.cursor())
        with Projector(root / "rebuilt.duckdb", events, commands) as fresh:
            fresh.catch_up()
            rebuilt = dump(fresh.cursor())
    return kept == rebuilt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", choices=("embedded", "kafka"), default="embedded", help="which runtime to torment")
    parser.add_argument("--kills", type=int, default=24, help="how many kill -9s")
    parser.add_argument("--seed", type=int, default=1, help="random seed (instants, client pauses)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and print its path")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="easysched-chaos-"))
    ledger = Ledger()
    try:
        runner = run_embedded if args.log == "embedded" else run_kafka
        kills = runner(root, args.kills, args.seed, ledger)
        if args.log == "kafka":
            from bench.chaos_kafka import check_kafka

            figures = check_kafka(root, ledger, root / RUNS_FILE)
        else:
            figures = check(root, ledger)
        what = "the run was ready" if args.log == "embedded" else "the restarted process was up"
        print(f"chaos on the {args.log} log: {kills.total} kill -9s in {kills.seconds:.0f} s "
              f"({kills.during_recovery} before {what}), seed {args.seed}")
        for name, value in figures.items():
            print(f"  {name:<50} {value}")
        bad = (figures["acknowledged commands lost"] or figures["attempts run twice"]
               or figures["instances not final"] or figures["verify"] != "clean"
               or not figures["projection equals a rebuild"])
        if args.keep:
            print(f"  data directory: {root}")
        sys.exit(1 if bad else 0)
    finally:
        kill_leftovers(root)  # first: it opens the data directory (which would create it again)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
