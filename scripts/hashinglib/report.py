"""The study's tables, as the markdown blocks ``docs/hashing.md`` embeds.

Every number the doc quotes comes from here, so the doc can be checked
against a fresh run block by block (``docblocks``). Lookup times are wall
clock: they live in a block of their own, which the check leaves out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from hashinglib.conclusions import conclusions
from hashinglib.formatting import NONE, TIMES, pct, size_bytes, table, times
from hashinglib.measures import Balance
from hashinglib.study import FailureResult, PlacementResult, Results

T = TypeVar("T")
#: Blocks whose numbers depend on the machine; not compared with a fresh run.
MACHINE_BLOCKS = frozenset({"timing"})


def by_size(
    results: Results,
    data: dict[str, dict[int, T]],
    cell: Callable[[T], str],
    sizes: Sequence[int] | None = None,
) -> list[list[str]]:
    """One row per scheme, one cell per cluster size (— where it was not run)."""
    sizes = sizes or results.config.servers
    return [
        [results.labels[name], *(cell(row[n]) if n in row else NONE for n in sizes)]
        for name, row in data.items()
    ]


def size_header(results: Results, first: str = "scheme") -> list[str]:
    """The header of a table with one column per cluster size."""
    return [first, *(f"N = {n}" for n in results.config.servers)]


def balance_cell(b: Balance) -> str:
    """max/mean, then std/mean in parentheses."""
    return f"{b.max_mean:.2f} ({pct(b.cv)})"


def imbalance_keys(results: Results) -> str:
    """Keys per server."""
    return table(
        size_header(results),
        by_size(results, results.placement, lambda p: balance_cell(p.keys)),
    )


def imbalance_zipf(results: Results) -> str:
    """Zipf-weighted requests per server."""
    return table(
        size_header(results),
        by_size(results, results.placement, lambda p: balance_cell(p.zipf)),
    )


def moved(results: Results) -> str:
    """Keys moved on a join and on a leave, over the ideal share."""
    sizes = results.config.servers

    def cell(p: PlacementResult, n: int) -> str:
        if p.added is None or p.removed is None:
            return NONE
        return f"{times(p.added * (n + 1))} / {times(p.removed * n)}"

    rows = [
        ["ideal: 1/(N+1) / 1/N", *(f"{pct(1 / (n + 1))} / {pct(1 / n)}" for n in sizes)],
        *(
            [results.labels[name], *(cell(row[n], n) if n in row else NONE for n in sizes)]
            for name, row in results.placement.items()
        ),
    ]
    return table(size_header(results), rows)


def domino(results: Results) -> str:
    """What one death does to the survivors."""
    sizes = results.config.servers

    def cell(f: FailureResult) -> str:
        return f"{pct(f.top_share)} → {times(f.worst_after)}"

    rows = [
        [
            f"ideal: 1/(N-1) → N/(N-1){TIMES}",
            *(f"{pct(1 / (n - 1))} → {times(n / (n - 1))}" for n in sizes),
        ],
        *by_size(results, results.failure, cell),
    ]
    return table(size_header(results), rows)


def cascade(results: Results) -> str:
    """How many servers fall after one death at the configured utilisation."""

    def cell(f: FailureResult) -> str:
        text = f"{f.fallen_mean:.1f}"
        if f.fallen_max != round(f.fallen_mean, 1):
            text += f" (max {f.fallen_max})"
        text += f" of {f.processes}"
        if f.over_before:
            text += f"; {f.over_before} over before"
        return text

    return table(size_header(results), by_size(results, results.failure, cell))


def cost(results: Results) -> str:
    """Routing structure memory per size, and the work per lookup at the largest size."""
    largest = max(results.config.servers)
    header = [*size_header(results), f"work per lookup, N = {largest}"]
    rows = []
    for name, row in results.placement.items():
        memory = [
            size_bytes(row[n].memory_bytes) if n in row else NONE for n in results.config.servers
        ]
        known = [n for n in results.config.servers if n in row]
        steps = f"{row[max(known)].steps:.1f}" + (
            "" if max(known) == largest else f" (N = {max(known)})"
        )
        rows.append([results.labels[name], *memory, steps])
    return table(header, rows)


def timing(results: Results) -> str:
    """Microseconds per scalar lookup (machine-dependent), and the run's wall time."""
    body = table(
        size_header(results),
        by_size(results, results.placement, lambda p: f"{p.lookup_us:.2f}"),
    )
    return f"{body}\n\nWhole run: {results.wall_s:.0f} s."


def weighted(results: Results) -> str:
    """Key shares on servers of unequal weights, against the weights' shares."""
    sizes = sorted(results.weighted)
    weights = [f"{w:g}" for w in results.config.weights]
    header = ["scheme"]
    for n in sizes:
        header += [f"N = {n}: share of weight {'/'.join(weights)}", f"N = {n}: worst server"]
    first = results.weighted[sizes[0]]
    ideal_row = ["weights' shares"]
    for n in sizes:
        any_result = next(iter(results.weighted[n].values()))
        ideal_row += ["/".join(pct(any_result.class_ideal[w]) for w in weights), "±0%"]
    rows = [ideal_row]
    for name in first:
        row = [results.labels[name]]
        for n in sizes:
            r = results.weighted[n][name]
            row += ["/".join(pct(r.class_shares[w]) for w in weights), f"±{pct(r.max_error, 0)}"]
        rows.append(row)
    return table(header, rows)


def setup(results: Results) -> str:
    """What was run."""
    c = results.config
    # N from which the hottest key alone needs more than one server's capacity.
    hot_from = math.ceil(1 / (c.utilisation * results.hottest_key_share))
    return "\n".join(
        [
            f"- {c.keys:,} keys, seed {c.seed}; N = {', '.join(map(str, c.servers))} servers.",
            f"- Zipf({c.zipf:g}) requests: the hottest key draws"
            f" {pct(results.hottest_key_share, 2)} of all requests, more than a whole"
            f" server's capacity at {pct(c.utilisation, 0)} average utilisation once"
            f" N ≥ {hot_from}.",
            f"- Moves: the mean of {c.trials} joins and {c.trials} leaves per N;"
            f" failures: {c.victims} victims per N (every server when N is smaller),"
            f" each killed in a fresh cluster at {pct(c.utilisation, 0)} average utilisation.",
            f"- Weights {':'.join(f'{w:g}' for w in c.weights)} repeated over"
            f" N = {', '.join(map(str, sorted(results.weighted)))} servers.",
        ]
    )


BLOCKS: dict[str, Callable[[Results], str]] = {
    "setup": setup,
    "imbalance-keys": imbalance_keys,
    "imbalance-zipf": imbalance_zipf,
    "moved": moved,
    "domino": domino,
    "cascade": cascade,
    "cost": cost,
    "timing": timing,
    "weighted": weighted,
    "conclusions": conclusions,
}


def render(results: Results) -> dict[str, str]:
    """Every block, by name."""
    return {name: make(results) for name, make in BLOCKS.items()}
