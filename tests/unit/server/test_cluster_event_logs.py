"""How loudly a node logs the cluster's state: recovering is news, not a warning. Pure."""

from __future__ import annotations

import logging

import pytest

from slotcache_server.cluster_runtime import ClusterRuntime
from slotcache_server.membership.step import StateChanged


@pytest.mark.parametrize(
    ("ok", "level", "text"), [(True, "INFO", "ok"), (False, "WARNING", "fail")]
)
def test_the_cluster_state_is_logged_at_info_when_ok_and_warning_when_failing(
    caplog: pytest.LogCaptureFixture, ok: bool, level: str, text: str
) -> None:
    # A runtime without a bus or node file: the state change only logs.
    runtime = object.__new__(ClusterRuntime)
    with caplog.at_level(logging.DEBUG, logger="slotcache_server.cluster_runtime"):
        runtime._dispatch(StateChanged(ok=ok))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (level, f"cluster state is now {text}")
    ]
