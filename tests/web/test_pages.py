"""The dashboard's pages, data, time travel, security and metrics, on a simulated log (no browser).

The workload is written by the real core (`tests.projections.workload.Simulation`), so the
fold's state is at hand to compare the pages' data with.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.core import commands as c
from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import load_state
from easysched_es.web import data as pages
from easysched_es.web.serve import UiSettings, dashboard_service
from easysched_es.web.svg import dag_svg
from projections.service import ProjectionService
from tests.projections.helpers import serving, wait_for, write_workload
from tests.projections.workload import Simulation

HOSTILE = '<img src=x onerror="alert(1)">&amp;'


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Simulation, str]:
    path = tmp_path_factory.mktemp("web")
    sim = write_workload(path, 5, 500, max_active=6)
    from easysched_es.log.embedded import EmbeddedStream

    with EmbeddedStream(path / "commands") as commands, EmbeddedStream(path / "events") as events:
        sim.commands_stream, sim.events_stream = commands, events
        hostile = WorkflowDefinition(name=f"wf {HOSTILE}", description=HOSTILE,
                                     tasks=[ShellTask(name=HOSTILE, command="echo hi")])
        sim.submit(c.DefineWorkflow(at=sim.now + 1, definition=hostile))
        started = sim.submit(c.StartWorkflow(at=sim.now + 2, workflow=hostile.name, params={"P": HOSTILE}))
        instance = started.events[0].instance  # type: ignore[union-attr]
        sim.commands_stream = sim.events_stream = None
    return path, sim, instance


def _service(path: Path, **settings: Any) -> ProjectionService:
    data = DataDir(path)
    return dashboard_service(path, data, lambda: Client(path), UiSettings(port=0, **settings), logs_dir=data.logs)


@pytest.fixture(scope="module")
def service(workload: tuple[Path, Simulation, str]) -> Iterator[ProjectionService]:
    svc = _service(workload[0])
    with serving(svc):
        yield svc


def request(svc: ProjectionService, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers={**hdrs, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def token(svc: ProjectionService) -> str:
    value: str = json.loads((svc.data_dir / "service.json").read_text())["token"]
    return value


# ---------------------------------------------------------------------------- data


def test_overview_counts_agree_with_the_fold(service: ProjectionService,
                                             workload: tuple[Path, Simulation, str]) -> None:
    _, sim, _ = workload
    view = pages.overview(service.projection.reader)
    assert view["instances_by_state"] == dict(Counter(i.state for i in sim.state.instances.values()))
    assert view["timers_pending"] == len(sim.state.queue.entries())
    running = sum(t.state in ("DISPATCH", "RUNNING_EXECUTION") for i in sim.state.instances.values()
                  for t in i.tasks.values())
    assert view["running_tasks"] == running
    assert view["fold_lag"]["records"] == 0


def test_instance_data_agrees_with_the_fold(service: ProjectionService, workload: tuple[Path, Simulation, str]) -> None:
    _, sim, _ = workload
    for inst in list(sim.state.instances.values())[::7]:
        view = pages.instance(service.projection.reader, inst.id)
        assert view is not None and view["instance"]["state"] == inst.state
        states = {t["name"]: t["state"] for t in view["tasks"]}
        for name, task in inst.tasks.items():
            assert states[name] == task.state, (inst.id, name)
        assert {(t["task"], t["kind"]) for t in view["timers"]} == {
            (t.task, t.kind) for t in sim.state.queue.entries() if t.instance == inst.id}
        assert view["offsets"] == sorted(view["offsets"]) and view["offsets"][0] == int(inst.id.split("-")[1])
        assert view["trace"][0]["type"] == "start"


def test_time_travel_shows_the_state_as_of_each_offset(
    service: ProjectionService, workload: tuple[Path, Simulation, str]
) -> None:
    path, sim, _ = workload
    inst = next(i for i in sim.state.instances.values() if len(i.tasks) >= 2)
    offsets = json.loads(request(service, "GET", f"/api/instance/{inst.id}")[1])["offsets"]
    assert len(offsets) >= 3
    # Forward, backward and repeated jumps all agree with a fresh replay.
    for offset in [*offsets, offsets[1], offsets[0], offsets[-1], offsets[-1]]:
        status, body, _ = request(service, "GET", f"/api/instance/{inst.id}/at/{offset}")
        assert status == 200
        view = json.loads(body)
        state = load_state(DataDir(path), until=offset)
        expected = state.instances[inst.id]
        assert view["applied_offset"] == offset and view["state"] == expected.state
        assert {k: v["state"] for k, v in view["tasks"].items()} == {k: t.state for k, t in expected.tasks.items()}
        assert [(t["task"], t["kind"]) for t in view["timers"]] == [
            (t.task, t.kind) for t in state.queue.entries() if t.instance == inst.id]
        assert view["command"] is not None
    status, body, _ = request(service, "GET", f"/api/instance/{inst.id}/at/-1")
    assert status == 400
    status, body, _ = request(service, "GET", "/api/instance/nonsense/at/5")
    assert (status, json.loads(body)["kind"]) == (400, "bad_request")


# ---------------------------------------------------------------------------- pages


def test_every_page_renders(service: ProjectionService, workload: tuple[Path, Simulation, str]) -> None:
    _, sim, _ = workload
    inst = next(iter(sim.state.instances))
    for path in ("/", "/workflows", "/workflows/etl_daily", f"/instance/{inst}", f"/instance/{inst}?at=5", "/sql"):
        status, body, headers = request(service, "GET", path)
        assert status == 200, path
        assert b"<!doctype html>" in body and "script-src 'self'" in headers["content-security-policy"]
        assert b"<script>" not in body  # no inline script: the CSP would refuse it anyway
    status, body, _ = request(service, "GET", "/instance/0-999999999")
    assert status == 404 and b"no workflow instance" in body
    csv_sql = "SELECT%201%20AS%20one%2C%20%27a%2Cb%27%20AS%20t"
    status, body, headers = request(service, "GET", "/api/sql.csv?sql=" + csv_sql)
    assert status == 200 and body.decode().splitlines() == ["one,t", '1,"a,b"']
    status, body, _ = request(service, "GET", "/api/sql.csv?sql=DELETE%20FROM%20timers")
    assert (status, json.loads(body)["kind"]) == (400, "read_only")
    assert request(service, "GET", "/static/app.js")[0] == 200


def test_what_users_wrote_is_shown_as_text(service: ProjectionService, workload: tuple[Path, Simulation, str]) -> None:
    _, _, instance = workload
    for path in (f"/instance/{instance}", "/workflows", "/", f"/workflows/wf%20{HOSTILE}"):
        status, body, _ = request(service, "GET", path.replace(" ", "%20").replace('"', "%22"))
        assert status == 200, path
        html = body.decode()
        assert "<img" not in html, path
        assert "&lt;img src=x onerror=" in html, path
    svg = str(dag_svg([{"name": HOSTILE, "type": "SHELL", "upstream": [], "state": '"><script>'}]))
    assert "<img" not in svg and "<script>" not in svg and "&lt;img" in svg


# ---------------------------------------------------------------------------- security


def test_actions_need_the_token(service: ProjectionService, workload: tuple[Path, Simulation, str]) -> None:
    _, _, instance = workload
    status, body, _ = request(service, "POST", "/api/actions/pause", {"instance": instance})
    assert (status, json.loads(body)["kind"]) == (401, "unauthorized")
    status, body, _ = request(service, "POST", "/api/actions/pause", {"instance": instance},
                              {"X-Easysched-Token": "guess"})
    assert status == 401 and "wrong" in json.loads(body)["error"]
    assert (service.data_dir / "service.json").stat().st_mode & 0o077 == 0  # the token file is the user's only


def test_a_rebuild_through_a_dashboard_needs_its_token(service: ProjectionService) -> None:
    from projections.client import find_service

    for headers in ({}, {"X-Easysched-Token": "guess"}):
        status, body, _ = request(service, "POST", "/rebuild", {}, headers)
        assert (status, json.loads(body)["kind"]) == (401, "unauthorized")
    before = service.projection.reader.run("SELECT count(*) FROM workflow_instances", None, None).table
    reader = find_service(service.data_dir)  # as the CLI finds it: the token comes from service.json
    assert reader is not None and reader.rebuild()["records"] > 0
    assert service.projection.reader.run("SELECT count(*) FROM workflow_instances", None, None).table == before


def test_a_cross_origin_action_is_refused_even_with_the_token(service: ProjectionService,
                                                              workload: tuple[Path, Simulation, str]) -> None:
    _, _, instance = workload
    headers = {"X-Easysched-Token": token(service)}
    for evil in ({"Origin": "http://evil.example"}, {"Origin": f"http://localhost.evil.example:{service.port}"},
                 {"Sec-Fetch-Site": "cross-site"}):
        status, body, _ = request(service, "POST", "/api/actions/stop", {"instance": instance}, {**headers, **evil})
        assert (status, json.loads(body)["kind"]) == (403, "forbidden"), evil
    status, body, _ = request(service, "GET", "/", headers={"Host": "evil.example"})
    assert status == 403
    # A form post (what a cross-site page can send without a preflight) is not JSON: refused.
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    conn.request("POST", "/api/actions/stop", body=f"instance={instance}",
                 headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    assert conn.getresponse().status == 415
    conn.close()


def test_an_action_appends_the_command_and_answers_the_verdict(
    service: ProjectionService, workload: tuple[Path, Simulation, str]
) -> None:
    _, sim, instance = workload
    headers = {"X-Easysched-Token": token(service), "Origin": f"http://127.0.0.1:{service.port}"}
    finished = next(i.id for i in sim.state.instances.values() if i.state == "SUCCESS")
    status, body, _ = request(service, "POST", "/api/actions/stop", {"instance": finished}, headers)
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is False and "already SUCCESS" in answer["reason"]
    status, body, _ = request(service, "POST", "/api/actions/kill_task", {"instance": instance, "task": HOSTILE},
                              headers)
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is True
    assert any(e["type"] == "task_state" and e["state"] == "KILL" for e in answer["events"])
    status, body, _ = request(service, "POST", "/api/actions/kill_task", {"instance": instance}, headers)
    assert (status, json.loads(body)["kind"]) == (400, "bad_request")
    status, body, _ = request(service, "POST", "/api/actions/format_disk", {"instance": instance}, headers)
    assert status == 404
    status, body, _ = request(service, "POST", "/api/actions/trigger", {"workflow": "etl_daily"}, headers)
    answer = json.loads(body)
    assert status == 200 and answer["ok"] is False and "schedule" in answer["reason"]


def test_read_only_hides_and_refuses_actions(workload: tuple[Path, Simulation, str], tmp_path: Path) -> None:
    path, sim, _ = workload
    for stream in ("commands", "events"):  # a copy: the module's service holds the projection file
        shutil.copytree(path / stream, tmp_path / stream)
    with _service(tmp_path, read_only=True) as svc:
        wait_for(lambda: svc.health()["caught_up"], "the service to catch up")
        inst = next(iter(sim.state.instances))
        html = request(svc, "GET", f"/instance/{inst}")[1].decode()
        assert "data-action=" not in html and "read-only" in html
        status, body, _ = request(svc, "POST", "/api/actions/stop", {"instance": inst},
                                  {"X-Easysched-Token": token(svc)})
        assert (status, json.loads(body)["kind"]) == (403, "read_only")


# ---------------------------------------------------------------------------- metrics


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def test_metrics_agree_with_the_fold(service: ProjectionService, workload: tuple[Path, Simulation, str]) -> None:
    _, sim, _ = workload
    status, body, headers = request(service, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = _samples(body.decode())
    by_state = Counter(i.state for i in sim.state.instances.values())
    for state, n in by_state.items():
        assert samples[f'easysched_workflow_instances{{state="{state}"}}'] == n
    tasks = Counter(t.state for i in sim.state.instances.values() for t in i.tasks.values() if t.attempt or
                    t.state != "SUBMITTED_SUCCESS")
    for state, n in tasks.items():
        assert samples.get(f'easysched_task_instances{{state="{state}"}}', 0) == n, state
    assert sum(v for k, v in samples.items() if k.startswith("easysched_timers_pending")) == len(
        sim.state.queue.entries())
    kills = [k for k in samples if k.startswith("easysched_kill_latency_seconds_count")]
    assert kills and samples["easysched_dispatch_latency_seconds_count"] > 0
    rejected = sum(v for k, v in samples.items() if k.startswith("easysched_commands_rejected"))
    assert rejected == sum(1 for b in sim.batches for ev in b.events if type(ev).__name__ == "CommandRejected")
