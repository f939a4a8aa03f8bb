"""Histories of client operations and the checker that judges them after a fault.

Clients record every operation they attempt, with its outcome: ``ok``
(acknowledged), ``refused`` (the server guarantees nothing was applied) or
``unknown`` (anything else: it may have been applied). After the fault is
healed and the cluster has settled, every key is read from its owner and
:func:`check` reports, in the manner of Jepsen's checkers:

- acknowledged writes lost, split by the ``min_replicas`` they were sent with;
- resurrections: a key whose last acknowledged operation deleted it, back
  with a value written before the delete;
- stale reads: a read (from a replica, during the fault) that returned an
  older value than one already acknowledged when the read was sent;
- slots with no owner, or with two.

Each key must have one writer, whose attempts are sequential, so the order
of a key's writes is the order of their ``sent`` times. Values must be
unique per key (a writer's sequence number in it will do), so a read value
names the write that produced it. Pure: no clock, no I/O beyond encoding.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

SET = "set"
DELETE = "delete"
GET = "get"
OK = "ok"
REFUSED = "refused"
UNKNOWN = "unknown"
SLOTS = 16384


@dataclass(frozen=True, slots=True)
class Op:
    """One attempted operation as its client saw it (times from ``time.monotonic()``)."""

    client: str
    kind: str
    key: bytes
    # Written value (set), value read (get; None: absent), None for a delete.
    value: bytes | None
    sent: float
    done: float
    outcome: str
    min_replicas: int = 0
    # A get served by a replica.
    replica: bool = False
    # A set's TTL in milliseconds (0: none).
    ttl_ms: int = 0
    error: str = ""

    @property
    def writes(self) -> bool:
        return self.kind in (SET, DELETE)

    def to_json(self) -> str:
        data = asdict(self)
        data["key"] = self.key.decode("latin-1")
        data["value"] = None if self.value is None else self.value.decode("latin-1")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Op:
        data = json.loads(line)
        data["key"] = data["key"].encode("latin-1")
        if data["value"] is not None:
            data["value"] = data["value"].encode("latin-1")
        return cls(**data)


def parse(lines: Iterable[str]) -> list[Op]:
    """Ops from JSON lines; a torn last line (a killed client) is skipped."""
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            out.append(Op.from_json(line))
        except (ValueError, TypeError, KeyError):
            continue
    return out


@dataclass(frozen=True, slots=True)
class StaleRead:
    """A read that missed a write acknowledged before it was sent."""

    key: bytes
    read: Op
    # How long before the read was sent the missed write had been acknowledged.
    behind_s: float


@dataclass
class Report:
    """What :func:`check` found."""

    # Keys whose last acknowledged write was sent with each min_replicas.
    acknowledged: Counter[int] = field(default_factory=Counter)
    # Keys whose last acknowledged write is gone, by that write's min_replicas.
    lost: dict[int, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    # Last acknowledged write a delete, and a value from before it came back.
    resurrected: list[bytes] = field(default_factory=list)
    # Absent, but its last acknowledged write had a TTL that has run out: fine.
    expired: int = 0
    # A value that no attempt wrote to the key: the test machinery is wrong.
    foreign: list[bytes] = field(default_factory=list)
    stale_reads: list[StaleRead] = field(default_factory=list)
    reads: int = 0
    unowned_slots: list[int] = field(default_factory=list)
    # slot -> the nodes that claim it, when more than one does.
    doubly_owned: dict[int, list[str]] = field(default_factory=dict)

    def lost_count(self, min_replicas: int) -> int:
        return len(self.lost.get(min_replicas, []))

    def summary(self) -> str:
        modes = sorted(set(self.acknowledged) | set(self.lost))
        lost = ", ".join(
            f"min_replicas={m}: {self.lost_count(m)} of {self.acknowledged[m]}" for m in modes
        )
        worst = max((s.behind_s for s in self.stale_reads), default=0.0)
        return (
            f"acknowledged keys lost: {lost or 'none written'}; "
            f"resurrected {len(self.resurrected)}; stale reads {len(self.stale_reads)} of "
            f"{self.reads} (worst {worst * 1000:.0f} ms behind); "
            f"slots unowned {len(self.unowned_slots)}, doubly owned {len(self.doubly_owned)}"
        )


def writes_by_key(ops: Iterable[Op]) -> dict[bytes, list[Op]]:
    """Each key's writes in the order its one writer sent them."""
    out: dict[bytes, list[Op]] = defaultdict(list)
    writer: dict[bytes, str] = {}
    for op in ops:
        if not op.writes:
            continue
        if writer.setdefault(op.key, op.client) != op.client:
            raise ValueError(f"key {op.key!r} has two writers, {writer[op.key]} and {op.client}")
        out[op.key].append(op)
    for writes in out.values():
        writes.sort(key=lambda o: o.sent)
    return dict(out)


def _state(op: Op) -> bytes | None:
    """The value a write leaves behind."""
    return op.value if op.kind == SET else None


def _matches(writes: Sequence[Op], value: bytes | None) -> list[int]:
    """Indexes of the writes that leave ``value`` behind."""
    return [i for i, w in enumerate(writes) if w.outcome != REFUSED and _state(w) == value]


def check(
    ops: Iterable[Op],
    final: Mapping[bytes, bytes | None],
    checked_at: float,
    claims: Mapping[str, Iterable[int]] | None = None,
) -> Report:
    """Judge a history against the values read back after heal (``final``, read at ``checked_at``).

    ``claims`` maps each node to the slots it serves as a primary in its own
    view; every slot must have exactly one such node.
    """
    ops = list(ops)
    report = Report()
    by_key = writes_by_key(ops)
    for key, writes in by_key.items():
        _judge_key(key, writes, final.get(key), checked_at, report)
    for op in ops:
        if op.kind == GET and op.outcome == OK:
            report.reads += 1
            stale = _stale(op, by_key.get(op.key, []))
            if stale is not None:
                report.stale_reads.append(stale)
    if claims is not None:
        report.unowned_slots, report.doubly_owned = slot_owners(claims)
    return report


def _judge_key(
    key: bytes, writes: Sequence[Op], value: bytes | None, checked_at: float, report: Report
) -> None:
    acked = [i for i, w in enumerate(writes) if w.outcome == OK]
    matches = _matches(writes, value)
    if not acked:
        if value is not None and not matches:
            report.foreign.append(key)
        return
    last = acked[-1]
    mode = writes[last].min_replicas
    report.acknowledged[mode] += 1
    if any(i >= last for i in matches):
        return  # the last acknowledged state, or a later attempt that may have applied
    if value is None and _expired(writes[last], checked_at):
        report.expired += 1
        return
    if not matches and value is not None:
        report.foreign.append(key)
    elif writes[last].kind == DELETE and value is not None:
        report.resurrected.append(key)
    else:
        report.lost[mode].append(key)


def _expired(write: Op, checked_at: float) -> bool:
    return write.kind == SET and write.ttl_ms > 0 and checked_at >= write.sent + write.ttl_ms / 1000


def _stale(read: Op, writes: Sequence[Op]) -> StaleRead | None:
    """Whether ``read`` returned a state older than one acknowledged before it was sent."""
    known = [i for i, w in enumerate(writes) if w.outcome == OK and w.done <= read.sent]
    if not known:
        return None
    newest = known[-1]
    if _expired(writes[newest], read.sent) and read.value is None:
        return None
    if any(i >= newest for i in _matches(writes, read.value)):
        return None
    return StaleRead(read.key, read, read.sent - writes[newest].done)


def slot_owners(claims: Mapping[str, Iterable[int]]) -> tuple[list[int], dict[int, list[str]]]:
    """Slots no node claims, and slots two or more nodes claim (with who)."""
    owners: list[list[str]] = [[] for _ in range(SLOTS)]
    for node, slots in claims.items():
        for slot in slots:
            owners[slot].append(node)
    unowned = [s for s, o in enumerate(owners) if not o]
    doubly = {s: sorted(o) for s, o in enumerate(owners) if len(o) > 1}
    return unowned, doubly
