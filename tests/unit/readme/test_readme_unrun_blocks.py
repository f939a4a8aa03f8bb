"""The README blocks the README test does not run are still checked, command by command. Pure.

A block marked ``skip`` (``make run``, a server for a host of one's own,
the benchmark, the test suites) or ``needs TOOL`` (grpcurl, which CI does
not have) would otherwise drift unnoticed: a renamed make target, a
removed flag, a misspelt RPC. Each command is checked the way its program
would read it, without running it: make targets against the Makefile,
server and benchmark flags with their own parsers, pytest paths and
markers against the tree, grpcurl's JSON against the RPC's request
message. A command of any other program fails this test until it gets a
check here (or its block runs).
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory

# Imported for their services, which then are in the descriptor pool.
import slotcache.v1.admin_pb2
import slotcache.v1.cache_pb2  # noqa: F401
from slotcache_server.config import load_config
from tests.support.readme import Block, blocks, shell_commands

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
SCRIPTS = ROOT / "scripts"
_TARGET = re.compile(r"^([A-Za-z][\w.-]*)\s*:(?!=)", re.MULTILINE)
_MARKER_WORD = re.compile(r"[A-Za-z_]\w*")
_README_ADDRESS = re.compile(r"^127\.0\.0\.1:700\d$")


def parsed(parse: Callable[[], object]) -> str | None:
    """None if ``parse`` accepts the arguments, else argparse's complaint (it exits 2)."""
    try:
        parse()
    except SystemExit as exc:
        return f"rejected (exit {exc.code})"
    return None


def check_make(args: list[str]) -> str | None:
    targets = set(_TARGET.findall((ROOT / "Makefile").read_text()))
    unknown = [a for a in args if a not in targets]
    return f"no make target {unknown}" if unknown else None


def check_server(args: list[str]) -> str | None:
    return parsed(lambda: load_config(args, environ={}))


def check_bench(args: list[str]) -> str | None:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from benchlib.config import parse_args

    return parsed(lambda: parse_args(args, datetime.now(UTC), ROOT))


def check_pytest(args: list[str]) -> str | None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    markers = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    rest = iter(args)
    for arg in rest:
        if arg == "-m":
            words = set(_MARKER_WORD.findall(next(rest))) - {"and", "or", "not"}
            if not words <= markers:
                return f"unknown markers {sorted(words - markers)}"
        elif arg.startswith("-"):
            if arg not in ("-q", "-x"):
                return f"unchecked option {arg}"
        elif not (ROOT / arg.split("::")[0]).exists():
            return f"no such path {arg}"
    return None


def check_python(args: list[str]) -> str | None:
    if args[:2] == ["-m", "pytest"]:
        return check_pytest(args[2:])
    if args[:1] == ["scripts/bench"]:
        return check_bench(args[1:])
    return "no check for this use of python"


def check_grpcurl(args: list[str]) -> str | None:
    """Plaintext to a README node, an RPC that exists, and JSON its request message accepts."""
    if "-plaintext" not in args or not _README_ADDRESS.match(args[-2]):
        return "not -plaintext to one of the README's nodes"
    if "-d" not in args:
        return "no request (-d JSON)"
    service, _, method = args[-1].rpartition("/")
    try:
        rpc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    except KeyError:
        return f"no RPC {args[-1]}"
    request = message_factory.GetMessageClass(rpc.input_type)()
    try:
        json_format.Parse(args[args.index("-d") + 1], request)
    except json_format.ParseError as exc:
        return f"the request does not parse as {rpc.input_type.full_name}: {exc}"
    return None


CHECKS: dict[str, Callable[[list[str]], str | None]] = {
    "make": check_make,
    "slotcache-server": check_server,
    ".venv/bin/slotcache-server": check_server,
    ".venv/bin/python": check_python,
    "grpcurl": check_grpcurl,
}


def unrun() -> list[Block]:
    return [b for b in blocks(README.read_text()) if b.skip is not None or b.needs]


def test_the_readme_has_blocks_that_do_not_run() -> None:
    # If none are left, this file has nothing to do: delete it rather than let it pass idly.
    assert unrun()


@pytest.mark.parametrize("block", unrun(), ids=lambda b: f"line{b.line}")
def test_every_command_of_a_block_that_does_not_run_is_checked(block: Block) -> None:
    if block.lang == "python":
        compile(block.code, f"README.md line {block.line}", "exec")
        return
    assert block.lang == "sh", block.lang
    commands = shell_commands(block.code)
    assert commands
    for words in commands:
        check = CHECKS.get(words[0])
        assert check is not None, f"README.md line {block.line}: no check for {words[0]!r}"
        problem = check(words[1:])
        assert problem is None, f"README.md line {block.line}: {' '.join(words)}: {problem}"


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("make runn", "no make target"),
        ("slotcache-server --maxmemory-polcy allkeys-lru", "rejected"),
        (".venv/bin/python scripts/bench --workloads w9", "rejected"),
        (".venv/bin/python -m pytest -q tests/integration/nowhere", "no such path"),
        ('.venv/bin/python -m pytest -m "not slowest"', "unknown markers"),
        ("grpcurl -plaintext -d '{}' 127.0.0.1:7000 slotcache.v1.Cache/Sett", "no RPC"),
        (
            'grpcurl -plaintext -d \'{"kee": ""}\' 127.0.0.1:7000 slotcache.v1.Cache/Get',
            "does not parse",
        ),
        ("grpcurl -plaintext -d '{}' 127.0.0.1:8000 slotcache.v1.Cache/Get", "README's nodes"),
        ("grpcurl -plaintext 127.0.0.1:7000 slotcache.v1.Cache/Get", "no request"),
    ],
)
def test_the_checks_catch_drift(command: str, problem: str) -> None:
    (words,) = shell_commands(command)
    found = CHECKS[words[0]](words[1:])
    assert found is not None and problem in found, found
