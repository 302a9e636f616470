"""Workflow files: YAML decoded into the definition model, with errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

from easysched_es.core.codec import unencodable
from easysched_es.core.definitions import DefinitionError, WorkflowDefinition, validate


class FlowFileError(ValueError):
    """A workflow file cannot be used; the message names the file and the field."""


def load_flow(path: str | Path) -> WorkflowDefinition:
    """Read, decode and validate one workflow file."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise FlowFileError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{p}: invalid YAML: {exc}") from None
    except RecursionError:
        raise FlowFileError(f"{p}: the YAML is nested too deeply to read (a workflow needs a few levels)") from None
    if not isinstance(data, dict):
        raise FlowFileError(f"{p}: expected a mapping with `name` and `tasks` at the top level")
    try:
        definition = msgspec.convert(data, WorkflowDefinition)
    except msgspec.ValidationError as exc:
        raise FlowFileError(f"{p}: {exc}") from None
    except RecursionError:
        raise FlowFileError(f"{p}: a value is nested too deeply (a workflow needs a few levels)") from None
    problem = unencodable(definition)
    if problem:
        raise FlowFileError(f"{p}: {problem.replace('$', 'the workflow', 1)}")
    try:
        validate(definition)
    except DefinitionError as exc:
        raise FlowFileError(f"{p}: {exc}") from None
    return definition
