"""Worker incarnations in the fold (core/fencing.py): reports only from the claimant's current incarnation."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easysched_es.core import commands as c
from easysched_es.core import events as e
from tests.core.helpers import SECOND, Master, of, shell, tags, wf

TIMEOUT = 30 * SECOND


def _beat(m: Master, worker: str, incarnation: int) -> list[e.Event]:
    return m.send(c.Heartbeat(worker=worker, timeout_ms=TIMEOUT, incarnation=incarnation))


def _claimed(m: Master, worker: str = "wa", incarnation: int = 1) -> str:
    """A running instance whose task `a` attempt 1 is claimed by `worker` at `incarnation`."""
    _beat(m, worker, incarnation)
    m.define(wf("etl", shell("a", command="sleep 100")))
    inst = m.start("etl")
    ev = m.send(c.ClaimAttempt(instance=inst, task="a", attempt=1, worker=worker, incarnation=incarnation))
    assert of(ev, e.AttemptClaimed)[0].incarnation == incarnation
    return inst


def _report(kind: str, inst: str, worker: str, incarnation: int, attempt: int = 1) -> c.Command:
    common: dict[str, Any] = {"instance": inst, "task": "a", "attempt": attempt, "worker": worker,
                              "incarnation": incarnation}
    if kind == "started":
        return c.TaskStarted(pid=7, **common)
    if kind == "adopted":
        return c.TaskAdopted(pid=7, **common)
    if kind == "lost":
        return c.TaskLost(reason="gone", **common)
    return c.TaskFinished(exit_code=0, **common)


def _ignored(ev: list[e.Event]) -> str:
    assert tags(ev) == ["late_report_ignored"], ev
    return of(ev, e.LateReportIgnored)[0].reason


def test_a_finished_report_from_a_worker_that_is_not_the_claimant_is_ignored_with_the_reason() -> None:
    m = Master()
    inst = _claimed(m)
    before = m.snapshot_bytes(ignore_clock=True)
    reason = _ignored(m.send(_report("finished", inst, "wb", 1)))
    assert "not the claimant" in reason and "wa incarnation 1" in reason and "wb" in reason
    assert m.snapshot_bytes(ignore_clock=True) == before
    assert m.task(inst, "a").state == "DISPATCH"
    # The claimant's own report is accepted.
    m.send(_report("started", inst, "wa", 1))
    m.send(_report("finished", inst, "wa", 1))
    assert m.task(inst, "a").state == "SUCCESS"


def test_a_worker_declared_lost_is_fenced_until_it_comes_back_with_a_new_incarnation() -> None:
    m = Master()
    inst = _claimed(m, "wa", 1)
    _beat(m, "wb", 1)
    m.tick(20)
    _beat(m, "wb", 1)
    ev = m.tick(11)  # wa silent for 31 s
    lost = of(ev, e.WorkerLost)
    assert [(w.worker, w.incarnation) for w in lost] == [("wa", 1)]
    assert of(ev, e.DispatchTask)[0].attempt == 2
    # The paused worker wakes up: its heartbeat does not revive it, its reports change nothing.
    beat = m.send(c.Heartbeat(worker="wa", timeout_ms=TIMEOUT, incarnation=1))
    assert tags(beat) == ["command_rejected"] and "declared lost" in beat[0].reason  # type: ignore[union-attr]
    assert "wa" not in m.state.worker_timeouts
    for kind in ("started", "finished", "lost"):
        assert "declared lost" in _ignored(m.send(_report(kind, inst, "wa", 1, attempt=2)))
    claim = m.send(c.ClaimAttempt(instance=inst, task="a", attempt=2, worker="wa", incarnation=1))
    assert "declared lost" in _ignored(claim)
    # Its new incarnation is heard and may claim the rerun.
    assert tags(_beat(m, "wa", 2)) == []
    ev = m.send(c.ClaimAttempt(instance=inst, task="a", attempt=2, worker="wa", incarnation=2))
    assert of(ev, e.AttemptClaimed)[0].incarnation == 2


def test_a_restarted_worker_takes_its_attempt_over_and_its_old_incarnation_is_superseded() -> None:
    m = Master()
    inst = _claimed(m, "wa", 1)
    m.send(_report("started", inst, "wa", 1))
    _beat(m, "wa", 2)  # the worker restarted (never declared lost)
    reason = _ignored(m.send(_report("finished", inst, "wa", 1)))
    assert "superseded by incarnation 2" in reason
    beat = m.send(c.Heartbeat(worker="wa", timeout_ms=TIMEOUT, incarnation=1))
    assert tags(beat) == ["command_rejected"] and "superseded" in beat[0].reason  # type: ignore[union-attr]
    assert tags(m.send(_report("adopted", inst, "wa", 2))) == ["task_state"]
    assert m.task(inst, "a").incarnation == 2
    m.send(_report("finished", inst, "wa", 2))
    assert m.task(inst, "a").state == "SUCCESS"


def test_workers_without_incarnations_are_not_fenced() -> None:
    # The embedded worker's name changes at every restart, and old logs have no incarnations:
    # a report from another name is accepted as before.
    m = Master()
    m.define(wf("etl", shell("a")))
    inst = m.start("etl")
    m.send(c.TaskStarted(instance=inst, task="a", attempt=1, pid=7, worker="host:1"))
    m.send(c.TaskFinished(instance=inst, task="a", attempt=1, exit_code=0, worker="host:2"))
    assert m.task(inst, "a").state == "SUCCESS"
    assert m.state.incarnations == {} and m.state.lost_incarnations == {}


REPORTERS = st.tuples(st.sampled_from(["wa", "wb"]), st.integers(0, 4),
                      st.sampled_from(["started", "adopted", "finished", "lost"]))


@settings(max_examples=200, deadline=None)
@given(claimant=st.integers(1, 3), heard=st.integers(0, 4), lost=st.booleans(), report=REPORTERS)
def test_only_the_claimants_current_incarnation_changes_the_attempt(
    claimant: int, heard: int, lost: bool, report: tuple[str, int, str]
) -> None:
    """Any report about a claimed attempt: refused unless from the claimant worker at its current (or a newer)
    incarnation; after the claimant is declared lost, every one of its incarnations up to then is refused."""
    m = Master()
    inst = _claimed(m, "wa", claimant)
    m.send(_report("started", inst, "wa", claimant))
    if heard > claimant:
        _beat(m, "wa", heard)
    if lost:
        _beat(m, "wz", 1)
        m.tick(20)
        _beat(m, "wz", 1)
        m.tick(11)
        assert m.state.lost_incarnations == {"wa": max(heard, claimant)}
    worker, incarnation, kind = report
    current = max(heard, claimant)
    fenced = worker == "wa" and incarnation <= current if lost else not (worker == "wa" and incarnation >= current)
    before = m.snapshot_bytes(ignore_clock=True)
    attempt = m.task(inst, "a").attempt
    ev = m.send(_report(kind, inst, worker, incarnation, attempt=attempt))
    reasons = [ig.reason for ig in of(ev, e.LateReportIgnored)]
    refused = any("incarnation" in r or "claimant" in r for r in reasons)
    assert refused == fenced, (ev, report)
    if fenced:
        assert tags(ev) == ["late_report_ignored"]
        assert m.snapshot_bytes(ignore_clock=True) == before
