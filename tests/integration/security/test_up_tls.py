"""``clusterctl up --tls``: trying TLS is one flag, and what it prints works as printed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.ctl import Ctl, brought_down, run_cli, run_python
from tests.support.ports import free_port_block


def test_up_tls_starts_a_mutual_tls_cluster_and_says_how_to_connect(
    tmp_path: Path, ctl: Ctl
) -> None:
    base = free_port_block(3)
    with brought_down(tmp_path / "cluster") as root:
        started = run_cli(
            *("up", "--tls", "--json", "--dir", str(root), "--base-port", str(base)),
            *("--primaries", "3", "--replicas", "0", "--node-timeout-ms", "1000"),
        )
        assert started.returncode == 0, started.stderr
        data = json.loads(started.stdout)
        assert data["tls"] is True
        connect = data["connect"]
        tls = connect["tls"]
        assert all(Path(tls[name]).is_file() for name in ("ca", "cert", "key"))
        assert not list(root.glob("*.crt"))  # the certificates stay in their own folder

        # The printed snippet runs as printed.
        snippet = run_python(connect["python"])
        assert snippet.returncode == 0, snippet.stderr
        assert snippet.stdout.strip() == "b'hello'"

        address = connect["addresses"][0]
        flags = ("--tls-ca", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"])
        read = ctl("get", address, "greeting", *flags)
        assert read.code == 0, read.err
        assert "hello" in read.out
        checked = ctl("check", connect["addresses"][2], *flags)
        assert checked.code == 0, checked.err

        # Without the client certificate the nodes refuse, and say what may be missing.
        plain = ctl("get", address, "greeting", "--tls-ca", tls["ca"])
        assert plain.code == 1
        assert "client certificate" in plain.err
        assert all("-cacert" in c and "-plaintext" not in c for c in connect["grpcurl"])
