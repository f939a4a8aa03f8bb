"""Input limits: the flags that set them, the checks, and the errors clients see."""

from __future__ import annotations

import grpc
import pytest

from slotcache import errors
from slotcache.contract import OPS, Reason
from slotcache.v1 import cache_pb2 as pb
from slotcache_server.config import MIB, ServerConfig, load_config
from slotcache_server.executor import CommandError
from slotcache_server.security.limits import InputLimits

LIMITS = InputLimits.from_config(
    ServerConfig(max_pipeline_ops=3, max_keys_per_call=2, tracking_max_subscribers=1)
)


def refusal(check, *args) -> CommandError:
    with pytest.raises(CommandError) as info:
        check(*args)
    return info.value


def test_every_limit_is_a_flag_and_an_environment_variable():
    argv = ["--max-message-bytes", "32mb", "--max-pipeline-ops", "7", "--max-keys-per-call", "9"]
    env = {"SLOTCACHE_MAX_STREAMS_PER_CONNECTION": "11", "SLOTCACHE_TRACKING_MAX_SUBSCRIBERS": "13"}
    config = load_config(argv, environ=env)
    assert (config.max_message_bytes, config.max_pipeline_ops, config.max_keys_per_call) == (
        32 * MIB,
        7,
        9,
    )
    assert (config.max_streams_per_connection, config.tracking_max_subscribers) == (11, 13)


def test_the_automatic_message_limit_fits_the_largest_key_and_value():
    assert ServerConfig().max_message_bytes == 64 * MIB
    big = ServerConfig(max_value_bytes=100 * MIB)
    assert big.max_message_bytes > big.max_value_bytes + big.max_key_bytes


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_message_bytes": 4 * MIB}, "lower --max-value-bytes"),
        ({"max_pipeline_ops": 0}, "input limits must be >= 1"),
        ({"max_keys_per_call": 0}, "input limits must be >= 1"),
        ({"max_streams_per_connection": 0}, "input limits must be >= 1"),
        ({"tracking_max_subscribers": 0}, "input limits must be >= 1"),
    ],
)
def test_limits_no_call_could_live_with_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**settings)


@pytest.mark.parametrize(
    ("field", "request_at_limit", "request_over"),
    [
        ("mget", pb.MGetRequest(keys=[b"a", b"b"]), pb.MGetRequest(keys=[b"a", b"b", b"c"])),
        ("mdelete", pb.MDeleteRequest(keys=[b"a"] * 2), pb.MDeleteRequest(keys=[b"a"] * 3)),
        (
            "mset",
            pb.MSetRequest(entries=[pb.SetRequest(key=b"k")] * 2),
            pb.MSetRequest(entries=[pb.SetRequest(key=b"k")] * 3),
        ),
    ],
)
def test_a_multi_key_call_over_the_key_limit_is_refused_naming_the_flag(
    field, request_at_limit, request_over
):
    op = OPS[field]
    LIMITS.check_call(op, request_at_limit)
    exc = refusal(LIMITS.check_call, op, request_over)
    assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert exc.reason == Reason.LIMIT_EXCEEDED
    assert exc.metadata == {"limit": "max-keys-per-call", "max": "2", "value": "3"}
    assert exc.message == (
        f"{op.rpc} has 3 keys; the limit is 2 (raise it with the server flag --max-keys-per-call)"
    )


def test_single_key_calls_pass_the_key_limit():
    LIMITS.check_call(OPS["get"], pb.GetRequest(key=b"k"))


def test_a_pipeline_message_over_the_operation_limit_is_refused():
    LIMITS.check_message([pb.Operation()] * 3)
    exc = refusal(LIMITS.check_message, [pb.Operation()] * 4)
    assert exc.metadata == {"limit": "max-pipeline-ops", "max": "3", "value": "4"}
    assert "--max-pipeline-ops" in exc.message


def test_only_the_pipeline_operations_over_the_key_limit_are_refused():
    ops = [
        pb.Operation(id=1, mget=pb.MGetRequest(keys=[b"a"] * 3)),
        pb.Operation(id=2, get=pb.GetRequest(key=b"a")),
        pb.Operation(id=3, mdelete=pb.MDeleteRequest(keys=[b"a"] * 2)),
        pb.Operation(id=4),
    ]
    specs = [OPS.get(op.WhichOneof("op") or "") for op in ops]
    refused = LIMITS.refused_ops(ops, specs)
    assert refused is not None and list(refused) == [0]
    assert refused[0].id == 1
    assert refused[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert refused[0].error.reason == Reason.LIMIT_EXCEEDED
    assert LIMITS.refused_ops(ops[1:], specs[1:]) is None


def test_subscribe_is_refused_once_the_node_holds_the_most_streams():
    LIMITS.check_subscribers(0)
    exc = refusal(LIMITS.check_subscribers, 1)
    assert exc.message == (
        "this node has 1 open Subscribe streams; the limit is 1 "
        "(raise it with the server flag --tracking-max-subscribers)"
    )


def test_the_sdk_raises_a_typed_error_carrying_the_limit():
    metadata = {"limit": "max-keys-per-call", "max": "2", "value": "3"}
    err = errors.error_for(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "too many", Reason.LIMIT_EXCEEDED, metadata
    )
    assert isinstance(err, errors.LimitExceeded)
    assert isinstance(err, errors.ResourceExhausted)
    assert (err.limit, err.maximum, err.value) == ("max-keys-per-call", 2, 3)


def test_the_sdk_names_the_flag_when_grpc_refuses_a_message_as_too_large():
    grpc_words = "SERVER: Received message larger than max (1200036 vs. 1048576)"
    err = errors.error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc_words)
    assert isinstance(err, errors.MessageTooLarge)
    assert grpc_words in err.message
    assert "--max-message-bytes" in err.message
    oom = errors.error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", Reason.OOM)
    assert type(oom) is errors.OutOfMemory
