"""`easysched export` and `easysched import`: hand a bug to someone else as one file."""

from __future__ import annotations

import argparse
from pathlib import Path

from easysched_es.cli.common import (
    EXIT_OK,
    Registrar,
    UsageError,
    create_data_dir,
    non_negative_int,
    print_json,
    source,
)

# The export module (and the fold it pulls in) is imported inside the handlers: building the
# parser on every `easysched` call must stay cheap (bench/cli.py).


def cmd_export(args: argparse.Namespace) -> int:
    from easysched_es.debug.export import export_instance, export_range, write_file

    if (args.instance is None) == (args.start is None):
        raise UsageError("export needs an INSTANCE or --from OFFSET (not both)")
    if args.end is not None and args.start is None:
        raise UsageError("--to needs --from")
    src = source(args)
    export = export_instance(src, args.instance) if args.instance else export_range(src, args.start, args.end)
    size = write_file(Path(args.output), export)
    result = {
        "file": str(args.output),
        "kind": export.kind,
        "commands": len(export.commands),
        "bytes": size,
        "instance_map": export.instance_map,
        "first_offset": export.first_offset,
        "written_by": export.written_by,
    }
    if args.json:
        print_json(result)
    else:
        print(f"wrote {args.output}: {export.description}, {len(export.commands)} commands, {size:,} bytes")
        for old, new in export.instance_map.items():
            print(f"  instance {old} is {new} in the exported log")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from easysched_es.debug.export import import_file, read_file

    export = read_file(Path(args.file))
    done = import_file(export, create_data_dir(Path(args.data_dir)))
    result = {
        "data_dir": str(args.data_dir),
        "kind": export.kind,
        "commands": done.commands,
        "first_offset": done.first_offset,
        "instance_map": done.instance_map,
        "written_by": export.written_by,
    }
    if args.json:
        print_json(result)
    else:
        print(f"imported {done.commands} commands ({export.kind}, written by {export.written_by}) into {args.data_dir}")
        for old, new in done.instance_map.items():
            print(f"  instance {old} is {new} here: easysched --data-dir {args.data_dir} why {new}")
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add export and import."""
    p = reg.add("export", cmd_export, "write a self-contained slice of the log (an instance, or a range) to a file",
                reg.as_json)
    p.add_argument("instance", nargs="?", help="the instance to export (P-N): its commands and what they read")
    p.add_argument("--from", dest="start", type=non_negative_int, metavar="OFFSET",
                   help="export the raw commands from this offset instead, with the state before it as a snapshot")
    p.add_argument("--to", dest="end", type=non_negative_int, metavar="OFFSET",
                   help="the last offset of the range (default: the end)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write (e.g. bug.eslog)")
    p = reg.add("import", cmd_import, "import an export file into an empty data directory (--data-dir)", reg.as_json)
    p.add_argument("file", help="the export file (written by `easysched export`)")
