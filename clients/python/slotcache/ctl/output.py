"""Rendering for clusterctl: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def emit_json(data: Any) -> None:
    """Print ``data`` as stable, indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=True))


def key_value_table(title: str, rows: Mapping[str, object]) -> Table:
    """A two-column table, sorted by key."""
    table = Table(title=title, title_justify="left")
    table.add_column("field", style="cyan")
    table.add_column("value", justify="right")
    for key in sorted(rows):
        table.add_row(key, _fmt(rows[key]))
    return table


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table with the given columns."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
