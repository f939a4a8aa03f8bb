"""``top``, ``slowlog`` and ``hotkeys``: answering "why is it slow?" from the nodes themselves."""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Iterator

from rich.live import Live

from slotcache.ctl import output
from slotcache.ctl.observe import (
    HOTKEY_COLUMNS,
    SLOWLOG_COLUMNS,
    TOP_COLUMNS,
    Reading,
    hot_cells,
    merge_hot_keys,
    node_addresses,
    sampling_note,
    slow_cells,
    slow_entries,
    top_cells,
    top_row,
)
from slotcache.ctl.rpc import NodeHandle, OperationError, ask_all, fetch_state
from slotcache.v1 import admin_pb2

QUIT_KEYS = ("q", "Q")


def _cluster_addresses(address: str, timeout: float) -> list[str]:
    return node_addresses(fetch_state(address, timeout), address)


def report_unreachable(results: dict[str, object]) -> dict[str, object]:
    """Warn about nodes that could not be asked; return the ones that answered."""
    answered = {}
    for address, result in results.items():
        if isinstance(result, OperationError):
            output.errors.print(f"warning: {result}", highlight=False, markup=False)
        else:
            answered[address] = result
    return answered


def cmd_slowlog(args: argparse.Namespace) -> int:
    """Show the slowest recent operations of one node, or of every node with --all."""
    addresses = _cluster_addresses(args.address, args.timeout) if args.all else [args.address]
    request = admin_pb2.SlowLogRequest(count=args.count, reset=args.reset)
    replies = report_unreachable(
        ask_all(addresses, args.timeout, lambda node: node.call("SlowLog", request))
    )
    entries = slow_entries(replies)  # type: ignore[arg-type]
    if args.json:
        output.emit_json(entries)
        return 0 if replies else 1
    title = f"slow log ({len(entries)} entries from {len(replies)} of {len(addresses)} nodes)"
    output.console.print(
        output.rows_table(title, SLOWLOG_COLUMNS, [slow_cells(e) for e in entries])
    )
    return 0 if replies else 1


def cmd_hotkeys(args: argparse.Namespace) -> int:
    """Show the most accessed keys of the whole cluster, merged over its nodes."""
    addresses = _cluster_addresses(args.address, args.timeout)
    # Each node is asked for more than shown: a key may be near the top on several.
    request = admin_pb2.HotKeysRequest(count=max(args.count * 4, 32), reset=args.reset)
    replies = report_unreachable(
        ask_all(addresses, args.timeout, lambda node: node.call("HotKeys", request))
    )
    keys = merge_hot_keys(replies, args.count)  # type: ignore[arg-type]
    if args.json:
        output.emit_json(keys)
        return 0 if replies else 1
    output.console.print(
        output.rows_table("hot keys", HOTKEY_COLUMNS, [hot_cells(k) for k in keys])
    )
    output.console.print(sampling_note(replies.values()), highlight=False)  # type: ignore[arg-type]
    return 0 if replies else 1


class _Top:
    """Reads every node's Info each tick and keeps the previous reading for rates."""

    def __init__(self, address: str, timeout: float) -> None:
        self._address = address
        self._timeout = timeout
        self._addresses = _cluster_addresses(address, timeout)
        self._previous: dict[str, Reading] = {}

    def rows(self) -> list[dict[str, object]]:
        """One row per node; nodes that joined since the last tick appear."""
        with contextlib.suppress(OperationError):
            self._addresses = _cluster_addresses(self._address, self._timeout)
        infos = ask_all(self._addresses, self._timeout, NodeHandle.info)
        now = time.monotonic()
        rows: list[dict[str, object]] = []
        for address, reply in infos.items():
            if isinstance(reply, OperationError):
                rows.append({"address": address, "error": str(reply)})
                continue
            reading = Reading(now, reply)
            rows.append(top_row(address, self._previous.get(address), reading))
            self._previous[address] = reading
        return rows


def _table(rows: list[dict[str, object]]) -> object:
    title = f"slotcache top — {len(rows)} nodes (q or Ctrl-C quits)"
    return output.rows_table(title, TOP_COLUMNS, [top_cells(r) for r in rows])


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """A function that waits up to N seconds for a key press ("" if none came).

    On a terminal, keys arrive unbuffered (cbreak mode, so Ctrl-C still
    interrupts); otherwise it only waits.
    """
    if not sys.stdin.isatty():

        def sleep(seconds: float) -> str:
            time.sleep(seconds)
            return ""

        yield sleep
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def wait(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 1).decode(errors="replace") if ready else ""

    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_top(args: argparse.Namespace) -> int:
    """A live view of every node, refreshed every --interval seconds."""
    top = _Top(args.address, args.timeout)
    top.rows()  # the first reading: rates need two
    if args.once:
        time.sleep(args.interval)
        rows = top.rows()
        if args.json:
            output.emit_json(rows)
        else:
            output.console.print(_table(rows))
        return 0
    try:
        with (
            _keys() as wait,
            Live(console=output.console, auto_refresh=False, transient=False) as live,
        ):
            while True:
                key = wait(args.interval)
                if key in QUIT_KEYS:
                    return 0
                live.update(_table(top.rows()), refresh=True)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 0
