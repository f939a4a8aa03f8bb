"""The history checker: lost writes by mode, resurrections, stale reads, slot owners."""

from __future__ import annotations

from tests.support.history import (
    DELETE,
    GET,
    OK,
    REFUSED,
    SET,
    UNKNOWN,
    Op,
    check,
    parse,
    slot_owners,
)

NOW = 100.0


def w(key: str, value: str | None, t: float, outcome: str = OK, mode: int = 0, **kw) -> Op:
    kind = SET if value is not None else DELETE
    data = value.encode() if value is not None else None
    return Op("c", kind, key.encode(), data, t, t + 0.01, outcome, min_replicas=mode, **kw)


def r(key: str, value: str | None, t: float) -> Op:
    data = value.encode() if value is not None else None
    return Op("reader", GET, key.encode(), data, t, t + 0.01, OK, replica=True)


def test_the_last_acknowledged_value_is_intact():
    report = check([w("k", "a", 1), w("k", "b", 2)], {b"k": b"b"}, NOW)
    assert report.lost == {} and report.acknowledged[0] == 1


def test_an_older_value_or_absence_is_a_lost_write_counted_by_mode():
    ops = [w("k", "a", 1, mode=1), w("k", "b", 2, mode=1), w("j", "x", 1, mode=0)]
    report = check(ops, {b"k": b"a", b"j": None}, NOW)
    assert report.lost[1] == [b"k"] and report.lost[0] == [b"j"]
    assert report.lost_count(1) == 1 and report.lost_count(0) == 1


def test_a_later_attempt_of_unknown_outcome_may_have_applied():
    ops = [w("k", "a", 1), w("k", "b", 2, outcome=UNKNOWN)]
    assert check(ops, {b"k": b"b"}, NOW).lost == {}


def test_a_refused_attempt_cannot_have_applied():
    ops = [w("k", "a", 1), w("k", "b", 2, outcome=REFUSED)]
    report = check(ops, {b"k": b"b"}, NOW)
    assert report.foreign == [b"k"]


def test_an_earlier_unknown_attempt_overwriting_the_acknowledged_one_is_a_loss():
    ops = [w("k", "a", 1, outcome=UNKNOWN), w("k", "b", 2)]
    assert check(ops, {b"k": b"a"}, NOW).lost[0] == [b"k"]


def test_a_deleted_key_that_comes_back_is_a_resurrection():
    ops = [w("k", "a", 1), w("k", None, 2)]
    report = check(ops, {b"k": b"a"}, NOW)
    assert report.resurrected == [b"k"] and report.lost == {}
    assert check(ops, {b"k": None}, NOW).resurrected == []


def test_absent_after_its_ttl_ran_out_is_not_lost():
    ops = [w("k", "a", 1, ttl_ms=500)]
    assert check(ops, {b"k": None}, 1.6).expired == 1
    assert check(ops, {b"k": None}, 1.2).lost[0] == [b"k"]


def test_reads_older_than_an_acknowledged_write_are_stale():
    ops = [w("k", "a", 1), w("k", "b", 2), r("k", "a", 3), r("k", "b", 3.5), r("k", "a", 1.5)]
    report = check(ops, {b"k": b"b"}, NOW)
    assert report.reads == 3
    assert [s.read.sent for s in report.stale_reads] == [3]
    assert abs(report.stale_reads[0].behind_s - (3 - 2.01)) < 1e-9


def test_a_read_of_absence_before_the_first_acknowledged_write_is_stale():
    report = check([w("k", "a", 1), r("k", None, 2), r("j", None, 2)], {b"k": b"a"}, NOW)
    assert len(report.stale_reads) == 1


def test_two_writers_of_one_key_are_refused():
    a = w("k", "a", 1)
    b = Op("other", SET, b"k", b"b", 2, 2.1, OK)
    try:
        check([a, b], {}, NOW)
    except ValueError as exc:
        assert "two writers" in str(exc)
    else:
        raise AssertionError("accepted two writers of one key")


def test_slot_owners_reports_gaps_and_doubles():
    unowned, doubly = slot_owners({"a": range(0, 10000), "b": range(9999, 16000)})
    assert unowned == list(range(16000, 16384))
    assert doubly == {9999: ["a", "b"]}


def test_claims_go_into_the_report():
    report = check([], {}, NOW, {"a": range(16384)})
    assert report.unowned_slots == [] and report.doubly_owned == {}


def test_ops_round_trip_through_json_lines_and_a_torn_line_is_skipped():
    ops = [w("k\xff", "a", 1, mode=1, ttl_ms=5), w("k\xff", None, 2, outcome=UNKNOWN, error="X")]
    lines = [op.to_json() for op in ops] + ['{"client": "c", "ki']
    assert parse(lines) == ops


def test_the_summary_names_every_figure():
    text = check([w("k", "a", 1, mode=1)], {b"k": None}, NOW).summary()
    assert "min_replicas=1: 1 of 1" in text and "stale reads 0 of 0" in text
