"""Every code block of README.md runs, in order, as a reader would paste it.

One session in a fresh folder: the README's own ``clusterctl up`` starts
the cluster, the blocks after it use it (failover, growing and shrinking,
the Python examples, one-key commands), and its ``clusterctl down`` block
stops it. ``sh`` blocks run with ``sh -eu`` (every command must succeed),
``python`` blocks as scripts, each in its own interpreter (so each must be
complete by itself); what a Python block prints must be what the comments
after its ``print`` calls say (the printed line starts the comment, which
may go on in words; ``e.g.`` comments show a figure that varies and are not
compared). Blocks marked ``skip`` in the README never run, those
marked ``needs TOOL`` run where TOOL is installed; the test counts both,
names each one it did not run (and why) in the run's summary, and fails
unless every other block ran and succeeded. The blocks it does not run are
still checked command by command, without running them, by
``tests/unit/readme/test_readme_unrun_blocks.py``.

Ports: the README's cluster is on 7000-7006 (bus 17000-17006), which a
developer's ``make run`` may well hold while the tests run. The blocks run
on a free block of ports instead: each README port is shifted by the same
amount, and ``clusterctl up`` gets ``--base-port`` (see
:func:`tests.support.readme.localize`). Nothing else in the text changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slotcache.ctl import local
from tests.support.ctl import brought_down
from tests.support.ports import free_port_block
from tests.support.readme import Block, blocks, localize, unexpected_prints

README = Path(__file__).resolve().parents[3] / "README.md"
BLOCK_TIMEOUT_S = 300.0
OUTPUT_TAIL = 6000
INTERPRETERS = {"sh": ["sh", "-eu", "-c"], "python": [sys.executable, "-c"]}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    """A folder that looks like the project to the README: ``.venv`` is this test's venv.

    Whatever the blocks leave running from its ``.cluster`` is stopped at the end.
    """
    venv = Path(sys.prefix)
    if not (venv / "bin" / "clusterctl").exists():
        pytest.fail(f"run the tests from the project's venv (no clusterctl in {venv}/bin)")
    (tmp_path / ".venv").symlink_to(venv)
    with brought_down(tmp_path / ".cluster"):
        yield tmp_path


def run_block(block: Block, code: str, cwd: Path, log: Path) -> tuple[int, str, str]:
    """One block: its exit status, stdout and stderr.

    They go through files (``log`` and ``log`` with ``.err``), not pipes: a
    server the block starts with ``&`` keeps them open after the block ends.
    """
    command = [*INTERPRETERS[block.lang], code]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTCACHE_")}
    errors = log.with_suffix(".err")
    with open(log, "w") as out, open(errors, "w") as err:
        result = subprocess.run(
            command,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
    return result.returncode, log.read_text(), errors.read_text()


def not_run_because(block: Block) -> str | None:
    """Why ``block`` does not run here, or None if it does."""
    if block.skip is not None:
        return f"skip ({block.skip})"
    missing = [tool for tool in block.needs if shutil.which(tool) is None]
    if missing:
        return f"needs {' '.join(missing)}, which is not installed"
    return None


def test_every_readme_block_runs(sandbox: Path, report_figure: Callable[[str], None]) -> None:
    found = blocks(README.read_text())
    base = free_port_block(10)
    ran, skipped = [], []
    for n, block in enumerate(found):
        why = not_run_because(block)
        if why is not None:
            report_figure(f"README.md line {block.line} ({block.lang}) not run: {why}")
            skipped.append(block)
            continue
        code, stdout, stderr = run_block(
            block, localize(block.code, base), sandbox, sandbox / f"block-{n}.log"
        )
        where = f"README.md line {block.line} ({block.lang} block)"
        shown = f"{block.code}\n--- stdout ---\n{stdout[-OUTPUT_TAIL:]}\n--- stderr ---\n"
        shown += stderr[-OUTPUT_TAIL:]
        assert code == 0, f"{where} exited with {code}:\n{shown}"
        if block.lang == "python":
            wrong = unexpected_prints(block.code, stdout)
            assert not wrong, f"{where}: {'; '.join(wrong)}:\n{shown}"
        ran.append(block)

    report_figure(f"README.md: {len(ran)} of {len(found)} code blocks ran")
    marked = [b for b in found if b.skip is not None or b.needs]
    assert len(ran) + len(skipped) == len(found)
    # Only marked blocks may be left out: a skip is always visible in the README.
    assert all(b in marked for b in skipped), [b.line for b in skipped if b not in marked]
    assert [b for b in found if b not in marked] == [b for b in ran if b not in marked]
    assert ran
    # The README's last word on the cluster is its down block: nothing is left running.
    assert not local.discover(sandbox / ".cluster").running
