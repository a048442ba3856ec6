"""Terminal output drawn by rich (tables, key/value blocks) and JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["emit_json", "print_kv", "print_table"]

_UNLIMITED_WIDTH = 1_000_000
_RULE_UNDER_HEADERS = box.Box("    \n    \n ─  \n    \n    \n    \n    \n    \n")
"""No borders; one rule under each column's header, a gap between the rules (``line.split()``
on it gives one word per column, as on every other line)."""


def _console() -> Console:
    """A console on the current ``sys.stdout``, printing values verbatim (no markup, no
    highlighting: a patient's text may contain ``[…]``).

    On a terminal rich fits a table to its width, measuring CJK characters as two columns.
    Into a pipe or a file a row stays on one line however wide, so scripts can grep it.
    """
    console = Console(file=sys.stdout, markup=False, highlight=False, emoji=False)
    if not console.is_terminal:
        console = Console(
            file=sys.stdout, markup=False, highlight=False, emoji=False, width=_UNLIMITED_WIDTH
        )
    return console


def _print(console: Console, renderable: Table) -> None:
    with console.capture() as captured:
        console.print(renderable)
    # rich pads every cell to its column's width; the trailing blanks only hinder diffs and grep.
    for line in captured.get().splitlines():
        console.file.write(line.rstrip() + "\n")
    console.file.flush()


def _cell(value: Any) -> Text:
    return Text("" if value is None else str(value))


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(none)"
) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        print(empty)
        return
    table = Table(box=_RULE_UNDER_HEADERS, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(Text(header), overflow="fold")
    for row in cells:
        table.add_row(*row)
    _print(_console(), table)


def print_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), _cell(value))
    _print(_console(), table)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=_default)
    sys.stdout.write("\n")
