"""What was seen, point 6: a value DuckDB cannot store is stored as NULL with a note; the projection goes on."""

from __future__ import annotations

from pathlib import Path

from easysched_es.core.codec import encode
from easysched_es.core.commands import StopWorkflow
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.master import EmbeddedMaster
from projections.projector import Projector
from tests.robust.helpers import append_raw, flow, shell


def test_an_absurd_time_does_not_stall_the_projection(tmp_path: Path) -> None:
    client = Client(tmp_path)
    master = EmbeddedMaster(client.data, lambda effect: None)
    master.recover()
    client.define(flow("w", shell("a")))
    first = client.start("w")
    absurd = [append_raw(tmp_path, encode(StopWorkflow(at=at, instance=first))) for at in (10**18, 2**64 - 1)]
    later = client.start("w")
    while master.poll():
        pass
    master.close()
    with client.data.events() as events, client.data.commands() as commands, \
            Projector(tmp_path / "p.duckdb", events, commands) as projector:
        projector.catch_up()
        status = projector.status()
        assert status["caught_up"], status
        assert status["value_notes"] >= 1 and "out of range stored as NULL" in status["last_note"]
        conn = projector.cursor()
        rows = conn.execute("SELECT instance FROM workflow_instances ORDER BY instance").fetchall()
        assert {first, later} <= {r[0] for r in rows}
        times = dict(conn.execute(
            f"SELECT command_offset, time FROM commands WHERE command_offset IN ({absurd[0]}, {absurd[1]})"
        ).fetchall())
        assert times == {absurd[0]: None, absurd[1]: None}
        notes = conn.execute("SELECT read, note FROM projection_notes").fetchall()
        assert notes and all("out of range stored as NULL" in note for _, note in notes)
        # Each note names the stretch of log its transaction applied, and that stretch holds the value.
        spans = [part.split(" ")[1].split("..") for read, _ in notes for part in read.split(", ")
                 if part.startswith("commands/0 ")]
        for offset in absurd:
            assert any(int(lo) <= offset < int(hi) for lo, hi in spans), (offset, notes)
