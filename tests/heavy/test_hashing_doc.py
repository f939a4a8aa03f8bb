"""docs/hashing.md against a fresh run of the published study, where that is cheap enough.

The whole study takes minutes (``scripts/hashing-study --check`` compares
every table); here the weighted-shares columns for three servers are
recomputed from the published seed and its million keys, which exercises
the hashing, the workload and every placement scheme in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from hashinglib import docblocks, report  # noqa: E402
from hashinglib.study import Results, StudyConfig, study_weights  # noqa: E402
from hashinglib.workload import make_workload  # noqa: E402

DOC = ROOT / "docs" / "hashing.md"


def test_the_docs_weighted_shares_for_three_servers_match_a_fresh_run() -> None:
    config = StudyConfig()
    fresh = Results(config=config)
    study_weights(make_workload(config.keys, config.seed, config.zipf), 3, config, fresh)
    rows = report.weighted(fresh).splitlines()[2:]
    published = docblocks.extract(DOC.read_text(), "weighted").splitlines()[2:]
    assert len(rows) == len(published)
    for row, doc_row in zip(rows, published, strict=True):
        # scheme | shares of the weight-1/2/4 servers | worst server's error, at N = 3
        assert row.split("|")[1:4] == doc_row.split("|")[1:4]
