"""The task-type registry: every definition type has exactly one registered module."""

from __future__ import annotations

import subprocess
import sys
import typing

from easysched_es.core import step  # noqa: F401  (registers the task types)
from easysched_es.core.definitions import TaskDef
from easysched_es.core.tasks.base import BY_DEFINITION, TYPES


def test_every_definition_type_is_registered() -> None:
    defs = set(typing.get_args(TaskDef))
    assert defs == set(BY_DEFINITION)
    for cls, kind in BY_DEFINITION.items():
        assert kind.definition is cls
        assert TYPES[kind.name] is kind
        assert cls.__struct_config__.tag == kind.name  # type: ignore[attr-defined]


def test_any_core_module_can_be_imported_first() -> None:
    """The rules and the types call each other; no import order may break that."""
    modules = [
        "easysched_es.core.tasks.shell", "easysched_es.core.tasks.dependent", "easysched_es.core.tasks.base",
        "easysched_es.core.workflow", "easysched_es.core.tasks.registry", "easysched_es.core.step",
    ]
    for module in modules:
        code = f"import {module}; import easysched_es.core.step"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
