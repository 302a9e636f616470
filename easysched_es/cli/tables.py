"""Tables for people: rich measures display width (CJK, emoji), so columns line up.

Imported only when a human table is printed (rich costs tens of milliseconds to import).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[str] = (),
                indent: int = 0) -> None:
    """Print `rows` under `columns`, aligned by display width; no colours, so it pipes well."""
    import io
    import shutil

    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # Rendered to text, then printed: no colour codes, no trailing blanks; on a terminal as wide
    # as it is, in a pipe or a file as wide as the rows need (whole lines, never wrapped).
    width = shutil.get_terminal_size((100_000, 24)).columns if sys.stdout.isatty() else 100_000
    buffer = io.StringIO()
    Console(file=buffer, width=max(width - indent, 40), color_system=None, highlight=False, markup=False,
            emoji=False).print(table)
    pad = " " * indent
    for line in buffer.getvalue().splitlines():
        print((pad + line).rstrip())
