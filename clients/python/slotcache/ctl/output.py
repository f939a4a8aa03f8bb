"""Rendering for clusterctl: rich tables for people, JSON for scripts."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from slotcache.ctl.wording import counted, key_rate

if TYPE_CHECKING:
    from slotcache.ctl.resharding import BatchResult

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


class MigrationProgress:
    """Progress of slot migrations on stderr: a rich bar on a terminal, lines in a log.

    The bar shows slots moved out of the total, keys moved and the rate; off
    a terminal each finished batch is one line, so a log tells what moved.
    Use it through :func:`migration_progress`.
    """

    def __init__(self, title: str, total_slots: int) -> None:
        self._title = title
        self._total = total_slots
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if errors.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("slots"),
                TextColumn("{task.fields[keys]}{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}"),
                console=errors,
            )
            self._task = self._bar.add_task(
                escape(title), total=total_slots, keys="0 keys", rate="", note=""
            )
        else:
            errors.print(f"{escape(title)}: {counted(total_slots, 'slot')}", highlight=False)

    def _rate(self, keys: int) -> str:
        rate = key_rate(keys, time.monotonic() - self._started)
        return f", {rate}" if rate else ""

    def update(self, slots_done: int, keys: int, note: str) -> None:
        """Totals so far, the batch in flight included."""
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task,
                completed=slots_done,
                keys=counted(keys, "key"),
                rate=self._rate(keys),
                note=escape(note),
            )

    def batch_done(self, index: int, count: int, result: BatchResult) -> None:
        """One line per batch off a terminal; the bar moves on a terminal."""
        if self._bar is not None:
            if result.outcome != "done":
                self.note(f"batch {index}/{count} {result.outcome}: {result.error}")
            return
        line = (
            f"  batch {index}/{count}: {counted(len(result.slots), 'slot')} "
            f"{result.source[:8]} -> {result.target[:8]}: {result.outcome}, "
            f"{counted(result.keys, 'key')} in {result.seconds:.2f}s"
        )
        if result.error:
            line += f" ({result.error})"
        errors.print(escape(line), highlight=False)

    def note(self, text: str) -> None:
        """A message above the bar (or a line)."""
        if self._bar is not None:
            self._bar.console.print(escape(text), highlight=False)
        else:
            errors.print(f"  {escape(text)}", highlight=False)

    def start(self) -> None:
        """Show the bar."""
        if self._bar is not None:
            self._bar.start()

    def stop(self) -> None:
        """Leave the final bar on screen."""
        if self._bar is not None:
            self._bar.stop()


@contextlib.contextmanager
def migration_progress(title: str, total_slots: int) -> Iterator[MigrationProgress]:
    """A :class:`MigrationProgress` shown for the duration of the block."""
    shown = MigrationProgress(title, total_slots)
    shown.start()
    try:
        yield shown
    finally:
        shown.stop()


def confirm(question: str) -> bool:
    """Ask on stderr and read the answer from stdin; only ``y``/``yes`` means yes."""
    errors.print(f"{escape(question)} [y/N] ", end="", highlight=False)
    try:
        answer = input()
    except EOFError:
        errors.print()
        return False
    return answer.strip().lower() in ("y", "yes")
