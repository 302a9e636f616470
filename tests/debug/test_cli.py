"""The debugging commands as a user runs them: replay --at/--until and filters, why, verify, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from easysched_es.debug.views import iso
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import load_state
from tests.debug.helpers import busy_data_dir
from tests.debug.test_verify import _tamper_events
from tests.harness import cli, cli_json


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = busy_data_dir(tmp_path_factory.mktemp("busy"), commands=900)
    cli(data.root, "snapshots", "--build", "--every", "150", check=True)
    return data.root


def test_snapshots_build_and_list(busy: Path) -> None:
    listed = cli_json(busy, "snapshots")
    assert listed["kept"] and all(k["offset"] > 0 and k["now"] for k in listed["kept"])


def test_replay_at_a_time_equals_replay_until_the_offset_it_resolved(busy: Path) -> None:
    mid = load_state(DataDir(busy)).now - 600_000
    at = cli_json(busy, "replay", "--at", iso(mid) or "")
    until = cli_json(busy, "replay", "--until", str(at["last_offset"]))
    assert at["instances"] == until["instances"] and at["timers"] == until["timers"]
    assert at["started_from_snapshot"] is not None and "snapshot at offset" in at["note"]
    point = str(at["last_offset"])
    failed = cli_json(busy, "replay", "--until", point, "--state", "FAILURE", "--workflow", "etl_daily")
    assert failed["instances"] and all(
        i["state"] == "FAILURE" and i["workflow"] == "etl_daily" for i in failed["instances"]
    )
    assert {t["instance"] for t in failed["timers"]} <= {i["instance"] for i in failed["instances"]}
    status = cli_json(busy, "status", "--state", "SUCCESS")
    assert status and {i["state"] for i in status} == {"SUCCESS"}


def test_replay_usage_errors(busy: Path) -> None:
    assert cli(busy, "replay").returncode == 2
    bad = cli(busy, "replay", "--at", "yesterday")
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr


def test_why_from_the_command_line(busy: Path) -> None:
    status = cli_json(busy, "status", "--state", "STOP")
    inst = status[0]["instance"]
    answer = cli_json(busy, "why", inst)
    assert answer["state"] == "STOP" and answer["summary"].startswith("STOP because `")
    text = cli(busy, "why", inst, check=True).stdout
    assert "STOP because" in text
    assert cli(busy, "why", "0-1").returncode == 1


def test_verify_log_reports_the_tampered_event_side_by_side(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path / "copy", commands=500)
    assert cli(tmp_path, "verify", "--log", str(data.root)).returncode == 0
    target = _tamper_events(data)
    out = cli(tmp_path, "verify", "--log", str(data.root))
    assert out.returncode == 1
    assert f"DIVERGENCE in partition 0 at offset {target}" in out.stdout
    assert "replayed by this version" in out.stdout and "tampered" in out.stdout
    missing = cli(tmp_path, "verify", "--log", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "not an easysched data directory" in missing.stderr
    assert not (tmp_path / "nope").exists()


def test_verify_from_snapshots(busy: Path) -> None:
    out = cli_json(busy, "verify", "--from-snapshots")
    assert out["ok"] and out["snapshots"]
    since = cli_json(busy, "verify", "--since", str(out["snapshots"][-1]["offset"]))
    assert since["ok"] and since["started_from"] == {"0": out["snapshots"][-1]["offset"]}


def test_export_import_on_the_command_line(busy: Path, tmp_path: Path) -> None:
    inst = cli_json(busy, "status", "--state", "FAILURE")[0]["instance"]
    out = cli_json(busy, "export", inst, "-o", str(tmp_path / "bug.eslog"))
    assert out["kind"] == "instance" and out["written_by"].startswith("easysched-es ")
    new = out["instance_map"][inst]
    there = tmp_path / "bug"
    done = cli_json(there, "import", str(tmp_path / "bug.eslog"))
    assert done["instance_map"] == {inst: new}
    assert cli_json(there, "status", new)["state"] == "FAILURE"
    assert cli(there, "verify").returncode == 0
    assert cli_json(there, "why", new)["state"] == "FAILURE"
    again = cli(there, "import", str(tmp_path / "bug.eslog"))
    assert again.returncode == 1 and "already holds a log" in again.stderr
    assert cli(busy, "export", "-o", str(tmp_path / "x")).returncode == 2
    ranged = cli_json(busy, "export", "--from", "5000", "-o", str(tmp_path / "range.eslog"))
    assert ranged["kind"] == "range" and ranged["first_offset"] >= 5000
    cli(tmp_path / "r", "import", str(tmp_path / "range.eslog"), check=True)
    assert cli(tmp_path / "r", "verify").returncode == 0
    junk = tmp_path / "junk.eslog"
    junk.write_bytes(b"not a log")
    bad = cli(tmp_path / "j", "import", str(junk))
    assert bad.returncode == 1 and "not an easysched export" in bad.stderr
