"""The routing decision and the Pipeline planner, against models (no network).

``decide`` is checked against the rules a reader of the Redis Cluster spec
would write down, for random ownership, options and keys. ``plan_batch`` is
checked by running its segments under random interleavings of everything
that may run concurrently and comparing every read and the final state
with running the message one operation at a time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from slotcache.contract import MAX_HOPS, OPS, Reason
from slotcache_server.routing import (
    LOCAL,
    LOCAL_REPLICA,
    CallOptions,
    Forward,
    Local,
    Owner,
    Planned,
    Refused,
    Spread,
    decide,
    plan_batch,
    serves_everything,
)

ME = "me:1"
NODES = [ME, "b:2", "c:3", None]  # None: nobody serves the slot
SLOTS = 8


@dataclass
class FakeView:
    """Ownership of a few slots, and the node's state, chosen by the test."""

    owners: list[str | None]
    ok: bool = True
    allow_reads_when_down: bool = False
    replica_of: str | None = None  # the owner this node replicates
    synced: bool = True
    held: set[int] = field(default_factory=set)

    @property
    def owns_every_slot(self) -> bool:
        return all(owner == ME for owner in self.owners)

    def is_local(self, slot: int) -> bool:
        return self.owners[slot] == ME

    def owner(self, slot: int) -> Owner | None:
        address = self.owners[slot]
        return None if address is None else Owner(address, address, 7)

    def replica_serves(self, slots: Sequence[int]) -> bool:
        return (
            self.replica_of is not None
            and self.synced
            and all(self.owners[s] == self.replica_of for s in slots)
        )

    def handing_off(self, slot: int) -> bool:
        return slot in self.held


views = st.builds(
    FakeView,
    owners=st.one_of(
        st.lists(st.sampled_from(NODES), min_size=SLOTS, max_size=SLOTS),
        st.just([ME] * SLOTS),
    ),
    ok=st.booleans(),
    allow_reads_when_down=st.booleans(),
    replica_of=st.sampled_from([None, "b:2"]),
    synced=st.booleans(),
    held=st.sets(st.integers(0, SLOTS - 1), max_size=2),
)
options = st.builds(
    CallOptions,
    redirect=st.booleans(),
    hops=st.integers(0, MAX_HOPS + 1),
    replica_read=st.booleans(),
)
slot_lists = st.lists(st.integers(0, SLOTS - 1), min_size=1, max_size=5)


def reason_and_code(decision: Refused) -> tuple[str, grpc.StatusCode]:
    return decision.error.reason, decision.error.code


@settings(max_examples=600, deadline=None)
@given(op=st.sampled_from(sorted(OPS)), slots=slot_lists, options=options, view=views)
def test_decide_follows_the_rules(op, slots, options, view):
    spec = OPS[op]
    if not spec.multi:
        slots = slots[:1]
    decision = decide(spec, slots, options, view)
    local = [view.is_local(s) for s in slots]
    # The shortcut that skips hashing keys must agree with the decision.
    if serves_everything(view, writes_held=bool(view.held)):
        assert decision is LOCAL
    # 1. A write to a slot in handoff is refused first, retryably.
    if spec.writes and any(s in view.held for s in slots):
        assert type(decision) is Refused
        assert reason_and_code(decision) == (Reason.CLUSTER_DOWN, grpc.StatusCode.UNAVAILABLE)
        assert "handed over" in decision.error.message
        return
    # 2. Served here when every slot is ours and the cluster is ok (reads also when
    #    down if allowed), or as a replica read of the one owner we replicate.
    if all(local) and (view.ok or (not spec.writes and view.allow_reads_when_down)):
        assert decision is LOCAL
        return
    if not spec.writes and options.replica_read and view.replica_serves(slots):
        assert decision is LOCAL_REPLICA
        return
    # 3. Otherwise a down cluster, or any slot nobody serves, is CLUSTERDOWN.
    if not view.ok or any(view.owners[s] is None for s in slots):
        assert type(decision) is Refused
        assert reason_and_code(decision) == (Reason.CLUSTER_DOWN, grpc.StatusCode.UNAVAILABLE)
        return
    # 4. A caller that follows redirects gets MOVED for its first slot served elsewhere.
    if options.redirect:
        first = next(s for s, mine in zip(slots, local, strict=True) if not mine)
        assert type(decision) is Refused
        assert reason_and_code(decision) == (Reason.MOVED, grpc.StatusCode.FAILED_PRECONDITION)
        assert decision.error.metadata["slot"] == str(first)
        assert decision.error.metadata["address"] == view.owners[first]
        return
    # 5. A call forwarded too often is refused rather than sent round again.
    if options.hops >= MAX_HOPS:
        assert type(decision) is Refused and "forwarded" in decision.error.message
        return
    # 6. Forwarded whole to one owner, or split by owner keeping request order.
    addresses = [None if mine else view.owners[s] for s, mine in zip(slots, local, strict=True)]
    if len(set(addresses)) == 1:
        assert decision == Forward(addresses[0])
        return
    assert type(decision) is Spread
    assert sorted(i for group in decision.groups.values() for i in group) == list(range(len(slots)))
    for address, indices in decision.groups.items():
        assert indices == sorted(indices)
        assert all(addresses[i] == address for i in indices)


# ---- the planner ----------------------------------------------------------------------

KEYS = [b"k0", b"k1", b"k2", b"k3"]


@dataclass(frozen=True)
class ModelOp:
    """A message's operation in the model: reads return values, writes store the op's index."""

    keys: tuple[bytes, ...]
    writes: bool

    @property
    def multi(self) -> bool:
        return len(self.keys) > 1


model_ops = st.builds(
    ModelOp,
    keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True).map(tuple),
    writes=st.booleans(),
)


def route(op: ModelOp, owner_of: dict[bytes, str | None]) -> Planned:
    """The decision ``decide`` would make for ``op`` when every key is served."""
    groups: dict[str | None, list[int]] = {}
    for i, key in enumerate(op.keys):
        groups.setdefault(owner_of[key], []).append(i)
    if len(groups) > 1:
        decision: Local | Forward | Spread = Spread(groups)
    else:
        (address,) = groups
        decision = LOCAL if address is None else Forward(address)
    return Planned(list(op.keys), op.writes, op.multi, decision)


def apply(
    store: dict[bytes, int], index: int, op: ModelOp, keys: Sequence[bytes]
) -> list[tuple[bytes, int | None]]:
    if op.writes:
        for key in keys:
            store[key] = index
        return []
    return [(key, store.get(key)) for key in keys]


@settings(max_examples=400, deadline=None)
@given(
    ops=st.lists(model_ops, min_size=1, max_size=8),
    owners=st.lists(st.sampled_from([None, "b", "c"]), min_size=len(KEYS), max_size=len(KEYS)),
    seed=st.integers(0, 2**32 - 1),
)
def test_plan_batch_is_equivalent_to_running_in_order(ops, owners, seed):
    owner_of = dict(zip(KEYS, owners, strict=True))
    planned = [route(op, owner_of) for op in ops]
    expected_store: dict[bytes, int] = {}
    expected = [apply(expected_store, i, op, op.keys) for i, op in enumerate(ops)]

    rng = random.Random(seed)
    store: dict[bytes, int] = {}
    seen: list[list[tuple[bytes, int | None]]] = [[] for _ in ops]
    segments = plan_batch(planned)
    assert sorted(
        i
        for s in segments
        for i in (*s.local, *s.spread, *(i for g in s.forward.values() for i in g))
    ) == list(range(len(ops)))
    for segment in segments:
        for i in segment.local:
            seen[i] += apply(store, i, ops[i], ops[i].keys)
        # Everything else of the segment runs concurrently: each owner's sub-batch
        # in its own order, and each part of a spread operation on its own.
        streams: list[list[tuple[int, tuple[bytes, ...]]]] = [
            [(i, ops[i].keys) for i in indices] for indices in segment.forward.values()
        ]
        for i in segment.spread:
            decision = planned[i].decision
            assert type(decision) is Spread
            for indices in decision.groups.values():
                streams.append([(i, tuple(ops[i].keys[k] for k in indices))])
        while streams:
            stream = rng.choice(streams)
            i, keys = stream.pop(0)
            seen[i] += apply(store, i, ops[i], keys)
            if not stream:
                streams.remove(stream)
    assert store == expected_store
    assert [sorted(s, key=lambda kv: kv[0]) for s in seen] == [
        sorted(e, key=lambda kv: kv[0]) for e in expected
    ]
