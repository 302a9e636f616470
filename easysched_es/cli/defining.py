"""`define` without surprises: an unchanged definition keeps its version (no new command in the log).

The comparison is made against the folded state of the log (partition 0: every partition holds
every definition), so it is the master's own view of what is defined.
"""

from __future__ import annotations

import argparse
from typing import Any

from easysched_es.cli.common import kafka_bootstrap, source


def defined_now(args: argparse.Namespace) -> dict[str, Any]:
    """Workflow name -> its `WorkflowEntry` as the log stands (empty when there is no log yet)."""
    from easysched_es.runtime.fold import load_state

    if not kafka_bootstrap(args) and not args.data_dir.is_dir():
        return {}
    return dict(load_state(source(args), partition=0).workflows)


def define_once(target: Any, definition: Any, release: bool, current: dict[str, Any]) -> tuple[int, bool]:
    """(version, unchanged): define `definition`, unless the newest version equals it in the asked release state."""
    entry = current.get(definition.name)
    if entry is not None and entry.versions and entry.latest.definition == definition and entry.online == release:
        return entry.latest.version, True
    return target.define(definition, release=release), False
