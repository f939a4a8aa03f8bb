"""The README's fenced code blocks, as a test runs them. Pure: parsing and rewriting only.

A block runs unless an HTML comment on the line before it says otherwise,
visibly, in the README itself::

    <!-- readme-test: skip (make run stays attached until Ctrl-C) -->
    <!-- readme-test: needs grpcurl -->

``skip`` never runs the block; ``needs TOOL`` runs it only where TOOL is
on PATH. Anything else in such a comment is an error, so a typo cannot
silently skip a block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

README_BASE_PORT = 7000
BUS_OFFSET = 10000
# The README's cluster: client ports 7000-7009 and their bus ports 17000-17009.
_PORT = re.compile(r"(?<![\d_])(1?)700(\d)(?![\d_])")
_UP = re.compile(r"(clusterctl up)(?=\s|$)", re.MULTILINE)
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
_DIRECTIVE = re.compile(r"^(skip)\s+\((.+)\)$|^(needs)\s+([\w.-]+(?:\s+[\w.-]+)*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its code, where it starts, and how it may run."""

    lang: str
    code: str
    line: int
    skip: str | None = None
    needs: tuple[str, ...] = ()


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order; ValueError for a malformed marker."""
    found: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the code block is never closed")
        skip, needs = _directive(lines, start)
        found.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1, skip, needs))
        i += 1
    return found


def _directive(lines: list[str], fence: int) -> tuple[str | None, tuple[str, ...]]:
    """The marker on the last non-blank line before the fence, if there is one."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    marker = _MARKER.match(lines[j].strip()) if j >= 0 else None
    if marker is None:
        return None, ()
    directive = _DIRECTIVE.match(marker.group(1))
    if directive is None:
        raise ValueError(
            f"line {j + 1}: {marker.group(1)!r} is not 'skip (why)' or 'needs TOOL ...'"
        )
    if directive.group(1):
        return directive.group(2), ()
    return None, tuple(directive.group(4).split())


def localize(code: str, base_port: int) -> str:
    """``code`` for a cluster whose first client port is ``base_port`` instead of 7000.

    Every README port 7000-7009 becomes ``base_port + n`` and every bus port
    17000-17009 becomes ``base_port + 10000 + n``; ``clusterctl up`` gets
    ``--base-port``. Nothing else changes.
    """
    if base_port == README_BASE_PORT:
        return code

    def port(match: re.Match[str]) -> str:
        offset = int(match.group(2)) + (BUS_OFFSET if match.group(1) else 0)
        return str(base_port + offset)

    return _UP.sub(rf"\1 --base-port {base_port}", _PORT.sub(port, code))
