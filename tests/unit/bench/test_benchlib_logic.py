"""The benchmark's pure helpers: the arithmetic and parsing every reported figure relies on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from benchlib import (
    client_workloads,
    config,
    dataset,
    grpc_frame,
    h2load_output,
    procfs,
    routing_workload,
    schedule,
    stats,
    telemetry_workload,
)
from benchlib.loops import LoopResult
from benchlib.peers import Node, Target
from benchlib.results import Metric, MetricDef, WorkloadResult, compare, report_json
from benchlib.table import build_table, footer_notes
from rich.console import Console

# Captured from h2load 1.52 against the bare server: 12425 replies of 109 DATA bytes each.
H2LOAD_OUT = "\n".join(
    [
        "finished in 2.00s, 6212.50 req/s, 1019.67KB/s",
        "requests: 12425 total, 12553 started, 12425 done, 12425 succeeded, 0 failed, "
        "0 errored, 0 timeout",
        "status codes: 12425 2xx, 0 3xx, 0 4xx, 0 5xx",
        "traffic: 1.99MB (2088292) total, 36.69KB (37575) headers (space savings 96.27%), "
        "1.29MB (1354325) data",
    ]
)


def test_percentile_is_nearest_rank_and_an_observed_value():
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7], 99) == 7
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_ratio_is_none_when_a_side_is_missing():
    assert stats.ratio(2.0, 4.0) == 0.5
    assert stats.ratio(2.0, None) is None
    assert stats.ratio(None, 4.0) is None
    assert stats.ratio(2.0, 0.0) is None


def test_keys_are_16_bytes_and_distinct():
    keys = dataset.keys(1000)
    assert {len(k) for k in keys} == {dataset.KEY_BYTES}
    assert len(set(keys)) == 1000
    assert len(dataset.key(10**12 - 1)) == 16
    with pytest.raises(ValueError):
        dataset.key(10**12)


def test_batches_cover_every_index_once():
    covered = [i for b in dataset.batches(2345, 1000) for i in b]
    assert covered == list(range(2345))


def test_grpc_frame_round_trips_and_has_the_wire_header():
    framed = grpc_frame.frame(b"abc")
    assert framed == b"\x00\x00\x00\x00\x03abc"
    assert grpc_frame.unframe(framed) == b"abc"
    with pytest.raises(ValueError):
        grpc_frame.unframe(framed + b"x")


def test_h2load_summary_accepts_exact_successes():
    summary = h2load_output.parse(H2LOAD_OUT)
    assert summary.req_per_s == 6212.5
    assert summary.done == summary.status_2xx == 12425
    assert summary.problems(expected_data_per_reply=109) == []


def test_h2load_summary_flags_replies_without_the_value():
    # A gRPC error is an HTTP 200 with no DATA: h2load calls it a success.
    no_data = H2LOAD_OUT.replace("1.29MB (1354325) data", "0B (0) data")
    problems = h2load_output.parse(no_data).problems(expected_data_per_reply=109)
    assert problems and "DATA bytes per reply" in problems[0]
    with pytest.raises(ValueError):
        h2load_output.parse("nothing useful")


def test_procfs_parsers():
    assert procfs.parse_vmrss("Name:\tx\nVmRSS:\t  1234 kB\n") == 1234 * 1024
    stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 100 20 0 0"
    assert procfs.parse_cpu_ticks(stat) == 120
    assert procfs.parse_busy_ticks("cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 ...") == 25


def test_alternating_schedule_is_abba():
    assert schedule.alternating(["a", "b"], 2) == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]
    assert schedule.alternating(["a"], 3) == [(0, "a"), (1, "a"), (2, "a")]


def test_merged_windows_add_up():
    a = LoopResult(100, 1.0, {"server": 0.5})
    b = LoopResult(300, 2.0, {"server": 1.0})
    merged = LoopResult.merge([a, b])
    assert merged.per_second == pytest.approx(400 / 3.0)
    assert merged.probe_delta == {"server": 1.5}


def test_compare_pairs_figures_and_leaves_a_missing_reference_null():
    defs = [MetricDef("ops", "ops", "ops/s")]
    (both,) = compare(defs, {"ops": 50.0}, {"ops": 100.0})
    assert both.ratio == 0.5
    (alone,) = compare(defs, {"ops": 50.0}, None)
    assert alone.reference is None and alone.ratio is None
    result = WorkloadResult("w1", "t", "redis", [alone], reference_skipped="no redis")
    doc = report_json({}, {}, [result], [])
    assert doc["workloads"]["w1"]["metrics"]["ops"]["ratio"] is None
    assert doc["workloads"]["w1"]["reference"]["skipped"] == "no redis"


def test_table_shows_both_figures_and_every_skip_reason():
    ok = WorkloadResult("w1", "t", "redis", [Metric("ops", "tp", "ops/s", 50.0, 100.0, True)])
    skipped = WorkloadResult("server", "t", "bare", skipped="h2load not found")
    console = Console(width=200, record=True)
    console.print(build_table([ok, skipped], "title"))
    text = console.export_text()
    assert "50.0 ops/s" in text and "100 ops/s" in text and "0.500x" in text
    assert "h2load not found" in text
    notes = footer_notes([ok, skipped], 2, "python")
    assert any("2 CPU cores" in n for n in notes)
    assert any("h2load not found" in n for n in notes)


def test_smoke_shrinks_the_defaults_and_the_json_path_is_timestamped():
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    smoke = config.parse_args(["--smoke"], now, Path("/r"))
    assert smoke.durations["w1"] == 1.0 and smoke.keys == 2_000 and smoke.mem_keys == 20_000
    full = config.parse_args(["--workloads", "w3,memory", "--mem-keys", "5"], now, Path("/r"))
    assert full.workloads == ("w3", "memory") and full.mem_keys == 5
    assert full.durations == {"w3": 10.0, "memory": 10.0}
    assert full.json_path == Path("/r/bench-results/bench-20300102T030405Z.json")
    with pytest.raises(SystemExit):
        config.parse_args(["--workloads", "w9"], now, Path("/r"))


def test_routing_is_a_default_workload_with_smoke_durations():
    now = datetime(2030, 1, 2, tzinfo=UTC)
    assert "routing" in config.parse_args([], now, Path("/r")).workloads
    assert config.parse_args(["--smoke"], now, Path("/r")).durations["routing"] == 1.0


def test_a_cluster_target_routes_to_every_node_or_proxies_through_the_first():
    class Proc:
        def __init__(self, port: int, pid: int) -> None:
            self.port, self.pid = port, pid

    smart = Target.of("slotcache", Proc(7001, 11), Proc(7002, 12), Proc(7003, 13))
    assert smart.seeds == ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    assert smart.pids == (11, 12, 13)
    assert (smart.port, smart.pid, smart.address) == (7001, 11, "127.0.0.1:7001")
    proxy = Target("slotcache", smart.nodes, routing="proxy")
    assert proxy.seeds == ["127.0.0.1:7001"]
    assert proxy.pids == (11, 12, 13)  # CPU is still read from every node
    assert Target.of("redis", Proc(6379, 5)).nodes == (Node(6379, 5),)
    with pytest.raises(ValueError):
        Target("slotcache", ())


def test_measure_alternates_sides_and_gives_every_round_the_same_seed():
    calls: list[tuple[str, int, float]] = []

    def side(name: str, ops: int):
        def run(spec: client_workloads.LoadSpec) -> LoopResult:
            calls.append((name, spec.seed, spec.duration_s))
            return LoopResult(ops, spec.duration_s, {"server": 0.1})

        return run

    spec = client_workloads.LoadSpec([b"k"], b"v", 1, 1, 0.0, 4.0, seed=7, rounds=2)
    merged = client_workloads.measure({"a": side("a", 10), "b": side("b", 30)}, spec)
    assert calls == [("a", 7, 2.0), ("b", 7, 2.0), ("b", 8, 2.0), ("a", 8, 2.0)]
    assert merged["a"].operations == 20 and merged["b"].per_second == pytest.approx(15.0)
    assert merged["b"].probe_delta == {"server": pytest.approx(0.2)}


def test_grouped_sides_merge_their_nodes_windows_before_dividing():
    def side(ops: int, cpu_s: float):
        def run(spec: client_workloads.LoadSpec) -> LoopResult:
            return LoopResult(ops, spec.duration_s, {"server": cpu_s, "client": 1.0})

        return run

    spec = client_workloads.LoadSpec([b"k"], b"v", 1, 1, 0.0, 2.0, seed=1, rounds=2)
    # Two nodes per side: the "on" pair does 300 ops for 4 s of CPU, the "off" pair 400 for 4 s.
    sides = {
        "on-1": side(100, 1.0),
        "off-1": side(100, 1.0),
        "on-2": side(50, 1.0),
        "off-2": side(100, 1.0),
    }
    metrics, merged = client_workloads.w1_against_itself(
        sides, spec, "on", "off", telemetry_workload.side_group
    )
    assert set(merged) == {"on", "off"}
    assert merged["on"].operations == 300 and merged["off"].operations == 400
    by_name = {m.name: m for m in metrics}
    assert by_name["w1_ops_per_s_on_vs_off"].ratio == pytest.approx(0.75)
    assert by_name["w1_server_cpu_us_per_op_on_vs_off"].ratio == pytest.approx(400 / 300)


def test_window_details_show_each_nodes_cpu_and_the_redirects():
    delta = {"server": 3.0, "client": 1.0, "machine": 4.5, "node1": 1.0, "node0": 2.0}
    res = LoopResult(100, 2.0, {**delta, "redirects": 3.0})
    details = client_workloads.window_details(res)
    assert details["server_cpu_cores_per_node"] == [1.0, 0.5]
    assert details["background_cpu_cores"] == pytest.approx(0.25)
    assert details["redirects"] == 3
    plain = client_workloads.window_details(
        LoopResult(1, 1.0, {"server": 1, "client": 1, "machine": 2})
    )
    assert "server_cpu_cores_per_node" not in plain and "redirects" not in plain


def test_paired_metrics_divide_the_named_sides_and_name_every_row():
    figures = {
        "single": {"ops_per_s": 100.0, "server_cpu_us_per_op": 200.0, "client_cpu_us_per_op": 1.0},
        "direct": {"ops_per_s": 80.0, "server_cpu_us_per_op": 250.0, "client_cpu_us_per_op": 2.0},
    }
    metrics = routing_workload.paired_metrics(
        client_workloads.W1,
        client_workloads.W1.metrics,
        figures,
        routing_workload.CLUSTER_VS_SINGLE,
    )
    by_name = {m.name: m for m in metrics}
    ops = by_name["w1_ops_per_s_cluster3_vs_single"]
    assert (ops.slotcache, ops.reference, ops.ratio) == (80.0, 100.0, 0.8)
    assert ops.sides == ("cluster3", "single") and ops.label == "W1 throughput"
    assert by_name["w1_server_cpu_us_per_op_cluster3_vs_single"].ratio == 1.25
    assert ops.to_json()["sides"] == ["cluster3", "single"]
    assert "sides" not in Metric("x", "x", "", 1.0, 1.0, True).to_json()


def test_forward_tally_counts_what_the_other_nodes_served_as_forwarded():
    assert (
        routing_workload.ok_ops(
            {"ops.get.ok": 5, "ops.set.ok": 2, "ops.get.not_found": 9, "keys": 7}
        )
        == 7
    )
    tally = routing_workload.ForwardTally()
    assert tally.share is None
    before = [{"ops.get.ok": 10}, {"ops.get.ok": 0}, {"ops.set.ok": 4}]
    after = [{"ops.get.ok": 40, "ops.set.ok": 20}, {"ops.get.ok": 15}, {"ops.set.ok": 24}]
    tally.add(before, after)
    assert (tally.answered, tally.forwarded) == (50, 35)
    assert tally.share == pytest.approx(0.7)


def test_routing_notes_say_whether_cpu_was_shared_and_what_was_forwarded():
    tight = routing_workload.contention_note(2, 3)
    assert "2 CPU cores" in tight and "compete" in tight
    roomy = routing_workload.contention_note(8, 3)
    assert "8 CPU cores" in roomy and "compete" not in roomy
    assert "compete" in routing_workload.contention_note(None, 3)
    note = routing_workload.forwarding_note({"w1": 0.6667, "w3": None})
    assert "66.7% in W1" in note and "? in W3" in note
    assert routing_workload.redirect_note({"w1 direct": {"redirects": 0}, "w1 single": {}}) is None
    moved = routing_workload.redirect_note({"w1 direct": {"redirects": 4}})
    assert moved is not None and "w1 direct: 4" in moved


def test_table_names_the_sides_and_footer_carries_workload_notes():
    metric = Metric("m", "W3 latency p50", "µs", 2.0, 1.0, False, ("forwarded", "direct"))
    routed = WorkloadResult("routing", "t", "1 node / direct", [metric], notes=["shared cores"])
    console = Console(width=200, record=True)
    console.print(build_table([routed], "title"))
    text = console.export_text()
    assert "forwarded ÷ direct" in text and "2.000x" in text
    assert "routing: shared cores" in footer_notes([routed], 2, "hiredis")
