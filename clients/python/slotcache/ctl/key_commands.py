"""``clusterctl get``, ``set``, ``del`` and ``ttl``: one key, through the SDK, for quick checks.

What ``redis-cli GET key`` is to Redis, without installing anything: the
SDK finds the key's owner and follows redirects, and the value is shown as
the SDK reads it (see :mod:`slotcache.ctl.value_view`). ``set`` stores the
text it is given as UTF-8 bytes. The exit status is 0 when the key was
found (or written), 1 when it does not exist or the call failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from rich.pretty import Pretty

import slotcache
from slotcache.ctl import auth, output
from slotcache.ctl.rpc import OperationError
from slotcache.ctl.transport import current_tls
from slotcache.ctl.value_view import ttl_text, view
from slotcache.errors import SlotcacheError

T = TypeVar("T")
NOT_FOUND = 1
# What Ttl answers for a key that does not exist (-1: it exists, without a TTL).
TTL_MISSING = -2


def _call(args: argparse.Namespace, do: Callable[[slotcache.Client], T]) -> T:
    """Run ``do`` with a bytes-only client; SDK errors become OperationError (exit 1)."""
    try:
        with slotcache.Client(
            args.address,
            timeout=args.timeout,
            codec=None,
            tls=current_tls(),
            **auth.client_options(),
        ) as cache:
            return do(cache)
    except SlotcacheError as exc:
        raise OperationError(f"{type(exc).__name__}: {exc}") from None


def _missing(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Report a key that does not exist: JSON says so on stdout, a person reads it on stderr."""
    if args.json:
        output.emit_json(data)
    else:
        output.errors.print(f"not found: {args.key}", highlight=False, markup=False)
    return NOT_FOUND


def cmd_get(args: argparse.Namespace) -> int:
    """Print a key's value: its text, its bytes, or the object the SDK stored."""
    raw = _call(args, lambda cache: cache.get(args.key))
    if raw is None:
        return _missing(args, {"key": args.key, "found": False})
    shown = view(raw)
    if args.json:
        output.emit_json({"key": args.key, "found": True, **shown.as_json()})
        return 0
    if shown.kind == "text":
        output.console.print(shown.value, highlight=False, markup=False)
    elif shown.kind == "object":
        output.console.print(Pretty(shown.value))
    elif shown.kind == "encrypted":
        output.console.print(
            f"(encrypted, {shown.size:,} bytes: only a client with the writer's keyring reads it)",
            highlight=False,
            markup=False,
        )
    else:
        output.console.print(repr(shown.value), highlight=False, markup=False)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    """Store the text VALUE (as UTF-8 bytes) under KEY, optionally with a TTL."""
    _call(args, lambda cache: cache.set(args.key, args.value.encode(), ttl_ms=args.ttl_ms))
    if args.json:
        output.emit_json({"key": args.key, "applied": True, "ttl_ms": args.ttl_ms})
    else:
        output.console.print("OK", highlight=False)
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    """Delete KEY; exit 1 if it did not exist."""
    existed = _call(args, lambda cache: cache.delete(args.key))
    if not existed:
        return _missing(args, {"key": args.key, "deleted": False})
    if args.json:
        output.emit_json({"key": args.key, "deleted": True})
    else:
        output.console.print("deleted", highlight=False)
    return 0


def cmd_ttl(args: argparse.Namespace) -> int:
    """Print a key's remaining time to live; exit 1 if it does not exist."""
    ttl_ms = _call(args, lambda cache: cache.ttl(args.key))
    if ttl_ms == TTL_MISSING:
        return _missing(args, {"key": args.key, "found": False, "ttl_ms": None})
    if args.json:
        output.emit_json(
            {"key": args.key, "found": True, "ttl_ms": ttl_ms if ttl_ms >= 0 else None}
        )
    else:
        output.console.print(ttl_text(ttl_ms), highlight=False)
    return 0
