"""Hypothesis strategies for the fuzz suite: commands of every type with hostile field values, raw records."""

from __future__ import annotations

import os
import types
import typing
from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from easysched_es.core import commands as c

# A few seconds in CI; EASYSCHED_FUZZ_SCALE=50 (or more) multiplies the examples for a long local run.
_SCALE = float(os.environ.get("EASYSCHED_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Settings of one fuzz test: `examples` in CI, times EASYSCHED_FUZZ_SCALE locally."""
    return settings(
        max_examples=max(1, int(examples * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )

NAMES = ["w", "a", "b", "c", "0-0", "0-1", "0-2", "0-50", "", "w1", "default", "gpu"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAME = st.one_of(st.sampled_from(NAMES), TEXT)
BIG = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63), 253_402_300_799_999, 253_402_300_800_000])
INT = st.one_of(st.integers(-3, 100), st.integers(0, 2_000_000_000_000), st.integers(-(2**63), 2**64 - 1), BIG)
SMALL_DICT = st.dictionaries(NAME, NAME, max_size=3)


def _task(name: str, ups: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    base = {"name": st.just(name), "upstream": st.just(ups)}
    shell = st.fixed_dictionaries(
        {**base, "type": st.just("SHELL"), "command": st.sampled_from(["true", "false", "sleep 0", "exit 3", ""])},
        optional={"retry_times": st.integers(0, 3), "retry_interval": st.floats(allow_nan=True),
                  "timeout": st.one_of(st.floats(), st.none()), "env": SMALL_DICT, "priority": INT},
    )
    dependent = st.fixed_dictionaries(
        {**base, "type": st.just("DEPENDENT"), "dependence": st.fixed_dictionaries(
            {"items": st.lists(st.fixed_dictionaries({"workflow": NAME}), max_size=2)},
            optional={"check_interval": st.floats(0, 100), "relation": st.sampled_from(["AND", "OR", "XOR"])},
        )},
    )
    return st.one_of(shell, dependent)


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A workflow definition as plain data: mostly well formed, sometimes not."""
    n = draw(st.integers(1, 4))
    names = [draw(st.sampled_from(["a", "b", "c", "d"])) + str(i) for i in range(n)]
    tasks = []
    for i, name in enumerate(names):
        ups = draw(st.lists(st.sampled_from(names), max_size=2)) if i else []
        tasks.append(draw(_task(name, ups)))
    out = {"name": draw(st.sampled_from(["w", "w1", "", "x\x00"])), "tasks": tasks}
    if draw(st.booleans()):
        out["params"] = draw(SMALL_DICT)
    if draw(st.booleans()):
        out["failure_strategy"] = draw(st.sampled_from(["CONTINUE", "END", "NEVER"]))
    return out


def _value(annotation: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    if annotation is int:
        return INT
    if annotation is str:
        return NAME
    if annotation is bool:
        return st.booleans()
    if annotation is float:
        return st.floats()
    if origin is dict:
        return SMALL_DICT
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_value(a) if a is not type(None) else st.none() for a in typing.get_args(annotation)])
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return definitions()
    return st.none()


COMMAND_TYPES = typing.get_args(c.Command)


@st.composite
def command_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A command of any type as plain data, with hostile values and sometimes a field missing or extra."""
    cls = draw(st.sampled_from(COMMAND_TYPES))
    out: dict[str, Any] = {"type": cls.__struct_config__.tag}
    for field in msgspec.structs.fields(cls):
        if field.name == "at":
            out["at"] = draw(st.one_of(st.integers(1_700_000_000_000, 1_700_000_100_000), INT))
        elif draw(st.integers(0, 9)):
            out[field.name] = draw(_value(field.type))
    if not draw(st.integers(0, 9)):
        out[draw(TEXT)] = draw(st.one_of(INT, NAME))
    return out


def encodable(value: Any) -> bytes:
    """msgpack of plain data (hypothesis values are encodable by construction)."""
    return msgspec.msgpack.encode(value)


def _mutate(payload: bytes, how: int, where: int) -> bytes:
    if not payload:
        return payload
    at = where % len(payload)
    if how == 0:
        return payload[:at]  # truncated
    if how == 1:
        return payload[:at] + bytes([payload[at] ^ 0xFF]) + payload[at + 1:]  # a flipped byte
    if how == 2:
        return payload[:at] + b"\x91" * 3000 + b"\xc0" + payload[at:]  # deep nesting inside
    return payload + b"\xff\xfe"  # trailing garbage


raw_records = st.one_of(
    st.binary(max_size=64),
    st.builds(encodable, st.recursive(
        st.one_of(st.none(), st.booleans(), INT, TEXT),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=8,
    )),
    st.builds(lambda d, how, where: _mutate(encodable(d), how, where), command_dicts(), st.integers(0, 3),
              st.integers(0, 10_000)),
    st.just(b"\x91" * 100_000),
    st.just(b"\xdf\xff\xff\xff\xff"),
)
"""Records of every kind: random bytes, random msgpack, mutated commands, deep and huge-length headers."""

commands = st.builds(encodable, command_dicts())
"""Commands of every type that decode (mostly) but hold hostile values."""
