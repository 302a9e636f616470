"""Issue 11 points 2, 3, 7 and 8: define, start, logs, workflows and status as a user sees them (real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import json_error, run_cli, write_flow
from tests.harness import Run, wait_until

WIDE = "  - {name: 準備, type: SHELL, command: 'echo 你好; echo second line'}\n" \
       "  - {name: load, type: SHELL, command: 'echo failing; exit 3', upstream: [準備]}\n"


def test_2_an_unchanged_define_keeps_its_version_and_a_bad_file_defines_nothing(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    a, b = write_flow(tmp_path / "a.yaml", "a"), tmp_path / "b.yaml"
    b.write_text("name: b\ntasks:\n  - {name: x, type: SHELL, command: 'true', upstream: [nope]}\n")
    proc = run_cli("define", str(a), str(b), "--data-dir", data)
    assert proc.returncode == 1 and "b.yaml" in proc.stderr
    assert not (tmp_path / "d").exists()  # nothing defined, not even the data directory
    first = json.loads(run_cli("define", str(a), "--data-dir", data, "--json").stdout)
    assert first == [{"file": str(a), "workflow": "a", "version": 1, "unchanged": False}]
    again = run_cli("define", str(a), "--data-dir", data)
    assert again.returncode == 0 and "a unchanged, still version 1" in again.stdout
    write_flow(a, "a", "echo changed")
    assert json.loads(run_cli("define", str(a), "--data-dir", data, "--json").stdout)[0]["version"] == 2


def test_7_start_without_a_master_says_it_waits(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run_cli("define", str(write_flow(tmp_path / "w.yaml", "w", tasks=WIDE)), "--data-dir", data)
    proc = run_cli("start", "w", "--data-dir", data, "--json")
    assert proc.returncode == 0 and "no `easysched run` is running" in proc.stderr
    started = json.loads(proc.stdout)
    status = json.loads(run_cli("status", started["instance"], "--data-dir", data, "--json").stdout)
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["準備"]["state"] == "DISPATCH" and "waiting for a worker" in tasks["準備"]["reason"]
    assert tasks["load"]["state"] == "NOT_SUBMITTED" and tasks["load"]["reason"] == "waits for upstream 準備"


def test_7_logs_workflows_and_status_with_a_real_run(tmp_path: Path) -> None:
    run = Run(tmp_path)
    try:
        data = str(tmp_path)
        run_cli("define", str(write_flow(tmp_path / "w.yaml", "w", tasks=WIDE)), "--data-dir", data)
        instance = json.loads(run_cli("start", "w", "--data-dir", data, "--json").stdout)["instance"]
        wait_until("the instance to fail", lambda: run.state().instances[instance].state == "FAILURE", timeout=120)
        # logs: the latest attempt, a chosen one, an unknown task, an attempt that never ran.
        proc = run_cli("logs", instance, "準備", "--data-dir", data)
        assert proc.returncode == 0 and proc.stdout == "你好\nsecond line\n"
        out = json.loads(run_cli("logs", instance, "load", "--attempt", "1", "--data-dir", data, "--json").stdout)
        assert out["text"] == "failing\n" and out["attempt"] == 1 and out["log_path"].endswith("load.1.log")
        assert json_error(run_cli("logs", instance, "nope", "--data-dir", data, "--json"))["kind"] == "not_found"
        proc = run_cli("logs", instance, "load", "--attempt", "2", "--data-dir", data)
        assert proc.returncode == 1 and "no attempt 2" in proc.stderr
        assert run_cli("logs", instance, "load", "--follow", "--data-dir", data).stdout == "failing\n"
        # workflows: versions and release state.
        rows = json.loads(run_cli("workflows", "--data-dir", data, "--json").stdout)
        assert rows[0]["workflow"] == "w" and rows[0]["version"] == 1 and rows[0]["release_state"] == "ONLINE"
        assert rows[0]["instances"] == 1
        # status: the same field names and time text as the projection and the API (point 3).
        view = json.loads(run_cli("status", instance, "--data-dir", data, "--json").stdout)
        assert set(view) >= {"instance", "workflow", "version", "state", "started_at", "ended_at", "tasks"}
        load = next(t for t in view["tasks"] if t["name"] == "load")
        assert load["exit_code"] == 3 and load["reason"] == "exit code 3" and load["ended_at"].endswith("Z")
        assert len(view["started_at"]) == len("2026-12-01T13:32:09.183Z")
        # Human tables line up by display width, CJK included (point 8).
        lines = run_cli("status", instance, "--data-dir", data).stdout.splitlines()
        header = next(line for line in lines if line.lstrip().startswith("task "))
        rows_text = [line for line in lines if "SHELL" in line]
        column = _display_col(header, header.index("state"))
        assert all(_display_col(r, r.index("SUCCESS" if "準備" in r else "FAILURE")) == column for r in rows_text)
        proc = run_cli("status", "--limit", "0", "--data-dir", data)
        assert proc.returncode == 2
    finally:
        run.stop()


def _display_col(line: str, index: int) -> int:
    """The terminal column of `line[index]`: wide (CJK) characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line[:index])


def test_9_start_takes_a_timezone_for_ds_date(tmp_path: Path) -> None:
    run = Run(tmp_path)
    try:
        data = str(tmp_path)
        run_cli("define", str(write_flow(tmp_path / "d.yaml", "d", "echo $DS_DATE")), "--data-dir", data)
        at = "2026-11-24T00:00:00+08:00"
        utc = json.loads(run_cli("start", "d", "--schedule-time", at, "--data-dir", data, "--json").stdout)["instance"]
        proc = run_cli("start", "d", "--schedule-time", at, "--timezone", "Asia/Shanghai", "--data-dir", data, "--json")
        local = json.loads(proc.stdout)["instance"]
        for instance in (utc, local):
            wait_until("the instance to end", lambda i=instance: run.state().instances[i].state == "SUCCESS",
                       timeout=120)
        assert run_cli("logs", utc, "a", "--data-dir", data).stdout == "2026-11-23\n"  # UTC by default
        assert run_cli("logs", local, "a", "--data-dir", data).stdout == "2026-11-24\n"
        assert json.loads(run_cli("status", local, "--data-dir", data, "--json").stdout)["timezone"] == "Asia/Shanghai"
        bad = run_cli("start", "d", "--timezone", "Mars/Olympus", "--data-dir", data, "--json")
        assert bad.returncode == 1 and json_error(bad)["kind"] == "rejected"
    finally:
        run.stop()
