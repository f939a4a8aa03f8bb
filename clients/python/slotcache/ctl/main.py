"""``clusterctl``: inspect and operate slotcache nodes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import grpc

from slotcache.ctl import output
from slotcache.errors import SlotcacheError, from_rpc_error
from slotcache.v1 import admin_pb2, admin_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


class CtlError(Exception):
    """A failure to report to the operator as one line, with exit status 1."""


def parse_address(text: str) -> str:
    """Validate ``HOST:PORT`` so a typo fails before any connection attempt."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


def admin_call(address: str, method: str, request: object, timeout: float) -> object:
    """Call one Admin RPC, turning transport failures into a readable CtlError."""
    with grpc.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            err: SlotcacheError = from_rpc_error(exc)
            raise CtlError(f"{address}: {err.code.name}: {err.message}") from None


def cmd_info(args: argparse.Namespace) -> None:
    """Print one node's identity and counters."""
    reply = admin_call(args.address, "Info", admin_pb2.InfoRequest(), args.timeout)
    assert isinstance(reply, admin_pb2.InfoReply)
    server, stats = dict(reply.server), dict(reply.stats)
    if args.json:
        output.emit_json({"server": server, "stats": stats})
        return
    output.console.print(output.key_value_table(f"node {args.address}", server))
    output.console.print(output.key_value_table("stats", stats))


def build_parser() -> argparse.ArgumentParser:
    """The clusterctl command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per RPC (default 5)"
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser = argparse.ArgumentParser(
        prog="clusterctl", description="Inspect and operate slotcache clusters."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", parents=[common], help="show a node's identity and counters")
    info.add_argument("address", type=parse_address, metavar="HOST:PORT")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; exit 0 on success, 1 on an operational error, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except CtlError as exc:
        output.errors.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
