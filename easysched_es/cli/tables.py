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
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if all(c.isascii() and c.isprintable() for row in [list(columns), *cells] for c in row):
        _print_ascii(list(columns), cells, numeric, indent)  # one column per character: no need for rich
        return
    import io
    import shutil

    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left", overflow="fold")
    for row in cells:
        table.add_row(*row)
    # Rendered to text, then printed: no colour codes, no trailing blanks; on a terminal as wide
    # as it is, in a pipe or a file as wide as the rows need (whole lines, never wrapped).
    width = shutil.get_terminal_size((100_000, 24)).columns if sys.stdout.isatty() else 100_000
    buffer = io.StringIO()
    Console(file=buffer, width=max(width - indent, 40), color_system=None, highlight=False, markup=False,
            emoji=False).print(table)
    pad = " " * indent
    for line in buffer.getvalue().splitlines():
        print((pad + line).rstrip())


def _print_ascii(columns: list[str], cells: list[list[str]], numeric: Sequence[str], indent: int) -> None:
    """The same layout as the rich table, for text whose display width is its length.

    rich costs a few hundred milliseconds of imports on a loaded machine; `easysched status` on
    ASCII names should not pay them (bench/cli.py).
    """
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if c in numeric else v.ljust(w) for v, w, c in zip(values, widths, columns, strict=True)]
        return (" " * indent + "   ".join(parts)).rstrip()

    print(line(columns))
    print(" " * indent + "─" * (sum(widths) + 3 * (len(widths) - 1)))
    for row in cells:
        print(line(row))
