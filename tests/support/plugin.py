"""The hooks every tier shares, loaded once from tests/conftest.py.

- Each test gets its tier's marker from its folder, so ``pytest tests/unit``
  and ``pytest -m unit`` select the same tests; a test outside a tier folder
  is a collection error.
- The pure tiers may not start a process or open a network endpoint
  (:mod:`tests.support.purity`).
- A failed test's report carries the tail of every live server's log.
- ``report_figure`` prints a measured figure at once and again, per tier,
  in the run's summary, where a CI log shows the numbers together.
- ``--long`` makes soak tests run for minutes instead of their CI length.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from tests.support.processes import log_sections
from tests.support.purity import Refusals, forbid_io

TESTS_ROOT = Path(__file__).resolve().parents[1]
# Folder name = marker name (registered in pyproject.toml), in the order the
# summary lists their figures.
TIERS = ("unit", "heavy", "sim", "integration", "faults")
# heavy holds pure tests too long for unit (big property runs, tracemalloc, a
# million keys); they make the same promise.
PURE_TIERS = frozenset({"unit", "heavy"})

TIER = pytest.StashKey[str]()
REFUSALS = pytest.StashKey[Refusals]()
FIGURE_PROPERTY = "figure"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="run soak tests for their long duration (minutes) instead of the CI one",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Figures(), "slotcache-figures")


def tier_of(item: pytest.Item) -> str:
    try:
        folder = item.path.resolve().relative_to(TESTS_ROOT).parts[0]
    except ValueError:
        folder = ""
    if folder not in TIERS:
        raise pytest.UsageError(
            f"{item.nodeid}: every test lives in a tier folder, tests/{{{','.join(TIERS)}}}/"
        )
    return folder


# First, so that ``-m`` (deselection in the same hook) already sees the tier markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        item.stash[TIER] = tier
        item.add_marker(tier)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Guard a pure test's setup, call and teardown, module fixtures included."""
    tier = item.stash[TIER]
    if tier not in PURE_TIERS:
        return (yield)
    refusals = item.stash[REFUSALS] = Refusals(tier)
    with forbid_io(refusals):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    refusals = item.stash.get(REFUSALS, None)
    if refusals is not None and refusals.unreported():
        refusals.reported = True
        if report.passed:
            # The refusal was swallowed (a broad except, or another thread): fail anyway.
            report.outcome = "failed"
            report.longrepr = refusals.message()
    if report.failed:
        report.sections.extend(log_sections())
    return report


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report_figure("...")`` prints a measured figure now and in the run's summary.

    The figure travels in the test's report (``user_properties``) rather than
    straight into this process's summary: under ``pytest -n`` the test runs in a
    worker, and only the reports reach the process that prints the summary.
    """
    item = request.node

    def record(line: str) -> None:
        item.user_properties.append((FIGURE_PROPERTY, f"{item.stash[TIER]}\t{line}"))
        print(line)

    return record


class Figures:
    """The figures of every finished test, by tier, for the run's summary."""

    def __init__(self) -> None:
        self.by_tier: dict[str, list[str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Teardown is the last report of a test and carries every figure it recorded.
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name == FIGURE_PROPERTY:
                tier, _, line = str(value).partition("\t")
                self.by_tier.setdefault(tier, []).append(line)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for tier in TIERS:
            if self.by_tier.get(tier):
                terminalreporter.section(f"{tier} measurements")
                for line in self.by_tier[tier]:
                    terminalreporter.write_line(line)
