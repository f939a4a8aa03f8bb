"""The doc's conclusions, written from the results so that every number in them is checked.

Each sentence quotes numbers rounded as the tables round them, and says a
scheme is ahead only where the results show it, so that a different seed or
a smaller run yields sentences that are still true.
"""

from __future__ import annotations

import math

from hashinglib.formatting import TIMES, pct, size_bytes, times
from hashinglib.study import PlacementResult, Results
from slotcache.contract import SLOT_COUNT

WHAT_IF = "slots-65536"
BY_KEYS = "slots-by-keys"
#: Alternatives that can beat the slot table on balance.
EVEN_SCHEMES = {"jump": "jump hash", "rendezvous": "rendezvous", "maglev": "Maglev"}


def _max_mean(r: Results, name: str, n: int) -> float:
    return round(r.placement[name][n].keys.max_mean, 2)


def _balance(r: Results, name: str, n: int) -> str:
    return times(r.placement[name][n].keys.max_mean)


def _moves(r: Results, name: str, n: int) -> str:
    p: PlacementResult = r.placement[name][n]
    if p.added is None or p.removed is None:
        raise ValueError(f"{name} was not moved at N = {n}")
    return f"{times(p.added * (n + 1))} / {times(p.removed * n)}"


def _by_keys_sizes(r: Results) -> list[int]:
    return [n for n in r.config.servers if n in r.placement.get(BY_KEYS, {})]


def balance(r: Results) -> str:
    big = max(r.config.servers)
    per = SLOT_COUNT / big
    text = (
        f"- **Balance.** At N = {big} the even slot table's busiest server holds"
        f" {_balance(r, 'slots', big)} the mean number of keys; jump hash"
        f" {_balance(r, 'jump', big)}, rendezvous {_balance(r, 'rendezvous', big)}, Maglev"
        f" {_balance(r, 'maglev', big)}, rings of 1000 and 100 vnodes"
        f" {_balance(r, 'ring-1000', big)} and {_balance(r, 'ring-100', big)}."
    )
    if math.ceil(per) / per >= 1.005:
        text += (
            f" Part of it is granularity: {SLOT_COUNT} slots over {big} servers is"
            f" {per:.1f} each, so some own {math.ceil(per)} and carry"
            f" {times(math.ceil(per) / per)} the mean before a single key is counted."
        )
    return text


def more_slots(r: Results) -> str:
    big = max(r.config.servers)
    text = (
        "- **More slots, or a rebalance by keys.** 65536 slots (the whole CRC16) give"
        f" {_balance(r, WHAT_IF, big)} at N = {big}."
    )
    ran = _by_keys_sizes(r)
    if ran:
        mid = max(ran)
        text += (
            f" `clusterctl rebalance --by keys` takes N = {mid} from"
            f" {_balance(r, 'slots', mid)} to {_balance(r, BY_KEYS, mid)} (jump hash:"
            f" {_balance(r, 'jump', mid)})"
        )
        text += (
            f"; at N = {big} its planner does not finish in minutes, so it is not measured there."
            if mid < big
            else "."
        )
    return text


def moves(r: Results) -> str:
    big = max(r.config.servers)
    return (
        f"- **Moves.** At N = {big}, a join (`add-node`, then `rebalance`) and a leave"
        f" (`rebalance` with weight 0, then `del-node`) move {_moves(r, 'slots', big)} the"
        f" ideal 1/(N+1) and 1/N; rendezvous {_moves(r, 'rendezvous', big)}, a ring of 1000"
        f" vnodes {_moves(r, 'ring-1000', big)}, jump hash {_moves(r, 'jump', big)} (only"
        f" the last bucket can leave cleanly), Maglev {_moves(r, 'maglev', big)}, bounded"
        f" loads {_moves(r, 'bounded-1.25', big)}."
    )


def failures(r: Results) -> str:
    big = max(r.config.servers)
    small = min(r.config.servers)
    replica = r.failure["slots+replica"]
    others = [name for name in r.failure if name != "slots+replica"]

    def collapsed(name: str, n: int) -> bool:
        row = r.failure[name]
        return n in row and row[n].fallen_mean >= row[n].processes

    fell_small = [name for name in others if collapsed(name, small)]
    who = "every scheme" if fell_small == others else ", ".join(r.labels[n] for n in fell_small)
    text = (
        f"- **Failures.** With one replica per primary, a dead primary's slots go whole to a"
        f" process that carried no primary load: the busiest server after the failover is at"
        f" {times(replica[big].worst_after)} the mean at N = {big}, and at no size does more"
        f" than {max(f.fallen_max for f in replica.values())} process fail."
    )
    if fell_small:
        text += (
            f" Without replicas, {who} loses all {small} servers at N = {small} (each"
            f" survivor needs {times(small / (small - 1))} the mean; capacity is"
            f" {times(1 / r.config.utilisation)})."
        )
    larger = [n for n in r.config.servers if n > small]
    notes = []
    for name in others:
        fell = [n for n in larger if collapsed(name, n)]
        if fell:
            notes.append(f"{r.labels[name]} (N = {', '.join(map(str, fell))})")
    if notes:
        text += f" After one death, every server falls with {'; '.join(notes)}."
    bounded = r.failure["bounded-1.25"][big]
    text += (
        f" Bounded loads lose {bounded.fallen_mean:.0f} of {big} on average at N = {big}:"
        " its cap follows the average load, and every death raises the average, so the"
        f" cap ({times(1.25)} the average) passes the capacity it was sized to."
    )
    return text + f" The price of the replicas is {2 * big} processes instead of {big}."


def without_replica(r: Results) -> str:
    big = max(r.config.servers)
    given = r.failure["slots+rebalance"]
    sizes = ", ".join(f"{pct(given[n].top_share)} at N = {n}" for n in r.config.servers)
    text = (
        f"- **Without a replica**, the slots of a dead primary, given out as `clusterctl fix`"
        f" does (each to the primary with the fewest), spread over the survivors: the one that"
        f" takes most takes {sizes}; with rendezvous,"
        f" {pct(r.failure['rendezvous'][big].top_share)} at N = {big}."
    )
    per = SLOT_COUNT // big
    if per < big - 1:
        text += (
            f" At N = {big} a dead server's {per} or so slots can reach only {per} of the"
            f" {big - 1} survivors."
        )
    return text


def weights(r: Results) -> str:
    first = f"{r.config.weights[0]:g}"
    sizes = sorted(r.weighted)
    even = r.weighted[sizes[0]]["slots"]

    def err(name: str) -> str:
        return "/".join(f"±{pct(r.weighted[n][name].max_error, 0)}" for n in sizes)

    return (
        f"- **Weights.** Split evenly, slots ignore weights: with"
        f" {':'.join(f'{w:g}' for w in r.config.weights)} on {sizes[0]} servers, the server"
        f" of weight {first} carries {pct(even.class_shares[first])} of the keys instead of"
        f" {pct(even.class_ideal[first])}. `rebalance` with weights brings the worst server"
        f" within {err('slots-by-slots')} of its share (N = {'/'.join(map(str, sizes))}), by"
        f" keys {err(BY_KEYS)}; jump hash {err('jump')}, rendezvous {err('rendezvous')},"
        f" Maglev {err('maglev')}, rings of 1000 vnodes {err('ring-1000')} and of 100"
        f" {err('ring-100')}."
    )


def cost(r: Results) -> str:
    big = max(r.config.servers)
    p = r.placement
    return (
        f"- **Cost.** A lookup is one CRC16 and one read of a"
        f" {size_bytes(p['slots'][big].memory_bytes)} table at N = {big}; a ring of 1000 vnodes"
        f" holds {size_bytes(p['ring-1000'][big].memory_bytes)} and takes"
        f" {p['ring-1000'][big].steps:.0f} comparisons, rendezvous hashes the key"
        f" {p['rendezvous'][big].steps:.0f} times, jump hash loops"
        f" {p['jump'][big].steps:.1f} times, Maglev reads a"
        f" {size_bytes(p['maglev'][big].memory_bytes)} table."
    )


def hot_keys(r: Results) -> str:
    big = max(r.config.servers)
    values = [row[big].zipf.max_mean for row in r.placement.values() if big in row]
    return (
        f"- **Hot keys.** Under Zipf({r.config.zipf:g}) the hottest key draws"
        f" {pct(r.hottest_key_share, 2)} of the requests; at N = {big} the busiest server"
        f" carries {min(values):.0f}{TIMES} to {max(values):.0f}{TIMES} the mean in every"
        " scheme. No placement spreads one key: that takes the SDK's near cache, or reads"
        " from replicas."
    )


def to_beat(r: Results) -> str:
    big = max(r.config.servers)
    lines = []
    ahead = [n for n in EVEN_SCHEMES if _max_mean(r, n, big) < _max_mean(r, "slots", big)]
    if ahead:
        them = ", ".join(f"{EVEN_SCHEMES[n]} {_balance(r, n, big)}" for n in ahead)
        line = (
            f"- *Balance at N = {big}* ({them}, against {_balance(r, 'slots', big)}): more"
            f" slots per server (65536 slots: {_balance(r, WHAT_IF, big)}), or a rebalance"
            " by keys"
        )
        if big not in _by_keys_sizes(r):
            line += f", whose planner must first scale to {big} primaries"
        lines.append(line + ".")
    hrw = r.failure["rendezvous"][big]
    given = r.failure["slots+rebalance"][big]
    if round(hrw.top_share, 3) < round(given.top_share, 3):
        lines.append(
            f"- *Spreading a dead server's load without replicas* (rendezvous: one survivor"
            f" takes {pct(hrw.top_share)}, fixed slots {pct(given.top_share)}): more slots per"
            " server. With replica-first failover the question does not arise: the dead"
            " primary's load goes to its replica, which carried none, and no other server"
            " takes any."
        )
    jump = r.placement["jump"][big]
    lines.append(
        f"- *Memory* (jump hash keeps a {size_bytes(jump.memory_bytes)} bucket list, against"
        f" a {size_bytes(r.placement['slots'][big].memory_bytes)} slot table): nothing worth"
        " doing; jump hash pays for it by renumbering when any server but the last leaves."
    )
    rings = [n for n in r.placement if n.startswith(("ring-", "bounded-"))]
    even_or_more = [
        n
        for n in r.config.servers
        if _max_mean(r, "slots", n) <= min(_max_mean(r, name, n) for name in rings)
    ]
    lines.append(
        f"- *Rings and bounded loads*: the even slot table is as even or more at"
        f" N = {', '.join(map(str, even_or_more)) or 'none'} and, with a replica per"
        " primary, does not cascade."
    )
    return "What it would take to beat the alternatives where they are ahead:\n\n" + "\n".join(
        lines
    )


def conclusions(r: Results) -> str:
    """The conclusions block."""
    parts = [balance(r), more_slots(r), moves(r), failures(r), without_replica(r)]
    parts += [weights(r), cost(r), hot_keys(r)]
    return "\n".join(parts) + "\n\n" + to_beat(r)
