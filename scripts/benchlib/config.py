"""Command-line options of ``scripts/bench`` and the run settings derived from them.

``--smoke`` only changes defaults (short windows, few keys), so a smoke run
exercises exactly the code a full run does, just quickly enough for CI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

WORKLOADS = (
    "w1",
    "w2",
    "w3",
    "server",
    "memory",
    "routing",
    "near",
    "restart",
    "telemetry",
    "tls",
    "auth",
    "resp",
)
CLIENT_WORKLOADS = ("w1", "w2", "w3")

FULL = {"duration": 10.0, "keys": 100_000, "mem_keys": 1_000_000}
SMOKE = {"duration": 1.0, "keys": 2_000, "mem_keys": 20_000}
MAX_WARMUP_S = 2.0
WARMUP_SHARE = 0.2


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run needs to know; recorded in the JSON so a result can be reproduced."""

    workloads: tuple[str, ...]
    durations: dict[str, float]
    warmup_s: float
    keys: int
    mem_keys: int
    concurrency: int
    batch: int
    rounds: int
    h2load_clients: int
    h2load_streams: int
    seed: int
    smoke: bool
    json_path: Path

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-friendly values."""
        out = asdict(self)
        out["workloads"] = list(self.workloads)
        out["json_path"] = str(self.json_path)
        return out


def _workload_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(WORKLOADS)}"
        )
    return names


def _duration_override(text: str) -> tuple[str, float]:
    name, sep, seconds = text.partition("=")
    if not sep or name not in WORKLOADS:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS with NAME in {WORKLOADS}")
    return name, _positive(seconds)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``scripts/bench`` argument parser."""
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark slotcache side by side with redis-server (redis-py) and with a "
        "bare grpc.aio server, in one run, and report ratios.",
    )
    p.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="measured seconds per side of each workload (default 10, smoke 1)",
    )
    p.add_argument(
        "--workload-duration",
        type=_duration_override,
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="override --duration for one workload (repeatable)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        metavar="SECONDS",
        help="warm-up before each round's window (default: 20%% of a round's window, at most 2)",
    )
    p.add_argument(
        "--workloads",
        type=_workload_list,
        default=WORKLOADS,
        metavar="LIST",
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    p.add_argument(
        "--keys",
        type=_count,
        metavar="N",
        help="keys for w1-w3 and routing (default 100000, smoke 2000)",
    )
    p.add_argument(
        "--mem-keys",
        type=_count,
        metavar="N",
        help="keys for memory and restart (default 1000000, smoke 20000)",
    )
    p.add_argument(
        "--concurrency",
        type=_count,
        default=64,
        metavar="N",
        help="asyncio tasks in w1/w2 and routing",
    )
    p.add_argument(
        "--batch", type=_count, default=100, metavar="N", help="keys per MGET/MSET call in w2"
    )
    p.add_argument(
        "--rounds",
        type=_count,
        default=2,
        metavar="N",
        help="split each window into this many rounds, alternating which side goes first "
        "(default 2: A B B A), so background load drifting over time hits both sides alike",
    )
    p.add_argument("--h2load-clients", type=_count, default=4, metavar="N", help="h2load -c")
    p.add_argument("--h2load-streams", type=_count, default=32, metavar="N", help="h2load -m")
    p.add_argument("--seed", type=int, default=1, help="random seed for key choice")
    p.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="results file (default bench-results/bench-<UTC timestamp>.json)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="about 1 s per side of each workload, 2000 keys, 20000 memory keys: checks the "
        "script works",
    )
    return p


def parse_args(argv: Sequence[str] | None, now: datetime, root: Path) -> BenchConfig:
    """Parse the command line; ``now`` (UTC) names the default JSON file under ``root``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    base = SMOKE if args.smoke else FULL
    duration = args.duration or base["duration"]
    durations = {name: float(duration) for name in args.workloads}
    durations.update((n, s) for n, s in args.workload_duration if n in durations)
    # Each round warms up again, so the default warm-up scales with one round's window.
    window = min(durations.values()) / args.rounds
    warmup = args.warmup if args.warmup is not None else min(MAX_WARMUP_S, window * WARMUP_SHARE)
    keys = int(args.keys or base["keys"])
    if keys < args.batch:
        parser.error(f"--keys ({keys}) must be at least --batch ({args.batch})")
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return BenchConfig(
        workloads=args.workloads,
        durations=durations,
        warmup_s=max(0.0, warmup),
        keys=keys,
        mem_keys=int(args.mem_keys or base["mem_keys"]),
        concurrency=args.concurrency,
        batch=args.batch,
        rounds=args.rounds,
        h2load_clients=args.h2load_clients,
        h2load_streams=args.h2load_streams,
        seed=args.seed,
        smoke=args.smoke,
        json_path=args.json or root / "bench-results" / f"bench-{stamp}.json",
    )
