"""The delay queue against a model (a dict and a sorted list), plus a few table tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core.delay_queue import DEPENDENT_CHECK, RETRY, TIMEOUT, DelayQueue, TimerEntry

A = ("i1", "a", TIMEOUT)
B = ("i1", "b", DEPENDENT_CHECK)
C = ("i2", "a", RETRY)


def test_empty_queue() -> None:
    q = DelayQueue()
    assert len(q) == 0
    assert q.earliest() is None
    assert q.pop_due(10**12) == []
    assert q.entries() == []
    assert q.pending_for("i1", "a") == []
    assert q.cancel(A) is False
    assert q.due_of(A) is None


@pytest.mark.parametrize(
    ("ops", "now", "fired", "left"),
    [
        # Ties fire in insertion order.
        ([("set", A, 5), ("set", B, 5), ("set", C, 5)], 5, [A, B, C], []),
        ([("set", C, 5), ("set", B, 5), ("set", A, 5)], 5, [C, B, A], []),
        # Due order first, then insertion order.
        ([("set", A, 7), ("set", B, 5), ("set", C, 6)], 6, [B, C], [A]),
        # "at or before now": an entry due exactly now fires, one a millisecond later does not.
        ([("set", A, 10), ("set", B, 11)], 10, [A], [B]),
        # Moving a key re-queues it behind entries with the same due time.
        ([("set", A, 5), ("set", B, 5), ("set", A, 5)], 5, [B, A], []),
        # Moving later, moving earlier.
        ([("set", A, 5), ("set", A, 50)], 10, [], [A]),
        ([("set", A, 50), ("set", A, 5)], 10, [A], []),
        # Cancelled entries never fire, even if the heap still holds them.
        ([("set", A, 5), ("set", B, 6), ("cancel", A, 0)], 100, [B], []),
        ([("set", A, 5), ("cancel", A, 0), ("set", A, 8)], 100, [A], []),
    ],
)
def test_firing_order(
    ops: list[tuple[str, tuple[str, str, str], int]], now: int, fired: list[object], left: list[object]
) -> None:
    q = DelayQueue()
    for op, key, due in ops:
        if op == "set":
            q.set(key, due)
        else:
            q.cancel(key)
    assert [key for key, _ in q.pop_due(now)] == fired
    assert [(e.instance, e.task, e.kind) for e in q.entries()] == left
    assert len(q) == len(left)


def test_pop_next_fires_one_at_a_time_and_leaves_entries_set_meanwhile() -> None:
    q = DelayQueue()
    q.set(A, 5)
    q.set(B, 5)
    q.set(C, 3)
    limit = q.seq
    assert q.pop_next(5, limit) == (C, 3)
    q.set(C, 5)  # set while firing, due now: not in this tick
    assert q.cancel(B)  # the action of an earlier entry cancels a later one: it does not fire
    assert q.pop_next(5, limit) == (A, 5)
    assert q.pop_next(5, limit) is None
    assert [(e.instance, e.task, e.kind) for e in q.entries()] == [C]
    assert q.pop_next(5, q.seq) == (C, 5)
    assert q.pop_next(10**9, q.seq) is None


def test_pending_for_is_exact() -> None:
    q = DelayQueue()
    q.set(("i1", "a", TIMEOUT), 10)
    q.set(("i1", "a", RETRY), 20)
    q.set(("i1", "b", DEPENDENT_CHECK), 5)
    q.set(("i2", "a", TIMEOUT), 5)
    assert q.pending_for("i1", "a") == [RETRY, TIMEOUT]
    assert q.pending_for("i1", "b") == [DEPENDENT_CHECK]
    assert q.pending_for("i1", "c") == []
    q.cancel(("i1", "a", TIMEOUT))
    assert q.pending_for("i1", "a") == [RETRY]
    q.pop_due(5)
    assert q.pending_for("i1", "b") == []
    assert q.pending_for("i2", "a") == []


def test_earliest_skips_cancelled_and_moved() -> None:
    q = DelayQueue()
    q.set(A, 5)
    q.set(B, 7)
    q.cancel(A)
    assert q.earliest() == 7
    q.set(B, 9)
    assert q.earliest() == 9
    assert q.due_of(B) == 9


def test_entries_are_in_firing_order_and_restore_round_trips() -> None:
    q = DelayQueue()
    q.set(A, 9)
    q.set(B, 3)
    q.set(C, 9)
    q.set(B, 9)
    assert [(e.due, e.instance, e.task, e.kind) for e in q.entries()] == [
        (9, *A),
        (9, *C),
        (9, *B),
    ]
    r = DelayQueue.restore(q.entries(), q.seq)
    assert r.entries() == q.entries()
    assert r.seq == q.seq == 4
    # The restored queue keeps tie order for new entries too.
    q.set(A, 9)
    r.set(A, 9)
    assert r.entries() == q.entries()
    assert r.pop_due(9) == q.pop_due(9)


def test_many_cancels_then_sets_compact_without_losing_entries() -> None:
    q = DelayQueue()
    for i in range(300):
        q.set(("i", str(i), TIMEOUT), i)
        q.set(("i", str(i), TIMEOUT), 1000 + i)  # leaves a stale heap item behind each time
    assert len(q) == 300
    assert q.earliest() == 1000
    assert [k[1] for k, _ in q.pop_due(1002)] == ["0", "1", "2"]
    assert len(q) == 297


def test_freed_slots_are_renumbered_on_compaction_and_order_holds() -> None:
    q, m = DelayQueue(), Model()
    keys = [("i", str(i), TIMEOUT) for i in range(500)]
    for n, k in enumerate(keys):
        q.set(k, -250 + n % 37)  # negative due times too: they sort first
        m.set(k, -250 + n % 37)
    for k in keys[:450]:
        assert q.cancel(k) == m.cancel(k)
    for n in range(400):  # moves leave stale heap items: compaction runs, with mostly free slots
        k = keys[450 + n % 50]
        q.set(k, n % 11)
        m.set(k, n % 11)
    assert len(q._keys) == 50 and not q._free  # renumbered
    q.set(keys[0], -1)  # a new key gets a fresh slot after renumbering
    m.set(keys[0], -1)
    assert q.entries() == [TimerEntry(due, seq, *k) for (due, seq), k in m.ordered()]
    assert q.pop_due(5) == m.pop_due(5)
    assert DelayQueue.restore(q.entries(), q.seq).entries() == q.entries()


# ---- model-based ------------------------------------------------------------------------

KEYS = [
    (inst, task, kind) for inst in ("i1", "i2") for task in ("a", "b") for kind in (DEPENDENT_CHECK, RETRY, TIMEOUT)
]

op_strategy = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(0, 40)),
    st.tuples(st.just("cancel"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("pop"), st.just(KEYS[0]), st.integers(0, 40)),
    st.tuples(st.just("restore"), st.just(KEYS[0]), st.just(0)),
    st.tuples(st.just("pop_next"), st.sampled_from(KEYS), st.integers(0, 40)),
)


class Model:
    """The obvious implementation: key -> (due, seq), sorted on every question."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.seq = 0

    def set(self, key: tuple[str, str, str], due: int) -> None:
        self.seq += 1
        self.live[key] = (due, self.seq)

    def cancel(self, key: tuple[str, str, str]) -> bool:
        return self.live.pop(key, None) is not None

    def ordered(self) -> list[tuple[tuple[int, int], tuple[str, str, str]]]:
        return sorted((v, k) for k, v in self.live.items())

    def pop_next(self, now: int, limit: int) -> tuple[tuple[str, str, str], int] | None:
        for (due, seq), k in self.ordered():
            if due <= now and seq <= limit:
                del self.live[k]
                return k, due
        return None

    def pop_due(self, now: int) -> list[tuple[tuple[str, str, str], int]]:
        fired = [(k, v[0]) for v, k in self.ordered() if v[0] <= now]
        for k, _ in fired:
            del self.live[k]
        return fired


@settings(max_examples=300, deadline=None)
@given(st.lists(op_strategy, max_size=80))
def test_queue_agrees_with_model(ops: list[tuple[str, tuple[str, str, str], int]]) -> None:
    q, m = DelayQueue(), Model()
    for op, key, arg in ops:
        if op == "set":
            q.set(key, arg)
            m.set(key, arg)
        elif op == "cancel":
            assert q.cancel(key) == m.cancel(key)
        elif op == "pop":
            assert q.pop_due(arg) == m.pop_due(arg)
        elif op == "pop_next":
            # Fire one at a time with a counter limit taken before: what pop_due would give.
            limit = q.seq
            while (fired := q.pop_next(arg, limit)) is not None:
                assert fired == m.pop_next(arg, limit)
                q.set(key, arg)  # set (or moved) while firing: waits for the next tick
                m.set(key, arg)
            assert m.pop_next(arg, limit) is None
        else:
            q = DelayQueue.restore(q.entries(), q.seq)
        ordered = m.ordered()
        assert len(q) == len(m.live)
        assert q.earliest() == (ordered[0][0][0] if ordered else None)
        assert q.entries() == [TimerEntry(due, seq, *k) for (due, seq), k in ordered]
        assert q.seq == m.seq
        for inst in ("i1", "i2"):
            for task in ("a", "b"):
                assert q.pending_for(inst, task) == [
                    kind for kind in (DEPENDENT_CHECK, RETRY, TIMEOUT) if (inst, task, kind) in m.live
                ]
        for k in KEYS:
            assert q.due_of(k) == (m.live[k][0] if k in m.live else None)
