"""``--token-file``: a token kept in a file (a mounted Secret) rather than in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotcache.ctl.auth import token_from


def test_the_files_first_line_is_the_token_and_wins_over_one_given(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    assert token_from(None, str(secret)) == "s3cret-token"
    assert token_from("from-env", str(secret)) == "s3cret-token"
    assert token_from("from-env", None) == "from-env"


def test_a_missing_or_empty_file_is_refused_naming_it_but_never_a_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere: No such file"):
        token_from(None, str(tmp_path / "nowhere"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty is empty"):
        token_from("secret-from-env", str(tmp_path / "empty"))
