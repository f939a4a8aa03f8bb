"""Planning ``reshard`` and ``rebalance``: which slots go from which primary to which.

Pure functions over plain data (slot lists, weights, per-slot statistics);
nothing here talks to a node, so every rule can be tested exhaustively.

``rebalance`` follows ``redis-cli --cluster rebalance``:

- Each considered primary has a weight (1 unless ``--weight`` says
  otherwise; a primary without slots has weight 0, and so is left alone,
  unless empty primaries are used). Its *expected* share of the load is
  ``total * weight / total weight``; its balance is what it holds minus that.
- The load is the number of slots (``by="slots"``), or the keys or the
  estimated memory of the slots it owns (``by="keys"`` / ``"memory"``, from
  SlotStats).
- A primary whose load is within ``threshold`` percent of its expected share
  is left alone; when every primary is, nothing moves. Otherwise the
  primaries outside the threshold (and, if that is not enough to bring each
  of them within it, the in-threshold primaries that deviate most in the
  direction that helps) are balanced among themselves, exactly, by weight.
  Nodes inside the threshold keep their slots, so fewer slots move than
  when every node is levelled.
- Slots go from the most over-loaded primary to the most under-loaded one,
  each pair moving as much as the smaller of the two imbalances allows, so
  every slot moves at most once and as few slots as possible move.

By slots, a source gives its lowest-numbered slots (as redis-cli does), so
ranges stay contiguous. By keys or memory, slots are chosen by their load,
biggest first, to reach the wanted amount with the fewest slots; slots
without keys never move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from slotcache.contract import SLOT_COUNT

DEFAULT_THRESHOLD_PCT = 2.0

Unit = Literal["slots", "keys", "memory"]
UNITS: tuple[Unit, ...] = ("slots", "keys", "memory")


class PlanError(ValueError):
    """The request cannot be planned (bad weights, too many slots, unknown node...)."""


@dataclass(frozen=True)
class SlotStat:
    """What one slot holds: keys, and their estimated memory in bytes."""

    keys: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class PrimaryLoad:
    """A primary as the planner sees it: its id and the slots it owns."""

    id: str
    slots: tuple[int, ...]


@dataclass(frozen=True)
class Move:
    """Move ``slots`` from ``source`` to ``target``; ``keys``/``bytes`` are what they hold."""

    source: str
    target: str
    slots: tuple[int, ...]
    keys: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class NodeBalance:
    """One primary's share before and after a plan, in the plan's unit."""

    id: str
    weight: float
    expected: float
    before: float
    after: float
    # Slots, keys and bytes it holds before and after (whatever the unit).
    slots_before: int
    slots_after: int
    keys_before: int
    keys_after: int
    bytes_before: int
    bytes_after: int

    @property
    def deviation_before_pct(self) -> float:
        """How far from its expected share it starts, in percent of that share."""
        return deviation_pct(self.before, self.expected)

    @property
    def deviation_after_pct(self) -> float:
        """How far from its expected share it ends."""
        return deviation_pct(self.after, self.expected)


@dataclass(frozen=True)
class Plan:
    """What a rebalance would do, and how balanced the primaries are before and after."""

    unit: Unit
    threshold_pct: float
    moves: tuple[Move, ...]
    nodes: tuple[NodeBalance, ...]
    # Why nothing moves, when nothing does.
    reason: str = ""

    @property
    def slots_moved(self) -> int:
        """Slots the plan moves."""
        return sum(len(m.slots) for m in self.moves)

    @property
    def keys_moved(self) -> int:
        """Keys the moved slots hold (as SlotStats last reported)."""
        return sum(m.keys for m in self.moves)

    @property
    def bytes_moved(self) -> int:
        """Estimated memory of the moved slots."""
        return sum(m.bytes for m in self.moves)

    @property
    def imbalance_before_pct(self) -> float:
        """The largest deviation of any primary from its expected share, before."""
        return max((n.deviation_before_pct for n in self.nodes), default=0.0)

    @property
    def imbalance_after_pct(self) -> float:
        """The same, after the plan."""
        return max((n.deviation_after_pct for n in self.nodes), default=0.0)


def deviation_pct(load: float, expected: float) -> float:
    """``|load - expected|`` in percent of ``expected`` (100 for load on a weight-0 node)."""
    if expected <= 0:
        return 100.0 if load > 0 else 0.0
    return abs(load - expected) * 100.0 / expected


def slot_load(slot: int, unit: Unit, stats: Mapping[int, SlotStat]) -> int:
    """What ``slot`` weighs in ``unit``."""
    if unit == "slots":
        return 1
    stat = stats.get(slot)
    if stat is None:
        return 0
    return stat.keys if unit == "keys" else stat.bytes


def _within(load: float, expected: float, threshold_pct: float, unit: Unit) -> bool:
    """Within the threshold; by slots, rounding to whole slots is always tolerated."""
    if expected <= 0:
        return load <= 0
    slack = expected * threshold_pct / 100.0
    if unit == "slots":
        slack = max(slack, 1.0)
    return abs(load - expected) <= slack


@dataclass
class _Node:
    id: str
    weight: float
    slots: list[int]
    load: float
    expected: float = 0.0
    target: float = 0.0
    moved_out: set[int] = field(default_factory=set)

    @property
    def balance(self) -> float:
        return self.load - self.target


def weights_for(
    primaries: Sequence[PrimaryLoad],
    weights: Mapping[str, float] | None = None,
    use_empty: bool = False,
) -> dict[str, float]:
    """Each primary's weight: 1 by default, as given, 0 for a primary without slots.

    As redis-cli, a primary that owns no slots gets weight 0 (it is left
    alone) unless ``use_empty``; then it weighs as given (1 by default).
    """
    weights = dict(weights or {})
    known = {p.id for p in primaries}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise PlanError(f"no primary has the id {unknown[0]}")
    for node, weight in weights.items():
        if weight < 0 or math.isnan(weight) or math.isinf(weight):
            raise PlanError(f"the weight of {node} must be a finite number >= 0, not {weight}")
    out: dict[str, float] = {}
    for p in primaries:
        weight = weights.get(p.id, 1.0)
        out[p.id] = weight if (p.slots or use_empty) else 0.0
    return out


def plan_rebalance(
    primaries: Sequence[PrimaryLoad],
    stats: Mapping[int, SlotStat] | None = None,
    *,
    unit: Unit = "slots",
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    weights: Mapping[str, float] | None = None,
    use_empty: bool = False,
) -> Plan:
    """Plan the moves that bring every primary within ``threshold_pct`` of its share.

    ``primaries`` are every slot-owning primary (and the empty ones);
    ``stats`` maps slots to what they hold (needed by keys or memory, and
    used by slots to report keys and bytes moved).
    """
    stats = stats or {}
    if unit not in UNITS:
        raise PlanError(f"unknown unit {unit!r}")
    if threshold_pct < 0:
        raise PlanError("the threshold must be >= 0")
    ids = [p.id for p in primaries]
    if len(set(ids)) != len(ids):
        raise PlanError("a primary is listed twice")
    owners: dict[int, str] = {}
    for p in primaries:
        for slot in p.slots:
            if not 0 <= slot < SLOT_COUNT:
                raise PlanError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
            if slot in owners:
                raise PlanError(f"slot {slot} is owned by both {owners[slot]} and {p.id}")
            owners[slot] = p.id
    weight_of = weights_for(primaries, weights, use_empty)
    nodes = [
        _Node(
            p.id,
            weight_of[p.id],
            sorted(p.slots),
            float(sum(slot_load(s, unit, stats) for s in p.slots)),
        )
        for p in primaries
    ]
    total_weight = sum(n.weight for n in nodes)
    if total_weight <= 0:
        raise PlanError(
            "every primary has weight 0 (a primary without slots counts only with "
            "--use-empty-primaries)"
        )
    total = sum(n.load for n in nodes)
    for n in nodes:
        n.expected = total * n.weight / total_weight
        n.target = n.load
    if total <= 0:
        return _finish(unit, threshold_pct, primaries, weight_of, nodes, [], stats, f"no {unit}")
    outside = [n for n in nodes if not _within(n.load, n.expected, threshold_pct, unit)]
    if not outside:
        reason = f"every primary is within {threshold_pct:g}% of its share"
        return _finish(unit, threshold_pct, primaries, weight_of, nodes, [], stats, reason)
    involved = _involve(nodes, outside, threshold_pct, unit)
    _set_targets(involved, unit)
    if unit == "slots":
        moves = _move_slots(involved, stats)
    else:
        moves = _move_by_load(involved, unit, stats)
    return _finish(unit, threshold_pct, primaries, weight_of, nodes, moves, stats, "")


def _involve(
    nodes: list[_Node], outside: list[_Node], threshold_pct: float, unit: Unit
) -> list[_Node]:
    """The primaries to level among themselves: those outside the threshold, plus helpers.

    Levelled among themselves, the outsiders may still miss their share (say
    all of them are over-loaded): then the primary inside the threshold that
    deviates most the other way joins, until every involved primary would
    end within the threshold (at worst, every primary is involved).
    """
    involved = list(outside)
    while True:
        load = sum(n.load for n in involved)
        weight = sum(n.weight for n in involved)
        fits = weight > 0 and all(
            _within(load * n.weight / weight, n.expected, threshold_pct, unit) for n in involved
        )
        rest = [n for n in nodes if n not in involved and n.weight > 0]
        if fits or not rest:
            return involved
        surplus = load - sum(n.expected for n in involved)

        def helpfulness(n: _Node, surplus: float = surplus) -> float:
            # Over-loaded outsiders need the most under-loaded helper, and the reverse.
            share = (n.load - n.expected) / n.expected
            return -share if surplus > 0 else share

        involved.append(max(rest, key=helpfulness))


def _set_targets(involved: list[_Node], unit: Unit) -> None:
    """Share the involved primaries' load by weight: whole slots by slots, exact otherwise."""
    load = sum(n.load for n in involved)
    weight = sum(n.weight for n in involved)
    exact = [load * n.weight / weight for n in involved]
    if unit != "slots":
        for n, share in zip(involved, exact, strict=True):
            n.target = share
        return
    # Largest remainder: whole slots that add up to exactly the load.
    floors = [math.floor(x) for x in exact]
    left = round(load) - sum(floors)
    order = sorted(
        range(len(involved)), key=lambda i: (-(exact[i] - floors[i]), involved[i].load, i)
    )
    for i in order[:left]:
        floors[i] += 1
    for n, target in zip(involved, floors, strict=True):
        n.target = float(target)


def _move_slots(involved: list[_Node], stats: Mapping[int, SlotStat]) -> list[Move]:
    """Pair the most over- and under-loaded primaries, moving whole slot counts (redis-cli)."""
    moves: list[Move] = []
    sources = sorted((n for n in involved if n.balance > 0), key=lambda n: (-n.balance, n.id))
    targets = sorted((n for n in involved if n.balance < 0), key=lambda n: (n.balance, n.id))
    si = ti = 0
    while si < len(sources) and ti < len(targets):
        src, dst = sources[si], targets[ti]
        count = int(min(src.balance, -dst.balance))
        if count > 0:
            free = [s for s in src.slots if s not in src.moved_out]
            chosen = tuple(free[:count])
            src.moved_out.update(chosen)
            src.load -= len(chosen)
            dst.load += len(chosen)
            moves.append(_move(src.id, dst.id, chosen, stats))
        if src.balance <= 0:
            si += 1
        if dst.balance >= 0:
            ti += 1
    return moves


def _move_by_load(involved: list[_Node], unit: Unit, stats: Mapping[int, SlotStat]) -> list[Move]:
    """Move whole slots, chosen by their keys or bytes, to bring loads nearest their targets."""
    moved: dict[tuple[str, str], list[int]] = {}
    order: list[tuple[str, str]] = []
    stuck: set[tuple[str, str]] = set()
    while True:
        sources = [n for n in involved if n.balance > 0]
        targets = [n for n in involved if n.balance < 0]
        pairs = sorted(
            (
                (-min(s.balance, -t.balance), s.id, t.id, s, t)
                for s in sources
                for t in targets
                if (s.id, t.id) not in stuck
            ),
            key=lambda p: (p[0], p[1], p[2]),
        )
        if not pairs:
            break
        _, _, _, src, dst = pairs[0]
        chosen = _pick_by_load(src, min(src.balance, -dst.balance), unit, stats)
        if not chosen:
            stuck.add((src.id, dst.id))
            continue
        for slot in chosen:
            load = slot_load(slot, unit, stats)
            src.moved_out.add(slot)
            src.load -= load
            dst.load += load
        key = (src.id, dst.id)
        if key not in moved:
            moved[key] = []
            order.append(key)
        moved[key].extend(chosen)
    return [_move(s, t, tuple(sorted(moved[(s, t)])), stats) for s, t in order]


def _pick_by_load(
    src: _Node, amount: float, unit: Unit, stats: Mapping[int, SlotStat]
) -> list[int]:
    """Slots of ``src`` whose loads add up closest to ``amount``, biggest first.

    Every slot taken brings the remaining amount closer to zero: first the
    biggest slots that fit, then possibly one that overshoots by less than
    what is left. Empty slots are never taken.
    """
    candidates = sorted(
        (
            (slot_load(s, unit, stats), s)
            for s in src.slots
            if s not in src.moved_out and slot_load(s, unit, stats) > 0
        ),
        key=lambda c: (-c[0], c[1]),
    )
    chosen: list[int] = []
    remaining = amount
    for load, slot in candidates:
        if load <= remaining:
            chosen.append(slot)
            remaining -= load
    if remaining > 0:
        taken = set(chosen)
        over = [(load, s) for load, s in candidates if s not in taken and load < 2 * remaining]
        if over:
            chosen.append(min(over)[1])
    return chosen


def _move(source: str, target: str, slots: tuple[int, ...], stats: Mapping[int, SlotStat]) -> Move:
    keys = sum(stats[s].keys for s in slots if s in stats)
    size = sum(stats[s].bytes for s in slots if s in stats)
    return Move(source, target, slots, keys, size)


def _finish(
    unit: Unit,
    threshold_pct: float,
    primaries: Sequence[PrimaryLoad],
    weight_of: Mapping[str, float],
    nodes: list[_Node],
    moves: list[Move],
    stats: Mapping[int, SlotStat],
    reason: str,
) -> Plan:
    after = apply_moves({p.id: p.slots for p in primaries}, moves)
    expected = {n.id: n.expected for n in nodes}
    balances = []
    for p in primaries:
        before_slots, after_slots = p.slots, after[p.id]
        balances.append(
            NodeBalance(
                id=p.id,
                weight=weight_of[p.id],
                expected=expected[p.id],
                before=float(sum(slot_load(s, unit, stats) for s in before_slots)),
                after=float(sum(slot_load(s, unit, stats) for s in after_slots)),
                slots_before=len(before_slots),
                slots_after=len(after_slots),
                keys_before=sum(slot_load(s, "keys", stats) for s in before_slots),
                keys_after=sum(slot_load(s, "keys", stats) for s in after_slots),
                bytes_before=sum(slot_load(s, "memory", stats) for s in before_slots),
                bytes_after=sum(slot_load(s, "memory", stats) for s in after_slots),
            )
        )
    return Plan(unit, threshold_pct, tuple(moves), tuple(balances), reason)


def apply_moves(
    owned: Mapping[str, Iterable[int]], moves: Iterable[Move]
) -> dict[str, tuple[int, ...]]:
    """The slots each primary owns once ``moves`` are done (checks each move is possible)."""
    result = {node: set(slots) for node, slots in owned.items()}
    for move in moves:
        if move.source not in result or move.target not in result:
            raise PlanError(f"a move names an unknown primary: {move.source} -> {move.target}")
        missing = set(move.slots) - result[move.source]
        if missing:
            raise PlanError(f"{move.source} does not own slot {min(missing)}")
        result[move.source] -= set(move.slots)
        result[move.target] |= set(move.slots)
    return {node: tuple(sorted(slots)) for node, slots in result.items()}


# ---- reshard ---------------------------------------------------------------------------


def plan_reshard(
    primaries: Sequence[PrimaryLoad],
    target: str,
    sources: Sequence[str] | None,
    count: int,
    stats: Mapping[int, SlotStat] | None = None,
) -> list[Move]:
    """Move ``count`` slots to ``target``: from ``sources``, or from every other primary.

    From several primaries, each gives a share proportional to the slots it
    owns (largest remainder, so the shares add up to ``count``), its
    lowest-numbered slots first, as ``redis-cli --cluster reshard`` does.
    """
    stats = stats or {}
    by_id = {p.id: p for p in primaries}
    if target not in by_id:
        raise PlanError(f"the target {target} is not a primary")
    if count < 1:
        raise PlanError("the number of slots must be at least 1")
    if sources is None:
        givers = [p for p in primaries if p.id != target and p.slots]
    else:
        if target in sources:
            raise PlanError("the target cannot also be a source")
        unknown = [s for s in sources if s not in by_id]
        if unknown:
            raise PlanError(f"the source {unknown[0]} is not a primary")
        givers = [by_id[s] for s in dict.fromkeys(sources)]
    available = sum(len(p.slots) for p in givers)
    if count > available:
        where = "the sources own" if sources is not None else "the other primaries own"
        raise PlanError(f"cannot move {count} slots: {where} only {available}")
    shares = _proportional([len(p.slots) for p in givers], count)
    moves = []
    for giver, share in zip(givers, shares, strict=True):
        if share:
            moves.append(_move(giver.id, target, tuple(sorted(giver.slots)[:share]), stats))
    return moves


def _proportional(sizes: Sequence[int], count: int) -> list[int]:
    """Split ``count`` in proportion to ``sizes`` (each share at most its size)."""
    total = sum(sizes)
    exact = [count * s / total for s in sizes]
    shares = [min(math.floor(x), s) for x, s in zip(exact, sizes, strict=True)]
    left = count - sum(shares)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - shares[i]), -sizes[i], i))
    while left > 0:
        for i in order:
            if left and shares[i] < sizes[i]:
                shares[i] += 1
                left -= 1
    return shares


def batches(
    move: Move,
    max_slots: int,
    stats: Mapping[int, SlotStat] | None = None,
    max_keys: int | None = None,
) -> list[Move]:
    """Split a move into migrations, in slot order, of at most ``max_slots`` slots each.

    With ``max_keys``, a migration also stops before the slot that would
    take it past that many keys (a slot holding more goes alone), so that
    each migration of a dense cluster stays short.
    """
    if max_slots < 1:
        raise PlanError("a batch must hold at least one slot")
    if max_keys is not None and max_keys < 1:
        raise PlanError("a batch must be allowed at least one key")
    stats = stats or {}
    parts: list[list[int]] = []
    current: list[int] = []
    keys = 0
    for slot in sorted(move.slots):
        held = stats[slot].keys if slot in stats else 0
        full = len(current) >= max_slots or (
            max_keys is not None and current and keys + held > max_keys
        )
        if full:
            parts.append(current)
            current, keys = [], 0
        current.append(slot)
        keys += held
    if current:
        parts.append(current)
    return [_move(move.source, move.target, tuple(part), stats) for part in parts]
