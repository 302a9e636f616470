"""`easysched import-ds`: pydolphinscheduler YAML workflow files become easysched workflow files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from easysched_es.cli.common import EXIT_OK, CliError, Registrar, client, print_json


def cmd_import_ds(args: argparse.Namespace) -> int:
    from easysched_es.ds_import import DsImportError, import_ds
    from easysched_es.flows import FlowFileError, load_flow, load_schedule

    try:
        imported = import_ds(args.file)
    except DsImportError as exc:
        raise CliError(str(exc), kind="invalid_definition") from None
    written = []
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for imp in imported:
            path = out / f"{imp.name}.yaml"
            if path.exists() and not args.force:
                raise CliError(f"{path} exists; pass --force to overwrite it", kind="exists", file=str(path))
            path.write_text(imp.yaml())
            written.append(path)
        # Checked exactly as `easysched define` reads them, so what is written is definable.
        try:
            checked = [(p, load_flow(p), load_schedule(p)) for p in written]
        except FlowFileError as exc:
            raise CliError(f"the imported definition is not valid for easysched: {exc}",
                           kind="invalid_definition") from None
        if args.define:
            target = client(args)
            for (_, definition, schedule), imp in zip(checked, imported, strict=True):
                target.define(definition, release=imp.release)
                if schedule is not None:
                    target._submit_schedule(schedule)
    elif args.define:
        raise CliError("--define needs --out DIR (the files it defines are kept there)", kind="usage", exit_code=2)
    result = [
        {"workflow": imp.name, "source": str(imp.source), "file": str(path) if path else None,
         "release": "ONLINE" if imp.release else "OFFLINE", "notes": imp.notes, "defined": bool(args.define)}
        for imp, path in zip(imported, written or [None] * len(imported), strict=True)
    ]
    if args.json:
        print_json(result)
        return EXIT_OK
    for imp, path in zip(imported, written or [None] * len(imported), strict=True):
        if path is None:
            sys.stdout.write(("---\n" if imp is not imported[0] else "") + imp.yaml())
        else:
            print(f"wrote {path} ({imp.name}, from {imp.source.name})" + (" and defined it" if args.define else ""))
        for note in imp.notes:
            print(f"note: {imp.name}: {note}", file=sys.stderr)
    return EXIT_OK


def register(reg: Registrar) -> None:
    """Add import-ds."""
    p = reg.add("import-ds", cmd_import_ds, "turn a pydolphinscheduler YAML workflow file into easysched workflow "
                "files (and files it references with $WORKFLOW{...}), naming every field it cannot map", reg.as_json)
    p.add_argument("file", help="the pydolphinscheduler YAML file (workflow: and tasks:)")
    p.add_argument("--out", metavar="DIR",
                   help="write one easysched workflow file per workflow into DIR (default: print them)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist in --out")
    p.add_argument("--define", action="store_true",
                   help="also define them (and their schedules) in the data directory, as `easysched define` would")
