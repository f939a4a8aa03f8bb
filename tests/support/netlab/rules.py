"""The commands a network lab runs, as argument lists: pure, so they can be checked without root.

Faults live in two chains of each namespace's filter table, ``FAULT_IN``
(jumped to from INPUT) and ``FAULT_OUT`` (from OUTPUT), so healing is a
flush of those two chains and never touches the redirections a delay proxy
needs (in the nat table) or anything outside the namespaces a lab created.
"""

from __future__ import annotations

import ipaddress
import random
import re
import shlex
from collections.abc import Iterable, Sequence

FAULT_IN = "FAULT_IN"
FAULT_OUT = "FAULT_OUT"
# Every name a lab creates starts with this and the creating process's id,
# so a later run can tell the leftovers of a dead run from a live lab's.
PREFIX = "snf"
# Candidate /24 networks: 10.200.0.0 .. 10.249.255.0, well away from the
# usual private ranges of containers (10.88, 172.16-31) and home networks.
SUBNET_FIRST_OCTET2 = 200
SUBNET_OCTET2_COUNT = 50
# The bridge is .1 on the lab's network; hosts are .10 and up.
FIRST_HOST = 10
DEVICE = "eth0"
Argv = list[str]


def lab_tag(pid: int, serial: int) -> str:
    """The prefix of every name of one lab: ``snf<pid><letter>`` (Linux link names max 15)."""
    return f"{PREFIX}{pid}{chr(ord('a') + serial % 26)}"


_TAG = re.compile(rf"^{PREFIX}(\d+)[a-z]")


def owner_pid(name: str) -> int | None:
    """The process id of the lab that created a namespace or link called ``name``."""
    m = _TAG.match(name)
    return int(m.group(1)) if m else None


def bridge_name(tag: str) -> str:
    return f"{tag}b"


def veth_name(tag: str, index: int) -> str:
    return f"{tag}v{index}"


def namespace_name(tag: str, host: str) -> str:
    return f"{tag}-{host}"


def pick_subnet(used: Iterable[str], rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 among the candidates that overlaps none of ``used`` (networks in CIDR form)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    candidates = [
        ipaddress.IPv4Network(f"10.{SUBNET_FIRST_OCTET2 + a}.{b}.0/24")
        for a in range(SUBNET_OCTET2_COUNT)
        for b in range(256)
    ]
    rng.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken if t.version == 4):
            return net
    raise RuntimeError("no free /24 left for a network lab")


def gateway_address(net: ipaddress.IPv4Network) -> str:
    """The bridge's address: the root namespace's side of the lab."""
    return str(net.network_address + 1)


def host_address(net: ipaddress.IPv4Network, index: int) -> str:
    return str(net.network_address + FIRST_HOST + index)


# ---- building the lab --------------------------------------------------------------


def create_bridge(tag: str, net: ipaddress.IPv4Network) -> list[Argv]:
    bridge = bridge_name(tag)
    return [
        ["ip", "link", "add", bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{gateway_address(net)}/{net.prefixlen}", "dev", bridge],
        ["ip", "link", "set", bridge, "up"],
    ]


def create_host(tag: str, net: ipaddress.IPv4Network, index: int, ns: str) -> list[Argv]:
    """A namespace with loopback and one veth on the bridge, and the fault chains hooked in."""
    veth = veth_name(tag, index)
    inside = ["ip", "-n", ns]
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", DEVICE, "netns", ns],
        ["ip", "link", "set", veth, "master", bridge_name(tag), "up"],
        [*inside, "addr", "add", f"{host_address(net, index)}/{net.prefixlen}", "dev", DEVICE],
        [*inside, "link", "set", DEVICE, "up"],
        [*inside, "link", "set", "lo", "up"],
        *in_namespace(
            ns,
            [
                ["iptables", "-N", FAULT_IN],
                ["iptables", "-N", FAULT_OUT],
                ["iptables", "-A", "INPUT", "-j", FAULT_IN],
                ["iptables", "-A", "OUTPUT", "-j", FAULT_OUT],
                # Changes nothing (the policy accepts), but makes the namespace
                # track connections from their first packet: one picked up
                # mid-stream later may get its directions the wrong way round,
                # and drop_calls_from depends on them.
                [
                    "iptables",
                    "-A",
                    "INPUT",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "INVALID",
                    "-j",
                    "ACCEPT",
                ],
            ],
        ),
    ]


def in_namespace(ns: str, commands: Iterable[Argv]) -> list[Argv]:
    """Run each command inside namespace ``ns``."""
    return [["ip", "netns", "exec", ns, *c] for c in commands]


def batch(ns: str, commands: Sequence[Argv]) -> Argv:
    """One command that runs ``commands`` in turn inside ``ns``, stopping at the first failure.

    A fault should start at about the same moment on every host; one process
    per namespace instead of one per rule keeps that spread to milliseconds.
    """
    return ["ip", "netns", "exec", ns, "sh", "-c", " && ".join(shlex.join(c) for c in commands)]


# ---- faults (to run inside one host's namespace) -----------------------------------


def drop_from(peers: Sequence[str]) -> Argv:
    """Drop every packet arriving from ``peers`` (one command, one rule per peer)."""
    return ["iptables", "-A", FAULT_IN, "-s", ",".join(peers), "-j", "DROP"]


def drop_to(peers: Sequence[str]) -> Argv:
    """Drop every packet leaving for ``peers``."""
    return ["iptables", "-A", FAULT_OUT, "-d", ",".join(peers), "-j", "DROP"]


def drop_calls_from(peers: Sequence[str]) -> Argv:
    """Drop the packets of every connection ``peer`` opens to this host, and only those.

    Over TCP, dropping one direction's packets breaks connections both ways
    (no handshake completes). Dropping by connection instead models "the
    peer cannot send to us" for request/reply traffic: the peer's calls to
    this host go nowhere, while this host's calls to the peer (and their
    replies) still work.
    """
    return [
        "iptables",
        "-A",
        FAULT_IN,
        "-s",
        ",".join(peers),
        "-m",
        "conntrack",
        "--ctdir",
        "ORIGINAL",
        "-j",
        "DROP",
    ]


def drop_share(share: float, port: int, peers: Sequence[str] = ()) -> list[Argv]:
    """Drop a random ``share`` of arriving TCP packets to or from ``port`` (from ``peers``)."""
    if not 0 <= share <= 1:
        raise ValueError(f"share {share} is outside 0..1")
    sources = [["-s", p] for p in peers] or [[]]
    return [
        [
            "iptables",
            "-A",
            FAULT_IN,
            *src,
            "-p",
            "tcp",
            direction,
            str(port),
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            f"{share:.6f}",
            "-j",
            "DROP",
        ]
        for src in sources
        for direction in ("--dport", "--sport")
    ]


def heal() -> list[Argv]:
    """Lift every packet fault of a namespace (the delay redirections stay)."""
    return [["iptables", "-F", FAULT_IN], ["iptables", "-F", FAULT_OUT]]


def limit_rate(rate: str, to: str | None = None, burst: str = "16kb") -> list[Argv]:
    """Limit what this host sends (to ``to`` only, if given) to ``rate`` with tc's tbf.

    For one destination an htb root (this kernel has no prio qdisc) sends
    that traffic to a class whose qdisc is the tbf; everything else matches
    no class and leaves at full speed.
    """
    tbf = ["tbf", "rate", rate, "burst", burst, "latency", "2s"]
    if to is None:
        return [["tc", "qdisc", "replace", "dev", DEVICE, "root", *tbf]]
    tc = ["tc"]
    return [
        [*tc, "qdisc", "replace", "dev", DEVICE, "root", "handle", "1:", "htb", "default", "99"],
        [*tc, "class", "add", "dev", DEVICE, "parent", "1:", "classid", "1:1",
         "htb", "rate", "10gbit"],
        [*tc, "qdisc", "add", "dev", DEVICE, "parent", "1:1", "handle", "10:", *tbf],
        [
            *tc, "filter", "add", "dev", DEVICE, "parent", "1:", "protocol", "ip",
            "u32", "match", "ip", "dst", f"{to}/32", "flowid", "1:1",
        ],
    ]  # fmt: skip


def unlimit() -> Argv:
    """Back to the default queueing discipline (fails harmlessly when none was set)."""
    return ["tc", "qdisc", "del", "dev", DEVICE, "root"]


def redirect(dest: str, port: int, proxy: str, proxy_port: int) -> Argv:
    """Send this host's new connections to ``dest:port`` through ``proxy:proxy_port`` instead."""
    return [
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-d",
        dest,
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-j",
        "DNAT",
        "--to-destination",
        f"{proxy}:{proxy_port}",
    ]


def reset_connections(dest: str, port: int) -> Argv:
    """Reset this host's open connections to ``dest:port``, so they reconnect (through a proxy)."""
    return ["ss", "-K", "dst", dest, "dport", "=", str(port)]
