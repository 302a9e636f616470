"""DESIGN.md section 6, checked after every step of random command sequences.

A hypothesis state machine drives the fold through the log path (`step_record` on msgpack
records) with a few small workflows (DEPENDENT AND/OR with both failure policies, SHELL
with retries and timeouts, failure strategies CONTINUE and END), user commands at random
moments, worker reports for the attempts actually dispatched (in random order, with stale
and duplicate ones), upstream results from another partition, malformed records and clock
ticks. After every step it checks the rules against the state and the events; at the end
of every run it replays the log from scratch and from snapshots and compares bytes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.delay_queue import DEPENDENT_CHECK, RETRY, TIMEOUT
from easysched_es.core.schedules import SCHEDULE, SCHEDULE_TIMERS
from easysched_es.core.state import (
    DELAY,
    DISPATCH,
    KILL,
    PAUSE,
    RUNNING,
    TASK_FINAL,
    WF_FINAL,
    WF_PAUSE,
    WF_READY_PAUSE,
    WF_READY_STOP,
    WF_RUNNING,
    WF_STOP,
    WF_SUCCESS,
    State,
    active,
)
from easysched_es.core.step import pending_effects, step_record
from tests.core.helpers import T0, dep, item, shell, wf
from tests.core.test_branching import conditions, switch
from tests.core.test_sub_workflow import sub

DEFINITIONS = [
    wf("up", shell("publish", retry_times=1)),
    wf(
        "chain",
        shell("a", retry_times=1, retry_interval=5.0, timeout=20.0),
        shell("b", upstream=["a"], timeout=8.0, timeout_strategy="FAILED"),
        shell("c", upstream=["a"], retry_times=2),
    ),
    wf(
        "deps",
        dep("wait_and", item("up"), item("up", "publish"), check_interval=5.0),
        dep(
            "wait_or",
            item("up"),
            item("ghost"),
            relation="OR",
            check_interval=7.0,
            failure_policy="WAIT",
            failure_waiting_time=12.0,
        ),
        shell("load", upstream=["wait_and"], retry_times=1, retry_interval=3.0),
        shell("after", upstream=["wait_or", "load"]),
    ),
    wf(
        "ending",
        shell("x", retry_times=1, timeout=10.0, timeout_strategy="WARNFAILED"),
        shell("y", retry_times=2, retry_interval=3.0, timeout=12.0),
        dep("z", item("up"), check_interval=5.0),
        shell("w", upstream=["x", "z"]),
        failure_strategy="END",
    ),
    wf("never", dep("wait_ghost", item("ghost", "t"), check_interval=10.0), shell("then", upstream=["wait_ghost"])),
    wf(
        "instant",
        dep("ready", item("up"), check_interval=5.0),
        shell("s", timeout=5.0, timeout_strategy="FAILED"),
        shell("t", upstream=["ready", "s"]),
        failure_strategy="END",
    ),
    # CONDITIONS and SWITCH: a failure of src is handled by chk; sw reads src's output n.
    wf(
        "branchy",
        shell("src", retry_times=1),
        conditions("chk", ["src"], [("src", "SUCCESS")], ["sw"], ["alarm"]),
        switch("sw", ["chk"], [("${n} > 3", "big"), ("${n} == 1", "one")], default="small"),
        shell("big", upstream=["sw"]),
        shell("one", upstream=["sw"]),
        shell("small", upstream=["sw"], timeout=6.0, timeout_strategy="FAILED"),
        shell("alarm", upstream=["chk"]),
        shell("join", upstream=["big", "small"]),
        params={"n": "1"},
        failure_strategy="END",
    ),
    # A dependent of chain (backfill --dependents): it runs for a date once chain's instance ended.
    wf("report", dep("wait_chain", item("chain"), check_interval=5.0), shell("send", upstream=["wait_chain"])),
    # A tree of SUB_WORKFLOW instances: top -> mid -> leaf.
    wf("leaf", shell("nap", timeout=15.0, timeout_strategy="FAILED", retry_times=1),
       dep("leaf_wait", item("up"), check_interval=5.0)),
    wf("mid", sub("go_leaf", "leaf", N="${n}"), shell("mid_after", upstream=["go_leaf"]), params={"n": "2"}),
    wf("top", shell("first"), sub("go_mid", "mid", upstream=["first"]), sub("go_leaf2", "leaf"),
       shell("last", upstream=["go_mid"])),
]
TASKS = {d.name: [t.name for t in d.tasks] for d in DEFINITIONS}
DEF_TASK_TYPES = {(d.name, t.name): type(t).__name__ for d in DEFINITIONS for t in d.tasks}
TICKS = [0, 1000, 2500, 5000, 7000, 10_000, 30_000]
# Tasks whose failure is handled by a CONDITIONS task right downstream of them.
HANDLED = {("branchy", "src")}
STARTABLE = sorted(set(TASKS) - {"leaf"})


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.now = T0
        self.records: list[bytes] = []
        self.batches: list[bytes] = []
        self.snaps: list[bytes] = []
        self.snapshot_points: list[int] = []
        self.instances: list[str] = []
        self.workflow_of: dict[str, str] = {}
        self.dispatched: list[tuple[str, str, int]] = []
        self.dispatch_bytes: dict[tuple[str, str, int], bytes] = {}
        self.kill_sent: set[tuple[str, str, int]] = set()
        # What the events say, folded independently of the core.
        self.timers: dict[tuple[str, str, str], int] = {}
        self.killed: set[tuple[str, str]] = set()
        self.wf_states: dict[str, str] = {}
        self.task_states: dict[tuple[str, str], tuple[str, int]] = {}
        self.finished: set[str] = set()
        self.parent_of: dict[str, str] = {}
        # Backfills: their ids, the ones that ended (STOP included), and each instance's `only`.
        self.backfills: list[str] = []
        self.backfills_ended: set[str] = set()
        self.only_of: dict[str, list[str]] = {}

    def ancestors(self, instance: str) -> list[str]:
        found = []
        while instance in self.parent_of:
            instance = self.parent_of[instance]
            found.append(instance)
        return found

    # ---- driving ---------------------------------------------------------------------------

    def apply(self, payload: bytes) -> list[e.Event]:
        offset = len(self.records)
        _, events, _tag = step_record(self.state, payload, offset)
        self.records.append(payload)
        self.batches.append(encode(events))
        self.snaps.append(encode(self.state.snapshot()))
        self.check_events(events)
        return events

    def send(self, cmd: c.Command) -> list[e.Event]:
        cmd.at = self.now
        return self.apply(encode(cmd))

    @initialize()
    def define(self) -> None:
        for d in DEFINITIONS:
            self.send(c.DefineWorkflow(definition=d))

    @rule(workflow=st.sampled_from(STARTABLE), yesterday=st.booleans())
    def start(self, workflow: str, yesterday: bool) -> None:
        schedule = self.now - 86_400_000 if yesterday else None
        self.send(c.StartWorkflow(workflow=workflow, schedule_time=schedule))

    @precondition(lambda self: self.instances)
    @rule(data=st.data(), action=st.sampled_from(["stop", "pause", "resume"]))
    def control(self, data: st.DataObject, action: str) -> None:
        inst = data.draw(st.sampled_from(self.instances))
        cls = {"stop": c.StopWorkflow, "pause": c.PauseWorkflow, "resume": c.ResumeWorkflow}[action]
        self.send(cls(instance=inst))

    @precondition(lambda self: self.instances)
    @rule(data=st.data())
    def kill_task(self, data: st.DataObject) -> None:
        inst = data.draw(st.sampled_from(self.instances))
        task = data.draw(st.sampled_from(TASKS[self.workflow_of[inst]]))
        self.send(c.KillTask(instance=inst, task=task))

    @rule(delta=st.sampled_from(TICKS))
    def tick(self, delta: int) -> None:
        self.now += delta
        self.send(c.CheckDue(now=self.now))

    @precondition(lambda self: self.dispatched)
    @rule(data=st.data(), kind=st.sampled_from(["started", "finished", "finished", "lost", "adopted"]))
    def any_report(self, data: st.DataObject, kind: str) -> None:
        """A worker report for any attempt ever dispatched: current, stale or duplicate."""
        inst, task, attempt = data.draw(st.sampled_from(self.dispatched))
        pid = data.draw(st.integers(100, 105))
        if kind == "started":
            self.send(c.TaskStarted(instance=inst, task=task, attempt=attempt, pid=pid, worker="w1"))
        elif kind == "adopted":
            self.send(c.TaskAdopted(instance=inst, task=task, attempt=attempt, pid=pid, worker="w2"))
        elif kind == "lost":
            self.send(c.TaskLost(instance=inst, task=task, attempt=attempt, reason="gone after restart"))
        else:
            killed = (inst, task, attempt) in self.kill_sent and data.draw(st.booleans())
            code = -15 if killed else data.draw(st.sampled_from([0, 0, 1, -9]))
            self.send(c.TaskFinished(instance=inst, task=task, attempt=attempt, exit_code=code, killed=killed))

    def _current_attempts(self) -> list[tuple[str, str, int]]:
        return [
            (i, t.name, t.attempt)
            for i, inst in self.state.instances.items()
            for t in inst.tasks.values()
            if t.type == "SHELL" and (t.state in (DISPATCH, RUNNING) or t.kill_pending)
        ]

    @precondition(lambda self: self._current_attempts())
    @rule(data=st.data(), exit_code=st.sampled_from([0, 0, 0, 1]))
    def worker_finishes(self, data: st.DataObject, exit_code: int) -> None:
        """The realistic report: the current attempt of a running (or killed) task ends, maybe with outputs."""
        inst, task, attempt = data.draw(st.sampled_from(self._current_attempts()))
        killed = (inst, task, attempt) in self.kill_sent
        outputs = data.draw(st.sampled_from([{}, {}, {"n": "5"}, {"n": "1"}, {"n": "x"}, {"bad-name": "1"}]))
        self.send(
            c.TaskFinished(
                instance=inst, task=task, attempt=attempt, exit_code=-15 if killed else exit_code, killed=killed,
                outputs=outputs,
            )
        )

    @rule(
        workflow=st.sampled_from(["up", "ghost"]),
        state=st.sampled_from(["SUCCESS", "SUCCESS", "FAILURE", "RUNNING_EXECUTION"]),
        n=st.integers(0, 3),
        age=st.sampled_from([0, 3_600_000, 86_400_000]),
    )
    def upstream_finished(self, workflow: str, state: str, n: int, age: int) -> None:
        self.send(
            c.UpstreamFinished(
                workflow=workflow,
                instance=f"7-{n}",
                state=state,
                base_time=self.now - age,
                task_states={"publish": state, "t": state},
            )
        )

    @rule(workflow=st.sampled_from(sorted(TASKS)), online=st.booleans())
    def release(self, workflow: str, online: bool) -> None:
        self.send(c.SetReleaseState(workflow=workflow, online=online))

    # ---- schedules: an OFFLINE or deleted schedule has no entry, after every step -------------

    @rule(workflow=st.sampled_from(["up", "chain", "instant"]),
          cron=st.sampled_from(["*/5 * * * * ?", "0 * * * * ?", "*/7 * * * * ?", "*/3 * * * * ? 2024"]),
          overlap=st.sampled_from(["SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "ALLOW_ALL"]),
          catchup=st.sampled_from([0, -1, 12_000]), online=st.sampled_from([None, True, False]))
    def schedule_set(self, workflow: str, cron: str, overlap: str, catchup: int, online: bool | None) -> None:
        self.send(c.SetSchedule(workflow=workflow, cron=cron, overlap=overlap, catchup_window=catchup, online=online))

    @rule(workflow=st.sampled_from(["up", "chain", "instant"]), online=st.booleans())
    def schedule_state(self, workflow: str, online: bool) -> None:
        self.send(c.SetScheduleState(workflow=workflow, online=online))

    @rule(workflow=st.sampled_from(["up", "chain", "instant"]))
    def schedule_delete(self, workflow: str) -> None:
        self.send(c.DeleteSchedule(workflow=workflow))

    @rule(workflow=st.sampled_from(["up", "chain", "instant"]))
    def schedule_trigger(self, workflow: str) -> None:
        self.send(c.TriggerSchedule(workflow=workflow))

    @invariant()
    def an_offline_or_deleted_schedule_has_no_entry(self) -> None:
        entries = {t.task: t.due for t in self.state.queue.entries() if t.kind == SCHEDULE}
        for name, sched in self.state.schedules.items():
            armed = sched.online and self.state.workflows[name].online and sched.next_fire is not None
            assert entries.get(name) == (sched.next_fire if armed else None), (name, sched, entries)
        assert set(entries) <= {n for n, s in self.state.schedules.items() if s.online}, "entry of a deleted schedule"
        for t in self.state.queue.entries():
            assert (t.kind == SCHEDULE) == (t.instance == SCHEDULE_TIMERS)

    # ---- backfills: a stopped one starts nothing more; never more dates than its parallelism --

    @rule(workflow=st.sampled_from(["up", "chain", "instant"]), minutes=st.integers(0, 2),
          parallel=st.integers(1, 3), reverse=st.booleans(), dependents=st.booleans())
    def backfill(self, workflow: str, minutes: int, parallel: int, reverse: bool, dependents: bool) -> None:
        from datetime import UTC, datetime, timedelta

        # A range of minutes: a few dates under the every-few-seconds schedules, one date daily.
        now = datetime.fromtimestamp(self.now // 1000, tz=UTC).replace(tzinfo=None)
        events = self.send(c.StartBackfill(workflow=workflow, from_date=str(now - timedelta(minutes=minutes)),
                                           to_date=str(now), parallel=parallel, reverse=reverse,
                                           dependents=dependents))
        self.backfills.extend(ev.backfill for ev in events if isinstance(ev, e.BackfillStarted))

    @precondition(lambda self: self.backfills)
    @rule(data=st.data())
    def stop_backfill(self, data: st.DataObject) -> None:
        self.send(c.StopWorkflow(instance=data.draw(st.sampled_from(self.backfills))))

    @invariant()
    def backfills_keep_their_parallelism_and_a_stopped_one_has_stopped_its_instances(self) -> None:
        for bf in self.state.backfills.values():
            mine = [i for i in self.state.instances.values() if i.backfill == bf.id]
            live = [i for i in mine if i.state not in WF_FINAL]
            assert len(bf.inflight) <= bf.parallel, bf
            assert len([i for i in live if i.workflow == bf.workflow]) <= bf.parallel, (bf, live)
            assert {i.id for i in live} <= {x for r in bf.inflight for x in r.instances}, "a live instance untracked"
            if bf.state == "STOP":
                assert all(i.state in (WF_READY_STOP, *WF_FINAL) for i in mine), (bf, mine)
            assert bf.succeeded + bf.failed <= bf.taken <= bf.total

    @rule(payload=st.sampled_from([b"\xc1", b"\x81\xa4type\xa5bogus", encode({"type": "kill_task", "instance": 3})]))
    def malformed(self, payload: bytes) -> None:
        events = self.apply(payload)
        assert [type(ev) for ev in events] == [e.CommandRejected]

    @rule()
    def heartbeat(self) -> None:
        assert self.send(c.Heartbeat(worker="w1")) == []

    @rule()
    def snapshot_here(self) -> None:
        self.snapshot_points.append(len(self.records) - 1)

    # ---- the rules, after every step -------------------------------------------------------

    def check_events(self, events: list[e.Event]) -> None:
        """Fold the events independently and check the rules that concern *when* things happen."""
        for ev in events:
            if isinstance(ev, (e.TimerSet, e.TimerCancelled, e.TimerFired)) and ev.kind == SCHEDULE:
                key = (ev.instance, ev.task, ev.kind)
                if isinstance(ev, e.TimerSet):
                    self.timers[key] = ev.due
                else:
                    assert self.timers.pop(key, None) is not None, f"schedule entry was not pending: {ev}"
                continue
            if isinstance(ev, e.TimerSet):
                key = (ev.instance, ev.task, ev.kind)
                assert (ev.instance, ev.task) not in self.killed, f"timer set for killed task: {ev}"
                assert self.wf_states[ev.instance] in (WF_RUNNING, WF_READY_PAUSE), ev
                self.timers[key] = ev.due
            elif isinstance(ev, e.TimerCancelled):
                key = (ev.instance, ev.task, ev.kind)
                assert key in self.timers, f"cancelled a timer that was not pending: {ev}"
                del self.timers[key]
            elif isinstance(ev, e.TimerFired):
                key = (ev.instance, ev.task, ev.kind)
                assert self.timers.get(key) == ev.due, f"fired a timer that was not pending: {ev}"
                assert ev.due <= self.state.now
                assert (ev.instance, ev.task) not in self.killed, f"timer fired for killed task: {ev}"
                del self.timers[key]
            elif isinstance(ev, e.TaskStateChanged):
                key = (ev.instance, ev.task)
                assert key not in self.killed, f"a killed task changed again: {ev}"
                if ev.state == KILL:
                    self.killed.add(key)
                self.task_states[key] = (ev.state, ev.attempt)
            elif isinstance(ev, e.DispatchTask):
                key = (ev.instance, ev.task)
                assert key not in self.killed, f"dispatch after kill: {ev}"
                assert self.wf_states[ev.instance] == WF_RUNNING, f"dispatch while {self.wf_states[ev.instance]}: {ev}"
                for ancestor in self.ancestors(ev.instance):
                    assert self.wf_states[ancestor] not in (WF_READY_STOP, WF_STOP), f"dispatch under a stop: {ev}"
                assert self.task_states[key] == (DISPATCH, ev.attempt)
                self.dispatched.append((ev.instance, ev.task, ev.attempt))
                self.dispatch_bytes[(ev.instance, ev.task, ev.attempt)] = encode(ev)
            elif isinstance(ev, e.DependentChecked):
                assert (ev.instance, ev.task) not in self.killed, f"check after kill: {ev}"
                assert self.wf_states[ev.instance] == WF_RUNNING, ev
            elif isinstance(ev, e.TaskTimedOut):
                assert (ev.instance, ev.task) not in self.killed, ev
            elif isinstance(ev, e.KillTaskProcess):
                self.kill_sent.add((ev.instance, ev.task, ev.attempt))
            elif isinstance(ev, e.BackfillFinished):
                assert ev.backfill not in self.backfills_ended, f"backfill ended twice: {ev}"
                self.backfills_ended.add(ev.backfill)
            elif isinstance(ev, e.WorkflowStarted):
                assert ev.backfill not in self.backfills_ended, f"an ended backfill started an instance: {ev}"
                self.only_of[ev.instance] = ev.only
                self.instances.append(ev.instance)
                self.workflow_of[ev.instance] = ev.workflow
                if ev.parent:
                    self.parent_of[ev.instance] = ev.parent
                    assert self.wf_states[ev.parent] == WF_RUNNING, f"child started under a {ev.parent} not running"
            elif isinstance(ev, e.BranchChosen):
                assert (ev.instance, ev.task) not in self.killed, ev
                assert self.wf_states[ev.instance] == WF_RUNNING, ev
            elif isinstance(ev, e.WorkflowStateChanged):
                assert self.wf_states.get(ev.instance) not in WF_FINAL
                self.wf_states[ev.instance] = ev.state
            elif isinstance(ev, e.WorkflowFinished):
                assert ev.instance not in self.finished, f"finished twice: {ev}"
                self.finished.add(ev.instance)
                self.wf_states[ev.instance] = ev.state
                if ev.state == WF_SUCCESS:
                    assert sorted(ev.task_states) == sorted(self.only_of[ev.instance] or TASKS[ev.workflow])
                    for task, task_state in ev.task_states.items():
                        assert task_state in ("SUCCESS", "SKIPPED") or (
                            task_state == "FAILURE" and (ev.workflow, task) in HANDLED
                        ), (task, task_state)

    @invariant()
    def queue_matches_events_and_rules(self) -> None:
        queue = self.state.queue
        entries = queue.entries()
        assert self.timers == {(t.instance, t.task, t.kind): t.due for t in entries}, "events describe the queue"
        assert queue.earliest() == (min(self.timers.values()) if self.timers else None)
        for t in entries:
            if t.kind == SCHEDULE:
                continue  # see an_offline_or_deleted_schedule_has_no_entry
            inst = self.state.instances[t.instance]
            ti = inst.tasks[t.task]
            assert ti.state not in TASK_FINAL and ti.state != PAUSE, f"{t} pending for a {ti.state} task"
            assert inst.state in (WF_RUNNING, WF_READY_PAUSE), f"{t} pending in a {inst.state} instance"
            if inst.state == WF_READY_PAUSE:
                assert t.kind == TIMEOUT and ti.state in (DISPATCH, RUNNING), f"{t} pending while pausing"
            expected = {
                DEPENDENT_CHECK: ("DEPENDENT", (RUNNING,)),
                RETRY: ("SHELL", (DELAY,)),
                TIMEOUT: ("SHELL", (DISPATCH, RUNNING)),
            }
            assert (ti.type, ti.state in expected[t.kind][1]) == (expected[t.kind][0], True), (t, ti)

    @invariant()
    def state_matches_events_and_rules(self) -> None:
        for i, inst in self.state.instances.items():
            assert self.wf_states[i] == inst.state
            pending = {t.task for t in self.state.queue.entries() if t.instance == i}
            for name, ti in inst.tasks.items():
                assert self.task_states[(i, name)] == (ti.state, ti.attempt)
                assert ti.state not in ("SUBMITTED_SUCCESS", "NEED_FAULT_TOLERANCE"), (
                    "transient states end in their step"
                )
                if ti.kill_pending:
                    assert (ti.state in (KILL, "FAILURE") and ti.type == "SHELL") or (
                        ti.state == KILL and ti.type == "SUB_WORKFLOW"
                        and self.state.instances[ti.child].state == WF_READY_STOP
                    ), (i, ti)
                if ti.state == KILL:
                    assert self.state.queue.pending_for(i, name) == []
                if inst.state == WF_RUNNING and ti.state == RUNNING and ti.type == "DEPENDENT":
                    assert self.state.queue.pending_for(i, name) == [DEPENDENT_CHECK], (
                        "a waiting DEPENDENT holds one check"
                    )
                if inst.state == WF_RUNNING and ti.state == DELAY:
                    assert self.state.queue.pending_for(i, name) == [RETRY]
            if inst.state in WF_FINAL:
                assert not any(active(t) for t in inst.tasks.values()), f"{i} is {inst.state} with active tasks"
                assert not pending
            if inst.state == WF_READY_STOP:
                assert all(t.state in TASK_FINAL for t in inst.tasks.values())
                assert any(t.kill_pending for t in inst.tasks.values()), "READY_STOP waits only for kill confirmations"
            if inst.state == WF_PAUSE:
                assert not any(
                    t.kill_pending or (t.type in ("SHELL", "SUB_WORKFLOW") and t.state in (DISPATCH, RUNNING))
                    for t in inst.tasks.values()
                )
            if inst.state == WF_STOP:
                assert all(t.state in TASK_FINAL for t in inst.tasks.values())

    @invariant()
    def stop_rules_hold_over_trees(self) -> None:
        """Section 6 over SUB_WORKFLOW trees: a stopping parent's sub-tree is stopping or ended,
        holds no timer and starts nothing; a STOP parent's whole tree has ended."""
        for i, inst in self.state.instances.items():
            ups = [self.state.instances[a].state for a in self.ancestors(i)]
            if WF_STOP in ups:
                assert inst.state in WF_FINAL, f"{i} is {inst.state} under a STOP ancestor"
            if WF_READY_STOP in ups or WF_STOP in ups:
                assert inst.state in WF_FINAL or inst.state == WF_READY_STOP, f"{i} is {inst.state} under a stop"
                assert not [t for t in self.state.queue.entries() if t.instance == i], f"timer in {i} under a stop"
            for ti in inst.tasks.values():
                if ti.type == "SUB_WORKFLOW" and ti.child:
                    child = self.state.instances[ti.child]
                    assert (child.parent, child.parent_task) == (i, ti.name)
                    if ti.state in (RUNNING, PAUSE):
                        assert child.state not in WF_FINAL, f"{ti.child} ended but {i}.{ti.name} is {ti.state}"
                    if ti.state == PAUSE:
                        assert child.state == WF_PAUSE

    @invariant()
    def pending_effects_match_the_state(self) -> None:
        """What a restarted runtime would (re)apply: exactly the open attempts, as first dispatched."""
        for ev in pending_effects(self.state):
            ti = self.state.instances[ev.instance].tasks[ev.task]
            assert ev.attempt == ti.attempt
            if isinstance(ev, e.DispatchTask):
                assert ti.state in (DISPATCH, RUNNING) and not ti.kill_pending
                assert encode(ev) == self.dispatch_bytes[(ev.instance, ev.task, ev.attempt)]
            else:
                assert isinstance(ev, e.KillTaskProcess) and ti.kill_pending

    # ---- replay ----------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.records:
            return
        # From scratch: the same events and the same state, byte for byte, at every step.
        fresh = State()
        for offset, record in enumerate(self.records):
            _, events, _ = step_record(fresh, record, offset)
            assert encode(events) == self.batches[offset], f"replay diverged at offset {offset}"
            assert encode(fresh.snapshot()) == self.snaps[offset], f"state diverged at offset {offset}"
        # From a snapshot (encoded, decoded, restored), then the tail.
        for point in self.snapshot_points[:3] or [len(self.records) // 2]:
            restored = State.restore(decode_snapshot(self.snaps[point]))
            assert encode(restored.snapshot()) == self.snaps[point]
            for offset in range(point + 1, len(self.records)):
                _, events, _ = step_record(restored, self.records[offset], offset)
                assert encode(events) == self.batches[offset], f"replay from snapshot {point} diverged at {offset}"
            assert encode(restored.snapshot()) == self.snaps[-1]


SchedulerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestScheduler = SchedulerMachine.TestCase


def test_the_definitions_are_valid() -> None:
    from easysched_es.core.definitions import validate

    for d in DEFINITIONS:
        validate(d)
    assert set(DEF_TASK_TYPES.values()) == {
        "ShellTask", "DependentTask", "ConditionsTask", "SwitchTask", "SubWorkflowTask"
    }
