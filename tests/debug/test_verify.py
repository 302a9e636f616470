"""verify as an upgrade check: the first divergence side by side, from a snapshot, and of the snapshots."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch, decode_snapshot, encode
from easysched_es.debug.replay import build_index
from easysched_es.debug.verify import side_by_side, verify, verify_snapshots
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.snapshot_index import Policy
from easysched_es.runtime.snapshots import _HEADER, SnapshotStore
from tests.debug.helpers import busy_data_dir


def _tamper_events(data: DataDir) -> int:
    """Rewrite the events log with the reason of one task_state event changed; return its command offset."""
    with data.events() as events:
        batches = [decode_batch(r.payload) for r in events.iter_records(0)]
    shutil.rmtree(data.root / "events")
    target = None
    for batch in batches[len(batches) // 2 :]:
        for i, ev in enumerate(batch.events):
            if isinstance(ev, e.TaskStateChanged):
                batch.events[i] = msgspec.structs.replace(ev, reason="tampered")
                target = batch.offset
                break
        if target is not None:
            break
    assert target is not None
    with EmbeddedStream(data.root / "events", fsync=False) as events:
        events.append([encode(b) for b in batches])
    return target


def test_verify_passes_on_the_recorded_log_and_reports_a_tampered_event_side_by_side(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path, commands=800)
    assert verify(data).ok
    target = _tamper_events(data)
    report = verify(data)
    assert not report.ok
    div = report.divergence
    assert div is not None and div["offset"] == target
    first = div["first_difference"]
    pair = div["side_by_side"][first]
    assert pair["recorded"]["reason"] == "tampered" and pair["replayed"].get("reason", "") != "tampered"
    assert all(p["same"] for p in div["side_by_side"][:first])
    text = side_by_side(div)
    assert any("!=" in line and "tampered" in line for line in text)


def test_verify_since_starts_from_the_nearest_snapshot(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path, commands=800)
    store = SnapshotStore(data.snapshots, Policy(recent=50, base=1, max_gap=1))
    data.snapshot_store = lambda: store  # type: ignore[method-assign]
    written = build_index(data, every=100)
    report = verify(data, since=written[3] + 1)
    assert report.ok and report.started_from == {0: written[3]}
    assert report.verified + report.undecided == report.commands < 800
    target = _tamper_events(data)
    late = verify(data, since=written[-1])
    early = verify(data, since=written[0])
    assert not early.ok and early.divergence is not None and early.divergence["offset"] == target
    assert late.ok == (target <= written[-1])


def test_verify_from_snapshots_checks_each_kept_snapshot(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path, commands=800)
    store = SnapshotStore(data.snapshots, Policy(recent=50, base=1, max_gap=1))
    data.snapshot_store = lambda: store  # type: ignore[method-assign]
    written = build_index(data, every=100)
    checks = verify_snapshots(data)
    assert [c.offset for c in checks] == written and all(c.ok for c in checks)
    # A snapshot that a buggy version wrote (valid CRC, wrong content) is found.
    bad = written[2]
    snap = decode_snapshot(store.read_payload(bad))
    snap.now += 1
    payload = encode(snap)
    store.path(bad).write_bytes(_HEADER.pack(len(payload), __import__("crc32c").crc32c(payload)) + payload)
    checks = verify_snapshots(data)
    assert [c.offset for c in checks if not c.ok] == [bad]
