"""Gossip sampling: which nodes a message tells about, and which peers to probe.

Redis's sampling, with one measured departure (see ``docs/gossip.md``):
each node probes the stalest of a few random peers once per probe interval,
so some node probes any given peer about once per interval, whatever the
size of the cluster. Nodes learned from gossip get a MEET, a few per tick,
while the cluster is small.
"""

from __future__ import annotations

from ..membership.messages import MEET, PING
from ..membership.model import FAILING, Peer
from ..membership.view import View
from ..wire import bus_pb2

# Gossip-discovered nodes are introduced with a MEET, a few per tick, so that
# small clusters converge in a round or two. Every node meeting every other is
# N^2 messages, so above MEET_MAX_NODES known nodes discovery is left to gossip.
MEETS_PER_TICK = 10
MEET_MAX_NODES = 64

Probe = tuple[Peer, bus_pb2.MessageType.ValueType]


class Gossip:
    """The node's choice of gossip entries and of probe targets."""

    def __init__(self, view: View, now: int) -> None:
        self._view = view
        self._next_probe = now + view.config.probe_interval_ms
        self._meet_queue: list[bytes] = []

    def fill(self, msg: bus_pb2.BusMessage, receiver: Peer | None) -> None:
        """Add about a tenth of the nodes (at least a few), plus every node we suspect."""
        view = self._view
        ids = view.peer_ids()
        others = len(ids) - (1 if receiver is not None else 0)
        if others <= 0:
            return
        cfg = view.config
        rng = view.rng
        wanted = min(others, max(cfg.gossip_min, int(len(ids) * cfg.gossip_fraction)))
        # A dict, not a set: iterating a set of bytes follows the per-process
        # hash seed, which would make the gossip order, and with it every
        # simulation, differ from run to run.
        chosen: dict[bytes, None] = {}
        attempts = wanted * 3
        while len(chosen) < wanted and attempts:
            attempts -= 1
            node_id = ids[int(rng.random() * len(ids))]
            if receiver is None or node_id != receiver.id:
                chosen[node_id] = None
        chosen.update((p.id, None) for p in view.peers() if p.flags & FAILING)
        if receiver is not None:
            chosen.pop(receiver.id, None)
        gossip = msg.gossip
        slots = view.slots
        for node_id in chosen:
            node = view.nodes[node_id]
            entry = gossip.add(node=node.id, address=node.address.to_proto(), flags=node.flags)
            if node.is_primary and node.config_epoch:
                entry.config_epoch = node.config_epoch
                entry.slots.extend(slots.flat_ranges(node.id))

    def probes(self, now: int) -> list[Probe]:
        """The peers to ping on this tick: the random probe, if due, then MEETs for new nodes."""
        out: list[Probe] = []
        if now >= self._next_probe:
            self._next_probe = now + self._view.config.probe_interval_ms
            target = self._stalest_of_random(self._view.config.random_ping_candidates)
            if target is not None:
                out.append((target, PING))
        if self._meet_queue:
            batch = self._meet_queue[:MEETS_PER_TICK]
            del self._meet_queue[:MEETS_PER_TICK]
            nodes = self._view.nodes
            for node_id in batch:
                peer = nodes.get(node_id)
                if peer is not None and not peer.pong_received:
                    out.append((peer, MEET))
        return out

    def introduce(self, node_id: bytes) -> None:
        """Send a MEET to a node learned from gossip, while the cluster is small."""
        if len(self._view.nodes) <= MEET_MAX_NODES:
            self._meet_queue.append(node_id)

    def _stalest_of_random(self, candidates: int) -> Peer | None:
        view = self._view
        ids = view.peer_ids()
        rng = view.rng
        best: Peer | None = None
        for _ in range(min(candidates, len(ids))):
            peer = view.nodes[ids[int(rng.random() * len(ids))]]
            if peer.ping_sent:
                continue
            if best is None or peer.pong_received < best.pong_received:
                best = peer
        return best


__all__ = ["MEETS_PER_TICK", "MEET_MAX_NODES", "Gossip", "Probe"]
