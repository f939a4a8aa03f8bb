"""Finding and adapting the README's code blocks (the README test's own logic). Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.readme import (
    Block,
    Printed,
    blocks,
    localize,
    printed,
    shell_commands,
    unexpected_prints,
)

README = Path(__file__).resolve().parents[3] / "README.md"

SAMPLE = """\
Intro.

<!-- readme-test: skip (it runs forever) -->
```sh
make run
```

<!-- readme-test: needs grpcurl -->

```sh
grpcurl -plaintext 127.0.0.1:7000 list
```

```python
print(1)
```
"""


def test_blocks_and_their_markers() -> None:
    assert blocks(SAMPLE) == [
        Block("sh", "make run\n", 4, skip="it runs forever"),
        Block("sh", "grpcurl -plaintext 127.0.0.1:7000 list\n", 10, needs=("grpcurl",)),
        Block("python", "print(1)\n", 14),
    ]


@pytest.mark.parametrize(
    "marker",
    ["<!-- readme-test: skip -->", "<!-- readme-test: skipp (x) -->", "<!-- readme-test: -->"],
)
def test_a_malformed_marker_is_an_error_not_a_skip(marker: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        blocks(f"{marker}\n```sh\necho\n```\n")


def test_an_unclosed_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="never closed"):
        blocks("```sh\necho\n")


def test_every_form_of_fence_is_a_block() -> None:
    # Tildes, longer fences, an info string after the language, a fence indented in a list.
    text = (
        "~~~python\nprint(1)\n~~~\n"
        "````sh\n```\necho fenced\n````\n"
        '```python title="x"\nprint(2)\n```\n'
        "- a list item:\n\n  ```sh\n  echo indented\n    echo more\n  ```\n"
    )
    assert [(b.lang, b.code, b.line) for b in blocks(text)] == [
        ("python", "print(1)\n", 1),
        ("sh", "```\necho fenced\n", 4),
        ("python", "print(2)\n", 8),
        ("sh", "echo indented\n  echo more\n", 13),
    ]


def test_a_block_without_a_language_is_found() -> None:
    # The README test then refuses it for its language, rather than never seeing it.
    assert blocks("```\necho\n```\n") == [Block("", "echo\n", 1)]


def test_an_indented_code_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 3: an indented code block"):
        blocks("Run this:\n\n    make run\n")


def test_a_marker_that_no_block_follows_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 1: a readme-test marker that no code block"):
        blocks("<!-- readme-test: skip (why) -->\nA paragraph.\n\n```sh\necho\n```\n")
    with pytest.raises(ValueError, match="line 4: a readme-test marker"):
        blocks("```sh\necho\n```\n<!-- readme-test: needs grpcurl -->\n")


def test_a_marker_inside_a_block_is_code() -> None:
    text = "```sh\necho '<!-- readme-test: skip (no) -->'\n```\n"
    assert blocks(text) == [Block("sh", "echo '<!-- readme-test: skip (no) -->'\n", 1)]


def test_shell_commands_split_lines_operators_and_continuations() -> None:
    code = (
        "make run     # starts it (Ctrl-C stops it)\n"
        "a --flag 'x y' && b | c; d &\n"
        "slotcache-server --port 7000 \\\n    --maxmemory 1gb\n"
        "# a comment line\n"
    )
    assert shell_commands(code) == [
        ["make", "run"],
        ["a", "--flag", "x y"],
        ["b"],
        ["c"],
        ["d"],
        ["slotcache-server", "--port", "7000", "--maxmemory", "1gb"],
    ]


def test_localize_moves_every_readme_port() -> None:
    code = (
        ".venv/bin/clusterctl up                 # the same 6 nodes\n"
        "slotcache-server --port 7006 --bus-port 17006 --data-dir .cluster/node-7006\n"
        'Client(["127.0.0.1:7000", "127.0.0.1:7001"], ttl_ms=60_000, max_entries=10_000)\n'
        "echo 70000 7000 60_7000\n"
    )
    assert localize(code, 12000) == (
        ".venv/bin/clusterctl up --base-port 12000                 # the same 6 nodes\n"
        "slotcache-server --port 12006 --bus-port 22006 --data-dir .cluster/node-12006\n"
        'Client(["127.0.0.1:12000", "127.0.0.1:12001"], ttl_ms=60_000, max_entries=10_000)\n'
        "echo 70000 12000 60_7000\n"
    )
    assert localize(code, 7000) == code


def test_every_readme_block_is_runnable_or_marked() -> None:
    found = blocks(README.read_text())
    assert found, "the README has no code blocks"
    for block in found:
        assert block.lang in ("sh", "python"), f"README line {block.line}: ```{block.lang}"


PRINTS = """\
import slotcache

with slotcache.Client("127.0.0.1:7000") as cache:
    print(cache.incr("hits"))  # 1 the first time, then 2, ...
    print(cache.get("x#y"))
    # b'#'
    print(cache.stats.ops_per_message)  # e.g. 20.0
    print("unannounced")
    x = 1  # a comment on another statement
"""


def test_printed_pairs_each_print_with_its_comment() -> None:
    assert printed(PRINTS) == [
        Printed(4, "1 the first time, then 2, ..."),
        Printed(5, "b'#'"),
        Printed(7, None),
        Printed(8, None),
    ]


def test_unexpected_prints() -> None:
    assert unexpected_prints(PRINTS, "1\nb'#'\n33.0\nanything\n") == []
    assert unexpected_prints(PRINTS, "2\nb'#'\n20.0\nanything\n") == [
        "line 4 printed '2', but its comment says '1 the first time, then 2, ...'"
    ]
    assert unexpected_prints(PRINTS, "1\n") == ["4 print calls but 1 line printed"]
