"""When a proxy stops counting as a member: it left, or it has been FAIL for too long.

Redis forgets a node only when an operator says so (CLUSTER FORGET), which
suits primaries and replicas: each holds data and a stable identity, and
its return is expected. Proxies are the opposite. They hold nothing, run
as a Deployment whose pods get fresh random ids on every start, and are
replaced rather than repaired, so a dead one never comes back under its
id. Kept forever, each would stay in every view as FAIL: ``check`` would
complain, gossip would carry it in every message (failing nodes always
ride along), and the node file would grow with every rollout.

So a stopping proxy asks to be forgotten (a LEAVE message), and a proxy
that died without asking is forgotten by every node once it has been FAIL
for :data:`FORGET_AFTER_TIMEOUTS` node timeouts. FAIL needs a majority of
slot-owning primaries to agree, so a proxy cut off from a minority is not
forgotten by the majority; and one that was forgotten while alive (a long
partition) introduces itself again, since a proxy probes with MEET rather
than PING (see :mod:`failure_detector`).
"""

from __future__ import annotations

from ..membership.model import FAIL, Peer
from ..membership.view import ReadView

# How long after FAIL a proxy is forgotten, in node timeouts. FAIL itself comes
# node_timeout (PFAIL) plus the time reports take after the proxy went silent,
# so a dead proxy disappears about five node timeouts after it died: long
# enough that a proxy paused or restarting in place is not dropped at once.
FORGET_AFTER_TIMEOUTS = 4


def forget_after_ms(view: ReadView) -> int:
    """How long a proxy may stay FAIL before every node forgets it."""
    return FORGET_AFTER_TIMEOUTS * view.config.node_timeout_ms


def departed(view: ReadView, now: int) -> list[bytes]:
    """The proxies that have been FAIL for longer than :func:`forget_after_ms`."""
    limit = forget_after_ms(view)
    return [
        p.id for p in view.peers() if p.is_proxy and p.flags & FAIL and now - p.fail_time > limit
    ]


def may_leave(view: ReadView, node: Peer) -> bool:
    """Whether a LEAVE from ``node`` is honoured: proxies only, never this node itself.

    A node that holds data (a primary, a replica) leaves through
    ``clusterctl del-node``, which first moves its slots away.
    """
    return node.is_proxy and node is not view.myself


__all__ = ["FORGET_AFTER_TIMEOUTS", "departed", "forget_after_ms", "may_leave"]
