"""The process's age, as logged once the imports are done."""

from __future__ import annotations

from slotcache_server.lifecycle import process_age_s


def test_this_process_knows_its_age() -> None:
    assert 0 < process_age_s() < 24 * 3600
