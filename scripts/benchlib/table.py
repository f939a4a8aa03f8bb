"""Builds the results table shown on the terminal.

It only builds ``rich`` renderables; printing them is the caller's business,
so the layout can be checked without a terminal.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from benchlib.results import Metric, WorkloadResult


def format_value(value: float | None, unit: str) -> str:
    """A figure with a precision that suits its size; ``-`` when it was not measured."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}" if unit else text


def format_ratio(metric: Metric) -> Text:
    """The ratio with a colour saying whether slotcache is ahead (green) or behind (red)."""
    r = metric.ratio
    if r is None:
        return Text("-", style="dim")
    ahead = r >= 1 if metric.higher_is_better else r <= 1
    return Text(f"{r:.3f}x", style="green" if ahead else "red")


def build_table(workloads: list[WorkloadResult], title: str) -> Table:
    """One row per metric: both figures and the ratio slotcache/reference.

    A metric comparing two other sides names them under its label, so the
    columns read as "first side", "second side" and their ratio.
    """
    table = Table(title=title, show_lines=True)
    table.add_column("workload")
    table.add_column("metric")
    table.add_column("slotcache", justify="right")
    table.add_column("reference", justify="right")
    table.add_column("ratio slotcache/ref", justify="right")
    table.add_column("better", justify="center")
    for w in workloads:
        name = Text(f"{w.key} {w.title}\n", style="bold")
        name.append(f"vs {w.reference}", style="dim")
        if w.error is not None:
            table.add_row(name, Text(f"ERROR: {w.error}", style="bold red"), "", "", "", "")
            continue
        if w.skipped is not None:
            table.add_row(name, Text(f"skipped: {w.skipped}", style="yellow"), "", "", "", "")
            continue
        for i, m in enumerate(w.metrics):
            reference: str | Text = format_value(m.reference, m.unit)
            if m.reference is None and w.reference_skipped is not None:
                reference = Text("skipped", style="yellow")
            label = Text(m.label)
            if m.sides is not None:
                label.append(f"\n{m.sides[0]} ÷ {m.sides[1]}", style="dim")
            table.add_row(
                name if i == 0 else "",
                label,
                format_value(m.slotcache, m.unit),
                reference,
                format_ratio(m),
                "↑" if m.higher_is_better else "↓",
            )
    return table


def footer_notes(
    workloads: list[WorkloadResult], cpus: int | None, redis_py_parser: str
) -> list[str]:
    """Caveats a reader needs to interpret the table, including every skip and its reason."""
    notes = [
        f"The load generator (Python, this process) and the server under test share this "
        f"machine's {cpus or '?'} CPU cores and compete for them; that is the same for both "
        "peers, so compare the ratios, not the absolute figures.",
        "Ratios are slotcache/reference: above 1 is better for ↑ metrics, below 1 is better "
        "for ↓ metrics.",
        "CPU per op/key is user+system time over the measured window, divided by the work "
        "done: the server's process, and the load generator's (client libraries included).",
    ]
    if redis_py_parser != "hiredis":
        notes.append(
            "redis-py parses replies in pure Python (hiredis is not installed); "
            "both clients run on the stock asyncio event loop."
        )
    notes += _background_warnings(workloads)
    for w in workloads:
        notes += [f"{w.key}: {note}" for note in w.notes]
        if w.skipped is not None:
            notes.append(f"{w.key}: skipped: {w.skipped}")
        elif w.reference_skipped is not None:
            notes.append(f"{w.key}: {w.reference} side skipped: {w.reference_skipped}")
    return notes


NOISY_CORES = 0.15


def _background_warnings(workloads: list[WorkloadResult]) -> list[str]:
    """Name every measurement during which other processes kept a CPU noticeably busy."""
    out = []
    for w in workloads:
        for side, info in w.details.items():
            if not isinstance(info, dict):
                continue
            cores = info.get("background_cpu_cores")
            if isinstance(cores, float) and cores > NOISY_CORES:
                out.append(
                    f"{w.key}: other processes used {cores:.2f} CPU cores on average while "
                    f"{side} was measured; its figures are noisier than usual."
                )
    return out
