"""The hashing study: a small run must show what is known to hold.

Runs ``scripts/hashinglib`` in-process: a smoke study (20k keys, N = 3, 10,
30) checked against the schemes' known properties, and the vectorised
placements checked against the scalar lookups a client would run.
tests/heavy/test_hashing_doc.py checks the doc against the published seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from hashinglib import docblocks, report  # noqa: E402
from hashinglib.bounded import BoundedLoads, walk  # noqa: E402
from hashinglib.jump import Jump  # noqa: E402
from hashinglib.maglev import Maglev  # noqa: E402
from hashinglib.measures import fail_one  # noqa: E402
from hashinglib.placement import Servers  # noqa: E402
from hashinglib.rendezvous import Rendezvous  # noqa: E402
from hashinglib.ring import Ring  # noqa: E402
from hashinglib.schemes import placement_schemes  # noqa: E402
from hashinglib.slots import Slots  # noqa: E402
from hashinglib.study import SMOKE, Results, run_study  # noqa: E402
from hashinglib.workload import Workload, make_workload  # noqa: E402

DOC = ROOT / "docs" / "hashing.md"
SIZES = SMOKE.servers


@pytest.fixture(scope="module")
def smoke() -> Results:
    return run_study(SMOKE)


@pytest.fixture(scope="module")
def workload() -> Workload:
    return make_workload(SMOKE.keys, SMOKE.seed, SMOKE.zipf)


def test_jump_hash_moves_about_one_nth_when_a_server_joins(smoke: Results) -> None:
    for n in SIZES:
        added = smoke.placement["jump"][n].added
        assert added is not None
        assert added * (n + 1) == pytest.approx(1.0, abs=0.15), n


def test_jump_hash_moves_up_to_twice_the_ideal_when_a_server_other_than_the_last_leaves(
    smoke: Results,
) -> None:
    # The last server takes the leaver's bucket number, so most of its own keys move
    # too: 2 - 1/(N-1) times the ideal 1/N (once if the leaver is the last).
    for n in SIZES:
        removed = smoke.placement["jump"][n].removed
        assert removed is not None
        assert 1.3 < removed * n < 2.1, n


def test_a_ring_of_one_vnode_is_far_more_imbalanced_than_one_of_a_thousand(
    smoke: Results,
) -> None:
    for n in SIZES:
        one = smoke.placement["ring-1"][n].keys
        thousand = smoke.placement["ring-1000"][n].keys
        assert thousand.max_mean < 1.2, n
        assert one.max_mean - 1 > 4 * (thousand.max_mean - 1), n
        assert one.cv > 5 * thousand.cv, n


@pytest.mark.parametrize("name", ["rendezvous", "slots", "slots-by-keys", "ring-1000"])
def test_scheme_moves_the_ideal_share_on_a_join_and_a_leave(smoke: Results, name: str) -> None:
    # Slots move through clusterctl's rebalance planner: add-node + rebalance, weight 0.
    for n in SIZES:
        p = smoke.placement[name][n]
        assert p.added is not None and p.removed is not None
        assert p.added * (n + 1) == pytest.approx(1.0, abs=0.12), n
        assert p.removed * n == pytest.approx(1.0, abs=0.12), n


def test_bounded_loads_never_exceed_their_cap(smoke: Results) -> None:
    for n in SIZES:
        cap = np.ceil(1.25 * SMOKE.keys / n) / (SMOKE.keys / n)
        assert smoke.placement["bounded-1.25"][n].keys.max_mean <= cap + 1e-9, n


def test_maglev_tables_give_every_server_the_same_entries_give_or_take_one(
    workload: Workload,
) -> None:
    for n in (*SIZES, 100):
        table = Maglev().place(workload, Servers.uniform(n)).table
        counts = np.bincount(table, minlength=n)
        assert counts.max() - counts.min() <= 1, n


def test_a_dead_servers_whole_arc_falls_to_its_successor_on_a_one_vnode_ring(
    smoke: Results,
) -> None:
    for n in SIZES:
        assert smoke.failure["ring-1"][n].top_share == pytest.approx(1.0)


def test_rendezvous_spreads_a_dead_servers_keys_over_the_survivors(smoke: Results) -> None:
    for n in SIZES:
        assert smoke.failure["rendezvous"][n].top_share < 1.6 / (n - 1), n


def test_with_a_replica_per_primary_only_the_victim_fails(smoke: Results) -> None:
    for n in SIZES:
        f = smoke.failure["slots+replica"][n]
        assert f.fallen_max == 1, n
        assert f.top_share == pytest.approx(1.0), n
        assert f.worst_after < 1.25, n


def test_without_spare_processes_three_servers_at_80_percent_all_fall(smoke: Results) -> None:
    for name, row in smoke.failure.items():
        if name != "slots+replica":
            assert row[3].fallen_mean == 3, name


def test_weighted_schemes_come_close_to_the_weights_and_the_even_slot_table_does_not(
    smoke: Results,
) -> None:
    shares = smoke.weighted[3]
    for name in ("jump", "rendezvous", "maglev", "ring-1000", "slots-by-slots", "slots-by-keys"):
        assert shares[name].max_error < 0.1, name
    assert shares["slots"].max_error > 1.0


def test_vectorised_placements_agree_with_the_scalar_lookup(workload: Workload) -> None:
    sample = range(0, workload.size, 97)
    weighted = Servers.weighted([1, 2, 4, 1, 2])
    for servers in (Servers.uniform(10), weighted):
        for scheme in (Ring(1), Ring(100), Jump(), Rendezvous(), Maglev(), Slots()):
            placement = scheme.place(workload, servers)
            for i in sample:
                assert placement.lookup(workload.keys[i]) == placement.owners[i], scheme.name
    what_if = Slots(slot_count=65536).place(workload, Servers.uniform(10))
    assert all(what_if.lookup(workload.keys[i]) == what_if.owners[i] for i in sample)


def test_bounded_placement_equals_placing_keys_one_by_one(workload: Workload) -> None:
    for n in (3, 30):
        placement = BoundedLoads().place(workload, Servers.uniform(n))
        expected = walk(
            placement.start.tolist(),
            placement.ring.owner_list,
            placement.cap.tolist(),
            [0] * len(placement.cap),
        )
        assert placement.owners.tolist() == expected


def test_the_65536_slot_what_if_is_key_slot_unmasked(workload: Workload) -> None:
    assert (workload.crc16 & 16383).tolist() == workload.slots.tolist()
    assert workload.crc16.max() >= 1 << 15


def test_failover_of_every_scheme_conserves_the_load(workload: Workload) -> None:
    load = workload.load("keys")
    for scheme in placement_schemes():
        placement = scheme.place(workload, Servers.uniform(10))
        for mode in placement.failover_modes:
            failover = placement.failover(load, mode)
            fail_one(failover, victim=4, capacity=float("inf"), mean=workload.size / 10)
            assert failover.load().sum() == pytest.approx(workload.size), (scheme.name, mode)


def test_the_check_finds_a_changed_number_and_ignores_timings(smoke: Results) -> None:
    blocks = report.render(smoke)
    page = "".join(
        f"<!-- {docblocks.PREFIX}{name} -->\n<!-- /{docblocks.PREFIX}{name} -->\n"
        for name in blocks
    )
    page = docblocks.replace(page, blocks)
    assert docblocks.differences(page, blocks) == []
    moved = blocks["moved"].replace("\u00d7", "x", 1)
    changed = {**blocks, "timing": "other times", "moved": moved}
    diff = docblocks.differences(page, changed, skip=report.MACHINE_BLOCKS)
    assert any("moved" in line for line in diff)
    assert not any("timing" in line for line in diff)


def test_the_doc_has_every_block_filled_and_every_figure(smoke: Results) -> None:
    page = DOC.read_text()
    for name in report.BLOCKS:
        assert docblocks.extract(page, name).strip(), name
    for figure in ("imbalance", "moved", "cascade", "weighted"):
        assert f"img/hashing-{figure}.png" in page
        assert (DOC.parent / "img" / f"hashing-{figure}.png").stat().st_size > 10_000
