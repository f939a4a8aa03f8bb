"""The pure parts of ``--takeover-pid``: the standby file and telling a live process."""

from __future__ import annotations

import os
from pathlib import Path

from slotcache_server.takeover import (
    exited,
    stand_by,
    standby_path,
    standing_by,
    wait_exit,
)


def test_the_standby_file_names_the_replacement(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    assert standing_by(data_dir) is None
    path = stand_by(data_dir, 4242)
    assert path == standby_path(data_dir)
    assert standing_by(data_dir) == 4242
    # Written by rename: no temporary file is left beside it.
    assert [p.name for p in data_dir.iterdir()] == [path.name]


def test_a_garbled_standby_file_names_nobody(tmp_path: Path) -> None:
    standby_path(tmp_path).write_text("not a pid\n")
    assert standing_by(tmp_path) is None


def test_a_running_process_has_not_exited_and_the_wait_for_it_is_bounded() -> None:
    assert not exited(os.getpid())
    assert wait_exit(os.getpid(), 0.02) is False
