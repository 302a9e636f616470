"""`easysched gc` deletes old log segments once the oldest kept snapshot covers them; readers still work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from easysched_es.core.codec import encode
from easysched_es.debug.replay import build_index, replay
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.segment_gc import log_segments_gc
from easysched_es.runtime.fold import load_state
from easysched_es.runtime.snapshot_index import Policy
from easysched_es.runtime.snapshots import SnapshotStore
from tests.debug.helpers import busy_data_dir

MONTH_MS = 31 * 86_400_000


def _segs(data: DataDir, stream: str) -> list[Path]:
    return sorted((data.root / stream).glob("*.seg"))


def _indexed(root: Path) -> tuple[DataDir, SnapshotStore]:
    data = busy_data_dir(root, commands=1500, segment_bytes=16_000)
    store = SnapshotStore(data.snapshots, Policy(recent=2, base=30_000, max_gap=30_000))
    data.snapshot_store = lambda: store  # type: ignore[method-assign]
    build_index(data, every=200)
    return data, store


def _thin(store: SnapshotStore) -> None:
    """Drop the old snapshots (as the index thins them with age), so that the oldest kept one is mid-log."""
    for meta in store.metas()[:-2]:
        store.path(meta.offset).unlink()
        store.path(meta.offset).with_suffix(".meta").unlink()


def test_gc_deletes_only_segments_before_the_oldest_kept_snapshot_and_readers_say_so(tmp_path: Path) -> None:
    data, store = _indexed(tmp_path / "a")
    whole = load_state(data)
    instances = sorted(whole.instances)[:5]
    traces = {i: trace(data, i) for i in instances}
    before = {s: _segs(data, s) for s in ("commands", "events")}
    assert len(before["commands"]) > 4
    now = int(max(p.stat().st_mtime for p in before["commands"]) * 1000)
    # Young install: the default keep window (the retention period) keeps everything.
    assert log_segments_gc(data, dry_run=False, now_ms=now)["segments"] == []
    _thin(store)
    oldest = store.metas()[0]
    planned = log_segments_gc(data, dry_run=True, now_ms=now + MONTH_MS)
    assert planned["segments"] and {s: _segs(data, s) for s in before} == before  # a dry run changes nothing
    done = log_segments_gc(data, dry_run=False, now_ms=now + MONTH_MS)
    assert done["segments"] == planned["segments"] and done["bytes"] > 0
    for path in map(Path, done["segments"]):
        assert not path.exists()
    for stream, limit in (("commands", oldest.position), ("events", oldest.events_position)):
        left = _segs(data, stream)
        assert left and left[-1] == before[stream][-1]  # the active segment stays
        assert int(left[0].stem) <= limit  # nothing the oldest snapshot needs is gone
        assert done["kept_from"][stream] == int(left[0].stem)
    assert done["kept_from"]["commands"] > 0
    # Every reader: the fold (status), replay, verify, trace.
    assert encode(load_state(data).snapshot()) == encode(whole.snapshot())
    got = replay(data)
    assert "retention deleted the log before offset" in got.note
    assert encode(got.state.snapshot()) == encode(whole.snapshot())
    report = verify(data)
    assert report.ok, report.divergence
    assert any("retention deleted the log before offset" in n for n in report.notes)
    for instance in instances:
        # Entries before the first kept segment are gone; what remains is the end of the full trace.
        kept = [e for e in traces[instance] if e["offset"] >= done["kept_from"]["commands"]]
        assert trace(data, instance)[-len(kept):] == kept if kept else True


def test_gc_cli_lists_segments_in_a_dry_run_and_status_works_after(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path / "d", commands=1500, segment_bytes=16_000)
    build_index(data, every=700)  # the default index policy: the oldest kept snapshot is the first one
    env = {**os.environ, "EASYSCHED_DATA_DIR": str(data.root), "EASYSCHED_LOG_KEEP_DAYS": "0"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "easysched_es", *a, "--json"],  # noqa: E731
                                    env=env, capture_output=True, text=True, timeout=300)
    before = _segs(data, "commands")
    flag_wins = run("gc", "--dry-run", "--keep-days", "100000")  # the flag overrides the environment
    assert flag_wins.returncode == 0 and json.loads(flag_wins.stdout)["log"]["segments"] == [], flag_wins.stderr
    dry = run("gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)["log"]["segments"]
    assert any("/commands/" in p for p in listed) and _segs(data, "commands") == before
    done = run("gc")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["log"]["segments"]) == sorted(listed)
    assert all(not Path(p).exists() for p in listed)
    status = run("status")
    assert status.returncode == 0, status.stderr + status.stdout
    with data.commands() as stream:
        last = stream.last_record()
    assert last is not None
    replayed = run("replay", "--until", str(last.offset))
    assert replayed.returncode == 0, replayed.stderr + replayed.stdout
    assert "retention deleted the log before offset" in json.loads(replayed.stdout)["note"]
    verified = run("verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert "retention deleted the log before offset" in verified.stdout
    # The DuckDB projection rebuilds from where the streams now start, and says so.
    rebuilt = subprocess.run([sys.executable, "-m", "easysched_es", "projections", "rebuild"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    counted = run("query", "SELECT count(*) AS n FROM workflow_instances")
    assert counted.returncode == 0 and json.loads(counted.stdout)[0]["n"] > 0, counted.stderr + counted.stdout


def test_gc_keeps_the_segments_the_projection_has_not_read(tmp_path: Path) -> None:
    from projections.projector import Projector
    from projections.service import ProjectionService
    from tests.projections.helpers import serving

    data, store = _indexed(tmp_path / "p")
    _thin(store)
    now = int(max(p.stat().st_mtime for p in _segs(data, "commands")) * 1000) + MONTH_MS
    wanted = log_segments_gc(data, dry_run=True, now_ms=now)["segments"]
    assert len(wanted) > 2
    with data.events() as events, data.commands() as commands, Projector(data.duckdb, events, commands) as proj:
        proj.catch_up(max_batches=40)  # a projector that stopped early on
    held = log_segments_gc(data, dry_run=False, now_ms=now)
    read = held["projection_read"]
    assert read["events"] > 0 and "has not read" in held["reason"]
    assert set(held["segments"]) < set(wanted)
    for stream in ("commands", "events"):
        assert held["kept_from"][stream] <= read.get(stream, 0)  # what it has not read is all still there
    with serving(ProjectionService(data.root, port=0, poll_interval=0.01)):  # caught up: the rest can go
        done = log_segments_gc(data, dry_run=False, now_ms=now)
    assert sorted(held["segments"] + done["segments"]) == sorted(wanted) and done["reason"] == ""
    assert done["projection_read"]["commands"] >= store.metas()[0].position


def test_gc_ignore_projection_deletes_what_an_unread_projection_holds(tmp_path: Path) -> None:
    from projections.projector import Projector

    data, store = _indexed(tmp_path / "i")
    _thin(store)
    now = int(max(p.stat().st_mtime for p in _segs(data, "commands")) * 1000) + MONTH_MS
    wanted = log_segments_gc(data, dry_run=True, now_ms=now, ignore_projection=True)["segments"]
    with data.events() as events, data.commands() as commands, Projector(data.duckdb, events, commands) as proj:
        proj.catch_up(max_batches=1)
    assert log_segments_gc(data, dry_run=True, now_ms=now)["segments"] == []
    assert log_segments_gc(data, dry_run=False, now_ms=now, ignore_projection=True)["segments"] == wanted
