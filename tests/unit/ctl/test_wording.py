"""How clusterctl words numbers: plurals, sizes, and rates only where they mean something."""

from __future__ import annotations

from slotcache.ctl.wording import counted, human_bytes, key_rate


def test_counted() -> None:
    assert counted(1, "key") == "1 key"
    assert counted(0, "key") == "0 keys"
    assert counted(4096, "slot") == "4,096 slots"
    assert counted(1, "primary", "primaries") == "1 primary"
    assert counted(3, "primary", "primaries") == "3 primaries"


def test_human_bytes() -> None:
    assert human_bytes(134) == "134 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"


def test_a_rate_only_for_moves_big_enough_to_measure_copying() -> None:
    # 3 keys in 0.5 s is the migrations' fixed cost, not a throughput.
    assert key_rate(3, 0.5) is None
    assert key_rate(999, 0.1) is None
    assert key_rate(51_640, 0.5) == "103,280 keys/s"
    assert key_rate(5000, 0.0) is None
