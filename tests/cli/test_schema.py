"""`easysched schema --json`: the wire format of every command and event, from the structs (issue 14 point 1)."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

from easysched_es.core import commands as c
from easysched_es.core import events as e


def test_the_schema_names_every_command_and_event_with_its_fields() -> None:
    proc = subprocess.run([sys.executable, "-m", "easysched_es", "schema", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["wire_format_version"] == 1
    tags = set(schema["commands"]["discriminator"]["mapping"])
    assert tags == {cls.__struct_config__.tag for cls in typing.get_args(c.Command)}
    defs = schema["$defs"]
    start = defs["StartWorkflow"]
    assert {"workflow", "at", "request_id", "type"} <= set(start["properties"])
    assert start["required"] == ["type", "workflow"] or set(start["required"]) == {"type", "workflow"}
    event_names = {cls.__name__ for cls in typing.get_args(e.Event)}
    assert event_names <= set(defs)
