"""Argument types for clusterctl: each rejects a bad value before any connection or process.

argparse turns the ``ArgumentTypeError`` raised here into a usage error
(exit status 2) that names the option, so a typo never half-runs a command.
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Callable

from slotcache._address import split_host_port
from slotcache.contract import SLOT_COUNT


class UsageError(Exception):
    """Options that are valid one by one but not together; reported like argparse does (exit 2)."""


def address(text: str) -> str:
    """``HOST:PORT`` with a port in 1..65535 (``[::1]:7000`` for IPv6)."""
    try:
        split_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def port(text: str) -> int:
    """A TCP port number."""
    value = _int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value


def slot(text: str) -> int:
    """A slot number in 0..16383."""
    value = _int(text)
    if not 0 <= value < SLOT_COUNT:
        raise argparse.ArgumentTypeError(f"slot {value} is outside 0..{SLOT_COUNT - 1}")
    return value


def node_id(text: str) -> str:
    """A node id, or the start of one: 1 to 40 hex digits (``nodes`` shows the first 8)."""
    if not 0 < len(text) <= 40 or any(c not in string.hexdigits for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a node id (up to 40 hex digits; a unique prefix is enough)"
        )
    return text.lower()


def node_ids_or_all(text: str) -> list[str]:
    """``all``, or comma-separated node ids (or unique prefixes)."""
    if text.lower() == "all":
        return ["all"]
    parts = text.split(",")
    ids = [node_id(p) for p in parts]
    if len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"{text!r} names a node twice")
    return ids


def weight(text: str) -> tuple[str, float]:
    """``NODE_ID=W``: a node id (or unique prefix) and a finite weight >= 0."""
    node, sep, value = text.partition("=")
    try:
        number = float(value) if sep else -1.0
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NODE_ID=WEIGHT with a weight >= 0 (for example 1b4a2918=2)"
        )
    return node_id(node), number


def non_negative_float(what: str) -> Callable[[str], float]:
    """A finite number >= 0; the message names ``what`` it is."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number") from None
        if not 0 <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"{what} must be a number >= 0, not {text}")
        return value

    return parse


def int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """An integer within ``low..high``; the message names ``what`` it counts."""

    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be in {low}..{high}, not {value}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """A duration in seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
