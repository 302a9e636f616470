"""`easysched workflows`: the defined workflows, their versions, release state and schedule."""

from __future__ import annotations

import argparse
from typing import Any

from easysched_es.cli.common import EXIT_OK, Registrar, print_json, source


def workflows_view(states: list[Any]) -> list[dict[str, Any]]:
    """One row per workflow (from partition 0: every partition holds every definition)."""
    from easysched_es.debug.views import iso

    if not states:
        return []
    state = states[0]
    rows = []
    for name in sorted(state.workflows):
        entry = state.workflows[name]
        schedule = state.schedules.get(name)
        rows.append({
            "workflow": name,
            "version": entry.latest.version if entry.versions else None,
            "versions": len(entry.versions),
            "release_state": "ONLINE" if entry.online else "OFFLINE",
            "tasks": len(entry.latest.definition.tasks) if entry.versions else 0,
            "schedule": None if schedule is None else {
                "cron": schedule.cron, "timezone": schedule.zone,
                "release_state": "ONLINE" if schedule.online else "OFFLINE", "next_fire": iso(schedule.next_fire)},
            "instances": sum(1 for s in states for i in s.instances.values() if i.workflow == name),
        })
    return rows


def cmd_workflows(args: argparse.Namespace) -> int:
    from easysched_es.runtime.fold import load_states

    rows = workflows_view(load_states(source(args), progress=True))
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no workflows defined (easysched define FILE.yaml)")
        return EXIT_OK
    from easysched_es.cli.tables import print_table

    print_table(["workflow", "version", "state", "tasks", "instances", "schedule", "next fire"], [
        [r["workflow"], r["version"], r["release_state"], r["tasks"], r["instances"],
         "" if r["schedule"] is None else f"{r['schedule']['cron']} {r['schedule']['timezone']} "
                                          f"({r['schedule']['release_state']})",
         "" if r["schedule"] is None else r["schedule"]["next_fire"] or ""]
        for r in rows])
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add `workflows`."""
    reg.add("workflows", cmd_workflows, "the defined workflows: newest version, release state, schedule",
            reg.as_json)
