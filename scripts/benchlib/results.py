"""Result records for one benchmark run and their JSON form.

Every figure is recorded for slotcache and for the reference it is compared
with, together with the ratio slotcache/reference, because a ratio measured in
one run on one machine is the only kind of performance claim the project
accepts (ARCHITECTURE.md §7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchlib.stats import ratio

JSON_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """One figure, measured on both sides.

    ``sides`` names the two sides when they are not slotcache and its
    reference, e.g. ``("forwarded", "direct")`` when slotcache is compared
    with itself under two setups; ``slotcache`` then holds the first's figure
    and ``reference`` the second's.
    """

    name: str
    label: str
    unit: str
    slotcache: float | None
    reference: float | None
    higher_is_better: bool
    sides: tuple[str, str] | None = None

    @property
    def ratio(self) -> float | None:
        """slotcache / reference; None when either side was not measured."""
        return ratio(self.slotcache, self.reference)

    def to_json(self) -> dict[str, Any]:
        """The metric as a JSON object (with ``sides`` only when it has them)."""
        out: dict[str, Any] = {
            "label": self.label,
            "unit": self.unit,
            "slotcache": self.slotcache,
            "reference": self.reference,
            "ratio": self.ratio,
            "better": "higher" if self.higher_is_better else "lower",
        }
        if self.sides is not None:
            out["sides"] = list(self.sides)
        return out


@dataclass(frozen=True)
class MetricDef:
    """What a workload reports for each side: a name, how to show it, which way is better."""

    name: str
    label: str
    unit: str
    higher_is_better: bool = True


def compare(
    defs: Sequence[MetricDef],
    slotcache: Mapping[str, float] | None,
    reference: Mapping[str, float] | None,
) -> list[Metric]:
    """Pair each defined figure of slotcache with the reference's (None for a side not run)."""
    return [
        Metric(
            d.name,
            d.label,
            d.unit,
            None if slotcache is None else slotcache[d.name],
            None if reference is None else reference[d.name],
            d.higher_is_better,
        )
        for d in defs
    ]


@dataclass
class WorkloadResult:
    """What one workload measured, or why it (or its reference side) was not run.

    ``notes`` are caveats only this workload needs, printed under the table.
    """

    key: str
    title: str
    reference: str
    metrics: list[Metric] = field(default_factory=list)
    skipped: str | None = None
    reference_skipped: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the workload ran without an error (a skip is not an error)."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The workload as a JSON object; metrics keyed by name."""
        return {
            "title": self.title,
            "reference": {"name": self.reference, "skipped": self.reference_skipped},
            "skipped": self.skipped,
            "error": self.error,
            "metrics": {m.name: m.to_json() for m in self.metrics},
            "details": self.details,
        }


def report_json(
    meta: dict[str, Any],
    config: dict[str, Any],
    workloads: list[WorkloadResult],
    notes: list[str],
) -> dict[str, Any]:
    """The whole run as one JSON document."""
    return {
        "schema": JSON_SCHEMA_VERSION,
        "meta": meta,
        "config": config,
        "workloads": {w.key: w.to_json() for w in workloads},
        "notes": notes,
    }
