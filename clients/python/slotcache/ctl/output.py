"""Rendering for clusterctl: rich tables for people, JSON for scripts."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Beyond a terminal (a pipe, a file, CI logs) nothing limits the line length, and cut-off
# addresses would be worse than long lines.
_UNBOUNDED_WIDTH = 240


def _width(stream: TextIO) -> int | None:
    try:
        return None if stream.isatty() else _UNBOUNDED_WIDTH
    except (AttributeError, ValueError):
        return _UNBOUNDED_WIDTH


# soft_wrap: messages and commands are not broken at the console width (a terminal wraps them
# itself, and a command or an address stays copyable); tables still fit the width.
console = Console(width=_width(sys.stdout), soft_wrap=True)
errors = Console(stderr=True, width=_width(sys.stderr), soft_wrap=True)


def emit_json(data: Any) -> None:
    """Print ``data`` as stable, indented JSON."""
    # Flushed at once: `up --foreground --json` keeps running after printing it.
    print(json.dumps(data, indent=2, sort_keys=True), flush=True)


@contextlib.contextmanager
def progress(message: str) -> Iterator[Callable[[str], None]]:
    """Tell the operator what a long wait is for, on stderr so JSON on stdout stays clean.

    A terminal gets a spinner that disappears when the step is done; a log
    or a pipe gets the message once, as a line. The yielded function replaces
    the message as the wait advances (``3/6 nodes know it``); off a terminal
    each new text is one more line, and repeats are dropped so a poll loop
    does not flood a log.
    """
    if errors.is_terminal:
        with errors.status(escape(message)) as status:
            yield _on_change(message, lambda text: status.update(escape(text)))
    else:
        errors.print(f"{escape(message)}...", highlight=False)
        yield _on_change(message, lambda text: errors.print(f"  {escape(text)}", highlight=False))


def _on_change(first: str, show: Callable[[str], None]) -> Callable[[str], None]:
    """``show`` only texts that differ from the last one shown."""
    last = [first]

    def update(text: str) -> None:
        if text != last[0]:
            last[0] = text
            show(text)

    return update


def error(message: str) -> None:
    """Report a failure on stderr."""
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def warning(message: str) -> None:
    """Report something the operator should know about but that did not fail the command."""
    errors.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def key_value_table(title: str, rows: Mapping[str, object]) -> Table:
    """A two-column table, sorted by key."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("field", style="cyan")
    table.add_column("value", justify="right")
    for key in sorted(rows):
        table.add_row(escape(key), escape(_fmt(rows[key])))
    return table


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table with the given columns."""
    table = Table(title=escape(title), title_justify="left")
    for col in columns:
        # A narrow terminal wraps a cell rather than hiding the end of an address behind "...".
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_fmt(v)) for v in row))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
