"""`easysched schema`: the wire format of the commands and events topics as JSON Schema (msgspec's).

Producing commands from another program needs the shapes of the records: this prints them from
the structs themselves, so the schema can never drift from what the fold decodes.
"""

from __future__ import annotations

import argparse

from easysched_es.cli.common import EXIT_OK, Registrar, print_json

# The wire format's version (README "Producing commands from another program"): fields are only
# ever added, each with a default; none is removed, renamed or retyped; a tag is never reused.
# A change that breaks that rule would bump this number.
WIRE_FORMAT_VERSION = 1


def wire_schema() -> dict[str, object]:
    """The JSON Schema document of every command (the commands topic) and event batch (the events topic)."""
    import msgspec

    from easysched_es.core.commands import Command
    from easysched_es.core.events import EventBatch

    (command, batch), defs = msgspec.json.schema_components([Command, EventBatch], ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "easysched-es wire format",
        "wire_format_version": WIRE_FORMAT_VERSION,
        "encoding": "msgpack; or JSON for a command record with the header content-type: application/json. "
                    "Each record is one command on <prefix>.commands, one EventBatch on <prefix>.events",
        "commands": command,
        "event_batch": batch,
        "$defs": defs,
    }


def cmd_schema(args: argparse.Namespace) -> int:
    schema = wire_schema()
    if args.json:
        print_json(schema)
        return EXIT_OK
    commands = schema["commands"]
    assert isinstance(commands, dict)
    tags = sorted(commands.get("discriminator", {}).get("mapping", {}))
    print(f"wire format version {WIRE_FORMAT_VERSION}; commands (field 'type'): {', '.join(tags)}")
    print("easysched schema --json prints the JSON Schema of every command and event")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add `schema`."""
    reg.add("schema", cmd_schema, "the JSON Schema of every command and event (the wire format of the topics)",
            reg.as_json, log_options=False)
