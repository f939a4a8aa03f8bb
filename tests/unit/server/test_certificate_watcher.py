"""The certificate watcher: reloads on change only, and never serves a half-rotated pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotcache.ctl.certs import Authority, generate_local
from slotcache_server import peer_channels
from slotcache_server.security.tls import CertificateWatcher, TlsError, load_material


def test_a_rotation_is_picked_up_once_and_a_half_written_one_is_not(tmp_path: Path) -> None:
    certs = generate_local(tmp_path)
    watcher = CertificateWatcher(certs.node.cert, certs.node.key, certs.ca)
    first = watcher.material
    assert watcher.refresh() == 0 and watcher.material is first

    # A new certificate beside the old key: not a pair, so the old one stays.
    # (Files are renamed into place, as rotations should: a reader never sees half a file.)
    spare = Authority.load(certs.ca).issue(tmp_path / "spare", "node")
    new_cert = spare.cert.read_bytes()
    spare.cert.replace(certs.node.cert)
    assert watcher.refresh() == 0 and watcher.material is first

    # Its key arrives: the new pair is served from now on.
    spare.key.replace(certs.node.key)
    assert watcher.refresh() == 1
    assert watcher.material.cert == new_cert
    assert watcher.refresh() == 1


def test_unusable_files_are_named(tmp_path: Path) -> None:
    certs = generate_local(tmp_path)
    with pytest.raises(TlsError, match="does not match the certificate"):
        load_material(certs.node.cert, certs.client.key, certs.ca)
    with pytest.raises(TlsError, match="holds no PEM certificate"):
        load_material(certs.node.key, certs.node.key, None)
    with pytest.raises(TlsError, match="cannot read the CA file"):
        load_material(certs.node.cert, certs.node.key, tmp_path / "missing.crt")


def test_peer_channel_pools_learn_of_a_rotation_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = generate_local(tmp_path)
    monkeypatch.setattr(peer_channels, "CHECK_PERIOD_S", 0.0)
    peer_channels.use_tls(CertificateWatcher(certs.node.cert, certs.node.key, certs.ca))
    try:
        bus, forwarding = peer_channels.Rotation(), peer_channels.Rotation()
        assert not bus.happened()
        Authority.load(certs.ca).issue(tmp_path, "node")
        assert bus.happened() and forwarding.happened()
        assert not bus.happened() and not forwarding.happened()
    finally:
        peer_channels.use_tls(None)
