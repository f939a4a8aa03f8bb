"""HOST:PORT checks shared by clusterctl and the SDK: each names what is wrong. Pure."""

from __future__ import annotations

import pytest

from slotcache._address import check_port, split_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7000", ("127.0.0.1", 7000)), ("[::1]:1", ("[::1]", 1)), ("h:65535", ("h", 65535))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:99999", "'127.0.0.1:99999': port 99999 is outside 1..65535"),
        ("127.0.0.1:0", "'127.0.0.1:0': port 0 is outside 1..65535"),
        ("localhost", "'localhost' is not HOST:PORT (for example 127.0.0.1:7000)"),
        (":7000", "':7000' is not HOST:PORT"),
        ("127.0.0.1:70x0", "'127.0.0.1:70x0' is not HOST:PORT"),
        ("a b:7000", "'a b:7000' is not HOST:PORT"),
    ],
)
def test_split_host_port_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_host_port(text)


def test_check_port_only_refuses_ports_out_of_range() -> None:
    for target in ("127.0.0.1:7000", "localhost", "unix:/tmp/socket", "dns:///cache:7000"):
        assert check_port(target) == target
    with pytest.raises(ValueError, match="port 70000 is outside"):
        check_port("cache:70000")
