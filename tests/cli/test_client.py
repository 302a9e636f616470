"""Issue 11 point 7: the Python client's status, wait, timers, logs and trace; connect().sql().arrow()."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import easysched_es as es
from easysched_es.query_verbs import UnknownInstanceError, WaitTimeoutError
from tests.cli.helpers import write_flow
from tests.harness import Run


def test_7_client_verbs_without_and_with_a_master(tmp_path: Path) -> None:
    client = es.Client(tmp_path)
    client.define(es.load_flow(write_flow(tmp_path / "w.yaml", "w", "echo from the task")))
    instance = client.start("w")
    assert client.status(instance)["tasks"][0]["state"] == "DISPATCH"  # no master yet
    with pytest.raises(WaitTimeoutError) as waited:
        client.wait(instance, timeout=0.2)
    assert waited.value.state == "RUNNING_EXECUTION"
    with pytest.raises(UnknownInstanceError):
        client.status("0-999999")
    run = Run(tmp_path)
    try:
        final = client.wait(instance, timeout=120)
        assert final["state"] == "SUCCESS" and final["tasks"][0]["exit_code"] == 0
        assert client.logs(instance, "a") == "from the task\n"
        assert client.trace(instance)[0]["type"] == "start"
        assert isinstance(client.timers(), list)
        assert [i["instance"] for i in client.status()] == [instance]
    finally:
        run.stop()
    table = es.connect(str(tmp_path)).arrow("SELECT count(*) AS n FROM workflow_instances")
    assert isinstance(table, pa.Table) and table.column("n").to_pylist() == [1]
