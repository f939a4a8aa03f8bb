"""ClaimSlots moves a slot between live primaries: views converge, routing follows, keys drop."""

from __future__ import annotations

import time

import grpc
import pytest

from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import (
    REDIRECT,
    Nodes,
    comparable,
    expect_failure,
    key_in_slot,
    owners_by_slot,
    slots_of,
    wait_for,
)
from tests.support.processes import Cluster

pytestmark = pytest.mark.slow


def test_claimed_slot_moves_to_the_new_owner_everywhere(servers, keys, report_figure):
    cluster = Cluster.start(servers, 3, 1000)
    nodes = Nodes(cluster.addresses)
    try:
        old, new, third = nodes[0], nodes[1], nodes[2]
        before = old.topology()
        moved_slot, kept_slot = slots_of(before, old.address)[100], slots_of(before, old.address)[7]
        moving = [key_in_slot(keys(""), moved_slot, f"m{i}") for i in range(5)]
        staying = [key_in_slot(keys(""), kept_slot, f"s{i}") for i in range(3)]
        reply = third.cache.MSet(
            pb.MSetRequest(entries=[pb.SetRequest(key=k, value=b"v") for k in moving + staying]),
            timeout=5,
        )
        assert all(reply.applied)
        held_before = old.keys_held()
        assert held_before == len(moving) + len(staying)
        new_held_before = new.keys_held()
        epochs_before = max(n.config_epoch for n in before.nodes)

        started = time.monotonic()
        claim = new.admin.ClaimSlots(
            admin_pb2.ClaimSlotsRequest(ranges=[pb.SlotRange(start=moved_slot, end=moved_slot)]),
            timeout=5,
        )
        assert claim.config_epoch > epochs_before

        def converged() -> bool:
            views = [n.topology() for n in nodes]
            return len({comparable(v) for v in views}) == 1 and all(
                owners_by_slot(v)[moved_slot] == new.address and v.cluster_ok for v in views
            )

        wait_for(converged, 5, f"every node to see slot {moved_slot} owned by {new.address}")
        converged_ms = (time.monotonic() - started) * 1000
        after = old.topology()
        owners_before, owners_after = owners_by_slot(before), owners_by_slot(after)
        changed = [s for s in range(len(owners_after)) if owners_before[s] != owners_after[s]]
        assert changed == [moved_slot]  # nothing else moved
        configs = {n.address: n.config_epoch for n in after.nodes}
        assert configs[new.address] == claim.config_epoch
        assert after.epoch >= claim.config_epoch

        # The old owner dropped the slot's keys (keys are not moved), and kept the rest.
        wait_for(lambda: old.keys_held() == len(staying), 5, "the old owner to drop the slot")
        assert [old.get(k, REDIRECT) for k in staying] == [b"v"] * len(staying)
        assert new.keys_held() == new_held_before
        for node in nodes:
            reply = node.cache.MGet(pb.MGetRequest(keys=moving), timeout=5)
            assert not any(r.found for r in reply.results)

        # Requests for the slot now go to the new owner, from every node.
        failure = expect_failure(
            lambda: old.cache.Get(pb.GetRequest(key=moving[0]), timeout=5, metadata=REDIRECT)
        )
        assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
        assert failure.reason == "MOVED"
        assert failure.metadata["address"] == new.address
        assert failure.metadata["slot"] == str(moved_slot)
        assert old.set(moving[0], b"routed")
        assert third.set(moving[1], b"routed")
        assert new.set(moving[2], b"routed", REDIRECT)
        reply = new.cache.MGet(pb.MGetRequest(keys=moving[:3]), timeout=5, metadata=REDIRECT)
        assert [r.value for r in reply.results] == [b"routed"] * 3
        assert old.keys_held() == len(staying)
        assert new.keys_held() == new_held_before + 3
        report_figure(
            f"ClaimSlots: slot {moved_slot} moved to {new.address} with config epoch "
            f"{claim.config_epoch}; every view agreed after {converged_ms:.0f} ms"
        )
    finally:
        nodes.close()
