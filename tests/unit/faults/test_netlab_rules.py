"""The commands of the network lab: names, addresses and iptables/tc rules."""

from __future__ import annotations

import ipaddress
import random

import pytest

from tests.support.netlab import rules


def test_names_fit_linux_links_and_name_their_creator():
    tag = rules.lab_tag(4194304, 27)
    assert len(rules.veth_name(tag, 99)) <= 15 and len(rules.bridge_name(tag)) <= 15
    assert rules.owner_pid(rules.namespace_name(tag, "n0")) == 4194304
    assert rules.owner_pid(rules.bridge_name(tag)) == 4194304
    assert rules.owner_pid("eth0") is None and rules.owner_pid("snfx") is None


def test_a_subnet_avoids_every_network_in_use():
    used = [f"10.{a}.0.0/16" for a in range(200, 249)] + ["10.249.0.0/17"]
    net = rules.pick_subnet(used, random.Random(1))
    assert net.subnet_of(ipaddress.IPv4Network("10.249.128.0/17"))
    with pytest.raises(RuntimeError):
        rules.pick_subnet(["10.0.0.0/8"], random.Random(1))


def test_addresses_on_the_lab_network():
    net = ipaddress.IPv4Network("10.200.3.0/24")
    assert rules.gateway_address(net) == "10.200.3.1"
    assert rules.host_address(net, 2) == "10.200.3.12"


def test_a_cut_drops_from_and_to_every_peer_in_the_fault_chains():
    assert rules.drop_from(["10.0.0.1", "10.0.0.2"]) == [
        "iptables", "-A", rules.FAULT_IN, "-s", "10.0.0.1,10.0.0.2", "-j", "DROP",
    ]  # fmt: skip
    assert rules.drop_to(["10.0.0.1"])[2:5] == [rules.FAULT_OUT, "-d", "10.0.0.1"]


def test_blocking_calls_drops_only_connections_the_peer_opened():
    rule = rules.drop_calls_from(["10.0.0.1"])
    assert rule[rule.index("--ctdir") + 1] == "ORIGINAL"


def test_packet_loss_covers_both_directions_of_a_port():
    rules_ = rules.drop_share(0.2, 17000)
    assert [r[r.index("tcp") + 1] for r in rules_] == ["--dport", "--sport"]
    assert all(r[r.index("--probability") + 1] == "0.200000" for r in rules_)
    with pytest.raises(ValueError):
        rules.drop_share(1.5, 17000)


def test_heal_flushes_only_the_fault_chains():
    assert rules.heal() == [
        ["iptables", "-F", rules.FAULT_IN],
        ["iptables", "-F", rules.FAULT_OUT],
    ]


def test_a_rate_limit_to_one_peer_filters_it_into_a_tbf_class():
    whole = rules.limit_rate("1mbit")
    assert len(whole) == 1 and "tbf" in whole[0]
    one = rules.limit_rate("1mbit", to="10.0.0.5")
    assert "htb" in one[0] and "tbf" in one[2] and "10.0.0.5/32" in one[3]


def test_a_batch_runs_every_command_in_one_namespace_process():
    argv = rules.batch("ns1", [["iptables", "-F", "A"], ["tc", "qdisc", "del", "dev", "eth0"]])
    assert argv[:6] == ["ip", "netns", "exec", "ns1", "sh", "-c"]
    assert argv[6] == "iptables -F A && tc qdisc del dev eth0"


def test_a_redirect_sends_new_connections_through_the_proxy():
    rule = rules.redirect("10.0.0.5", 17000, "10.0.0.1", 40000)
    assert rule[:4] == ["iptables", "-t", "nat", "-A"]
    assert rule[-1] == "10.0.0.1:40000"


def test_resetting_connections_names_the_destination_and_port():
    argv = rules.reset_connections("10.0.0.5", 17000)
    assert argv == ["ss", "-K", "dst", "10.0.0.5", "dport", "=", "17000"]
