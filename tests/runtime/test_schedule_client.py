"""The schedule verbs and the YAML `schedule:` block, through the embedded client (real data directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from easysched_es.flows import FlowFileError, load_flow, load_schedule
from easysched_es.runtime.embedded.client import Client, CommandRejectedError
from easysched_es.runtime.fold import load_state
from easysched_es.schedule_times import parse_bound, parse_window

FLOW = """
name: etl_daily
schedule:
  cron: "0 0 2 * * ? *"
  timezone: Asia/Shanghai
  overlap: SERIAL_WAIT
  catchup_window: 1d
  start: "2026-12-01"
tasks:
  - {name: load, type: SHELL, command: "echo $system_biz_date"}
"""


def test_a_yaml_schedule_block_and_the_client_verbs(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(FLOW)
    client = Client(tmp_path / "data")
    client.define(load_flow(path))
    block = load_schedule(path)
    assert block is not None and block.overlap == "SERIAL_WAIT" and block.catchup_window == 86_400_000
    assert block.start == parse_bound("2026-12-01T00:00:00+08:00", "UTC")
    client.set_schedule(**{k: getattr(block, k) for k in ("workflow", "cron", "timezone", "start", "overlap")})
    state = load_state(client.data)
    s = state.schedules["etl_daily"]
    assert s.overlap == "BUFFER_ALL" and s.zone == "Asia/Shanghai" and s.next_fire is not None
    client.schedule_offline("etl_daily")
    assert load_state(client.data).schedules["etl_daily"].next_fire is None
    with pytest.raises(CommandRejectedError, match="already OFFLINE"):
        client.schedule_offline("etl_daily")
    client.delete_schedule("etl_daily")
    assert not load_state(client.data).schedules
    client.release("etl_daily", False)
    assert not load_state(client.data).workflows["etl_daily"].online


def test_a_bad_schedule_block_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(FLOW.replace("catchup_window: 1d", "catchup_window: soon"))
    with pytest.raises(FlowFileError, match=r"bad\.yaml: schedule: catch-up window 'soon'"):
        load_schedule(path)


def test_catchup_windows_as_typed() -> None:
    assert parse_window("latest") == 0 and parse_window("unlimited") == -1
    assert parse_window("1h30m") == 5_400_000 and parse_window(250) == 250
    with pytest.raises(ValueError):
        parse_window("-5")
