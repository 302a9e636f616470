"""A real single-node Apache Kafka 4.x broker (KRaft combined mode) that the project starts by itself.

No Docker: the broker runs from jars resolved from Maven Central with the machine's Java 17+
(DESIGN.md section 10). The pieces:

* :func:`ensure_jars` resolves ``org.apache.kafka:kafka_2.13`` (version :data:`KAFKA_VERSION`) and a log4j2
  binding once, with the pom in ``compose/kafka/pom.xml``, into ``~/.cache/easysched/kafka-<version>/jars``.
* :class:`LocalKafka` formats a data directory once (``kafka.tools.StorageTool format --standalone``) and
  runs ``kafka.Kafka`` as a child process in its own process group, waits until it answers, and stops it
  (SIGTERM, then SIGKILL after a grace period, whole group). A small watchdog process sits between us and
  the JVM so that the broker also dies when the Python process that started it dies without cleaning up
  (pytest killed by a timeout, CI job cancelled): no orphan brokers holding ports and memory.
* :func:`start_detached`, :func:`status`, :func:`stop_detached` back
  ``easysched kafka-local start|status|stop``: the broker outlives the CLI process, and a state file
  in the data directory lets another process find it.
* ``sasl=`` (``kafka-local start --sasl USER:PASS``) puts the client listener behind SASL/PLAIN
  (:mod:`.local_sasl`); the readiness probe then authenticates as that user.

Broker settings (see :func:`broker_properties`): everything a single node needs (replication factor and min
ISR 1 for internal topics, ``group.initial.rebalance.delay.ms=0``), small internal topics so the first
consumer group / first transaction does not create 50 partitions, and ``auto.create.topics.enable=false``:
the Kafka log creates its topics explicitly (``.commands`` partitioned, ``.snapshots`` compacted), and a
producer or consumer touching a topic that does not exist must fail loudly instead of silently creating
a one-partition, non-compacted topic that hides the bug.

Only the standard library is needed, plus kafka-python (optional) for the readiness probe.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from easysched_es.runtime.kafka.local_sasl import (
    SaslUser,
    client_settings,
    public_state,
    sasl_properties,
    write_client_config,
)

__all__ = [
    "DEFAULT_HEAP",
    "DEFAULT_JVM_FLAGS",
    "KAFKA_VERSION",
    "KafkaLocalError",
    "LocalKafka",
    "broker_properties",
    "default_cache_root",
    "ensure_jars",
    "start_detached",
    "status",
    "stop_detached",
]

#: The one Kafka version used for both the format step and the broker (a newer StorageTool writes storage
#: an older broker cannot read). Must equal ``kafka.version`` in ``compose/kafka/pom.xml``.
KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.26.1"

#: Max (and initial) heap of the broker JVM. Measured on the 2-core machine with Kafka 4.1.1: the broker
#: idles at ~45 MiB of old generation and stays there under a workload of 200k produced records, 300k
#: records into a compacted topic (cleaner running), a read_committed consume-transform-produce loop of
#: 100 transactions and 900 records of 900 KB from 6 concurrent producers. 96m and 128m ran all of that
#: without an OOM; 256m leaves 2x margin for ~35 MiB more RSS. What made small heaps fail elsewhere is the
#: log cleaner's dedupe buffer (128 MiB on the heap by default, allocated at startup): with it, -Xmx128m
#: dies with "Error starting LogManager ... OutOfMemoryError"; broker_properties() sets it to 16 MiB.
#: (The -Xmx1G -Xms1G others use is just kafka-server-start.sh's default; KAFKA-19890 is about that
#: script's Windows memory detection, not about what the broker needs.)
DEFAULT_HEAP = "256m"

#: JVM flags for a small machine, measured (ready time after launch, 384m heap, 3 runs each):
#: G1 default 1.6-2.3 s, SerialGC 1.6-2.0 s, SerialGC + C1 only (TieredStopAtLevel=1) 1.2-1.3 s; with C1
#: only, client throughput in the benchmark workload was unchanged (the Python client is the bottleneck
#: and no C2 compiler threads compete with it for the 2 cores) and RSS ~45 MiB lower. SerialGC: no
#: parallel GC threads, smallest footprint (RSS 280-320 MiB vs 450 MiB for G1 after the workload), pauses
#: are short on a heap this size. ExitOnOutOfMemoryError: an OOM ends the broker (and shows in its log)
#: instead of leaving a half-dead broker. Pass other flags to LocalKafka(jvm_flags=...) for C2.
DEFAULT_JVM_FLAGS: tuple[str, ...] = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)

READY_LINE = "Kafka Server started"
STATE_FILE = "kafka-local.json"
LOG_FILE = "broker.log"
FORMAT_LOG_FILE = "format.log"
PROPERTIES_FILE = "server.properties"
LOG4J_FILE = "log4j2.properties"
LOG_DIRS = "kafka-logs"
_MARKER = ".complete.json"
_POM_ENV = "EASYSCHED_KAFKA_POM"
_JARS_ENV = "EASYSCHED_KAFKA_JARS"

_LOG4J2_CONFIG = """\
# Written by easysched_es.runtime.kafka.local_broker: broker logs go to stdout (redirected to broker.log).
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
# The readiness line "Kafka Server started" comes from this logger: keep it at INFO.
logger.raft_server.name = kafka.server.KafkaRaftServer
logger.raft_server.level = INFO
# Per-partition chatter (several lines per partition created or loaded).
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.partition.name = kafka.cluster.Partition
logger.partition.level = WARN
logger.storage.name = org.apache.kafka.storage.internals.log
logger.storage.level = WARN
logger.log_manager.name = kafka.log.LogManager
logger.log_manager.level = WARN
"""

# Fallback pom when the package runs outside the repository (installed wheel): same content as
# compose/kafka/pom.xml, which stays the reference.
_EMBEDDED_POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.easysched</groupId>
  <artifactId>easysched-local-kafka</artifactId>
  <version>0.1.0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

# Runs between us and the JVM in attached mode: kills the broker when our end of its stdin pipe closes
# (we exited or died), ignores SIGTERM itself (the JVM gets it from the process-group signal and the
# watchdog exits with the JVM's status once it is gone). argv: grace_seconds, then the java command.
_WATCHDOG = """\
import os, signal, subprocess, sys, threading
signal.signal(signal.SIGTERM, lambda *_: None)
signal.signal(signal.SIGINT, lambda *_: None)
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
def watch():
    while os.read(0, 4096):
        pass
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(float(sys.argv[1]))
        except subprocess.TimeoutExpired:
            child.kill()
threading.Thread(target=watch, daemon=True).start()
rc = child.wait()
os._exit(128 - rc if rc < 0 else rc)
"""


class KafkaLocalError(RuntimeError):
    """The local broker could not be provisioned, started or stopped. The message says why."""


# --------------------------------------------------------------------------------------------- jars


def default_cache_root() -> Path:
    """The cache root: ``$XDG_CACHE_HOME/easysched`` or ``~/.cache/easysched``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "easysched"


def _repo_pom() -> Path | None:
    env = os.environ.get(_POM_ENV)
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[3] / "compose" / "kafka" / "pom.xml"
    return candidate if candidate.is_file() else None


def _jars_complete(jars: Path, pom_digest: str | None) -> bool:
    try:
        marker = json.loads((jars / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("version") != KAFKA_VERSION:
        return False
    if pom_digest is not None and marker.get("pom_sha256") != pom_digest:
        return False
    return all((jars / name).is_file() for name in marker.get("jars", ()))


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_jars(cache_dir: Path | None = None, *, mvn: str | None = None, timeout: float = 1800.0) -> Path:
    """Return a directory holding the Kafka broker jars, resolving them with Maven the first time.

    The jars land in ``<cache_dir>/kafka-<KAFKA_VERSION>/jars`` (``cache_dir`` defaults to
    :func:`default_cache_root`, i.e. ``~/.cache/easysched``). A marker file written after a successful
    copy (version, pom digest, jar names) makes later calls return at once without running Maven; a
    partial copy is never used. Concurrent callers (pytest-xdist workers) serialise on a lock file.
    ``$EASYSCHED_KAFKA_JARS`` names a ready jars directory and skips all of this.

    Raises:
        KafkaLocalError: Maven is missing or failed; the message holds the exact ``mvn`` command and the
            tail of its output.
    """
    env_jars = os.environ.get(_JARS_ENV)
    if env_jars:
        jars = Path(env_jars)
        if not (jars / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise KafkaLocalError(f"${_JARS_ENV}={jars} holds no kafka_2.13-{KAFKA_VERSION}.jar")
        return jars

    root = (cache_dir if cache_dir is not None else default_cache_root()) / f"kafka-{KAFKA_VERSION}"
    jars = root / "jars"
    pom = _repo_pom()
    pom_text = pom.read_text() if pom else _EMBEDDED_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION)
    if pom and f"<kafka.version>{KAFKA_VERSION}</kafka.version>" not in pom_text:
        raise KafkaLocalError(f"{pom} does not pin kafka.version {KAFKA_VERSION} (kafka_local.KAFKA_VERSION)")
    digest = hashlib.sha256(pom_text.encode()).hexdigest()
    if _jars_complete(jars, digest):
        return jars

    with _flock(root / ".lock"):
        if _jars_complete(jars, digest):
            return jars
        if pom is None:
            pom = root / "pom.xml"
            pom.write_text(pom_text)
        mvn_exe = mvn or shutil.which("mvn")
        if mvn_exe is None:
            raise KafkaLocalError(
                "Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars: "
                f"mvn -q -f {pom} dependency:copy-dependencies -DincludeScope=runtime "
                f"-DoutputDirectory={jars}"
                f" (or point ${_JARS_ENV} at a directory of Kafka {KAFKA_VERSION} jars)"
            )
        tmp = root / f"jars.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn_exe,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaLocalError(f"Maven timed out after {timeout:.0f}s: {shlex.join(cmd)}") from exc
        names = sorted(p.name for p in tmp.glob("*.jar")) if tmp.is_dir() else []
        if proc.returncode != 0 or f"kafka_2.13-{KAFKA_VERSION}.jar" not in names:
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr).strip().splitlines()
            raise KafkaLocalError(
                f"Maven could not resolve the Kafka {KAFKA_VERSION} jars (exit {proc.returncode}).\n"
                f"Command: {shlex.join(cmd)}\n" + "\n".join(out[-40:])
            )
        marker = {"version": KAFKA_VERSION, "pom_sha256": digest, "jars": names, "resolved_at": time.time()}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1))
        shutil.rmtree(jars, ignore_errors=True)
        os.replace(tmp, jars)
    return jars


# ----------------------------------------------------------------------------------------- helpers


def _find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaLocalError("java is not on PATH (and $JAVA_HOME is unset): Kafka 4.x needs Java 17+")
    return java


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _new_cluster_id() -> str:
    """A Kafka ``Uuid`` string: 16 random bytes, URL-safe base64 without padding (22 characters).

    Never starting with ``-`` (as Kafka's own ``Uuid.randomUuid``): StorageTool's argument parser would
    take ``-t -abc...`` for an option and fail (1 start in 64 otherwise).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe(bootstrap: str, timeout: float, client: Mapping[str, Any] | None = None) -> bool:
    """True when the broker answers a metadata request and lists itself unfenced (kafka-python).

    ``client``: security settings of the probe (the SASL user of a ``--sasl`` broker).
    """
    try:
        from kafka import KafkaAdminClient  # type: ignore[import-untyped]
    except ImportError:  # no client installed: the log line is all we have
        return True
    ms = max(500, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            bootstrap_timeout_ms=ms,
            request_timeout_ms=ms,
            client_id="easysched-kafka-local-probe",
            **(client or {}),
        )
    except Exception:
        return False
    try:
        brokers = admin.describe_cluster().get("brokers") or []
        return any(not b.get("is_fenced", False) for b in brokers)
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as dead; our own zombie children get reaped here)."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(data_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = data_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(dict(state), indent=1, sort_keys=True))
    os.replace(tmp, data_dir / STATE_FILE)


def _cds_files(jars: Path, java: str) -> tuple[Path | None, Path | None]:
    """AppCDS archive of the broker's classes for this jars dir and this java binary, and a dump target.

    The first broker started with a given jars dir writes the archive when it exits
    (``-XX:ArchiveClassesAtExit``, to a temporary name renamed by :func:`_finish_cds`); later starts map it
    (``-XX:SharedArchiveFile``), which cuts about 0.5 s of class loading from every start. An archive
    the JVM cannot use (other JDK build) is ignored by the JVM (``-Xshare:auto``); the name includes the
    java binary's path and mtime so a JDK upgrade makes a new one. Read-only jars dirs get no archive.
    """
    try:
        real = os.path.realpath(java)
        key = f"{real}:{os.stat(real).st_mtime_ns}:{KAFKA_VERSION}"
    except OSError:
        return None, None
    archive = jars / f"broker-{hashlib.sha1(key.encode()).hexdigest()[:12]}.jsa"
    if archive.is_file():
        return archive, None
    if not os.access(jars, os.W_OK):
        return None, None
    return archive, jars / f".{archive.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def _finish_cds(state: Mapping[str, Any]) -> None:
    """After a broker that was dumping a CDS archive has exited: publish the archive (or drop the rest)."""
    dump, archive = state.get("cds_dump"), state.get("cds_archive")
    if not dump or not archive:
        return
    tmp = Path(dump)
    with contextlib.suppress(OSError):
        if tmp.is_file() and tmp.stat().st_size > 0 and not Path(archive).exists():
            os.replace(tmp, archive)
        tmp.unlink(missing_ok=True)


def broker_properties(data_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """The ``server.properties`` of a single-node combined broker+controller rooted at ``data_dir``."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / LOG_DIRS),
        # single node: every replication factor and min ISR is 1
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # the first group / first transactional producer creates these topics: 50 partitions each by
        # default, which costs about a second of the test run for nothing on one node
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        # topics are created explicitly by the Kafka log (see module docstring)
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # the compaction dedupe buffer is allocated on the heap: 128 MiB by default, half of a small heap
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        # abort a timed-out transaction of a crashed producer within ~1s of its timeout (default 10s)
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "num.recovery.threads.per.data.dir": "1",
    }


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    lines = ["# Written by easysched_es.runtime.kafka.local_broker; rewritten on every start."]
    lines += [f"{k}={v}" for k, v in props.items()]
    # owner-only: with --sasl it holds the password (JAAS config)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def _parse_heap(heap: str) -> str:
    h = heap.strip()
    if not h or not h[:-1].isdigit() or h[-1].lower() not in "kmg":
        raise ValueError(f"heap must look like 384m or 1g, not {heap!r}")
    return h


class _Prepared:
    """Everything needed to launch one broker: command, paths, ports."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        cmd: list[str],
        cluster_id: str,
        format_seconds: float | None,
        sasl: SaslUser | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.sasl = sasl
        self.client: dict[str, Any] = client_settings(sasl) if sasl is not None else {}
        self.port = port
        self.controller_port = controller_port
        self.cmd = cmd
        self.cluster_id = cluster_id
        self.format_seconds = format_seconds
        self.log_path = data_dir / LOG_FILE
        self.properties = data_dir / PROPERTIES_FILE


def _prepare(
    data_dir: Path,
    port: int | None,
    controller_port: int | None,
    heap: str,
    jars: Path,
    jvm_flags: Sequence[str],
    extra_properties: Mapping[str, str],
    java: str,
    cds: bool = True,
    sasl: SaslUser | None = None,
) -> _Prepared:
    """Write the config files, format the storage if it is new, and build the broker command."""
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(data_dir)
    formatted = (data_dir / LOG_DIRS / "meta.properties").is_file()
    if formatted:
        # same data, same address: clients and tests keep their bootstrap across restarts (unless the
        # old port has been taken meanwhile; a single-node KRaft quorum copes with a new controller port)
        stored_port, stored_cport = state.get("port"), state.get("controller_port")
        if port is None and isinstance(stored_port, int) and _bindable(stored_port):
            port = stored_port
        if controller_port is None and isinstance(stored_cport, int) and _bindable(stored_cport):
            controller_port = stored_cport
    port = port if port is not None else _free_port()
    controller_port = controller_port if controller_port is not None else _free_port()
    while controller_port == port:
        controller_port = _free_port()

    props = broker_properties(data_dir, port, controller_port)
    if sasl is not None:
        props.update(sasl_properties(sasl, port, controller_port))
    props.update(extra_properties)
    write_client_config(data_dir, sasl)
    prop_path = data_dir / PROPERTIES_FILE
    _write_properties(prop_path, props)
    log4j = data_dir / LOG4J_FILE
    log4j.write_text(_LOG4J2_CONFIG)
    archive, dump = _cds_files(jars, java) if cds else (None, None)
    cds_flags = [f"-XX:SharedArchiveFile={archive}"] if archive is not None and archive.is_file() else []
    jvm = [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        *jvm_flags,
        *cds_flags,
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{jars}/*",
    ]
    if cds_flags or archive is None:
        dump = None
    broker_cmd = [*jvm, *([f"-XX:ArchiveClassesAtExit={dump}"] if dump else []), "kafka.Kafka", str(prop_path)]

    cluster_id = str(state.get("cluster_id") or _new_cluster_id())
    format_seconds: float | None = None
    if not formatted:
        fmt = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(prop_path),
        ]
        flog = data_dir / FORMAT_LOG_FILE
        t0 = time.monotonic()
        with open(flog, "wb") as out:
            try:
                rc = subprocess.run(
                    fmt,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=120,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        format_seconds = time.monotonic() - t0
        if rc != 0 or not (data_dir / LOG_DIRS / "meta.properties").is_file():
            raise KafkaLocalError(
                f"formatting Kafka storage failed (exit {rc}): {shlex.join(fmt)}\n--- {flog} ---\n{_tail(flog)}"
            )
    state.update(
        version=KAFKA_VERSION,
        cluster_id=cluster_id,
        port=port,
        controller_port=controller_port,
        bootstrap=f"127.0.0.1:{port}",
        heap=heap,
        log=str(data_dir / LOG_FILE),
        cds_archive=str(archive) if archive is not None else None,
        cds_dump=str(dump) if dump is not None else None,
        sasl=public_state(sasl, data_dir),
    )
    _write_state(data_dir, state)
    return _Prepared(data_dir, port, controller_port, broker_cmd, cluster_id, format_seconds, sasl)


def _wait_ready(
    alive: Any, log_path: Path, log_offset: int, bootstrap: str, port: int, timeout: float, what: str,
    client: Mapping[str, Any] | None = None,
) -> None:
    """Return once the broker answers; raise :class:`KafkaLocalError` with the log tail otherwise."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    seen = False
    pos = log_offset
    carry = b""
    next_probe = t0 + 5.0  # without the log line (custom logging), probe anyway after a while
    while True:
        if not alive():
            raise KafkaLocalError(f"{what} exited during startup\n--- {log_path} ---\n{_tail(log_path)}")
        if not seen:
            with contextlib.suppress(OSError), open(log_path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
                pos += len(chunk)
                buf = carry + chunk
                seen = READY_LINE.encode() in buf
                carry = buf[-len(READY_LINE) :]
        now = time.monotonic()
        if (seen or now >= next_probe) and _port_open(port):
            if _probe(bootstrap, min(3.0, max(0.5, deadline - now)), client):
                return
            next_probe = time.monotonic() + 1.0
        if time.monotonic() >= deadline:
            raise KafkaLocalError(
                f"{what} not ready after {timeout:.0f}s (bootstrap {bootstrap})\n--- {log_path} ---\n{_tail(log_path)}"
            )
        time.sleep(0.05)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _open_log(path: Path, header: str) -> tuple[BinaryIO, int]:
    fh = open(path, "ab")  # noqa: SIM115 - handed to the child, closed by the caller
    fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {header} =====\n".encode())
    fh.flush()
    return fh, fh.tell()


# ------------------------------------------------------------------------------------- LocalKafka


class LocalKafka:
    """One single-node Kafka broker run as a child process of this Python process.

    Usage::

        kafka = LocalKafka()
        kafka.start(tmp_path / "kafka")   # free ports, formats once, waits until it answers
        produce_to(kafka.bootstrap)       # "127.0.0.1:PORT"
        kafka.restart()                   # same ports, same data
        kafka.stop()

    Also a context manager (``with LocalKafka() as k: k.start(...)`` stops it on exit). The broker is
    killed with this process even if :meth:`stop` never runs (watchdog on a pipe).

    Attributes:
        format_seconds: time the last format step took (None if the storage was already formatted).
        ready_seconds: time from launching the JVM to the broker answering, for the last start.
    """

    def __init__(
        self,
        jars: Path | None = None,
        *,
        jvm_flags: Sequence[str] = DEFAULT_JVM_FLAGS,
        ready_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        extra_properties: Mapping[str, str] | None = None,
        java: str | None = None,
        cds: bool = True,
        sasl: SaslUser | None = None,
    ) -> None:
        """Configure (does not start anything).

        Args:
            jars: directory of Kafka jars; default :func:`ensure_jars` at the first start.
            jvm_flags: JVM flags besides -Xmx/-Xms (default :data:`DEFAULT_JVM_FLAGS`).
            ready_timeout: seconds :meth:`start` waits for the broker to answer.
            stop_timeout: seconds :meth:`stop` waits after SIGTERM before SIGKILL.
            extra_properties: overrides of :func:`broker_properties`.
            java: java executable (default ``$JAVA_HOME/bin/java`` or ``java`` on PATH).
            cds: use (and, on the first start, create) an AppCDS archive of the broker classes next to
                the jars; saves ~0.5 s per start.
            sasl: put the client listener behind SASL/PLAIN with this user (:mod:`.local_sasl`).
        """
        self._jars = jars
        self.jvm_flags = tuple(jvm_flags)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.extra_properties = dict(extra_properties or {})
        self._java = java
        self.cds = cds
        self.sasl = sasl
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: BinaryIO | None = None
        self._prepared: _Prepared | None = None
        self._heap = DEFAULT_HEAP
        self.format_seconds: float | None = None
        self.ready_seconds: float | None = None

    # -- properties
    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the client listener (valid after :meth:`start`)."""
        return f"127.0.0.1:{self.port}"

    @property
    def client_config(self) -> dict[str, Any]:
        """kafka-python security settings a client of this broker needs (empty without SASL)."""
        return client_settings(self.sasl) if self.sasl is not None else {}

    @property
    def port(self) -> int:
        """The client port (PLAINTEXT, or SASL_PLAINTEXT with ``sasl``)."""
        if self._prepared is None:
            raise KafkaLocalError("LocalKafka has not been started")
        return self._prepared.port

    @property
    def controller_port(self) -> int:
        """The KRaft controller port."""
        if self._prepared is None:
            raise KafkaLocalError("LocalKafka has not been started")
        return self._prepared.controller_port

    @property
    def data_dir(self) -> Path:
        """The data directory (config, storage under ``kafka-logs/``, ``broker.log``)."""
        if self._prepared is None:
            raise KafkaLocalError("LocalKafka has not been started")
        return self._prepared.data_dir

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr log."""
        return self.data_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        """Process id (and process-group id) of the running broker's group, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def is_running(self) -> bool:
        """True while the broker process group is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle
    def start(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = DEFAULT_HEAP,
    ) -> None:
        """Format ``data_dir`` if new, start the broker and wait until it answers.

        Ports default to free ones (for a ``data_dir`` used before: the ones it used last, if still free).
        Raises :class:`KafkaLocalError` (with the tail of the broker log) if it does not come up
        within ``ready_timeout``; the half-started process is killed.
        """
        if self.is_running():
            raise KafkaLocalError(f"already running at {self.bootstrap}")
        data_dir = Path(data_dir).resolve()
        other = status(data_dir)
        if other is not None:
            raise KafkaLocalError(f"a broker already runs on {data_dir} (pid {other['pid']})")
        self._heap = _parse_heap(heap)
        jars = self._jars if self._jars is not None else ensure_jars()
        self._jars = jars
        java = self._java or _find_java()
        prepared = _prepare(
            data_dir,
            port,
            controller_port,
            self._heap,
            jars,
            self.jvm_flags,
            self.extra_properties,
            java,
            cds=self.cds,
            sasl=self.sasl,
        )
        self._prepared = prepared
        self.format_seconds = prepared.format_seconds
        self._launch(prepared)

    def _launch(self, prepared: _Prepared) -> None:
        log_fh, offset = _open_log(prepared.log_path, f"start {shlex.join(prepared.cmd)}")
        cmd = [sys.executable, "-c", _WATCHDOG, str(self.stop_timeout), *prepared.cmd]
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                cwd=prepared.data_dir,
                start_new_session=True,
            )
        except OSError:
            log_fh.close()
            raise
        self._proc, self._log_fh = proc, log_fh
        state = _read_state(prepared.data_dir)
        state.update(pid=proc.pid, pgid=proc.pid, mode="attached", started_at=time.time())
        _write_state(prepared.data_dir, state)
        try:
            _wait_ready(
                lambda: proc.poll() is None,
                prepared.log_path,
                offset,
                self.bootstrap,
                prepared.port,
                self.ready_timeout,
                "Kafka broker",
                prepared.client,
            )
        except BaseException:
            self.stop(timeout=5.0)
            raise
        self.ready_seconds = time.monotonic() - t0

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the broker's process group, SIGKILL it after ``timeout`` (default ``stop_timeout``).

        Idempotent. Data stays in the data directory.
        """
        proc = self._proc
        if proc is None:
            return
        grace = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # the watchdog exits only once the JVM is gone; make sure nothing of the group is left
        end = time.monotonic() + 5.0
        while _group_alive(proc.pid) and time.monotonic() < end:
            time.sleep(0.02)
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._log_fh is not None:
            self._log_fh.close()
        self._proc, self._log_fh = None, None
        if self._prepared is not None:
            state = _read_state(self._prepared.data_dir)
            _finish_cds(state)
            state.update(pid=None, pgid=None, cds_dump=None, stopped_at=time.time())
            _write_state(self._prepared.data_dir, state)

    def restart(self) -> None:
        """Stop and start again on the same ports and data (for broker-restart tests)."""
        if self._prepared is None:
            raise KafkaLocalError("LocalKafka has not been started")
        prepared = self._prepared
        self.stop()
        self.start(prepared.data_dir, prepared.port, prepared.controller_port, self._heap)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap if self._prepared is not None else "not started"
        return f"<LocalKafka {KAFKA_VERSION} {where} {'running' if self.is_running() else 'stopped'}>"


# ------------------------------------------------------------------------ detached (CLI) functions

# Popen objects of brokers started detached from this process: kept so they are reaped, not warned about.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


def status(data_dir: Path) -> dict[str, Any] | None:
    """State of the broker running on ``data_dir`` (started by any process), or None if none runs.

    The dict holds ``bootstrap``, ``port``, ``controller_port``, ``pid``, ``mode`` ("detached" or
    "attached"), ``version``, ``cluster_id``, ``log``, ``started_at``, ``data_dir`` and ``accepting``
    (the client port accepts connections right now).
    """
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    pid = state.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return None
    if str(data_dir / PROPERTIES_FILE) not in _cmdline(pid):  # the pid was reused by something else
        return None
    out = dict(state)
    out["data_dir"] = str(data_dir)
    out["accepting"] = _port_open(int(state["port"]))
    return out


def start_detached(
    data_dir: Path,
    port: int | None = None,
    controller_port: int | None = None,
    heap: str = DEFAULT_HEAP,
    *,
    ready_timeout: float = 90.0,
    jvm_flags: Sequence[str] = DEFAULT_JVM_FLAGS,
    sasl: SaslUser | None = None,
) -> dict[str, Any]:
    """Start a broker on ``data_dir`` that outlives this process; return its :func:`status` dict.

    ``sasl``: the client listener is SASL_PLAINTEXT/PLAIN with this user (:mod:`.local_sasl`).
    Waits until it answers. If one already runs there, returns its status with ``already_running=True``
    (and raises :class:`KafkaLocalError` when that one's SASL setting is not the one asked for).
    The pid and ports go to ``<data_dir>/kafka-local.json`` for :func:`status` / :func:`stop_detached`.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _flock(data_dir / ".kafka-local.lock"):
        current = status(data_dir)
        if current is not None:
            _same_sasl(current, sasl, data_dir)
            current["already_running"] = True
            return current
        prepared = _prepare(
            data_dir, port, controller_port, _parse_heap(heap), ensure_jars(), jvm_flags, {}, _find_java(),
            sasl=sasl,
        )
        log_fh, offset = _open_log(prepared.log_path, f"start (detached) {shlex.join(prepared.cmd)}")
        try:
            proc = subprocess.Popen(
                prepared.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                start_new_session=True,
            )
        finally:
            log_fh.close()
        _DETACHED[proc.pid] = proc
        state = _read_state(data_dir)
        state.update(pid=proc.pid, pgid=proc.pid, mode="detached", started_at=time.time())
        _write_state(data_dir, state)
        t0 = time.monotonic()
        try:
            _wait_ready(
                lambda: proc.poll() is None,
                prepared.log_path,
                offset,
                f"127.0.0.1:{prepared.port}",
                prepared.port,
                ready_timeout,
                "Kafka broker",
                prepared.client,
            )
        except BaseException:
            _stop_pid(data_dir, proc.pid, 5.0)
            raise
        result = status(data_dir) or dict(state)
        result.update(
            already_running=False, ready_seconds=time.monotonic() - t0, format_seconds=prepared.format_seconds
        )
        return result


def _same_sasl(current: Mapping[str, Any], sasl: SaslUser | None, data_dir: Path) -> None:
    """A broker already runs on ``data_dir``: refuse a ``--sasl`` start whose user it does not have.

    A start without ``sasl`` gets the running broker as it is (its status says whether SASL is on).
    """
    if sasl is None:
        return
    running = current.get("sasl") or {}
    try:
        known = json.loads(Path(running.get("client_config", "")).read_text()) if running else {}
    except (OSError, ValueError):
        known = {}
    if known.get("sasl_plain_username") == sasl.username and known.get("sasl_plain_password") == sasl.password:
        return
    if not running:
        has = "without SASL"
    elif running.get("username") == sasl.username:
        has = f"with another password for user {sasl.username!r}"
    else:
        has = f"with SASL/PLAIN for user {running.get('username')!r}, not {sasl.username!r}"
    raise KafkaLocalError(f"a broker already runs on {data_dir} {has}: "
                          f"`easysched kafka-local stop --dir {data_dir}` first")


def _stop_pid(data_dir: Path, pid: int, timeout: float) -> None:
    proc = _DETACHED.pop(pid, None)
    _signal_group(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and (_pid_alive(pid) if proc is None else proc.poll() is None):
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    end = time.monotonic() + 10.0
    while _pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    state = _read_state(data_dir)
    _finish_cds(state)
    state.update(pid=None, pgid=None, cds_dump=None, stopped_at=time.time())
    _write_state(data_dir, state)


def stop_detached(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the broker running on ``data_dir`` (SIGTERM, SIGKILL after ``timeout``).

    Returns True if a broker was running and is now stopped, False if none was running.
    """
    data_dir = Path(data_dir).resolve()
    with _flock(data_dir / ".kafka-local.lock"):
        current = status(data_dir)
        if current is None:
            return False
        _stop_pid(data_dir, int(current["pid"]), timeout)
        return True
