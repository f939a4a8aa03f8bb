"""Finding and adapting the README's code blocks (the README test's own logic). Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.readme import Block, blocks, localize

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
