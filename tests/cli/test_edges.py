"""Issue 11: the edges a new user hits, each through the real CLI (subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import json_error, run_cli, write_flow

READ_COMMANDS = [["status"], ["timers"], ["verify"], ["wait", "0-1", "--timeout", "1"], ["trace", "0-1"],
                 ["replay", "--until", "0"]]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_1_read_commands_never_create_a_data_directory(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "mistyped"
    proc = run_cli(*command, "--data-dir", str(missing))
    assert proc.returncode == 1, proc.stderr
    assert "no data directory" in proc.stderr and str(missing) in proc.stderr
    assert not missing.exists()
    err = json_error(run_cli(*command, "--data-dir", str(missing), "--json"))
    assert err["kind"] == "no_data_dir" and err["data_dir"] == str(missing)
    assert not missing.exists()


@pytest.mark.parametrize("where", ["file", "proc", "sys"])
def test_1_a_data_directory_that_cannot_be_created_is_explained(tmp_path: Path, where: str) -> None:
    flow = write_flow(tmp_path / "a.yaml", "a")
    (tmp_path / "plain").write_text("")
    places = {"file": tmp_path / "plain" / "data", "proc": Path("/proc/easysched"), "sys": Path("/sys/easysched")}
    target = places[where]
    proc = run_cli("define", str(flow), "--data-dir", str(target))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot create the data directory {target}" in proc.stderr
    err = json_error(run_cli("define", str(flow), "--data-dir", str(target), "--json"))
    assert err["kind"] == "no_data_dir"


def test_1_write_commands_create_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    proc = run_cli("define", str(write_flow(tmp_path / "a.yaml", "a")), "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    assert data.is_dir()
    assert run_cli("status", "--data-dir", str(data)).returncode == 0


def test_3_json_errors_keep_the_exit_code(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert run_cli("define", str(write_flow(tmp_path / "a.yaml", "a")), "--data-dir", str(data)).returncode == 0
    cases = [
        (["start", "nope"], 1, "rejected", "unknown workflow 'nope'"),
        (["start"], 2, "usage", "workflow"),
        (["status", "0-999"], 1, "not_found", "unknown instance '0-999'"),
        (["stop", "0-999"], 1, "rejected", "unknown instance"),
        (["define", str(tmp_path / "missing.yaml")], 1, "invalid_definition", "cannot read"),
    ]
    for args, code, kind, message in cases:
        proc = run_cli(*args, "--data-dir", str(data), "--json")
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        err = json_error(proc)
        assert err["kind"] == kind and message in err["error"], (args, err)


def test_4_exit_codes_mean_one_thing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    flow = write_flow(tmp_path / "a.yaml", "a")
    assert run_cli("define", str(flow), "--data-dir", str(data)).returncode == 0
    started = run_cli("start", "a", "--data-dir", str(data), "--json")
    instance = json.loads(started.stdout)["instance"]
    # No master runs: the instance never ends, so `wait` times out with its own code.
    proc = run_cli("wait", instance, "--timeout", "0.5", "--data-dir", str(data), "--json")
    assert proc.returncode == 3
    err = json_error(proc)
    assert err["kind"] == "timeout" and err["instance"] == instance and "still" in err["error"]
    assert run_cli("wait", instance, "--timeout", "0.5", "--data-dir", str(data)).returncode == 3
    # trace of an unknown instance, or of an unknown task of a known one: exit 1 like status.
    assert json_error(run_cli("trace", "0-999", "--data-dir", str(data), "--json"))["kind"] == "not_found"
    proc = run_cli("trace", instance, "--task", "nope", "--data-dir", str(data))
    assert proc.returncode == 1 and "no task 'nope'" in proc.stderr
    assert run_cli("trace", instance, "--task", "a", "--data-dir", str(data)).returncode == 0
    # replay --until refuses what is not an offset.
    for bad in ("-5", "x", "1.5"):
        proc = run_cli("replay", "--until", bad, "--data-dir", str(data))
        assert proc.returncode == 2 and "--until" in proc.stderr, (bad, proc.stderr)
    # query "" is a usage error.
    proc = run_cli("query", "", "--data-dir", str(data))
    assert proc.returncode == 2, proc.stderr
    # A bad --param shows start's usage, not the top level's.
    proc = run_cli("start", "a", "--param", "novalue", "--data-dir", str(data))
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: easysched start") and "KEY=VALUE" in proc.stderr
    # The codes are documented in --help.
    top = run_cli("--help")
    assert "3 wait timed out" in top.stdout.replace("\n", " ").replace("  ", " ")
