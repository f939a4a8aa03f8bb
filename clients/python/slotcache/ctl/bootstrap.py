"""``clusterctl bootstrap``: run the formation rule next to one pod's node, forever.

The I/O around :mod:`slotcache.ctl.formation`: every interval it asks each
expected pod name for its node's state, lets the rule pick this pod's
action, and carries it out as the clusterctl command an operator would
type (create, add-node, rebalance), so the log shows exactly what was done.
Names that do not resolve (pods not created yet, or scaled away) count as
not answering; nothing here holds addresses, so pods that come back with
new IPs are found by name.

With ``--role proxy`` it runs beside a proxy-tier pod instead, and only
has a formed cluster meet that pod's node (:func:`slotcache.ctl.formation.decide_proxy`).

The sidecar's TLS files and credentials reach the commands it runs
through their environment variables (:func:`passed_on`), so the token
never appears in the command lines it logs.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence

from slotcache._address import split_host_port
from slotcache.ctl import auth, transport
from slotcache.ctl.args import UsageError
from slotcache.ctl.formation import (
    Action,
    Create,
    Forget,
    Join,
    JoinPolicy,
    Layout,
    Meet,
    PrimaryView,
    Rebalance,
    Seen,
    Wait,
    decide,
    decide_proxy,
)
from slotcache.ctl.rpc import NodeHandle, OperationError, ask_all, fetch_states
from slotcache.v1 import admin_pb2

log = logging.getLogger("slotcache.bootstrap")

ORDINAL = "{ordinal}"


class Role(enum.Enum):
    """Which pods the sidecar runs beside."""

    # A StatefulSet pod: forms the cluster, adds pods, rebalances.
    CACHE = "cache"
    # A proxy-tier pod: has the formed cluster meet its node.
    PROXY = "proxy"


def pod_addresses(pattern: str, count: int) -> list[str]:
    """The client addresses of ordinals ``0..count-1`` (``{ordinal}`` in ``pattern``)."""
    if ORDINAL not in pattern:
        raise ValueError(f"the pod address pattern {pattern!r} has no {ORDINAL}")
    return [pattern.replace(ORDINAL, str(i)) for i in range(count)]


def seen(address: str, state: admin_pb2.ClusterStateReply) -> Seen:
    """What the rule needs of one node's answer."""
    member = state.known_nodes > 1 or state.slots_assigned > 0
    knows = frozenset(p.node.id for p in state.peers)
    return Seen(address, state.myself, member, state.cluster_ok, knows)


def live_primaries(state: admin_pb2.ClusterStateReply) -> list[PrimaryView]:
    """Primaries not marked failing in ``state``, with their slot and replica counts.

    A failed primary keeps its entry (and, once failed over, owns nothing):
    counting it would make the rule give it slots or replicas. Failing
    replicas still count (see :class:`PrimaryView`).
    """
    live = [p for p in state.peers if not {"fail", "pfail"} & set(p.flags)]
    replicas: dict[str, int] = {}
    for peer in state.peers:
        if peer.node.primary_id:
            replicas[peer.node.primary_id] = replicas.get(peer.node.primary_id, 0) + 1
    return [
        PrimaryView(
            p.node.id,
            sum(r.end - r.start + 1 for r in p.node.slots),
            replicas.get(p.node.id, 0),
        )
        for p in live
        if "primary" in p.flags
    ]


def failed_nodes(state: admin_pb2.ClusterStateReply) -> list[tuple[str, str]]:
    """``(id, client address)`` of the nodes ``state`` marks as failed."""
    return [(p.node.id, p.node.address) for p in state.peers if "fail" in p.flags]


def forget(action: Forget, timeout: float) -> int:
    """Ask every member to forget the node (what del-node does, minus stopping it).

    del-node cannot be used: it would also stop whatever answers at the
    forgotten node's address, which is now the pod's new identity.
    """

    def one(node: NodeHandle) -> None:
        node.call("Forget", admin_pb2.ForgetRequest(node_id=action.node_id))

    failures = [r for r in ask_all(action.members, timeout, one).values() if r is not None]
    for failure in failures:
        log.warning("forgetting %s: %s", action.node_id, failure)
    return 1 if failures else 0


def meet(action: Meet, states: dict[str, admin_pb2.ClusterStateReply], timeout: float) -> int:
    """Have the introducer meet the proxy's bus address, as the proxy itself reports it."""
    proxy = states[action.address]
    bus = next((p.bus_address for p in proxy.peers if "myself" in p.flags), "")
    if not bus:
        log.warning("%s reports no bus address; the next round retries", action.address)
        return 1
    try:
        with NodeHandle.open(action.introducer, timeout) as introducer:
            introducer.meet(bus)
    except OperationError as exc:
        log.warning("meeting %s: %s", action.address, exc)
        return 1
    return 0


def commands(action: Action, timeout: float) -> list[list[str]]:
    """The clusterctl command lines that carry ``action`` out (none for a wait)."""
    common = ["--timeout", f"{timeout:g}"]
    if isinstance(action, Create):
        return [["create", *common, "--replicas", str(action.replicas), *action.addresses]]
    if isinstance(action, Join):
        follow = ["--replica-of", action.replica_of] if action.replica_of else []
        return [["add-node", *common, action.address, action.introducer, *follow]]
    if isinstance(action, Rebalance):
        return [["rebalance", *common, action.address, "--use-empty-primaries", "--yes"]]
    return []


def _resolves(address: str) -> bool:
    host, port = split_host_port(address)
    try:
        socket.getaddrinfo(host.strip("[]"), port, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return True


def observe(
    addresses: Sequence[str], timeout: float
) -> tuple[list[Seen | None], dict[str, admin_pb2.ClusterStateReply]]:
    """Each address's node as the rule sees it (None: no name or no answer), and the states."""
    resolving = [a for a in addresses if _resolves(a)]
    answers = fetch_states(resolving, timeout)
    states = {a: s for a, s in answers.items() if not isinstance(s, OperationError)}
    return [seen(a, states[a]) if a in states else None for a in addresses], states


def step_proxy(me: str, addresses: Sequence[str], timeout: float) -> Action:
    """One round beside a proxy pod at ``me``: observe, decide, meet; returns the action."""
    pods, states = observe([me, *addresses], timeout)
    action = decide_proxy(pods[0], pods[1:])
    if isinstance(action, Meet):
        log.info("having %s meet this proxy", action.introducer)
        meet(action, states, timeout)
    return action


def step(
    me: str,
    addresses: Sequence[str],
    layout: Layout,
    timeout: float,
    run: Callable[[list[str]], int],
) -> Action:
    """Observe once, decide, and run the action's commands; returns the action."""
    pods, states = observe(addresses, timeout)
    mine = states.get(me)
    primaries = live_primaries(mine) if mine is not None else []
    failed = failed_nodes(mine) if mine is not None else []
    action = decide(me, pods, primaries, layout, failed)
    if isinstance(action, Forget):
        log.info("forgetting %s, replaced by a new identity at its address", action.node_id)
        forget(action, timeout)
    for argv in commands(action, timeout):
        log.info("running: clusterctl %s", " ".join(argv))
        status = run(argv)
        if status != 0:
            log.warning("clusterctl %s exited %d; the next round retries", argv[0], status)
    return action


def passed_on(args: argparse.Namespace) -> dict[str, str]:
    """The sidecar's TLS files and credentials, as the variables clusterctl's options default to.

    Each command the sidecar runs parses its options afresh, and its
    defaults come from these variables; a flag given to the sidecar would
    otherwise not reach them.
    """
    given = (
        (transport.ENV_CA, args.tls_ca),
        (transport.ENV_CERT, args.tls_cert),
        (transport.ENV_KEY, args.tls_key),
        (auth.USER_ENV, args.user),
        (auth.TOKEN_ENV, args.token),
        (auth.TOKEN_FILE_ENV, args.token_file),
    )
    return {name: value for name, value in given if value is not None}


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Form, then grow, the cluster of the pods named by --pods; runs until stopped."""
    from slotcache.ctl.main import main as clusterctl

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.update(passed_on(args))
    role = Role(args.role)
    if role is Role.CACHE and args.primaries is None:
        raise UsageError("--primaries is needed beside a cache pod")
    layout = Layout(args.primaries or 1, args.replicas, JoinPolicy(args.policy))
    try:
        addresses = pod_addresses(args.pods, args.max_pods)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
    if role is Role.CACHE and args.self_address not in addresses:
        raise OperationError(f"--self {args.self_address} is not one of the --pods names")
    last = ""
    while True:
        if role is Role.PROXY:
            action = step_proxy(args.self_address, addresses, args.timeout)
        else:
            action = step(args.self_address, addresses, layout, args.timeout, clusterctl)
        text = action.reason if isinstance(action, Wait) else type(action).__name__.lower()
        if text != last:
            log.info("%s", text)
            last = text
        if args.once:
            return 0
        time.sleep(args.interval)
