"""The rule that forms and grows a cluster of StatefulSet pods without a human step.

Every pod runs the same rule on what it observes (which of the expected
names answer, and how); it returns at most one action for that pod to take.
Exactly one pod acts at a time, so two pods never form two clusters or add
the same node twice:

- While no answering node belongs to a cluster, only ordinal 0 acts, and
  only once all ``primaries x (replicas + 1)`` expected pods answer: it
  creates the cluster.
- Once a cluster exists, the lowest-ordinal answering member acts. It adds
  each fresh node (a new ordinal, or a pod whose volume was lost) as a
  replica of a primary short of replicas, or, when none is, as an empty
  primary (after having every member forget a failed node whose name now
  answers with another id: the pod's previous identity); then, once the
  cluster is ok, it gives empty primaries their share of the slots.

The rule is idempotent: a member never forms or joins again, so a
restarted pod 0 (its node file on its volume) finds itself a member and
does nothing.

Nodes are matched to pods by host name, never by port: under
``--tls-cluster`` a node announces its TLS port while the sidecar may
address the pod on another one, and the name is what stays with the pod.

A proxy pod (a slotless node of the proxy tier, :func:`decide_proxy`) acts
only for itself: once a formed cluster answers, it has the lowest-ordinal
healthy member meet its node, and does nothing more while that member
knows it. Proxies need no coordination, because each one only ever adds
itself.

The rules are pure; :mod:`slotcache.ctl.bootstrap` observes and acts.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


def host_of(address: str) -> str:
    """The host part of ``HOST:PORT``."""
    return address.rpartition(":")[0] or address


class JoinPolicy(enum.Enum):
    """What a fresh node becomes when it joins a formed cluster."""

    # A replica of a primary with fewer replicas than configured, else an empty primary.
    REPLICAS_FIRST = "replicas-first"
    # Always an empty primary (the rebalance then gives it slots).
    PRIMARIES = "primaries"


@dataclass(frozen=True)
class Seen:
    """One expected pod's node as observed: it answered, and with this state."""

    address: str
    node_id: str
    # Knows another node or owns slots: it belongs to a cluster already.
    member: bool
    cluster_ok: bool
    # The ids of every node this one knows (itself included).
    knows: frozenset[str] = field(default_factory=frozenset)

    @property
    def host(self) -> str:
        """The pod's name: what identifies it whichever of its ports was dialled."""
        return host_of(self.address)


@dataclass(frozen=True)
class PrimaryView:
    """A live primary in the acting member's view, with every replica it has there.

    Replicas marked failing count: a pod restarting takes longer than the
    failure timeout, and a fresh pod must not be made a replica in its place.
    """

    node_id: str
    slots: int
    replicas: int


@dataclass(frozen=True)
class Layout:
    """The cluster the configuration asks for at formation time."""

    primaries: int
    replicas: int
    policy: JoinPolicy = JoinPolicy.REPLICAS_FIRST

    def __post_init__(self) -> None:
        if self.primaries < 1:
            raise ValueError("a cluster needs at least one primary")
        if self.replicas < 0:
            raise ValueError("replicas per primary must be >= 0")

    @property
    def size(self) -> int:
        """Pods needed to form the cluster."""
        return self.primaries * (self.replicas + 1)


@dataclass(frozen=True)
class Wait:
    """Nothing to do yet; ``reason`` says what is awaited."""

    reason: str


@dataclass(frozen=True)
class Create:
    """Form the cluster out of these fresh nodes (the first ``primaries`` are primaries)."""

    addresses: tuple[str, ...]
    replicas: int


@dataclass(frozen=True)
class Join:
    """Add the fresh node ``address`` through the member ``introducer``."""

    address: str
    introducer: str
    # The primary to replicate; None joins as an empty primary.
    replica_of: str | None


@dataclass(frozen=True)
class Forget:
    """Have every member at ``members`` forget ``node_id``, a pod's replaced identity."""

    node_id: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Rebalance:
    """Give the empty primaries their share of slots, through ``address``."""

    address: str


@dataclass(frozen=True)
class Meet:
    """Have the member ``introducer`` meet the proxy node at ``address``."""

    address: str
    introducer: str


Action = Wait | Create | Join | Forget | Rebalance | Meet


def decide(
    me: str,
    pods: Sequence[Seen | None],
    primaries: Sequence[PrimaryView],
    layout: Layout,
    failed: Sequence[tuple[str, str]] = (),
) -> Action:
    """The action for the pod at ``me``; ``pods`` by ordinal, None where nothing answered.

    ``primaries`` (live primaries only) and ``failed`` (``(id, address)`` of
    nodes marked failing) are the view of ``me``'s node; they are read only
    when ``me`` is the acting member.
    """
    members = [p for p in pods if p is not None and p.member]
    if not members:
        return _form(me, pods, layout)
    actor = members[0]
    if actor.address != me:
        return Wait(f"{actor.address} manages the membership")
    # A pod's replaced identity goes first, so that a primary it replicated counts
    # as short of a replica when the pod's new identity joins.
    answering = {p.host: p.node_id for p in pods if p is not None}
    for node_id, address in failed:
        if answering.get(host_of(address), node_id) != node_id:
            return Forget(node_id, tuple(p.address for p in members))
    fresh = [p for p in pods if p is not None and not p.member]
    if fresh:
        return Join(fresh[0].address, me, _primary_to_follow(primaries, layout))
    if not actor.cluster_ok:
        return Wait("the cluster is not ok")
    if any(p.slots == 0 for p in primaries):
        return Rebalance(me)
    return Wait("the cluster is formed")


def decide_proxy(me: Seen | None, pods: Sequence[Seen | None]) -> Wait | Meet:
    """The action for a proxy pod whose node answered as ``me``; ``pods`` are the cache pods.

    The introducer is the lowest-ordinal member that reports the cluster ok:
    a proxy met by a node that is itself cut off would learn nothing. A
    proxy the cluster forgot (it was failed, or its pod restarted under a
    new id) is met again, since the member no longer knows its id.
    """
    if me is None:
        return Wait("the proxy's node does not answer")
    healthy = [p for p in pods if p is not None and p.member and p.cluster_ok]
    if not healthy:
        return Wait("no formed cluster answers yet")
    introducer = healthy[0]
    if me.node_id in introducer.knows:
        return Wait("the proxy is in the cluster")
    return Meet(me.address, introducer.address)


def _form(me: str, pods: Sequence[Seen | None], layout: Layout) -> Action:
    first = pods[0] if pods else None
    if first is None or first.address != me:
        return Wait("ordinal 0 forms the cluster")
    expected = list(pods[: layout.size])
    answering = [p for p in expected if p is not None]
    if len(answering) < layout.size:
        return Wait(f"{len(answering)} of {layout.size} expected nodes answer")
    return Create(tuple(p.address for p in answering), layout.replicas)


def _primary_to_follow(primaries: Sequence[PrimaryView], layout: Layout) -> str | None:
    """The primary with the fewest replicas among those short of them (by id on ties)."""
    if layout.policy is JoinPolicy.PRIMARIES:
        return None
    short = [p for p in primaries if p.replicas < layout.replicas]
    if not short:
        return None
    return min(short, key=lambda p: (p.replicas, p.node_id)).node_id
