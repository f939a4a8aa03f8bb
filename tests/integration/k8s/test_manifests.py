"""The rendered k8s/ overlays pass the schema, policy and lint checks, and say what they mean.

The tools come from the dev extras, ``.tools/`` and PATH (``.ci/run``
installs them all); each check skips, naming the tool, only where it is
missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from slotcache.ctl.main import build_parser
from slotcache_server.config import _OPTIONS, ServerConfig, load_config
from tests.support.k8s import (
    K8S,
    OVERLAYS,
    ROOT,
    Container,
    PodFacts,
    documents,
    kustomize_command,
    pod_containers,
    render,
    resource,
    tool,
)

GIB = 1 << 30
# Secret keys a rendered overlay reads through env (operators create the Secrets).
SECRETS: dict[str, dict[str, str]] = {}


def need(name: str) -> str:
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if kustomize_command() is None:
        pytest.skip("neither kubectl nor kustomize is installed")
    folder = tmp_path_factory.mktemp("rendered")
    paths = {}
    for overlay in OVERLAYS:
        paths[overlay] = folder / f"{overlay}.yaml"
        paths[overlay].write_text(render(overlay))
    return paths


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)


def test_rendered_overlays_pass_strict_schema_validation(rendered: dict[str, Path]) -> None:
    validate = need("kubernetes-validate")
    done = run(validate, "--strict", "--quiet", *map(str, rendered.values()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rendered_overlays_pass_checkov(rendered: dict[str, Path]) -> None:
    checkov = need("checkov")
    files = [arg for path in rendered.values() for arg in ("-f", str(path))]
    done = run(checkov, *files, "--framework", "kubernetes", "--compact", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    # Skips live in the StatefulSet's annotations, each with its reason beside it.
    assert "Failed checks: 0" in done.stdout


def test_manifests_and_rendered_output_pass_yamllint(rendered: dict[str, Path]) -> None:
    yamllint = need("yamllint")
    config = K8S / ".yamllint.yaml"
    done = run(yamllint, "--strict", "-c", str(config), str(K8S), *map(str, rendered.values()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = need("hadolint")
    done = run(hadolint, str(ROOT / "Dockerfile"))
    assert done.returncode == 0, done.stdout + done.stderr


def _stateful(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return resource(docs, "StatefulSet", "slotcache")


def server_config(server: Container) -> ServerConfig:
    """The configuration the server container starts with (files are read only at start)."""
    return load_config(
        [], environ={k: v for k, v in server.env.items() if k.startswith("SLOTCACHE_")}
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_server_accepts_the_configuration_it_is_given(
    rendered: dict[str, Path], overlay: str
) -> None:
    """Every SLOTCACHE_* variable names a flag, parses, and maxmemory is a share of the limit."""
    docs = documents(rendered[overlay].read_text())
    server, bootstrap = pod_containers(docs, PodFacts("slotcache-2", "ns", GIB, secrets=SECRETS))
    envs = {o.env for o in _OPTIONS}
    assert {v for v in server.env if v.startswith("SLOTCACHE_")} <= envs
    config = server_config(server)
    percent = float(server.env["SLOTCACHE_MAXMEMORY_PERCENT"])
    assert config.maxmemory == int(GIB * percent / 100)
    assert config.cluster_enabled and config.port == 7000
    assert config.announce_host == "slotcache-2.slotcache-headless.ns.svc"
    # The sidecar dials the port the nodes announce, so the names it matches are theirs.
    assert bootstrap.command == ["clusterctl"]
    announced = f"{config.announce_host}:{config.client_port}"
    assert bootstrap.args[:3] == ["bootstrap", "--self", announced]
    pattern = bootstrap.args[bootstrap.args.index("--pods") + 1]
    assert pattern.replace("{ordinal}", "2") == announced
    # Bus and metrics stay on the ports the container, Services and policies name.
    ports = {
        p["name"]: p["containerPort"]
        for p in _stateful(docs)["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert (config.cluster_bus_port, config.metrics_listen_port) == (ports["bus"], ports["metrics"])
    assert ports["client"] == config.port


def test_prod_sidecar_forms_over_tls_with_the_pods_certificate_and_its_token(
    rendered: dict[str, Path],
) -> None:
    """Under --tls-cluster and users, the sidecar gets what clusterctl needs to form the cluster."""
    docs = documents(rendered["prod"].read_text())
    server, bootstrap = pod_containers(
        docs, PodFacts("slotcache-0", "slotcache", GIB, secrets=SECRETS)
    )
    config = server_config(server)
    assert config.tls_cluster and config.acl_file is not None and config.client_port == 7443
    args = build_parser().parse_args(bootstrap.args)
    with_env = dict(bootstrap.env)
    assert (
        with_env["SLOTCACHE_TLS_CA"],
        with_env["SLOTCACHE_TLS_CERT"],
        with_env["SLOTCACHE_TLS_KEY"],
    ) == (str(config.tls_ca_file), str(config.tls_cert_file), str(config.tls_key_file))
    assert with_env["SLOTCACHE_USER"] == "bootstrap"
    # The token is a file from the Secret slotcache-bootstrap, not an environment value.
    token_dir = bootstrap.mounts["bootstrap-token"]
    assert with_env["SLOTCACHE_TOKEN_FILE"] == f"{token_dir}/token"
    # The files are in the Secret the server reads them from, mounted read-only in both.
    pod = _stateful(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    for container in (server, bootstrap):
        folder = container.mounts["tls"]
        assert str(config.tls_cert_file).startswith(folder + "/")
    assert volumes["tls"] == "slotcache-tls"
    assert volumes["bootstrap-token"] == "slotcache-bootstrap"
    specs = {c["name"]: c for c in pod["containers"]}
    assert all(m.get("readOnly") for m in specs["bootstrap"]["volumeMounts"] if m["name"] != "tmp")
    assert args.role == "cache" and args.self_address.endswith(":7443")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_availability_settings(rendered: dict[str, Path], overlay: str) -> None:
    docs = documents(rendered[overlay].read_text())
    spec = _stateful(docs)["spec"]
    pod = spec["template"]["spec"]
    config = resource(docs, "ConfigMap", "slotcache-config")["data"]
    # The handoff and drain, then the save, fit in the grace Kubernetes gives.
    assert pod["terminationGracePeriodSeconds"] >= float(config["SLOTCACHE_SHUTDOWN_GRACE"]) + 30
    assert resource(docs, "Service", "slotcache-headless")["spec"]["publishNotReadyAddresses"]
    assert resource(docs, "PodDisruptionBudget", "slotcache")["spec"]["maxUnavailable"] == 1
    # The cluster formed at first start has exactly the StatefulSet's pods.
    size = int(config["BOOTSTRAP_PRIMARIES"]) * (int(config["BOOTSTRAP_REPLICAS"]) + 1)
    assert spec["replicas"] == size
    server = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == 7000
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    anti = pod["affinity"]["podAntiAffinity"]
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    assert (key in anti) == (overlay == "prod")


def bus_sources(docs: list[dict[str, Any]], policy: str) -> set[str | None]:
    """The components whose pods a NetworkPolicy admits to the bus (None: any slotcache pod)."""
    rules = resource(docs, "NetworkPolicy", policy)["spec"]["ingress"]
    (bus,) = [r for r in rules if any(p["port"] == 17000 for p in r["ports"])]
    assert all(set(peer) == {"podSelector"} for peer in bus["from"])
    labels = [peer["podSelector"]["matchLabels"] for peer in bus["from"]]
    assert all(m["app.kubernetes.io/name"] == "slotcache" for m in labels)
    return {m.get("app.kubernetes.io/component") for m in labels}


def test_network_policy_keeps_the_bus_among_the_clusters_pods(rendered: dict[str, Path]) -> None:
    """Cache pods only, plus the proxies where the overlay has the proxy tier."""
    for overlay in OVERLAYS:
        docs = documents(rendered[overlay].read_text())
        proxies = any(d["kind"] == "Deployment" for d in docs)
        expected = {"cache", "proxy"} if proxies else {"cache"}
        assert bus_sources(docs, "slotcache") == expected
        if proxies:
            assert bus_sources(docs, "slotcache-proxy") == {None}


def test_dev_proxy_tier_forwards_for_clients_and_joins_by_itself(rendered: dict[str, Path]) -> None:
    """A slotless node with its own Service, autoscaler, probes and bootstrap sidecar."""
    docs = documents(rendered["dev"].read_text())
    facts = PodFacts("slotcache-proxy-abc", "ns", GIB, ip="10.0.0.9")
    proxy, bootstrap = pod_containers(docs, facts, kind="Deployment")
    config = server_config(proxy)
    assert proxy.env["SLOTCACHE_PROXY"] == "yes"
    assert config.announce_host == "10.0.0.9" and config.cluster_enabled
    args = build_parser().parse_args(bootstrap.args)
    assert args.role == "proxy" and args.self_address == "10.0.0.9:7000"
    assert args.pods == "slotcache-{ordinal}.slotcache-headless.ns.svc:7000"
    deployment = resource(docs, "Deployment", "slotcache-proxy")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "proxy"
    service = resource(docs, "Service", "slotcache-proxy")["spec"]
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
    hpa = resource(docs, "HorizontalPodAutoscaler", "slotcache-proxy")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "slotcache-proxy" and hpa["minReplicas"] >= 2
    server = pod["containers"][0]
    # The autoscaler's CPU target needs a CPU request; gRPC probes on the client port.
    assert server["resources"]["requests"]["cpu"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == 7000
    # Clients reach a proxy only once it can forward (it knows the slot map).
    assert server["readinessProbe"]["grpc"]["service"] == "slotcache.v1.Cache"
    assert "service" not in server["livenessProbe"]["grpc"]
    # Nothing but the node file to write, and no volume claim: a proxy keeps no data.
    assert "volumeClaimTemplates" not in deployment["spec"]
    assert proxy.env["SLOTCACHE_SNAPSHOT"] == "off"
