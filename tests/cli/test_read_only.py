"""Issue 11 point 6: read-only means read-only, through the real HTTP API and the real CLI."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projections.service import ProjectionService
from tests.cli.helpers import json_error, run_cli
from tests.projections.helpers import serving, write_workload

REFUSED = [
    "WITH x AS (DELETE FROM events RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (INSERT INTO timers SELECT * FROM timers RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE workflow_instances SET state = 'X' RETURNING *) SELECT * FROM x",
    "SELECT * FROM (WITH y AS (DELETE FROM commands RETURNING 1) SELECT * FROM y)",
    "EXPLAIN ANALYZE WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x",
    "DELETE FROM events",
    "COPY events TO '/tmp/easysched-leak.csv'",
    "ATTACH '/tmp/easysched-other.duckdb' AS other",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "SELECT * FROM '/etc/passwd.csv'",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM query('DELETE FROM events')",
    "SELECT * FROM other.main.events",
]
ALLOWED = ["SELECT count(*) AS n FROM events", "SELECT * FROM pragma_table_info('timers')", "SHOW TABLES",
           "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r"]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ProjectionService]:
    write_workload(tmp_path, 7, 40, max_active=3)
    svc = ProjectionService(tmp_path, port=0, poll_interval=0.01)
    with serving(svc):
        yield svc


def _http(svc: ProjectionService, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_6_every_write_file_read_and_attach_is_refused_over_http(service: ProjectionService) -> None:
    _, before = _http(service, "POST", "/query", {"sql": "SELECT count(*) AS n FROM events"})
    for sql in REFUSED:
        status, body = _http(service, "POST", "/query", {"sql": sql})
        assert status == 400 and body["kind"] == "read_only", (sql, status, body)
        assert "refused" in body["error"], body
    for sql in ALLOWED:
        status, body = _http(service, "POST", "/query", {"sql": sql})
        assert status == 200, (sql, body)
    _, after = _http(service, "POST", "/query", {"sql": "SELECT count(*) AS n FROM events"})
    assert after["rows"] == before["rows"]


def test_6_get_query_is_405(service: ProjectionService) -> None:
    status, body = _http(service, "GET", "/query")
    assert status == 405, body
    assert set(body) >= {"error", "kind"}


def test_6_the_cli_refuses_with_the_json_shape(tmp_path: Path) -> None:
    write_workload(tmp_path, 3, 10, max_active=2)
    for sql in REFUSED[:3] + REFUSED[8:10]:
        proc = run_cli("query", sql, "--data-dir", str(tmp_path), "--json")
        assert proc.returncode == 1, (sql, proc.stdout, proc.stderr)
        assert json_error(proc)["kind"] == "read_only"
