"""Alerts as effects of the fold: raised once per key, retried with back-off through the delay queue."""

from __future__ import annotations

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.alerts import ALERT_RETRY
from easysched_es.core.definitions import AlertDef, DefinitionError, validate
from easysched_es.core.step import pending_effects
from tests.core.helpers import SECOND, Master, of, shell, wf

HOOK = "http://127.0.0.1:9/hook"


def failing(master: Master, *alerts: AlertDef) -> tuple[str, e.SendAlert]:
    master.define(wf("nightly", shell("load"), alerts=list(alerts)))
    inst = master.start("nightly")
    master.started(inst, "load")
    sends = of(master.finished(inst, "load", exit_code=3), e.SendAlert)
    assert master.wf_state(inst) == "FAILURE" and len(sends) == 1
    return inst, sends[0]


def test_a_failure_raises_one_alert_with_an_idempotency_key() -> None:
    m = Master()
    inst, send = failing(m, AlertDef(webhook=HOOK), AlertDef(script="true", on=["SUCCESS"]))
    assert (send.key, send.attempt, send.on, send.webhook) == (f"{inst}/FAILURE/0", 1, "FAILURE", HOOK)
    assert "ended FAILURE" in send.detail
    assert pending_effects(m.state) == [send]  # owed again after a restart, same key and attempt
    assert of(m.send(c.AlertSent(key=send.key, instance=inst, attempt=1)), e.AlertDelivered)
    assert m.state.alerts == {} and pending_effects(m.state) == []
    assert m.send(c.AlertSent(key=send.key, instance=inst, attempt=1)) == []  # a second report changes nothing


def test_each_run_of_a_rerun_or_recovered_instance_alerts_under_a_key_of_its_own() -> None:
    m = Master()
    inst, first = failing(m, AlertDef(webhook=HOOK))
    m.send(c.AlertSent(key=first.key, instance=inst, attempt=1))
    keys = [first.key]
    for again in (c.RerunWorkflow(instance=inst), c.RecoverWorkflow(instance=inst)):
        m.send(again)
        attempt = m.task(inst, "load").attempt
        m.started(inst, "load", attempt=attempt)
        sends = of(m.finished(inst, "load", attempt=attempt, exit_code=3), e.SendAlert)
        assert m.wf_state(inst) == "FAILURE" and len(sends) == 1
        keys.append(sends[0].key)
        m.send(c.AlertSent(key=sends[0].key, instance=inst, attempt=1))
    assert keys == [f"{inst}/FAILURE/0", f"{inst}/run2/FAILURE/0", f"{inst}/run3/FAILURE/0"]


def test_a_failed_attempt_is_retried_with_a_doubling_back_off_then_given_up() -> None:
    m = Master()
    inst, send = failing(m, AlertDef(webhook=HOOK, max_attempts=3, backoff=2))
    for attempt, wait in ((1, 2), (2, 4)):
        failed = of(m.send(c.AlertFailed(key=send.key, instance=inst, attempt=attempt, error="refused")),
                    e.AlertAttemptFailed)
        assert failed[0].retry_at == m.now + wait * SECOND
        assert m.timers() == {(inst, send.key, ALERT_RETRY): m.now + wait * SECOND}
        assert pending_effects(m.state) == []  # waiting for its timer, not in flight
        assert not of(m.tick(wait - 0.001), e.SendAlert)
        again = of(m.tick(0.001), e.SendAlert)
        assert [(a.key, a.attempt) for a in again] == [(send.key, attempt + 1)]
    gave_up = of(m.send(c.AlertFailed(key=send.key, instance=inst, attempt=3, error="refused")), e.AlertGaveUp)
    assert gave_up[0].attempts == 3 and m.state.alerts == {} and m.timers() == {}


def test_an_alert_is_raised_only_for_what_it_is_on() -> None:
    m = Master()
    m.define(wf("ok", shell("a"), alerts=[AlertDef(webhook=HOOK), AlertDef(script="echo done", on=["SUCCESS"])]))
    inst = m.start("ok")
    sends = of(m.run_ok(inst, "a"), e.SendAlert)
    assert [(s.key, s.script) for s in sends] == [(f"{inst}/SUCCESS/1", "echo done")]
    m.define(wf("quiet", shell("a")))
    assert not of(m.run_ok(m.start("quiet"), "a"), e.SendAlert)


def test_a_warn_timeout_raises_a_task_level_alert() -> None:
    m = Master()
    m.define(wf("slow", shell("a", timeout=5, timeout_strategy="WARN"), alerts=[AlertDef(webhook=HOOK,
                                                                                            on=["TIMEOUT_WARN"])]))
    inst = m.start("slow")
    m.started(inst, "a")
    sends = of(m.tick(6), e.SendAlert)
    assert [s.key for s in sends] == [f"{inst}/TIMEOUT_WARN/a.1/0"] and "timeout" in sends[0].detail


def test_alert_definitions_are_checked() -> None:
    for bad, why in ((AlertDef(), "exactly one"), (AlertDef(webhook="ftp://x"), "http"),
                     (AlertDef(webhook=HOOK, max_attempts=0), "max_attempts"),
                     (AlertDef(webhook=HOOK, backoff=float("nan")), "backoff"),
                     (AlertDef(script="x", on=[]), "on is empty")):
        with pytest.raises(DefinitionError, match=why):
            validate(wf("w", shell("a"), alerts=[bad]))
