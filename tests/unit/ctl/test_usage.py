"""Bad command lines: each fails with exit status 2 and a message naming what is wrong."""

from __future__ import annotations

import pytest

from tests.support.ctl import Ctl


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nodes", "localhost"], "'localhost' is not HOST:PORT"),
        (["nodes", "127.0.0.1:0"], "'127.0.0.1:0': port 0 is outside 1..65535"),
        (["info", "127.0.0.1:65536"], "'127.0.0.1:65536': port 65536 is outside 1..65535"),
        (["info", "127.0.0.1:99999"], "'127.0.0.1:99999': port 99999 is outside 1..65535"),
        (["check", ":7000"], "':7000' is not HOST:PORT"),
        (["check", "127.0.0.1:70x0"], "is not HOST:PORT"),
        (["create"], "the following arguments are required: HOST:PORT"),
        (["create", "127.0.0.1:7000", "bad"], "'bad' is not HOST:PORT"),
        (["create", "127.0.0.1:7000", "127.0.0.1:7000"], "127.0.0.1:7000 is listed more than once"),
        (["slots", "127.0.0.1:7000", "--slot", "16384"], "slot 16384 is outside 0..16383"),
        (["slots", "127.0.0.1:7000", "--slot", "-1"], "slot -1 is outside 0..16383"),
        (["slots", "127.0.0.1:7000", "--slot", "x"], "'x' is not an integer"),
        (["nodes", "127.0.0.1:7000", "--timeout", "0"], "must be a positive number of seconds"),
        (["up", "--primaries", "0"], "--primaries must be in 1..64, not 0"),
        (["up", "--replicas", "-1"], "--replicas must be in 0..63"),
        (["up", "--primaries", "40"], "--primaries 40 with --replicas 1 makes 80 nodes"),
        (
            ["create", "--replicas", "1", "127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"],
            "3 nodes cannot be split into primaries with 1 replica each; "
            "give a multiple of 2 nodes",
        ),
        (
            ["create", "--replicas", "2", "127.0.0.1:7000", "127.0.0.1:7001"],
            "give a multiple of 3 nodes",
        ),
        (["create", "--replicas", "-1", "127.0.0.1:7000"], "--replicas must be in 0..63"),
        (["add-node", "127.0.0.1:7000"], "the following arguments are required: EXISTING"),
        (["add-node", "127.0.0.1:7000", "127.0.0.1:7000"], "NEW and EXISTING are both"),
        (
            ["add-node", "127.0.0.1:7000", "127.0.0.1:7001", "--replica-of", "xyz"],
            "'xyz' is not a node id",
        ),
        (
            ["add-node", "127.0.0.1:7000", "127.0.0.1:7001", "--replica-of", "a" * 41],
            "is not a node id",
        ),
        (["failover"], "the following arguments are required: REPLICA"),
        (
            ["reshard", "127.0.0.1:7000", "--to", "ab", "--slots", "5"],
            "the following arguments are required: --from",
        ),
        (
            ["reshard", "127.0.0.1:7000", "--from", "all", "--to", "xyz", "--slots", "5"],
            "'xyz' is not a node id",
        ),
        (
            ["reshard", "127.0.0.1:7000", "--from", "ab,ab", "--to", "cd", "--slots", "5"],
            "names a node twice",
        ),
        (
            ["reshard", "127.0.0.1:7000", "--from", "all", "--to", "ab", "--slots", "0"],
            "--slots must be in 1..16384, not 0",
        ),
        (
            [
                "reshard",
                "127.0.0.1:7000",
                "--from",
                "all",
                "--to",
                "ab",
                "--slots",
                "9",
                "--parallel",
                "0",
            ],
            "--parallel must be in 1..16",
        ),
        (["rebalance", "127.0.0.1:7000", "--threshold", "-1"], "--threshold must be a number"),
        (["rebalance", "127.0.0.1:7000", "--threshold", "x"], "--threshold 'x' is not a number"),
        (["rebalance", "127.0.0.1:7000", "--by", "cpu"], "invalid choice: 'cpu'"),
        (["rebalance", "127.0.0.1:7000", "--weight", "ab"], "is not NODE_ID=WEIGHT"),
        (["rebalance", "127.0.0.1:7000", "--weight", "ab=-1"], "is not NODE_ID=WEIGHT"),
        (["rebalance", "127.0.0.1:7000", "--weight", "zz=1"], "'zz' is not a node id"),
        (["rebalance", "127.0.0.1:7000", "--batch-slots", "0"], "--batch-slots must be in"),
        (["del-node", "127.0.0.1:7000"], "the following arguments are required: NODE_ID"),
        (["del-node", "127.0.0.1:7000", "xyz"], "'xyz' is not a node id"),
        (["fix", "127.0.0.1:7000", "--stuck-after", "0"], "must be a positive number"),
        (
            ["failover", "127.0.0.1:7000", "--force", "--takeover"],
            "argument --takeover: not allowed with argument --force",
        ),
        (["failover", "127.0.0.1:7000", "--timeout", "0"], "must be a positive number"),
        (["up", "--base-port", "70000"], "port 70000 is outside 1..65535"),
        (["up", "--base-port", "60000"], "bus ports would reach 70005"),
        (["up", "--bus-port-offset", "1"], "collide with client ports; use at least 6"),
        (["up", "--node-timeout-ms", "10"], "--node-timeout-ms must be in 50..3600000"),
        (["down", "--stop-timeout", "-3"], "must be a positive number of seconds"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_usage_exits_2(ctl: Ctl, argv: list[str], message: str) -> None:
    result = ctl(*argv)
    assert result.code == 2, result
    assert message in result.err
    assert result.out == ""


def test_help_exits_0(ctl: Ctl) -> None:
    result = ctl("--help")
    assert result.code == 0
    for command in (
        "up",
        "down",
        "create",
        "add-node",
        "del-node",
        "failover",
        "reshard",
        "rebalance",
        "fix",
        "info",
        "nodes",
        "slots",
        "check",
    ):
        assert command in result.out
