"""The telemetry's pure parts: buckets, the hot-key summary, log formatting and rotation,
trace flags, the new flags, and what clusterctl top computes from two readings."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotcache.contract import OPS
from slotcache.ctl.observe import Reading, merge_hot_keys, top_row
from slotcache.latency import BOUNDS_US, BUCKETS, from_info, info_key, quantile_us
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from slotcache_server.config import ServerConfig, load_config
from slotcache_server.executor import CommandError
from slotcache_server.forwarding import forward_metadata
from slotcache_server.observability.access_log import Entry, KeyMode, RotatingFile, format_entry
from slotcache_server.observability.calls import CallRecorder, countdown, sampled_positions
from slotcache_server.observability.hotkeys import HotKeys
from slotcache_server.observability.latency import bucket
from slotcache_server.observability.slowlog import SlowLog
from slotcache_server.observability.tracing import Tracer, sampled
from slotcache_server.routing import call_options


def test_buckets_span_10us_to_10s_with_le_semantics() -> None:
    assert BOUNDS_US[0] == 10 and BOUNDS_US[-1] == 10_000_000
    assert bucket(10_000) == 0  # exactly 10 µs is "le 10 µs"
    assert bucket(10_001) == 1
    assert bucket(11 * 10**9) == BUCKETS - 1


def test_quantile_is_the_upper_bound_of_its_bucket() -> None:
    counts = [0] * BUCKETS
    counts[2] = 98  # ≤ 50 µs
    counts[6] = 2  # ≤ 1 ms
    assert quantile_us(counts, 0.5) == 50
    assert quantile_us(counts, 0.99) == 1000
    assert quantile_us([0] * BUCKETS, 0.99) is None
    assert from_info({info_key(3): 7}) == [0, 0, 0, 7] + [0] * (BUCKETS - 4)


def test_space_saving_keeps_the_heavy_hitters_of_a_zipf_stream() -> None:
    rng = random.Random(3)
    weights = [1 / r**1.2 for r in range(1, 5001)]
    stream = rng.choices(range(5000), weights=weights, k=50_000)
    hot = HotKeys(capacity=64, sample=1)
    for k in stream:
        hot.seen(b"%d" % k)
    truth = Counter(stream)
    top = hot.top(10)
    assert [h.key for h in top[:5]] == [b"%d" % k for k, _ in truth.most_common(5)]
    for h in top:  # space-saving never underestimates, and overestimates by at most `error`
        real = truth[int(h.key)]
        assert real <= h.count <= real + h.error


def test_the_default_sample_rate_still_finds_a_zipf_streams_hot_keys() -> None:
    """1 in 100 accesses, over a few seconds of one node's traffic, is enough to rank them."""
    rng = random.Random(5)
    weights = [1 / r for r in range(1, 100_001)]
    stream = rng.choices(range(100_000), weights=weights, k=200_000)
    defaults = ServerConfig()
    hot = HotKeys(capacity=defaults.hotkeys_capacity, sample=defaults.hotkeys_sample)
    for k in stream:
        hot.seen(b"%d" % k)
    found = {int(h.key) for h in hot.top(10)}
    truth = {k for k, _ in Counter(stream).most_common(10)}
    assert len(found & truth) >= 8
    assert {int(h.key) for h in hot.top(3)} == {k for k, _ in Counter(stream).most_common(3)}


def test_sampled_counts_are_scaled_back() -> None:
    hot = HotKeys(capacity=8, sample=4)
    for _ in range(400):
        hot.seen(b"k")
    assert hot.top(1)[0].count == 400 and hot.sampled == 100
    hot.reset()
    assert hot.top(1) == []


class _Peer:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:5"


class _Log:
    def __init__(self, sample: int) -> None:
        self.sample = sample
        self.entries: list[Entry] = []

    def put(self, entry: Entry) -> None:
        self.entries.append(entry)


def test_recorder_logs_failures_always_and_successes_one_in_n() -> None:
    log = _Log(sample=5)
    rec = CallRecorder(SlowLog(10**9, 8), log)  # type: ignore[arg-type]
    get = OPS["get"]
    request = pb.GetRequest(key=b"a")
    for _ in range(20):
        rec.unary(get, rec.started(), [b"a"], [7], request, pb.GetReply(), None, _Peer())
    error = CommandError(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    for _ in range(3):
        rec.unary(get, rec.started(), [b"a"], [7], request, None, error, _Peer())
    statuses = Counter(e.status for e in log.entries)
    assert statuses == {"OK": 4, "INVALID_ARGUMENT": 3}
    assert sum(rec.latency[("Get", "OK", "grpc")]) == 20
    assert rec.errors[("Get", "INVALID_ARGUMENT", "", "grpc")] == 3
    assert rec.slot_ops[7] == 23


def test_recorder_counts_pipeline_ops_one_each() -> None:
    rec = CallRecorder(SlowLog(0, 8), None, HotKeys(8, 1))
    ops = [pb.Operation(id=i, get=pb.GetRequest(key=b"k")) for i in range(3)]
    results = [
        pb.OperationResult(id=0, get=pb.GetReply()),
        pb.OperationResult(id=1, get=pb.GetReply()),
        pb.OperationResult(id=2, error=pb.Error(code=9, reason="MOVED")),
    ]
    spec = OPS["get"]
    rec.batch([spec] * 3, ops, results, [[1], [1], [1]], rec.started(), 30, 60, _Peer())
    assert sum(rec.latency[("Get", "OK", "grpc")]) == 2
    assert rec.errors[("Get", "FAILED_PRECONDITION", "MOVED", "grpc")] == 1
    assert rec.redirected == 1
    assert rec.slot_ops[1] == 3
    assert rec.hotkeys is not None and rec.hotkeys.top(1)[0].count == 3
    assert len(rec.slowlog.latest(0)) == 3  # threshold 0: every op is slow


@given(st.integers(1, 50), st.integers(0, 300), st.data())
def test_sampling_a_whole_message_takes_what_stepping_takes(
    every: int, n: int, data: st.DataObject
) -> None:
    left = data.draw(st.integers(1, every))
    stepped, taken = left, []
    for i in range(n):
        hit, stepped = countdown(stepped, every)
        if hit:
            taken.append(i)
    picks, after = sampled_positions(left, every, n)
    assert list(picks) == taken
    assert after == stepped


def test_pipeline_access_sampling_is_one_in_n_of_the_successful_ops() -> None:
    log = _Log(sample=4)
    rec = CallRecorder(SlowLog(10**9, 8), log)  # type: ignore[arg-type]
    spec = OPS["get"]
    rng = random.Random(5)
    ok_total = failed_total = 0
    for _ in range(40):
        n = rng.randrange(1, 30)
        bad = {i for i in range(n) if rng.random() < 0.2}
        ops = [pb.Operation(id=i, get=pb.GetRequest(key=b"k%d" % i)) for i in range(n)]
        results = [
            pb.OperationResult(id=i, error=pb.Error(code=3, reason="x"))
            if i in bad
            else pb.OperationResult(id=i, get=pb.GetReply())
            for i in range(n)
        ]
        rec.batch([spec] * n, ops, results, None, rec.started(), 10, 10, _Peer())
        ok_total += n - len(bad)
        failed_total += len(bad)
    statuses = Counter(e.status for e in log.entries)
    assert statuses["INVALID_ARGUMENT"] == failed_total  # every failure is logged
    assert statuses["OK"] == ok_total // 4  # exactly one in four of the rest
    assert sum(rec.latency[("Get", "OK", "grpc")]) == ok_total


def _entry(key: bytes, keys: int = 1) -> Entry:
    return Entry(
        1_764_656_508_969_013_000, "ipv4:1.2.3.4:5", "", "Get", key, keys, 9, "OK", "", 74, 9, 11
    )


def test_entries_are_one_json_line_without_values_or_user() -> None:
    line = format_entry(_entry(b"a" * 60), KeyMode.TRUNCATE)
    assert line.endswith("\n")
    record = json.loads(line)
    assert record["ts"] == "2025-12-02T06:21:48.969013Z"
    assert record["key"] == "a" * 48 + "…" and record["key_len"] == 60
    assert "user" not in record
    hashed = json.loads(format_entry(_entry(b"secret"), KeyMode.HASH))
    assert "key" not in hashed and len(hashed["key_hash"]) == 16
    assert "key" not in json.loads(format_entry(_entry(b"", keys=0), KeyMode.TRUNCATE))


def _expected_record(entry: Entry, mode: KeyMode) -> dict[str, object]:
    """The fields an entry's line holds, in order, as the log's documentation gives them."""
    seconds, ns = divmod(entry.time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    record: dict[str, object] = {"ts": f"{stamp}.{ns // 1000:06d}Z", "peer": entry.peer}
    if entry.user:
        record["user"] = entry.user
    record["op"] = entry.op
    if entry.protocol != "grpc":
        record["protocol"] = entry.protocol
    if entry.keys:
        text = entry.key.decode("utf-8", "backslashreplace")
        if mode is KeyMode.HASH:
            record["key_hash"] = hashlib.blake2b(entry.key, digest_size=8).hexdigest()
        elif len(text) <= 48:
            record["key"] = text
        else:
            record["key"], record["key_len"] = text[:48] + "…", len(entry.key)
        if entry.keys > 1:
            record["keys"] = entry.keys
        record["slot"] = entry.slot
    record["status"] = entry.status
    if entry.reason:
        record["reason"] = entry.reason
    record.update(us=entry.latency_us, **{"in": entry.bytes_in, "out": entry.bytes_out})
    return record


_texts = st.text(max_size=12)
_counts = st.integers(min_value=0, max_value=10**9)


@given(
    st.builds(
        Entry,
        st.integers(min_value=0, max_value=4_000_000_000 * 10**9),
        _texts,
        _texts,
        _texts,
        st.binary(max_size=80),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=-1, max_value=16383),
        _texts,
        _texts,
        _counts,
        _counts,
        _counts,
        st.sampled_from(["grpc", "resp"]),
    ),
    st.sampled_from(list(KeyMode)),
)
def test_entries_are_exactly_the_standard_encoders_json(entry: Entry, mode: KeyMode) -> None:
    """Quotes, backslashes, control and non-ASCII characters come out as json.dumps writes them."""
    expected = _expected_record(entry, mode)
    text = json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert format_entry(entry, mode) == text


def test_rotation_keeps_the_configured_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    out = RotatingFile(path, max_bytes=100, keep=2)
    for i in range(30):
        out.write(f"{i:09d}\n")  # 10 bytes: a file holds 10 lines
    out.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "access.log",
        "access.log.1",
        "access.log.2",
    ]
    assert path.read_text().splitlines()[-1] == f"{29:09d}"
    assert (tmp_path / "access.log.2").read_text().splitlines()[0] == f"{0:09d}"


def test_only_a_valid_sampled_traceparent_is_recorded() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
    assert sampled(trace + "01")
    assert not sampled(trace + "00")
    assert not sampled("garbage")


def test_telemetry_flags_and_defaults() -> None:
    cfg = load_config([], {})
    assert cfg.metrics_listen_port == cfg.port + 1000
    assert cfg.access_log == "" and cfg.hotkeys_sample == 100
    cfg = load_config(
        ["--metrics-port", "0", "--access-log-keys", "hash"],
        {"SLOTCACHE_ACCESS_LOG_SAMPLE": "7"},
    )
    assert cfg.metrics_listen_port == 0
    assert cfg.access_log_keys is KeyMode.HASH and cfg.access_log_sample == 7
    with pytest.raises(SystemExit):
        load_config(["--access-log-sample", "0"], {})


def _info(ops: int, hits: int, misses: int, buckets: dict[int, int]) -> admin_pb2.InfoReply:
    stats = {"ops.get.ok": ops, "hits": hits, "misses": misses, "keys": 3}
    stats.update({info_key(i): n for i, n in buckets.items()})
    return admin_pb2.InfoReply(server={"role": "primary"}, stats=stats)


def test_top_rates_come_from_the_difference_of_two_readings() -> None:
    before = Reading(10.0, _info(100, 80, 20, {1: 100}))
    now = Reading(12.0, _info(300, 230, 70, {1: 297, 8: 3}))
    row = top_row("h:1", before, now)
    assert row["ops_per_s"] == 100.0
    assert row["hit_ratio"] == 0.75
    assert row["p99_us"] == 5000  # 3 of 200 recent calls in the ≤ 5 ms bucket
    assert top_row("h:1", None, now)["ops_per_s"] is None


def test_hot_keys_merge_across_nodes() -> None:
    a = admin_pb2.HotKeysReply(sample=4, keys=[admin_pb2.HotKey(key=b"x", slot=1, count=40)])
    b = admin_pb2.HotKeysReply(
        sample=4,
        keys=[admin_pb2.HotKey(key=b"x", slot=1, count=8), admin_pb2.HotKey(key=b"y", count=20)],
    )
    merged = merge_hot_keys({"a:1": a, "b:1": b}, 5)
    assert [(k["key"], k["count"], k["nodes"]) for k in merged] == [
        ("x", 48, ["a:1", "b:1"]),
        ("y", 20, ["b:1"]),
    ]


def test_a_sampled_call_gets_a_span_and_forwards_its_own_context() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer = Tracer("", {"service.name": "slotcache"}, exporter)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracer.span("Get", parent) as forwarded:
        pass
    tracer.stop()
    (span,) = exporter.get_finished_spans()
    assert span.name == "slotcache.v1.Cache/Get"
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    # The owner sees this node's span as the parent, in the same trace.
    assert forwarded == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{span.context.span_id:016x}-01"


def test_forwarded_calls_carry_the_trace_context_only_when_there_is_one() -> None:
    assert forward_metadata(2, "") == (("slotcache-hops", "2"),)
    assert forward_metadata(1, "00-ab-cd-01") == (
        ("slotcache-hops", "1"),
        ("traceparent", "00-ab-cd-01"),
    )
    assert call_options([("traceparent", "00-ab-cd-01")]).trace == "00-ab-cd-01"
