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

import io
import itertools
import re
import shlex
import tokenize
from dataclasses import dataclass

from slotcache.ctl.wording import counted

README_BASE_PORT = 7000
BUS_OFFSET = 10000
# The README's cluster: client ports 7000-7009 and their bus ports 17000-17009.
_PORT = re.compile(r"(?<![\d_])(1?)700(\d)(?![\d_])")
_UP = re.compile(r"(clusterctl up)(?=\s|$)", re.MULTILINE)
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
_MENTIONS_MARKER = re.compile(r"<!--\s*readme-test")
_DIRECTIVE = re.compile(r"^(skip)\s+\((.+)\)$|^(needs)\s+([\w.-]+(?:\s+[\w.-]+)*)$")
# Four spaces or a tab after a blank line: Markdown's indented code block, which has no
# language to run it with.
_INDENTED = re.compile(r"^( {4}|\t)\S")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its code, where it starts, and how it may run."""

    lang: str
    code: str
    line: int
    skip: str | None = None
    needs: tuple[str, ...] = ()


def _opening(line: str) -> re.Match[str] | None:
    """The fence that opens a block on ``line`` (``` or ~~~, any indent, any info string)."""
    fence = _FENCE.match(line)
    if fence is None or (fence["fence"][0] == "`" and "`" in fence["info"]):
        return None
    return fence


def _closes(line: str, opening: re.Match[str]) -> bool:
    """Whether ``line`` closes the block ``opening`` started (same character, as long or longer)."""
    fence = _FENCE.match(line)
    return (
        fence is not None
        and not fence["info"]
        and fence["fence"][0] == opening["fence"][0]
        and len(fence["fence"]) >= len(opening["fence"])
    )


def _dedent(line: str, indent: str) -> str:
    """``line`` without the fence's own indentation (as Markdown shows it)."""
    return line[len(indent) :] if line.startswith(indent) else line.lstrip()


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order.

    ValueError for whatever would let code escape the test unnoticed: a
    malformed or orphaned marker, an indented code block, an unclosed fence.
    """
    found: list[Block] = []
    markers: set[int] = set()  # lines outside blocks that mention a marker
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = _opening(lines[i])
        if opening is None:
            if _MENTIONS_MARKER.search(lines[i]):
                markers.add(i)
            if _INDENTED.match(lines[i]) and (i == 0 or not lines[i - 1].strip()):
                raise ValueError(
                    f"line {i + 1}: an indented code block; fence it (```sh or ```python) "
                    "so that the README test runs it"
                )
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not _closes(lines[i], opening):
            body.append(_dedent(lines[i], opening["indent"]))
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the code block is never closed")
        marker, skip, needs = _directive(lines, start)
        if marker is not None:
            markers.discard(marker)
        lang = opening["info"].split(maxsplit=1)[0] if opening["info"] else ""
        found.append(Block(lang, "\n".join(body) + "\n", start + 1, skip, needs))
        i += 1
    if markers:
        raise ValueError(
            f"line {min(markers) + 1}: a readme-test marker that no code block follows"
        )
    return found


def _directive(lines: list[str], fence: int) -> tuple[int | None, str | None, tuple[str, ...]]:
    """The marker on the last non-blank line before the fence: its index, skip and needs."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    marker = _MARKER.match(lines[j].strip()) if j >= 0 else None
    if marker is None:
        return None, None, ()
    directive = _DIRECTIVE.match(marker.group(1))
    if directive is None:
        raise ValueError(
            f"line {j + 1}: {marker.group(1)!r} is not 'skip (why)' or 'needs TOOL ...'"
        )
    if directive.group(1):
        return j, directive.group(2), ()
    return j, None, tuple(directive.group(4).split())


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


# A comment that starts so shows an example of a figure that varies, not what is printed.
EXAMPLE = "e.g."
_LAYOUT = frozenset({tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT})


@dataclass(frozen=True)
class Printed:
    """A ``print`` call of a Python block, and what its comment says it prints."""

    line: int
    says: str | None


def printed(code: str) -> list[Printed]:
    """Every ``print(`` of ``code``, in order, with the comment that shows its output.

    That is the comment at the end of its line, or else a comment alone on
    the next line. ``says`` is None without one, or when the comment gives
    an example (starts with ``e.g.``).
    """
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    comments = {t.start[0]: t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT}
    with_code = {t.start[0] for t in tokens if t.type not in _LAYOUT | {tokenize.COMMENT}}
    found = []
    for token, after in itertools.pairwise(tokens):
        if token.type != tokenize.NAME or token.string != "print" or after.string != "(":
            continue
        line = token.start[0]
        says = comments.get(line)
        if says is None and line + 1 not in with_code:
            says = comments.get(line + 1)
        found.append(Printed(line, None if says is None or says.startswith(EXAMPLE) else says))
    return found


def unexpected_prints(code: str, stdout: str) -> list[str]:
    """Where a Python block printed something other than its comments say, in words."""
    prints, lines = printed(code), stdout.splitlines()
    if len(prints) != len(lines):
        return [f"{counted(len(prints), 'print call')} but {counted(len(lines), 'line')} printed"]
    return [
        f"line {p.line} printed {got!r}, but its comment says {p.says!r}"
        for p, got in zip(prints, lines, strict=True)
        if p.says is not None and not p.says.startswith(got)
    ]


_OPERATORS = frozenset({"&&", "||", ";", "|", "&"})


def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block, as words: comments dropped, lines continued.

    ``a && b | c`` is three commands. Enough for the README's blocks, which
    use no loops, functions or substitutions where this is needed (see the
    test of the blocks that do not run).
    """
    found: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in lexer:
            if word in _OPERATORS:
                found.append(command)
                command = []
            else:
                command.append(word)
        found.append(command)
    return [c for c in found if c]
