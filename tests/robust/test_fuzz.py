"""The fuzz suite: hostile records through the fold, the master, the projector and the CLI readers; hostile
YAML through `define`. No exception escapes and every rejection has a reason.

A few seconds by default; `EASYSCHED_FUZZ_SCALE=50 pytest tests/robust/test_fuzz.py` for a long run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from easysched_es.core.codec import encode
from easysched_es.core.commands import DefineWorkflow, StartWorkflow
from easysched_es.core.events import CommandRejected
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.flows import FlowFileError, load_flow
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.master import EmbeddedMaster
from easysched_es.runtime.fold import load_state
from projections.projector import Projector
from tests.robust.fuzz_strategies import commands, definitions, fuzz, raw_records
from tests.robust.helpers import flow, shell

PRELUDE = [
    encode(DefineWorkflow(at=1_700_000_000_000, definition=flow("w", shell("a"), shell("b", upstream=["a"])))),
    encode(StartWorkflow(at=1_700_000_000_001, workflow="w")),
]
records = st.lists(st.one_of(commands, raw_records), min_size=1, max_size=25)


@fuzz(60)
@given(records)
def test_step_record_never_raises_and_every_rejection_has_a_reason(payloads: list[bytes]) -> None:
    state = State()
    for offset, payload in enumerate([*PRELUDE, *payloads]):
        state, events, tag = step_record(state, payload, offset)
        for event in events:
            if isinstance(event, CommandRejected):
                assert event.reason.strip(), (tag, payload)


def _data_dir(tmp: Path, payloads: list[bytes]) -> DataDir:
    with EmbeddedStream(tmp / "commands", fsync=False) as stream:
        stream.append([*PRELUDE, *payloads])
    return DataDir(tmp)


@fuzz(6)
@given(records)
def test_the_master_decides_hostile_records_and_verify_agrees(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes]
) -> None:
    data = _data_dir(tmp_path_factory.mktemp("fuzz"), payloads)
    master = EmbeddedMaster(data, lambda effect: None)
    master.recover()
    while master.poll():
        pass
    assert master.halted is None
    master.close()
    report = verify(data)
    assert report.ok, report.divergence
    # The CLI readers over the same log.
    load_state(data)
    trace(data, "0-1")
    trace(data, "0-999999")


@fuzz(3)
@given(records, st.lists(raw_records, max_size=5))
def test_the_projector_goes_on_past_hostile_records(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], bad_batches: list[bytes]
) -> None:
    tmp = tmp_path_factory.mktemp("fuzzp")
    data = _data_dir(tmp, payloads)
    master = EmbeddedMaster(data, lambda effect: None)
    master.recover()
    while master.poll():
        pass
    master.close()
    with EmbeddedStream(tmp / "events", fsync=False) as events:
        if bad_batches:
            events.append(bad_batches)
        with EmbeddedStream(tmp / "commands", fsync=False) as cmds, Projector(tmp / "p.duckdb", events, cmds) as p:
            p.catch_up()
            status = p.status()
            assert status["caught_up"] and status["last_error"] is None, status


_HOSTILE_YAML = st.one_of(
    st.builds(lambda d: yaml.safe_dump(d, allow_unicode=True), definitions()),
    st.text(max_size=200),
    st.sampled_from([
        "name: w\ntasks: " + "[" * 400 + "]" * 400,
        "name: w\ntasks:\n- &a {name: a, type: SHELL, command: 'true', upstream: [*a]}\n",
        "a: &a [*a]\n",
        "name: w\ntasks: [{name: a, type: SHELL, command: true, retry_times: 99999999999999999999999}]\n",
        "name: !!python/object:os.system ls\n",
        "name: w\ntasks: [{name: a, type: SHELL, command: \"\\0\"}]\n",
        "name: w\ntasks: [{name: a, type: SHELL, command: \"\\uDFFF\"}]\n",
        "name: 2026-01-01\ntasks: []\n",
        "? [a]\n: b\n",
        "\xef\xbb\xbf\x00",
    ]),
)


@fuzz(60)
@given(_HOSTILE_YAML)
def test_define_refuses_hostile_yaml_with_a_reason(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("yaml") / "flow.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        definition = load_flow(path)
    except FlowFileError as exc:
        assert str(exc).strip()
        return
    # Accepted at the door: then the fold accepts it too, and it can be written to the log.
    _, events, _ = step_record(State(), encode(DefineWorkflow(at=1, definition=definition)), 0)
    assert not isinstance(events[0], CommandRejected), events[0]
