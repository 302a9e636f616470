"""compose/docker-compose.yml is checked without Docker: services, commands and environment vs. the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml

from easysched_es.cli.app import build_parser

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def test_compose_services_commands_and_environment() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    masters = [n for n, s in services.items() if s.get("command", [None])[1:2] == ["master"]]
    workers = [n for n, s in services.items() if s.get("command", [None])[1:2] == ["worker"]]
    assert len(masters) == 2 and len(workers) == 2, services
    parser = build_parser()
    for name in masters + workers:
        service = services[name]
        command = service["command"]
        assert command[0] == "easysched"
        args = parser.parse_args(command[1:])  # exits (fails the test) on an unknown option
        assert args.func.__name__ in ("cmd_master", "cmd_worker")
        env = service["environment"]
        assert env["EASYSCHED_KAFKA"] == "kafka:9092"
        assert int(env["EASYSCHED_KAFKA_PARTITIONS"]) >= 1
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    projector = services["projector"]
    args = parser.parse_args(projector["command"][1:])
    assert args.func.__name__ == "cmd_projector"
    assert projector["environment"]["EASYSCHED_KAFKA"] == "kafka:9092"
    assert f"{args.port}:{args.port}" in projector["ports"]
    assert (COMPOSE.parent / projector["build"]["dockerfile"].removeprefix("compose/")).exists()
    names = [services[n]["command"][services[n]["command"].index("--name") + 1] for n in masters + workers]
    assert len(set(names)) == len(names), "every master and worker needs its own name"
