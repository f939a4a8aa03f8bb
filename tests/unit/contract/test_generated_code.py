"""Where generated code lives (make lint runs scripts/gen-protos --check for drift)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_proto_has_generated_modules_where_its_callers_are():
    protos = sorted(p.stem for p in (ROOT / "protos" / "slotcache" / "v1").glob("*.proto"))
    assert protos == ["admin", "bus", "cache", "migration", "replication"]
    public = ROOT / "clients" / "python" / "slotcache" / "v1"
    internal = ROOT / "cluster" / "wire"
    for folder, names, absent in (
        (public, ("admin", "cache"), internal),
        (internal, ("bus", "migration", "replication"), public),
    ):
        for name in names:
            assert (folder / f"{name}_pb2.py").is_file()
            assert (folder / f"{name}_pb2_grpc.py").is_file()
            # The SDK carries no server-only protocol, and the server no copy of the public one.
            assert not (absent / f"{name}_pb2.py").exists()
