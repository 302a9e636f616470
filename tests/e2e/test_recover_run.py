"""Recover and rerun through a real `easysched run`, real SHELL subprocesses and the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Run, cli, cli_json, wait_until

pytestmark = pytest.mark.slow


def test_recover_after_fixing_a_marker_file_ends_success(run: Run, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    out = tmp_path / "out.txt"
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: fragile\ntasks:\n"
        f"  - {{name: extract, type: SHELL, command: 'echo extract >> {out}'}}\n"
        f"  - {{name: load, type: SHELL, command: 'test -e {marker} && echo load >> {out}', upstream: [extract]}}\n"
        f"  - {{name: report, type: SHELL, command: 'echo report >> {out}', upstream: [load]}}\n"
    )
    assert cli(tmp_path, "define", str(flow)).returncode == 0
    instance = cli_json(tmp_path, "start", "fragile")["instance"]
    wait_until("instance FAILURE", lambda: run.state().instances[instance].state == "FAILURE")
    assert out.read_text().split() == ["extract"]
    rejected = cli(tmp_path, "recover", "0-999999", "--json")
    assert rejected.returncode == 1 and '"error"' in rejected.stdout
    marker.write_text("ok")
    assert cli_json(tmp_path, "recover", instance)["accepted"] is True
    wait_until("instance SUCCESS", lambda: run.state().instances[instance].state == "SUCCESS")
    # extract's success was kept; load ran again as attempt 2; report ran once.
    assert out.read_text().split() == ["extract", "load", "report"]
    tasks = {t.name: t.attempt for t in run.state().instances[instance].tasks.values()}
    assert tasks == {"extract": 1, "load": 2, "report": 1}

    assert cli_json(tmp_path, "rerun", instance)["accepted"] is True
    wait_until("rerun SUCCESS", lambda: (i := run.state().instances[instance]).state == "SUCCESS"
               and i.tasks["report"].attempt == 2)
    assert out.read_text().split() == ["extract", "load", "report"] * 2
    assert {t.name: t.attempt for t in run.state().instances[instance].tasks.values()} == {
        "extract": 2, "load": 3, "report": 2}


def test_start_from_a_task_through_the_cli(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: chain\ntasks:\n"
        f"  - {{name: a, type: SHELL, command: 'echo a >> {out}'}}\n"
        f"  - {{name: b, type: SHELL, command: 'echo b >> {out}', upstream: [a]}}\n"
        f"  - {{name: c, type: SHELL, command: 'echo c >> {out}', upstream: [b]}}\n"
    )
    assert cli(tmp_path, "define", str(flow)).returncode == 0
    bad = cli(tmp_path, "start", "chain", "--from-task", "zz", "--json")
    assert bad.returncode == 1 and "has no task 'zz'" in bad.stdout
    instance = cli_json(tmp_path, "start", "chain", "--from-task", "b")["instance"]
    wait_until("SUCCESS", lambda: run.state().instances[instance].state == "SUCCESS")
    assert out.read_text().split() == ["b", "c"]
