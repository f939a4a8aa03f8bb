"""What the README says about the tree is what the tree holds. Pure: reads files only."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


def test_the_integration_areas_are_the_folders() -> None:
    (row,) = [r for r in README.read_text().splitlines() if r.startswith("| `tests/integration/")]
    named = re.findall(r"`(\w+)`", row.split("by area:", 1)[1])
    folders = sorted(
        p.name for p in (ROOT / "tests" / "integration").iterdir() if (p / "__init__.py").exists()
    )
    assert sorted(named) == folders
