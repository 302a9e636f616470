"""The projection service while the log grows: HTTP API, CLI commands and `connect`."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.cli.app import main
from easysched_es.core import commands as c
from easysched_es.core.definitions import Dependence, DependentTask, DependItem, WorkflowDefinition
from easysched_es.log.embedded import EmbeddedStream
from projections.api import connect
from projections.client import HttpReader, find_service, read_service_file
from projections.errors import ProjectionLockedError, QueryError, ReadOnlyError
from projections.service import ProjectionService
from tests.projections.helpers import serving, timers_of, wait_for, write_workload
from tests.projections.workload import Simulation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[tuple[Path, Simulation]]:
    sim = write_workload(tmp_path, 31, 400, max_active=6)
    yield tmp_path, sim


@pytest.fixture
def service(data_dir: tuple[Path, Simulation]) -> Iterator[ProjectionService]:
    path, _ = data_dir
    svc = ProjectionService(path, port=0, poll_interval=0.01)
    with serving(svc):
        yield svc
    assert not (path / "service.json").exists()


def raw(svc: ProjectionService, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def run_cli(data: Path, *argv: str) -> int:
    """The projection commands through the CLI's main (which prints errors and picks exit codes)."""
    return main(["--data-dir", str(data), *argv])


# ---------------------------------------------------------------------------- HTTP API


def test_service_json_names_the_live_service(service: ProjectionService) -> None:
    info = read_service_file(service.data_dir)
    assert info is not None and (info["pid"], info["url"]) == (os.getpid(), service.url)
    assert find_service(service.data_dir) is not None


def test_a_query_answers_with_columns_types_and_rows(
    service: ProjectionService, data_dir: tuple[Path, Simulation]
) -> None:
    _, sim = data_dir
    reader = HttpReader(service.url)
    answer = reader.query("SELECT count(*) AS n, min(time) AS first FROM events")
    assert answer["columns"] == ["n", "first"] and answer["types"] == ["BIGINT", "TIMESTAMP"]
    assert answer["rows"][0][0] == sum(len(b.events) for b in sim.batches)
    assert answer["rows"][0][1].endswith("Z")  # UTC, and says so
    limited = reader.query("SELECT * FROM commands", max_rows=3)
    assert (limited["row_count"], limited["truncated"]) == (3, True)
    assert reader.query("SELECT payload FROM commands LIMIT 1")["rows"][0][0]["type"] == "define"  # JSON, not text
    assert reader.query_arrow("SELECT count(*) AS n FROM task_instances").column("n")[0].as_py() > 0


def test_a_write_is_refused_and_the_service_keeps_serving(service: ProjectionService) -> None:
    writes = (
        "DELETE FROM timers", "DROP TABLE events", "CREATE TABLE x (a INT)", "EXPLAIN ANALYZE DELETE FROM timers",
        "COPY events TO 'leak.csv'", "ATTACH 'other.duckdb'", "SET threads = 1",
    )
    for sql in writes:
        status, body = raw(service, "POST", "/query", json.dumps({"sql": sql}).encode(),
                           {"Content-Type": "application/json"})
        assert status == 400 and body["kind"] == "read_only", sql
        assert "read-only" in body["error"]
    with pytest.raises(ReadOnlyError):
        HttpReader(service.url).query("UPDATE timers SET due = NULL")
    assert HttpReader(service.url).query("SELECT count(*) FROM timers")["rows"][0][0] >= 0


def test_bad_sql_gets_a_clear_error_and_the_service_keeps_serving(service: ProjectionService) -> None:
    reader = HttpReader(service.url)
    with pytest.raises(QueryError, match="Parser Error"):
        reader.query("SELEC 1")
    with pytest.raises(QueryError, match="no_such_table"):
        reader.query("SELECT * FROM no_such_table")
    with pytest.raises(QueryError, match="one statement"):
        reader.query("SELECT 1; SELECT 2")
    with pytest.raises(QueryError, match="reads outside the projection"):
        reader.query("SELECT * FROM read_text('/etc/hostname')")  # no file access through the API
    status, body = raw(service, "POST", "/query", b"{not json", {"Content-Type": "application/json"})
    assert (status, body["kind"]) == (400, "bad_request")
    assert reader.health()["ok"] is True
    assert reader.query("SELECT 42")["rows"] == [[42]]


def test_endpoints_agree_with_the_fold(service: ProjectionService, data_dir: tuple[Path, Simulation]) -> None:
    _, sim = data_dir
    reader = HttpReader(service.url)
    listed = reader.instances(limit=1000)["instances"]
    assert {i["instance"] for i in listed} == set(sim.state.instances)
    started = [i["started_at"] for i in listed]
    assert started == sorted(started, reverse=True)  # newest first
    etl = reader.instances(workflow="etl_daily", state="SUCCESS")["instances"]
    assert etl and all(i["workflow"] == "etl_daily" and i["state"] == "SUCCESS" for i in etl)
    one = next(iter(sim.state.instances.values()))
    detail = reader.instance(one.id)
    assert detail is not None and detail["instance"]["state"] == one.state
    assert {t["task"] for t in detail["tasks"]} == set(one.tasks)
    assert reader.instance("0-no-such-instance") is None
    timers = reader.timers()["timers"]
    assert {(t["instance"], t["task"], t["kind"]) for t in timers} == {(i, t, k) for i, t, k, _ in timers_of(sim.state)}
    stats = reader.stats()
    assert {w["workflow"] for w in stats["workflows"]} == {"etl_daily", "report"}
    assert stats["projection"]["caught_up"] is True
    status, spec = raw(service, "GET", "/openapi.json")
    assert status == 200 and set(spec["paths"]) >= {"/query", "/instances", "/instances/{id}", "/timers", "/stats"}


def test_requests_from_elsewhere_are_refused(service: ProjectionService) -> None:
    status, body = raw(service, "GET", "/stats", headers={"Host": "attacker.example"})
    assert (status, body["kind"]) == (403, "forbidden")
    status, body = raw(service, "POST", "/query", b'{"sql": "SELECT 1"}', {"Content-Type": "text/plain"})
    assert status == 415
    assert raw(service, "GET", "/nope")[0] == 404


def test_a_malformed_content_length_is_a_400_and_the_service_keeps_serving(service: ProjectionService) -> None:
    for length in (b"abc", b"-5", b"1e3"):
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            sock.sendall(b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + length + b"\r\n\r\n{}")
            assert sock.recv(4096).startswith(b"HTTP/1.1 400 "), length
    assert HttpReader(service.url).health()["ok"] is True


def test_a_cross_origin_post_is_refused(service: ProjectionService) -> None:
    status, body = raw(service, "POST", "/rebuild", b"{}", {"Content-Type": "application/json",
                                                             "Origin": "http://attacker.example"})
    assert (status, body["kind"]) == (403, "forbidden") and "cross-origin" in body["error"]
    status, _ = raw(service, "POST", "/query", b'{"sql": "SELECT 1"}', {
        "Content-Type": "application/json", "Origin": f"http://127.0.0.1:{service.port}"})
    assert status == 200


def test_the_service_follows_the_log_as_it_grows(service: ProjectionService, data_dir: tuple[Path, Simulation]) -> None:
    path, sim = data_dir
    reader = HttpReader(service.url)
    with EmbeddedStream(path / "commands") as commands, EmbeddedStream(path / "events") as events:
        sim.commands_stream, sim.events_stream = commands, events
        # Waits on a workflow that never runs (the workload's own upstreams may already have succeeded today).
        waits = WorkflowDefinition(name="waits", tasks=[DependentTask(
            name="wait", dependence=Dependence(items=[DependItem(workflow="never_ran")]))])
        sim.submit(c.DefineWorkflow(at=sim.now + 1, definition=waits))
        inst = sim.submit(c.StartWorkflow(at=sim.now + 1, workflow="waits")).events[0].instance  # type: ignore[union-attr]
        count = f"SELECT count(*) FROM timers WHERE instance = '{inst}'"
        wait_for(lambda: reader.query(count)["rows"] == [[1]], "the new instance's DEPENDENT_CHECK timer")
        sim.submit(c.StopWorkflow(at=sim.now + 2, instance=inst))
        wait_for(lambda: reader.query(count)["rows"] == [[0]], "the stop to remove it")
        sim.run(100)
        total = sum(len(b.events) for b in sim.batches)
        wait_for(lambda: reader.query("SELECT count(*) FROM events")["rows"] == [[total]], "every event")
    assert {(t["instance"], t["task"], t["kind"]) for t in reader.timers()["timers"]} == {
        (i, t, k) for i, t, k, _ in timers_of(sim.state)}


def test_a_second_projector_on_the_same_file_is_refused(service: ProjectionService) -> None:
    other = ProjectionService(service.data_dir, port=0, open_wait=0.2)
    with pytest.raises(ProjectionLockedError, match="already open in this process"):
        other.start()
    # Another process: DuckDB's own lock, named with the holder, and a query through the service.
    code = (
        "import sys\n"
        "from projections.local import LocalProjection\n"
        "from projections.errors import ProjectionLockedError\n"
        "from projections.client import open_reader\n"
        "try:\n"
        "    LocalProjection(sys.argv[1])\n"
        "except ProjectionLockedError as exc:\n"
        "    print(exc)\n"
        "with open_reader(sys.argv[1]) as reader:\n"
        "    print(type(reader).__name__, reader.query('SELECT 7')['rows'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(service.data_dir)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert f"held by process {os.getpid()}" in out.stdout
    assert "HttpReader [[7]]" in out.stdout
    assert HttpReader(service.url).health()["ok"]


def test_rebuild_through_the_service(service: ProjectionService, data_dir: tuple[Path, Simulation],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, sim = data_dir
    reader = HttpReader(service.url)
    before = reader.query("SELECT count(*) FROM task_instances")["rows"]
    assert run_cli(service.data_dir, "projections", "rebuild") == 0
    assert f"rebuilt: {2 * len(sim.batches)} records" in capsys.readouterr().out
    assert reader.query("SELECT count(*) FROM task_instances")["rows"] == before
    assert run_cli(service.data_dir, "projections", "rebuild", "--json") == 0
    done = json.loads(capsys.readouterr().out)
    assert done["records"] == 2 * len(sim.batches) and done["by"] == "service"


def test_rebuild_json_without_a_service_refolds_here(data_dir: tuple[Path, Simulation],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, sim = data_dir
    assert run_cli(path, "projections", "rebuild", "--json") == 0
    captured = capsys.readouterr()
    done = json.loads(captured.out)
    assert done["records"] == 2 * len(sim.batches) and done["by"] == "local"
    assert "Traceback" not in captured.err


# ---------------------------------------------------------------------------- CLI and connect


def test_cli_gives_the_same_answers_through_the_service_and_from_the_file(
    data_dir: tuple[Path, Simulation], capsys: pytest.CaptureFixture[str]
) -> None:
    path, sim = data_dir
    commands: list[tuple[str, ...]] = [
        ("query", "SELECT state, count(*) AS n FROM task_instances GROUP BY state ORDER BY state", "--json"),
        ("query", "SELECT instance, task, kind, due FROM timers ORDER BY ALL", "--format", "csv"),
        ("query", "SELECT workflow, count(*) FROM workflow_instances GROUP BY ALL ORDER BY 1"),
        ("history", "etl_daily", "--json"),
        ("history", "report"),
        ("stats",),
    ]
    direct = []
    for argv in commands:
        assert run_cli(path, *argv) == 0, argv
        direct.append(capsys.readouterr().out)
    with ProjectionService(path, port=0) as svc:
        wait_for(lambda: svc.health()["caught_up"], "the service to catch up")
        for argv, expected in zip(commands, direct, strict=True):
            assert run_cli(path, *argv) == 0, argv
            assert capsys.readouterr().out == expected, argv
    states = json.loads(direct[0])
    assert sum(s["n"] for s in states) == sum(max(t.attempt, 1) for i in sim.state.instances.values()
                                             for t in i.tasks.values())


def test_cli_exit_codes(data_dir: tuple[Path, Simulation], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = data_dir
    assert run_cli(path, "query", "DELETE FROM timers") == 1
    assert "read-only" in capsys.readouterr().err
    assert run_cli(path, "query", "SELEC 1") == 1
    assert run_cli(path, "query") == 2
    assert run_cli(path, "query", "SELECT 1", "--file", "x.sql") == 2
    assert run_cli(path, "query", "--file", str(tmp_path / "missing.sql")) == 2
    report = tmp_path / "report.sql"
    report.write_text("-- slowest attempts\nSELECT task, max(duration_ms) FROM task_instances GROUP BY task\n")
    assert run_cli(path, "query", "--file", str(report), "--format", "table") == 0
    assert run_cli(path, "history", "no_such_workflow") == 1
    assert run_cli(tmp_path / "nowhere", "stats") == 1
    assert "no data directory" in capsys.readouterr().err


def test_a_stale_service_file_is_ignored(data_dir: tuple[Path, Simulation], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = data_dir
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (path / "service.json").write_text(json.dumps({"pid": dead, "url": "http://127.0.0.1:9", "port": 9}))
    assert read_service_file(path) is None
    assert run_cli(path, "query", "SELECT 1 AS one", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [{"one": 1}]


def test_connect_reads_through_the_service_or_the_file(data_dir: tuple[Path, Simulation]) -> None:
    path, sim = data_dir
    expected = sorted((i, t, k) for i, t, k, _ in timers_of(sim.state))
    with connect(path) as con:
        assert sorted(con.sql("SELECT instance, task, kind FROM timers").fetchall()) == expected
        with ProjectionService(path, port=0) as svc:
            wait_for(lambda: svc.health()["caught_up"], "the service to catch up")
            assert sorted(con.sql("SELECT instance, task, kind FROM timers").fetchall()) == expected
            # Answers can be queried further in the connection's local database.
            con.sql("SELECT state, count(*) AS n FROM task_instances GROUP BY state").create_view("by_state")
            assert con.local.sql("SELECT sum(n) FROM by_state").fetchall()[0][0] > 0
            with pytest.raises(ReadOnlyError):
                con.sql("DELETE FROM timers")
        with pytest.raises(ReadOnlyError):
            con.sql("DELETE FROM timers")
