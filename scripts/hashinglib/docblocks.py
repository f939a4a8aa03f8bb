"""Generated blocks inside a markdown page, between ``<!-- NAME -->`` and ``<!-- /NAME -->``.

The page keeps its prose; a run rewrites only what sits between the
markers, and a check compares what sits there with a fresh run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping

PREFIX = "hashing-study:"


def _pattern(name: str) -> re.Pattern[str]:
    tag = re.escape(PREFIX + name)
    return re.compile(rf"(<!-- {tag} -->\n)(.*?)(<!-- /{tag} -->)", re.DOTALL)


def extract(page: str, name: str) -> str:
    """The text of block ``name`` (without its markers)."""
    match = _pattern(name).search(page)
    if match is None:
        raise KeyError(f"the page has no block {PREFIX}{name}")
    return match.group(2).rstrip("\n")


def replace(page: str, blocks: Mapping[str, str]) -> str:
    """The page with each block's text replaced (every block must be there)."""
    for name, text in blocks.items():
        pattern = _pattern(name)
        if pattern.search(page) is None:
            raise KeyError(f"the page has no block {PREFIX}{name}")
        page = pattern.sub(_filler(text), page)
    return page


def _filler(text: str) -> Callable[[re.Match[str]], str]:
    def fill(match: re.Match[str]) -> str:
        return match.group(1) + text + "\n" + match.group(3)

    return fill


def differences(page: str, blocks: Mapping[str, str], skip: Iterable[str] = ()) -> list[str]:
    """A unified diff, page against fresh, of every block that differs (empty if none does)."""
    out: list[str] = []
    for name, fresh in blocks.items():
        if name in set(skip):
            continue
        try:
            current = extract(page, name)
        except KeyError as exc:
            out.append(str(exc))
            continue
        if current != fresh:
            out.extend(
                difflib.unified_diff(
                    current.splitlines(),
                    fresh.splitlines(),
                    f"{PREFIX}{name} (page)",
                    f"{PREFIX}{name} (fresh run)",
                    lineterm="",
                )
            )
    return out
