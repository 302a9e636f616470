"""The base-time index of upstream records answers exactly what a scan of the history would.

The scan is DolphinScheduler's query written out: per kind (scheduled, manual) the instance
with the latest end time (unfinished ones last, like MySQL's NULLs in `end_time desc`), then
of the two the one with the higher id (created later).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core.state import State, UpstreamRecord


def _id(r: UpstreamRecord) -> int:
    return int(r.instance.split("-")[1])


def scan(records: dict[str, UpstreamRecord], start: int, end: int) -> UpstreamRecord | None:
    inside = [r for r in records.values() if start <= r.base_time < end]
    winners = []
    for kind in (True, False):
        group = [r for r in inside if r.scheduled == kind]
        finished = [r for r in group if r.ended]
        pool = finished or group
        if pool:
            top = max(r.ended for r in pool)
            winners.append(max((r for r in pool if r.ended == top), key=_id))
    return max(winners, key=_id) if winners else None


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30), st.integers(0, 20), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("query"), st.integers(0, 30), st.integers(0, 25)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_latest_upstream_equals_a_scan(operations: list[tuple[object, ...]]) -> None:
    state = State()
    for op, a, b, *rest in operations:
        assert isinstance(a, int) and isinstance(b, int)
        if op == "add":
            # Re-recording an instance (a forwarded finish) may keep or change its base time.
            ended, scheduled = rest
            record = UpstreamRecord(f"0-{a % 12}", b, "SUCCESS", {}, ended=int(ended), scheduled=bool(scheduled))
            state.record_upstream("up", record)
        else:
            start, end = min(a, b), max(a, b)
            expected = scan(state.upstream.get("up", {}), start, end)
            got = state.latest_upstream("up", start, end)
            assert got is expected
