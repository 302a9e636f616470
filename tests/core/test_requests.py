"""Idempotent commands (issue 14 point 2): a repeated request id gets the first decision."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core import requests
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import State
from tests.core.helpers import SECOND, Master, of, shell, wf


def _master() -> Master:
    m = Master()
    m.define(wf("etl", shell("load")))
    return m


def test_a_retried_start_returns_the_instance_of_the_first() -> None:
    m = _master()
    first = m.send(c.StartWorkflow(workflow="etl", request_id="r-1"))
    instance = of(first, e.WorkflowStarted)[0].instance
    again = m.send(c.StartWorkflow(workflow="etl", request_id="r-1"))
    assert again == [e.RequestRepeated(request_id="r-1", first_offset=m.offset - 1, command="start",
                                       instance=instance)]
    assert list(m.state.instances) == [instance]  # no second instance


def test_a_repeat_of_a_rejection_is_the_same_rejection() -> None:
    m = _master()
    first = m.send(c.StopWorkflow(instance="0-999", request_id="r-2"))
    reason = of(first, e.CommandRejected)[0].reason
    again = m.send(c.StopWorkflow(instance="0-999", request_id="r-2"))
    assert of(again, e.RequestRepeated)[0].rejected == reason


def test_the_same_id_for_another_command_is_refused_with_a_reason() -> None:
    m = _master()
    m.send(c.StartWorkflow(workflow="etl", request_id="r-3"))
    out = m.send(c.StopWorkflow(instance="0-1", request_id="r-3"))
    assert "was used for a 'start' command" in of(out, e.CommandRejected)[0].reason


def test_commands_without_an_id_are_decided_every_time() -> None:
    m = _master()
    a, b = m.start("etl"), m.start("etl")
    assert a != b and m.state.requests == {}


def test_ids_are_bounded_by_count_and_by_time() -> None:
    m = _master()
    for i in range(requests.MAX_REQUESTS + 5):
        m.send(c.SetReleaseState(workflow="etl", online=True, request_id=f"n{i}"))
    assert len(m.state.requests) == requests.MAX_REQUESTS
    assert "n0" not in m.state.requests and f"n{requests.MAX_REQUESTS + 4}" in m.state.requests
    m.now += requests.REQUEST_WINDOW_MS + SECOND
    m.send(c.SetReleaseState(workflow="etl", online=True, request_id="late"))
    assert list(m.state.requests) == ["late"]
    # Forgotten: decided again as a new command.
    assert of(m.send(c.StartWorkflow(workflow="etl", request_id="n7")), e.WorkflowStarted)


def test_bad_ids_are_refused_with_a_reason() -> None:
    m = _master()
    for rid, why in (("x" * 200, "at most"), ("a\nb", "printable")):
        out = m.send(c.StartWorkflow(workflow="etl", request_id=rid))
        assert why in of(out, e.CommandRejected)[0].reason


def test_request_ids_survive_a_snapshot() -> None:
    m = _master()
    instance = of(m.send(c.StartWorkflow(workflow="etl", request_id="r-9")), e.WorkflowStarted)[0].instance
    restored = State.restore(decode_snapshot(encode(m.state.snapshot())))
    m.state = restored
    assert of(m.send(c.StartWorkflow(workflow="etl", request_id="r-9")), e.RequestRepeated)[0].instance == instance
