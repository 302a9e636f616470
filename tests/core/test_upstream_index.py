"""The base-time index of upstream records answers exactly what a scan of the history would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core.state import State, UpstreamRecord


def scan(records: dict[str, UpstreamRecord], start: int, end: int) -> UpstreamRecord | None:
    latest = None
    for r in records.values():
        if start <= r.base_time < end and (latest is None or r.base_time >= latest.base_time):
            latest = r
    return latest


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30), st.integers(0, 20)),
        st.tuples(st.just("query"), st.integers(0, 30), st.integers(0, 25)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_latest_upstream_equals_a_scan(operations: list[tuple[str, int, int]]) -> None:
    state = State()
    for op, a, b in operations:
        if op == "add":
            # Re-recording an instance (a forwarded finish) may keep or change its base time.
            state.record_upstream("up", UpstreamRecord(f"i{a % 12}", b, "SUCCESS", {}))
        else:
            start, end = min(a, b), max(a, b)
            expected = scan(state.upstream.get("up", {}), start, end)
            got = state.latest_upstream("up", start, end)
            assert got is expected
