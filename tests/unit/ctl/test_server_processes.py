"""Which processes are local slotcache servers, and how the launcher names them. No processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slotcache.ctl import launcher
from slotcache.ctl.local import LocalNode, is_server, server_node

ROOT = Path("/srv/project/.cluster")


@pytest.mark.parametrize(
    "program",
    [
        ["/srv/project/.venv/bin/python3", "/srv/project/.venv/bin/slotcache-server"],
        ["/usr/bin/python3", "-m", "slotcache_server.main"],
        ["slotcache-server"],
    ],
    ids=["console-script", "module", "on-path"],
)
def test_both_ways_of_running_the_server_are_recognised(program: list[str]) -> None:
    args = [*program, "--port", "7000", "--data-dir", f"{ROOT}/node-7000"]
    assert is_server(args)
    assert server_node(args, ROOT) == LocalNode(ROOT, 7000)
    assert server_node([*program, f"--data-dir={ROOT}/node-7001"], ROOT) == LocalNode(ROOT, 7001)


def test_a_relative_data_dir_counts_from_the_process_working_directory() -> None:
    args = ["slotcache-server", "--port", "7006", "--data-dir", ".cluster/node-7006"]
    assert server_node(args, ROOT, cwd=Path("/srv/project")) == LocalNode(ROOT, 7006)
    assert server_node(args, ROOT, cwd=Path("/elsewhere")) is None
    # Unknown working directory: never guess.
    assert server_node(args, ROOT) is None


@pytest.mark.parametrize(
    "args",
    [
        ["python3", "-m", "http.server", "--data-dir", f"{ROOT}/node-7000"],
        ["slotcache-server", "--data-dir", f"{ROOT}/data"],
        ["slotcache-server", "--data-dir", "/elsewhere/node-7000"],
        ["slotcache-server", "--port", "7000"],
    ],
    ids=["other-program", "other-folder-name", "other-root", "no-data-dir"],
)
def test_other_processes_are_not_ours(args: list[str]) -> None:
    assert server_node(args, ROOT, cwd=Path("/srv/project")) is None


def test_the_launcher_prefers_the_console_script_next_to_the_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / "python3"
    monkeypatch.setattr(sys, "executable", str(python))
    assert launcher.server_command() == [str(python), "-m", "slotcache_server.main"]

    script = tmp_path / "slotcache-server"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert launcher.server_command() == [str(script)]
