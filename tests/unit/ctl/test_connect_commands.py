"""The commands ``clusterctl up`` prints are the ones that work from where it was run. Pure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slotcache.ctl.connect_info import command_for, connect_info
from slotcache.ctl.local_commands import typed

VENV_CTL = "/home/ada/slotcache/.venv/bin/clusterctl"


def test_the_bare_name_when_path_finds_the_same_program() -> None:
    assert command_for(VENV_CTL, "clusterctl", VENV_CTL, "/home/ada/slotcache") == "clusterctl"


def test_the_venv_path_when_the_venv_is_not_active() -> None:
    # make run: the venv is not on PATH (or PATH finds another clusterctl).
    for on_path in (None, "/usr/local/bin/clusterctl"):
        typed = command_for(VENV_CTL, "clusterctl", on_path, "/home/ada/slotcache")
        assert typed == ".venv/bin/clusterctl"


def test_an_absolute_path_from_outside_the_project() -> None:
    assert command_for(VENV_CTL, "clusterctl", None, "/tmp") == VENV_CTL
    assert command_for("/opt/my tools/clusterctl", "clusterctl", None, "/tmp") == (
        "'/opt/my tools/clusterctl'"
    )


def test_connect_info_uses_the_typed_commands() -> None:
    info = connect_info(
        ["127.0.0.1:7000"], ".cluster", ".cluster", ".venv/bin/clusterctl", ".venv/bin/python3"
    )
    assert info["inspect"] == [
        ".venv/bin/clusterctl nodes 127.0.0.1:7000",
        ".venv/bin/clusterctl check 127.0.0.1:7000",
    ]
    assert info["stop"] == ".venv/bin/clusterctl down"
    assert info["python_command"] == ".venv/bin/python3"


def test_typed_spells_out_the_venv_unless_it_is_active(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after make run: clusterctl and python in .venv/bin, the venv not on PATH.
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("clusterctl", "python3"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python3"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert typed("clusterctl") == ".venv/bin/clusterctl"
    assert typed("python3") == ".venv/bin/python3"
    # source .venv/bin/activate puts it first on PATH: the bare name works.
    monkeypatch.setenv("PATH", str(bin_dir))
    assert typed("clusterctl") == "clusterctl"
