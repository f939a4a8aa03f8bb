"""CLUSTER SLOTS, NODES and INFO from a membership view (pure)."""

from __future__ import annotations

from slotcache_server.resp.cluster_info import (
    ClusterView,
    NodeRow,
    info_reply,
    nodes_reply,
    slots_reply,
)


def _row(n: int, ranges: tuple[tuple[int, int], ...], primary: str = "", **kw: object) -> NodeRow:
    fields: dict[str, object] = {
        "id": f"{n:040x}",
        "host": "10.0.0.1",
        "resp_port": 6000 + n,
        "bus_port": 17000 + n,
        "primary": not primary,
        "primary_id": primary,
        "pfail": False,
        "fail": False,
        "config_epoch": n,
        "ranges": ranges,
        "myself": n == 1,
    }
    fields.update(kw)
    return NodeRow(**fields)  # type: ignore[arg-type]


VIEW = ClusterView(
    (
        _row(1, ((0, 8191),)),
        _row(2, ((8192, 16383),), resp_port=0),
        _row(3, (), primary=f"{1:040x}"),
    ),
    ok=True,
    current_epoch=4,
    enabled=True,
)


def test_slots_name_resp_ports_and_replicas() -> None:
    assert slots_reply(VIEW) == [
        [0, 8191, ["10.0.0.1", 6001, f"{1:040x}"], ["10.0.0.1", 6003, f"{3:040x}"]],
        # A primary without a RESP port is reached through the answering node.
        [8192, 16383, ["10.0.0.1", 6001, f"{2:040x}"]],
    ]


def test_nodes_lines_follow_redis_format() -> None:
    lines = nodes_reply(VIEW).splitlines()
    assert lines[0] == f"{1:040x} 10.0.0.1:6001@17001 myself,master - 0 0 1 connected 0-8191"
    assert lines[2] == f"{3:040x} 10.0.0.1:6003@17003 slave {1:040x} 0 0 3 connected"


def test_info_counts_slots_by_state() -> None:
    failing = ClusterView(
        (_row(1, ((0, 99),)), _row(2, ((100, 16383),), fail=True)), False, 9, True
    )
    text = info_reply(failing)
    assert "cluster_state:fail\r\n" in text
    assert "cluster_slots_fail:16284\r\n" in text and "cluster_slots_ok:100\r\n" in text
