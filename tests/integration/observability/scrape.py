"""Reading a node's /metrics over HTTP, as Prometheus does, into comparable numbers."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from slotcache.ctl.launcher import ServerProcess
from slotcache.ctl.rpc import NodeHandle

Sample = tuple[str, frozenset[tuple[str, str]]]


def metrics_port(server: ServerProcess) -> int:
    """The port the node reports serving /metrics on."""
    with NodeHandle.open(server.address, 5.0) as node:
        return int(node.info().stats["metrics.port"])


def scrape(port: int) -> dict[Sample, float]:
    """Every sample of one scrape, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Mapping[Sample, float], name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (0 when absent)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert len(found) <= 1, f"{name}{labels} matches several series"
    return found[0] if found else 0.0


def delta(
    before: Mapping[Sample, float], after: Mapping[Sample, float], name: str, **labels: str
) -> float:
    """How much a series moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)
