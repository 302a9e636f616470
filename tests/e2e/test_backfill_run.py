"""Backfill through a real `easysched run`, real SHELL subprocesses and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Run, cli, cli_json, wait_until

pytestmark = pytest.mark.slow


def test_a_backfill_runs_every_date_with_its_time_parameters_and_stop_ends_it(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "days.txt"
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: daily\nparams: {DAY: '$[yyyyMMdd]'}\ntasks:\n"
        f"  - {{name: load, type: SHELL, command: 'echo $DAY $system_biz_date >> {out}'}}\n"
    )
    assert cli(tmp_path, "define", str(flow)).returncode == 0
    refused = cli(tmp_path, "backfill", "daily", "--from", "2026-11-05", "--to", "2026-11-01", "--json")
    assert refused.returncode == 1 and "from_date" in str(cli_json_text(refused.stdout)["error"])
    assert cli(tmp_path, "backfill", "daily", "--parallel", "0").returncode == 2

    done = cli(tmp_path, "backfill", "daily", "--from", "2026-11-01", "--to", "2026-11-06", "--parallel", "2",
               "--reverse", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    final = cli_json_text(done.stdout)
    assert (final["state"], final["succeeded"], final["total"]) == ("SUCCESS", 6, 6)
    lines = sorted(out.read_text().splitlines())
    assert lines == [f"202611{d:02d} 202611{d - 1:02d}" if d > 1 else "20261101 20261031" for d in range(1, 7)]
    status = cli_json(tmp_path, "status", final["backfill"])
    assert (status["done"], status["failed"], status["running"]) == (6, 0, 0)
    instances = [i for i in cli_json(tmp_path, "status") if i.get("backfill") == final["backfill"]]
    assert len(instances) == 6 and {i["command_type"] for i in instances} == {"COMPLEMENT_DATA"}

    # A slow one: stop it while dates run; nothing further starts and its instances end STOP.
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\ntasks:\n  - {name: nap, type: SHELL, command: 'sleep 60'}\n")
    assert cli(tmp_path, "define", str(slow)).returncode == 0
    backfill = cli_json(tmp_path, "backfill", "slow", "--from", "2026-01-01", "--to", "2026-12-31",
                        "--parallel", "3")["backfill"]
    wait_until("3 naps running", lambda: sum(
        1 for i in run.state().instances.values() if i.backfill == backfill
        and i.tasks.get("nap") is not None and i.tasks["nap"].state == "RUNNING_EXECUTION") == 3)
    assert cli_json(tmp_path, "stop", backfill)["accepted"] is True
    wait_until("stopped instances", lambda: all(
        i.state == "STOP" for i in run.state().instances.values() if i.backfill == backfill))
    state = run.state()
    assert state.backfills[backfill].state == "STOP" and state.backfills[backfill].taken == 3
    assert sum(1 for i in state.instances.values() if i.backfill == backfill) == 3
    waited = cli(tmp_path, "backfill", "slow", "--dates", "2026-01-01", "--wait", "--wait-timeout", "0", "--json")
    assert waited.returncode == 3 and '"timeout"' in waited.stdout


def cli_json_text(text: str) -> dict[str, object]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value
