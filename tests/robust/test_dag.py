"""What was seen, point 2: cycle detection and ordering are linear and iterative.

The new algorithms are checked against the recursive and round-based versions they replace
(kept here as the reference), so rejection reasons and orders in old logs replay the same.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easysched_es.core import dag
from easysched_es.core.codec import encode
from easysched_es.core.commands import DefineWorkflow, StartWorkflow
from easysched_es.core.events import CommandRejected, WorkflowDefined
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from tests.robust.helpers import flow, shell


def _reference_cycle(upstream: dict[str, list[str]]) -> list[str]:
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str]:
        colour[name] = 1
        path.append(name)
        for up in upstream.get(name, ()):
            if colour.get(up) == 1:
                return [*path[path.index(up):], up]
            if up not in colour and up in upstream:
                found = visit(up)
                if found:
                    return found
        path.pop()
        colour[name] = 2
        return []

    for name in upstream:
        if name not in colour:
            found = visit(name)
            if found:
                return found
    return []


def _reference_order(upstream: dict[str, list[str]]) -> list[str] | None:
    remaining = {n: set(ups) for n, ups in upstream.items()}
    order: list[str] = []
    done: set[str] = set()
    while remaining:
        ready = [n for n, ups in remaining.items() if ups <= done]
        if not ready:
            return None
        for name in ready:
            del remaining[name]
            done.add(name)
            order.append(name)
    return order


graphs = st.integers(1, 12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, n + 1), max_size=4), min_size=n, max_size=n).map(
        lambda ups: {f"t{i}": [f"t{u}" for u in us] for i, us in enumerate(ups)}
    )
)


@given(graphs)
def test_find_cycle_equals_the_recursive_version(upstream: dict[str, list[str]]) -> None:
    assert dag.find_cycle(upstream) == _reference_cycle(upstream)


@given(graphs)
def test_topological_order_equals_the_round_based_version(upstream: dict[str, list[str]]) -> None:
    assert dag.topological_order(upstream) == _reference_order(upstream)


def _define(definition: object) -> list[object]:
    _, events, _ = step_record(State(), encode(DefineWorkflow(at=1, definition=definition)), 0)  # type: ignore[arg-type]
    return events


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_a_long_chain_listed_downstream_first_defines(n: int) -> None:
    tasks = [shell(f"t{i}", upstream=[f"t{i - 1}"] if i else []) for i in range(n)][::-1]
    state = State()
    _, events, _ = step_record(state, encode(DefineWorkflow(at=1, definition=flow("chain", *tasks))), 0)
    assert isinstance(events[0], WorkflowDefined)
    assert state.workflows["chain"].latest.order == [f"t{i}" for i in range(n)]
    _, events, _ = step_record(state, encode(StartWorkflow(at=2, workflow="chain")), 1)
    assert any(type(e).__name__ == "DispatchTask" for e in events)


def test_a_long_cycle_is_rejected_with_a_readable_reason() -> None:
    n = 10_000
    events = _define(flow("ring", *[shell(f"t{i}", upstream=[f"t{(i + 1) % n}"]) for i in range(n)]))
    assert isinstance(events[0], CommandRejected)
    assert "tasks form a cycle: t0 -> t1" in events[0].reason and f"({n + 1 - 20} more)" in events[0].reason
    assert len(events[0].reason) < 400


def test_the_master_snapshots_a_big_definition_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from easysched_es.runtime.embedded.client import Client
    from easysched_es.runtime.embedded.master import BIG_DEFINITION_TASKS, EmbeddedMaster

    client = Client(tmp_path)
    master = EmbeddedMaster(client.data, lambda effect: None)
    master.recover()
    n = BIG_DEFINITION_TASKS
    offset = client.submit(DefineWorkflow(definition=flow("big", *[shell(f"t{i}") for i in range(n)]))).offset
    master.poll()
    snapshot = client.data.load_snapshot()
    assert snapshot is not None and snapshot.last_offset == offset and "big" in snapshot.workflows
    master.close()
