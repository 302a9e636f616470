"""Kafka throughput: produce N commands, fold them from Kafka, compare with a bare kafka-python consume.

    python bench/kafka.py [--bootstrap HOST:PORT] [-n 200000]

Without --bootstrap (or $EASYSCHED_KAFKA) a local broker is started for the run. Prints figures;
asserts nothing about time. Measures, on one partition of a fresh topic prefix:

- produce: commands/s produced by kafka-python (acks=all, idempotent, linger 5 ms);
- bare consume: kafka-python's consume rate of the same records with default consumer settings;
- consume+fold: the takeover path of a master (fetch with large fetch sizes, decode, `step`);
- live master: `KafkaMaster` deciding every command (events + offsets in transactions).
"""

from __future__ import annotations

import argparse
import os
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
from easysched_es.runtime.kafka_master import KafkaMaster  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("EASYSCHED_KAFKA"))
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--skip-live", action="store_true", help="skip the live-master measurement")
    args = parser.parse_args()
    broker = None
    if not args.bootstrap:
        from easysched_es.runtime.kafka_local import LocalKafka

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
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
