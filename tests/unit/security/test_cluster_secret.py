"""The cluster secret file: its format, and reloading it while the node runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slotcache_server.security.cluster_secret import (
    RECHECK_S,
    SecretFile,
    SecretFileError,
    parse_secrets,
)

CURRENT = "c" * 64
PREVIOUS = "p" * 64


def test_one_secret_per_line_first_signs():
    text = f"# rotated 2026-01-01\n{CURRENT}\n\n  {PREVIOUS}  \n"
    assert parse_secrets(text) == (CURRENT.encode(), PREVIOUS.encode())


@pytest.mark.parametrize("text", ["", "# only a comment\n", "short\n"])
def test_unusable_files_are_refused_without_echoing_the_secret(text: str):
    with pytest.raises(SecretFileError) as info:
        parse_secrets(text)
    assert "short" not in str(info.value)


def test_reloads_when_the_file_changes_and_keeps_the_old_secrets_on_a_bad_edit(tmp_path: Path):
    path = tmp_path / "secret"
    path.write_text(CURRENT + "\n")
    now = [0.0]
    secrets = SecretFile(path, clock=lambda: now[0])
    assert secrets.secrets() == (CURRENT.encode(),)

    path.write_text(f"{PREVIOUS}\n{CURRENT}\n")
    os.utime(path, ns=(1, 1))
    assert secrets.secrets() == (CURRENT.encode(),)  # not re-checked yet
    now[0] += RECHECK_S
    assert secrets.secrets() == (PREVIOUS.encode(), CURRENT.encode())

    path.write_text("oops\n")
    now[0] += RECHECK_S
    assert secrets.secrets() == (PREVIOUS.encode(), CURRENT.encode())
    assert secrets.reloads == 1


def test_missing_file_fails_at_start(tmp_path: Path):
    with pytest.raises(SecretFileError, match="cannot read"):
        SecretFile(tmp_path / "absent")
