"""The prod overlay under podman: mutual TLS between nodes, users and a cluster secret.

The StatefulSet's sidecars must form the cluster by themselves over TLS,
as the bootstrap user, with no other step. Certificates, tokens and the
cluster secret are generated here, written as the Secrets an operator
would create, and mounted where the rendered pod spec mounts them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slotcache.ctl.certs import Authority
from tests.support.k8s import documents, render
from tests.support.podman import (
    HEADLESS,
    PodmanStatefulSet,
    Site,
    build_images,
    cannot_run,
    healthy,
    nodes,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAMESPACE = "slotcache"
PODS = 6
MEMORY_LIMIT = 1 << 30


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def prod_site(folder: Path) -> Site:
    """The prod overlay's four Secrets, and a client certificate and token for clusterctl."""
    authority = Authority.create(folder)
    hosts = (f"*.{HEADLESS}.{NAMESPACE}.svc", f"slotcache.{NAMESPACE}.svc")
    node = authority.issue(folder, "node", hosts, node=True)
    client = authority.issue(folder, "client", ())
    bootstrap_token, ops_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    users = f"user bootstrap on #{digest(bootstrap_token)} +@admin\n"
    users += f"user ops on #{digest(ops_token)} ~* +@all\n"
    for path in (authority.cert_path, client.cert, client.key):
        path.chmod(0o644)  # the client container's user reads them
    return Site(
        namespace=NAMESPACE,
        port=7443,
        secrets={
            "slotcache-tls": {
                "tls.crt": node.cert.read_text(),
                "tls.key": node.key.read_text(),
                "ca.crt": authority.cert_path.read_text(),
            },
            "slotcache-acl": {"users.acl": users},
            "slotcache-cluster-secret": {"secret": secrets.token_hex(32)},
            "slotcache-bootstrap": {"token": bootstrap_token},
        },
        client_env={
            "SLOTCACHE_TLS_CA": str(authority.cert_path),
            "SLOTCACHE_TLS_CERT": str(client.cert),
            "SLOTCACHE_TLS_KEY": str(client.key),
            "SLOTCACHE_TOKEN": ops_token,
        },
        client_files=folder,
    )


@pytest.fixture
def prod(tmp_path: Path, report_figure: Callable[[str], None]) -> Iterator[PodmanStatefulSet]:
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    build_images()
    site = prod_site(tmp_path / "pki")
    pods = PodmanStatefulSet(documents(render("prod")), MEMORY_LIMIT, site, tmp_path)
    try:
        yield pods
    finally:
        pods.close()


def test_prod_statefulset_forms_itself_over_tls_with_users(
    prod: PodmanStatefulSet, report_figure: Callable[[str], None]
) -> None:
    prod.start_all(range(PODS))
    try:
        formed_s = wait_until("the prod cluster formed", healthy(prod, PODS))
    except BaseException:
        # The containers are removed at teardown; their logs go into the report first.
        print(prod.logs())
        raise
    report_figure(f"k8s e2e prod (TLS, users): 6 pods started -> check passes in {formed_s:.1f} s")
    view = nodes(prod)
    suffix = f".{HEADLESS}.{NAMESPACE}.svc:7443"
    assert sorted(n["address"] for n in view) == sorted(prod.address(i) for i in range(PODS))
    assert all(n["address"].endswith(suffix) for n in view)
    assert sum(n["role"] == "primary" for n in view) == 3
    # A client with the CA's client certificate and a user's token writes and reads.
    assert prod.ctl("set", prod.address(4), "greeting", "over TLS").returncode == 0
    done = prod.ctl("get", prod.address(1), "greeting")
    assert done.returncode == 0 and done.stdout.strip() == "over TLS"
    # With a wrong token the same client is refused: users are on.
    refused = prod.ctl("get", prod.address(1), "greeting", "--token", "wrong-token")
    assert refused.returncode != 0 and "unauthenticated" in refused.stderr.lower()
