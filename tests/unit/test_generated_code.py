import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_generated_code_matches_the_protos():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-protos"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_proto_has_generated_modules():
    protos = sorted(p.stem for p in (ROOT / "protos" / "slotcache" / "v1").glob("*.proto"))
    generated = ROOT / "clients" / "python" / "slotcache" / "v1"
    assert protos == ["admin", "bus", "cache", "migration", "replication"]
    for name in protos:
        assert (generated / f"{name}_pb2.py").is_file()
        assert (generated / f"{name}_pb2_grpc.py").is_file()
