"""The study's four figures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from hashinglib.study import PlacementResult, Results

# PNGs without the matplotlib version, so a rerun on another version changes nothing.
_METADATA = {"Software": None}


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, metadata=_METADATA)
    plt.close(fig)
    return path


def _style(name: str) -> dict[str, str]:
    """Slots solid and thick, the rest thinner; the what-if dashed."""
    if name.startswith("slots"):
        return {"linestyle": "--" if name.endswith("65536") else "-", "linewidth": "2.5"}
    return {"linestyle": "-", "linewidth": "1.2"}


def _lines(ax: Axes, results: Results, value: dict[str, dict[int, float]]) -> None:
    for name, row in value.items():
        sizes = [n for n in results.config.servers if n in row]
        style = _style(name)
        ax.plot(
            sizes,
            [row[n] for n in sizes],
            marker="o",
            label=results.labels[name],
            linestyle=style["linestyle"],
            linewidth=float(style["linewidth"]),
        )
    ax.set_xscale("log")
    ax.set_xticks(list(results.config.servers), [str(n) for n in results.config.servers])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("servers N")
    ax.grid(True, which="major", alpha=0.3)


def _legend_below(fig: Figure, ax: Axes) -> None:
    """One legend for both panels, under them, so that no line hides behind it."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))


def _log_y(ax: Axes) -> None:
    """A log y axis labelled with plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _select(results: Results, pick: str) -> dict[str, dict[int, float]]:
    def value(p: PlacementResult, n: int) -> float | None:
        if pick == "keys":
            return p.keys.max_mean
        if pick == "zipf":
            return p.zipf.max_mean
        moved = p.added if pick == "added" else p.removed
        if moved is None:
            return None
        return moved * (n + 1 if pick == "added" else n)

    out: dict[str, dict[int, float]] = {}
    for name, row in results.placement.items():
        values = {n: value(p, n) for n, p in row.items()}
        kept = {n: v for n, v in values.items() if v is not None}
        if kept:
            out[name] = kept
    return out


def imbalance(results: Results, directory: Path) -> Path:
    """max/mean against N, keys and Zipf requests."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, pick, title in zip(
        axes, ("keys", "zipf"), ("keys per server", "Zipf(1.0) requests per server"), strict=True
    ):
        _lines(ax, results, _select(results, pick))
        _log_y(ax)
        ax.set_ylabel("max / mean")
        ax.set_title(f"Load imbalance: {title}")
    _legend_below(fig, axes[0])
    return _save(fig, directory / "hashing-imbalance.png")


def moved(results: Results, directory: Path) -> Path:
    """Keys moved on a join and a leave, over the ideal, against N."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, pick, title in zip(
        axes, ("added", "removed"), ("one server joins", "one server leaves"), strict=True
    ):
        _lines(ax, results, _select(results, pick))
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
        _log_y(ax)
        ax.set_title(f"Keys moved when {title}")
    axes[0].set_ylabel("keys moved / ideal (1/(N+1) or 1/N)")
    _legend_below(fig, axes[0])
    return _save(fig, directory / "hashing-moved.png")


def cascade(results: Results, directory: Path) -> Path:
    """Share of the other processes that fall after one death, per scheme and N."""
    names = list(results.failure)
    sizes = list(results.config.servers)
    width = 0.8 / len(sizes)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    x = np.arange(len(names))
    for i, n in enumerate(sizes):
        fallen = [
            (results.failure[name][n].fallen_mean - 1) / (results.failure[name][n].processes - 1)
            if n in results.failure[name]
            else 0.0
            for name in names
        ]
        bars = ax.bar(x + (i - (len(sizes) - 1) / 2) * width, fallen, width, label=f"N = {n}")
        ax.bar_label(bars, fmt="%.2g", fontsize=6)
    ax.set_xticks(x, [results.labels[name] for name in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share of the other processes that fail\n(mean over victims)")
    ax.set_ylim(0, 1.1)
    ax.set_title(
        f"Cascade after one server dies at {results.config.utilisation:.0%} average utilisation"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, directory / "hashing-cascade.png")


def weighted(results: Results, directory: Path) -> Path:
    """Shares of servers weighted 1:2:4 (the smallest weighted cluster), against the weights."""
    n = min(results.weighted)
    data = results.weighted[n]
    names = list(data)
    weights = [f"{w:g}" for w in results.config.weights]
    width = 0.8 / len(weights)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    x = np.arange(len(names))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, w in enumerate(weights):
        offset = (i - (len(weights) - 1) / 2) * width
        ax.bar(
            x + offset,
            [data[name].class_shares[w] for name in names],
            width,
            label=f"weight {w}",
            color=colors[i],
        )
        ideal = next(iter(data.values())).class_ideal[w]
        ax.axhline(ideal, color=colors[i], linestyle=":", linewidth=1)
    ax.set_xticks(x, [results.labels[name] for name in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share of keys (dotted: the weights' shares)")
    ax.set_title(f"{n} servers weighted {':'.join(weights)}")
    ax.legend()
    fig.tight_layout()
    return _save(fig, directory / "hashing-weighted.png")


def draw_all(results: Results, directory: Path) -> list[Path]:
    """Every figure, into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [f(results, directory) for f in (imbalance, moved, cascade, weighted)]
