"""Input limits: how much one call, message or stream may ask of a node (pure, no I/O).

A node bounds the work and memory any single request can demand of it, so
one careless or hostile client cannot stall the event loop (hashing a
million keys of one MGet) or exhaust memory (a million Subscribe streams).
Each check compares one int with one bound, so conforming traffic pays
almost nothing. A breach is a RESOURCE_EXHAUSTED whose message names the
limit, the value sent and the flag that raises it; its ErrorInfo (reason
LIMIT_EXCEEDED) carries the same as metadata for programs.

The message size is enforced by gRPC itself, before the node reads the
message (so nothing is buffered), and concurrent streams per connection by
HTTP/2 flow control; see docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from slotcache.contract import Op, Reason
from slotcache.v1 import cache_pb2 as pb

from ..config import ServerConfig
from ..executor import CommandError

# The repeated field whose length is a multi-key request's key count.
_COUNTED = {"mget": "keys", "mdelete": "keys", "mset": "entries"}


@dataclass(frozen=True, slots=True)
class Limit:
    """One bound, named as its server flag is (without the dashes)."""

    name: str
    value: int
    # What is counted, as the message says it: "keys", "operations".
    unit: str

    def exceeded(self, what: str, count: int) -> CommandError:
        """The error for ``what`` holding ``count`` units, more than this limit allows."""
        return CommandError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{what} has {count} {self.unit}; the limit is {self.value} "
            f"(raise it with the server flag --{self.name})",
            Reason.LIMIT_EXCEEDED,
            {"limit": self.name, "max": str(self.value), "value": str(count)},
        )


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The limits the Cache service and Subscribe enforce themselves."""

    pipeline_ops: Limit
    keys_per_call: Limit
    subscribers: Limit

    @classmethod
    def from_config(cls, config: ServerConfig) -> InputLimits:
        """The limits a node's flags set."""
        return cls(
            Limit("max-pipeline-ops", config.max_pipeline_ops, "operations"),
            Limit("max-keys-per-call", config.max_keys_per_call, "keys"),
            Limit(
                "tracking-max-subscribers",
                config.tracking_max_subscribers,
                "open Subscribe streams",
            ),
        )

    def check_call(self, op: Op, request: Any) -> None:
        """Refuse a multi-key request with more keys than allowed (any other op passes)."""
        if op.multi is not None:
            count = len(getattr(request, _COUNTED[op.field]))
            if count > self.keys_per_call.value:
                raise self.keys_per_call.exceeded(op.rpc, count)

    def check_message(self, ops: Any) -> None:
        """Refuse a Pipeline message with more operations than allowed."""
        if len(ops) > self.pipeline_ops.value:
            raise self.pipeline_ops.exceeded("a Pipeline message", len(ops))

    def refused_ops(self, ops: Any, specs: list[Op | None]) -> dict[int, pb.OperationResult] | None:
        """The error results of a message's multi-key operations over the key limit.

        None (the usual answer) when every operation is within it; the loop
        only looks at multi-key operations.
        """
        refused: dict[int, pb.OperationResult] | None = None
        for i, spec in enumerate(specs):
            if spec is not None and spec.multi is not None:
                op = ops[i]
                try:
                    self.check_call(spec, getattr(op, spec.field))
                except CommandError as exc:
                    if refused is None:
                        refused = {}
                    refused[i] = pb.OperationResult(id=op.id, error=exc.to_proto())
        return refused

    def check_subscribers(self, open_streams: int) -> None:
        """Refuse a new Subscribe stream when the node already holds the most allowed."""
        if open_streams >= self.subscribers.value:
            raise self.subscribers.exceeded("this node", open_streams)
