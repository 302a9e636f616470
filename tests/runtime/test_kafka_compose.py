"""compose/docker-compose.yml is checked without Docker: services, commands and environment vs. the CLI,
and the properties issue 14 asks of it (host listener, volumes, healthchecks, a scaling worker, loopback
ports, a pinned image)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

from easysched_es.cli.app import build_parser

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
DOCKERFILE = COMPOSE.parent / "Dockerfile"
CONSTRAINTS = COMPOSE.parent / "constraints.txt"
PYPROJECT = COMPOSE.parents[1] / "pyproject.toml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _argv(service: dict[str, Any], hostname: str = "c0ffee") -> list[str]:
    """The easysched argv a service runs; a `sh -c` entrypoint is split as the shell would
    (compose turns `$$` into `$`, the shell expands HOSTNAME)."""
    command = list(service["command"])
    if command[:2] == ["sh", "-c"]:
        script = command[2].replace("$${HOSTNAME}", hostname)
        command = shlex.split(script)
        assert command[0] == "exec", script
        command = command[1:]
    assert command[0] == "easysched", command
    return command[1:]


def _easysched_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if n != "kafka"}


def test_compose_services_commands_and_environment() -> None:
    services = _services()
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    parser = build_parser()
    kinds = {name: parser.parse_args(_argv(s)).func.__name__ for name, s in _easysched_services().items()}
    masters = [n for n, k in kinds.items() if k == "cmd_master"]
    workers = [n for n, k in kinds.items() if k == "cmd_worker"]
    assert len(masters) == 2 and workers == ["worker"], kinds
    assert kinds["projector"] == "cmd_ui"
    for name in masters + workers + ["projector"]:
        service = services[name]
        env = service["environment"]
        assert env["EASYSCHED_KAFKA"] == "kafka:9092"
        assert int(env["EASYSCHED_KAFKA_PARTITIONS"]) >= 1
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert (COMPOSE.parent / services["projector"]["build"]["dockerfile"].removeprefix("compose/")).exists()
    names = [parser.parse_args(_argv(services[n])).name for n in masters]
    assert len(set(names)) == len(names), "every master needs its own name"


def test_broker_has_a_host_listener_and_a_data_volume() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    kafka = doc["services"]["kafka"]
    env = kafka["environment"]
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092"
    host = [name for name, address in advertised.items() if address.startswith("127.0.0.1:")]
    assert len(host) == 1, advertised
    host_port = advertised[host[0]].rsplit(":", 1)[1]
    assert listeners[host[0]] == f":{host_port}" and host[0] in protocols
    assert f"127.0.0.1:{host_port}:{host_port}" in kafka["ports"]
    assert f"EASYSCHED_KAFKA=127.0.0.1:{host_port}" in (COMPOSE.parents[1] / "README.md").read_text()
    log_dir = env["KAFKA_LOG_DIRS"]
    volume = next(v.split(":")[0] for v in kafka["volumes"] if v.split(":")[1] == log_dir)
    assert volume in doc["volumes"], "the broker's data is in a named volume: `down` then `up` keeps it"


def test_every_easysched_service_has_a_healthcheck_the_image_can_run() -> None:
    for name, service in _easysched_services().items():
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], (name, test)
        compile(test[3], f"{name} healthcheck", "exec")  # valid Python for the image's interpreter
    projector = _services()["projector"]
    port = build_parser().parse_args(_argv(projector)).ui_port
    assert f"http://127.0.0.1:{port}/health" in projector["healthcheck"]["test"][3]


def test_worker_scales_with_a_name_and_work_dir_per_container() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    worker = doc["services"]["worker"]
    assert "container_name" not in worker and "hostname" not in worker, "`--scale worker=3` needs neither"
    assert worker["command"][:2] == ["sh", "-c"]
    parser = build_parser()
    one, two = (parser.parse_args(_argv(worker, host)) for host in ("aaa111", "bbb222"))
    assert (one.name, two.name) == ("aaa111", "bbb222"), "the worker's name comes from the container's hostname"
    assert one.work_dir != two.work_dir, "each container has its own claim directory"
    mounts = dict(v.split(":", 1) for v in worker["volumes"])
    volume = next(name for name, path in mounts.items() if Path(path) in one.work_dir.parents)
    assert volume in doc["volumes"]


def test_published_ports_are_on_loopback_and_the_dashboard_takes_the_token() -> None:
    services = _services()
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    projector = services["projector"]
    args = build_parser().parse_args(_argv(projector))
    assert f"127.0.0.1:{args.ui_port}:{args.ui_port}" in projector["ports"]
    from easysched_es.web.actions import TOKEN_ENV
    assert projector["environment"][TOKEN_ENV] == "${" + TOKEN_ENV + ":-}"


def test_image_is_pinned() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), "pin the base image's patch release"
    assert re.search(r"pip install .*-c constraints\.txt", text)
    assert "tools your tasks need" in text
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
            pins[re.sub(r"[-_.]+", "-", req.name).lower()] = next(iter(req.specifier)).version
    import tomllib
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = re.sub(r"[-_.]+", "-", dep.name).lower()
        assert name in pins, f"{dep.name} is not pinned in {CONSTRAINTS.name}"
        assert dep.specifier.contains(pins[name]), (dep, pins[name])
