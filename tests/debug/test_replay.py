"""Replay to any point from the sparse snapshot index: the same state as a fold from offset 0."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core.codec import encode
from easysched_es.core.state import State
from easysched_es.debug.replay import build_index, replay, resolve_time
from easysched_es.debug.trace import trace
from easysched_es.log.base import LogError
from easysched_es.runtime.fold import fold_stream
from easysched_es.runtime.snapshot_index import Policy, thin
from easysched_es.runtime.snapshots import SnapshotStore
from tests.debug.helpers import busy_data_dir


def _full_fold(data, until=None) -> State:  # type: ignore[no-untyped-def]
    state = State()
    with data.commands() as stream:
        fold_stream(stream, state, until=until)
    return state


def _offsets(data) -> list[int]:  # type: ignore[no-untyped-def]
    with data.commands() as stream:
        return [r.offset for r in stream.iter_records(0)]


@given(st.lists(st.integers(1, 50), min_size=1, max_size=120), st.integers(0, 4), st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_thinning_is_stable_and_bounds_the_gaps(steps: list[int], recent: int, max_gap: int) -> None:
    policy = Policy(recent=recent, base=2, max_gap=max_gap)
    kept: set[int] = set()
    offset = 0
    for step_ in steps:
        offset += step_
        new = thin([*kept, offset], policy)
        assert new <= kept | {offset}
        # A snapshot dropped once is never asked for again: the kept set only loses members.
        kept = new
        ordered = sorted(kept)
        assert offset in kept
        for a, b in itertools.pairwise(ordered):
            assert b - a <= 2 * max(max_gap, 2) + 50


def test_thinning_keeps_few_old_snapshots() -> None:
    offsets = list(range(0, 1000 * 50, 50))
    kept = thin(offsets, Policy(recent=3, base=50, max_gap=3200))
    assert len(kept) < 40
    assert offsets[-1] in kept and offsets[0] in kept


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = busy_data_dir(tmp_path_factory.mktemp("indexed"), commands=1500)
    store = SnapshotStore(data.snapshots, Policy(recent=2, base=1_000, max_gap=20_000))
    data.snapshot_store = lambda: store  # type: ignore[method-assign]
    written = build_index(data, every=97)
    assert len(written) > 10
    assert 3 < len(store.metas()) < len(written)
    return data


def test_replay_until_any_offset_equals_the_fold_from_zero(indexed) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    offsets = _offsets(indexed)
    for until in [*rng.sample(offsets, 25), offsets[0], offsets[-1]]:
        got = replay(indexed, until=until)
        assert got.state.last_offset == until
        assert encode(got.state.snapshot()) == encode(_full_fold(indexed, until).snapshot())
        if got.snapshot is not None:
            assert got.snapshot <= until
            assert "snapshot at offset" in got.note


def test_replay_at_a_time_is_replay_until_the_offset_it_resolves_to(indexed) -> None:  # type: ignore[no-untyped-def]
    whole = _full_fold(indexed)
    rng = random.Random(3)
    for _ in range(15):
        at = rng.randrange(whole.now - 3_000_000, whole.now + 1000)
        got = replay(indexed, at=at)
        assert got.state.now <= at
        # The naive definition: fold from 0 and stop before the first command that moves the clock past `at`.
        naive = State()
        with indexed.commands() as stream:
            cut = resolve_time(stream, State(), at)
            fold_stream(stream, naive, until=cut)
        assert got.until == cut
        assert encode(got.state.snapshot()) == encode(naive.snapshot())


def test_trace_from_the_snapshot_before_the_start_equals_the_trace_from_zero(indexed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bare = busy_data_dir(tmp_path, commands=1500)  # same seed, no snapshots
    instances = sorted(_full_fold(indexed).instances)
    for instance in random.Random(5).sample(instances, 8):
        assert trace(indexed, instance) == trace(bare, instance)


def test_retention_starts_from_the_oldest_kept_snapshot_and_refuses_earlier_points(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path, commands=1500, segment_bytes=16_000)
    store = SnapshotStore(data.snapshots, Policy(recent=2, base=30_000, max_gap=30_000))
    data.snapshot_store = lambda: store  # type: ignore[method-assign]
    build_index(data, every=200)
    # Retention: drop the snapshots of the first half of the log, then the segments wholly before the oldest left.
    offsets = _offsets(data)
    half = offsets[750]
    for meta in store.metas():
        if meta.offset < half:
            store.path(meta.offset).unlink()
    oldest = store.metas()[0]
    segments = sorted((data.root / "commands").glob("*.seg"))
    gone = [s for s, nxt in itertools.pairwise(segments) if int(nxt.stem) <= oldest.position]
    assert gone
    for seg in gone:
        seg.unlink()
    low = int(segments[len(gone)].stem)
    later = next(o for o in offsets if o > oldest.offset)
    got = replay(data, until=later)
    assert "retention deleted the log before offset" in got.note
    assert encode(got.state.snapshot()) == encode(_full_fold(busy_data_dir(tmp_path / "again", 1500), later).snapshot())
    with pytest.raises(LogError, match="before the oldest kept snapshot"):
        replay(data, until=low)
    shutil.rmtree(data.snapshots)
    with pytest.raises(LogError, match="no kept snapshot covers it"):
        replay(data, until=later)
