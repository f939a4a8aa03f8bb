"""A StatefulSet played by podman: the rendered pod spec, run container by container.

Each pod is its server container ``slotcache-N`` and its bootstrap sidecar
``slotcache-N-bootstrap``, which shares the server's network namespace as
containers of one pod do. Command, args and env come from the rendered
manifest; the volume is a named volume per ordinal (its PVC); the pod's
DNS names under the headless Service are network aliases on one network
created for the test, where each pod gets an address the test picks, so a
restarted pod can be given a new one. The host talks to the cluster
through ``podman exec`` (clusterctl and the SDK in a client container on
the network), as an operator would with ``kubectl exec``, and to a proxy
pod through its client port published on 127.0.0.1, as through
``kubectl port-forward``. Secrets are folders of files the test writes,
mounted where the pod spec mounts them.
Everything carries one label, and :meth:`PodmanStatefulSet.close` removes
all of it, as does the next run if a previous one was killed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.k8s import ROOT, Container, PodFacts, kustomize_command, pod_containers
from tests.support.ports import free_port_block

LABEL = "slotcache.test=statefulset"
IMAGE = "localhost/slotcache:e2e"
HEADLESS = "slotcache-headless"
CLIENT = Path(__file__).with_name("container_client.py")


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run podman; return its stdout, raising with its stderr on failure when ``check``."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def cannot_run() -> str | None:
    """Why the end-to-end tests cannot run here (a tool missing, not root), or None."""
    absent = [t for t in ("podman", "runc", "mmdebstrap") if shutil.which(t) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (.ci/run installs them)"
    if kustomize_command() is None:
        return "neither kubectl nor kustomize is installed"
    if os.geteuid() != 0:
        return "podman runs as root on these machines"
    return None


def build_images() -> float:
    """The image, as ``make k8s-image`` builds it (cached layers make a rebuild quick); seconds."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-image"), IMAGE],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return time.monotonic() - started


def remove_everything() -> None:
    """Remove every container, volume and network this test ever created."""
    for kind in ("container", "network", "volume"):
        listed = podman(kind, "ls", "-q", "--filter", f"label={LABEL}", check=False).split()
        if listed:
            extra = ["--force", "--volumes", "--time", "0"] if kind == "container" else ["--force"]
            podman(kind, "rm", *extra, *listed, check=False)


def _env(container: Container) -> list[str]:
    return _env_args(container.env)


def _env_args(env: Mapping[str, str]) -> list[str]:
    return [f"--env={k}={v}" for k, v in env.items()]


def _secret_folders(
    docs: list[dict[str, Any]], secrets: Secrets, workdir: Path | None
) -> dict[str, Path]:
    """Each Secret volume of the pods, by volume name: a folder of the Secret's files.

    The files are readable by the pods' user, as the kubelet's ``defaultMode``
    and ``fsGroup`` make them.
    """
    folders: dict[str, Path] = {}
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            if "secret" not in volume:
                continue
            assert workdir is not None, "Secret volumes need a folder for their files"
            name = volume["secret"]["secretName"]
            folder = workdir / "secrets" / name
            folder.mkdir(parents=True, exist_ok=True)
            for key, content in secrets[name].items():
                (folder / key).write_text(content)
                (folder / key).chmod(0o644)
            folders[volume["name"]] = folder
    return folders


def pod_name(ordinal: int) -> str:
    """The StatefulSet's name for pod ``ordinal``."""
    return f"slotcache-{ordinal}"


Secrets = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Site:
    """What differs between the overlays run here: namespace, announced port, Secrets."""

    namespace: str = "slotcache-dev"
    # The client port the nodes announce (the TLS one under --tls-cluster).
    port: int = 7000
    # Each Secret's keys and contents, by Secret name, as an operator would create them.
    secrets: Secrets = field(default_factory=dict)
    # clusterctl's environment in the client container (TLS files, a token), and the
    # host folder mounted read-only at the same path there, holding those files.
    client_env: Mapping[str, str] = field(default_factory=dict)
    client_files: Path | None = None

    def dns_name(self, ordinal: int) -> str:
        """The pod's name under the headless Service, as the nodes announce it."""
        return f"{pod_name(ordinal)}.{HEADLESS}.{self.namespace}.svc"


#: Held by the one PodmanStatefulSet that may run on this machine at a time.
TURN_LOCK = Path("/tmp/slotcache-podman-statefulset.lock")


class PodmanStatefulSet:
    """The rendered StatefulSet's pods as podman containers on the test's own network."""

    def __init__(
        self,
        docs: list[dict[str, Any]],
        memory_limit_bytes: int,
        site: Site = Site(),
        workdir: Path | None = None,
    ) -> None:
        self._docs = docs
        self._memory = memory_limit_bytes
        self.site = site
        self._secret_dirs = _secret_folders(docs, site.secrets, workdir)
        # Container names (slotcache-N) and the cleanup by label are machine-wide, so
        # StatefulSets started by parallel test workers take turns; close() lets go.
        self._turn = open(TURN_LOCK, "a+")  # noqa: SIM115 (held until close)
        fcntl.flock(self._turn, fcntl.LOCK_EX)
        # A new name each run: podman's address bookkeeping is per network name, and
        # a container removed while its network went away can leave its address taken.
        self.network = f"slotcache-e2e-{os.getpid()}"
        try:
            remove_everything()
            podman("network", "create", f"--label={LABEL}", self.network)
            subnet = json.loads(podman("network", "inspect", self.network))[0]["subnets"][0]
        except BaseException:
            self._turn.close()
            raise
        self._subnet = ipaddress.ip_network(subnet["subnet"])
        self._generation: dict[int, int] = {}
        self.client = "slotcache-client"
        files = (
            [f"--volume={site.client_files}:{site.client_files}:ro"] if site.client_files else []
        )
        podman(
            "run", "--detach", f"--label={LABEL}", f"--name={self.client}",
            f"--network={self.network}", "--read-only", "--cap-drop=ALL",
            # glibc's resolver: gRPC's own (c-ares) gives up on podman's DNS server
            # when the machine is loaded ("DNS query cancelled").
            "--env=GRPC_DNS_RESOLVER=native", *_env_args(site.client_env), *files,
            "--entrypoint=sleep", IMAGE, "900",
        )  # fmt: skip

    def address(self, ordinal: int) -> str:
        """The pod's client address, by name."""
        return f"{self.site.dns_name(ordinal)}:{self.site.port}"

    def ip(self, ordinal: int) -> str:
        """The IP the pod has now: each start of an ordinal gets a new one."""
        generation = self._generation[ordinal]
        return str(self._subnet.network_address + 10 + ordinal + 40 * generation)

    def start_all(self, ordinals: Sequence[int]) -> None:
        """Start several pods at once, as a StatefulSet with Parallel pod management does."""
        with ThreadPoolExecutor(max_workers=len(ordinals)) as pool:
            list(pool.map(self.start, ordinals))

    def start(self, ordinal: int) -> None:
        """Create pod ``ordinal``'s containers, as the kubelet would, on a fresh IP."""
        self._generation[ordinal] = self._generation.get(ordinal, -1) + 1
        name = pod_name(ordinal)
        facts = PodFacts(name, self.site.namespace, self._memory, secrets=self.site.secrets)
        server, sidecar = pod_containers(self._docs, facts)
        volume = f"slotcache-e2e-data-{ordinal}"
        if subprocess.run(["podman", "volume", "exists", volume], check=False).returncode:
            podman("volume", "create", f"--label={LABEL}", volume)
        pod = [
            f"--ip={self.ip(ordinal)}", f"--network-alias={self.site.dns_name(ordinal)}",
            f"--volume={volume}:{server.mounts['data']}:U",
        ]  # fmt: skip
        self._run_pod(name, server, sidecar, pod)

    def start_proxy(self, index: int) -> int:
        """Create proxy pod ``index`` from the Deployment; returns its client port on loopback.

        The port is published on 127.0.0.1, as ``kubectl port-forward`` to the
        proxy Service would be, for a client on the host.
        """
        name = f"slotcache-proxy-{index}"
        ip = str(self._subnet.network_address + 200 + index)
        facts = PodFacts(name, self.site.namespace, self._memory, ip=ip)
        server, sidecar = pod_containers(self._docs, facts, kind="Deployment")
        port = free_port_block(1)
        # The emptyDir the node file lives in for the pod's life: a new volume each start.
        volume = f"slotcache-e2e-{name}"
        podman("volume", "rm", "--force", volume, check=False)
        podman("volume", "create", f"--label={LABEL}", volume)
        pod = [
            f"--ip={ip}", f"--publish=127.0.0.1:{port}:7000",
            f"--volume={volume}:{server.mounts['data']}:U",
        ]  # fmt: skip
        self._run_pod(name, server, sidecar, pod)
        return port

    def _secret_mounts(self, container: Container) -> list[str]:
        """The Secrets the container mounts, as read-only folders of the test's files."""
        return [
            f"--volume={self._secret_dirs[volume]}:{path}:ro"
            for volume, path in container.mounts.items()
            if volume in self._secret_dirs
        ]

    def _run_pod(self, name: str, server: Container, sidecar: Container, pod: list[str]) -> None:
        """The server container with the pod's network settings, then the sidecar in its netns."""
        restricted = [
            f"--label={LABEL}", "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--user=10001:10001",
            "--tmpfs=/tmp:size=16m",
        ]  # fmt: skip
        podman(
            "run", "--detach", *restricted, f"--name={name}", f"--hostname={name}",
            f"--network={self.network}", *pod, *_env(server), *self._secret_mounts(server),
            *self._entrypoint(server.command), IMAGE, *server.args,
        )  # fmt: skip
        podman(
            "run", "--detach", *restricted, f"--name={name}-bootstrap",
            f"--network=container:{name}", *_env(sidecar), *self._secret_mounts(sidecar),
            *self._entrypoint(sidecar.command), IMAGE, *sidecar.args,
        )  # fmt: skip

    @staticmethod
    def _entrypoint(command: list[str]) -> list[str]:
        """The container's command replaces the image's ENTRYPOINT, as in Kubernetes."""
        return [f"--entrypoint={json.dumps(command)}"] if command else []

    def stop_all(self, ordinals: Sequence[int], *, graceful: bool = True) -> None:
        """Delete several pods at once (SIGTERM each, or SIGKILL), keeping their volumes."""
        with ThreadPoolExecutor(max_workers=len(ordinals)) as pool:
            list(pool.map(lambda o: self.stop(o, graceful=graceful), ordinals))

    def stop(self, ordinal: int, *, graceful: bool = True) -> None:
        """Delete pod ``ordinal``: SIGTERM within the grace period, or SIGKILL; the volume stays."""
        self.stop_pod(pod_name(ordinal), graceful=graceful)

    def stop_pod(self, name: str, *, graceful: bool = True) -> None:
        """Delete the pod ``name`` (a StatefulSet or a proxy pod) as :meth:`stop` does."""
        grace = "60" if graceful else "0"
        podman("rm", "--force", "--time=0", f"{name}-bootstrap", check=False)
        if graceful:
            podman("stop", f"--time={grace}", name, timeout=90)
        else:
            podman("kill", "--signal=KILL", name, check=False)
        podman("rm", "--force", "--time=0", name, check=False)

    def delete_volume(self, ordinal: int) -> None:
        """The PVC removal that scaling in does (persistentVolumeClaimRetentionPolicy)."""
        podman("volume", "rm", "--force", f"slotcache-e2e-data-{ordinal}", check=False)

    def ctl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """clusterctl in the client container (``kubectl exec`` into a client pod)."""
        return subprocess.run(
            ["podman", "exec", self.client, "clusterctl", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def ctl_json(self, *args: str) -> Any:
        """clusterctl ... --json, parsed; raises with its stderr if it failed."""
        done = self.ctl(*args, "--json")
        if done.returncode != 0:
            raise RuntimeError(f"clusterctl {args[0]}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def client_command(self, *args: str) -> list[str]:
        """The SDK client script, run in the client container on the network."""
        return ["podman", "exec", self.client, "python3", "-c", CLIENT.read_text(), *args]

    def client_run(self, *args: str, timeout: float = 120) -> Any:
        """Run the client script to the end; its JSON answer."""
        done = subprocess.run(
            self.client_command(*args), capture_output=True, text=True, timeout=timeout, check=True
        )
        return json.loads(done.stdout)

    def logs(self) -> str:
        """The end of every container's log, for a failed test's report."""
        names = podman("ps", "-a", "--format={{.Names}}", f"--filter=label={LABEL}", check=False)
        parts = []
        for name in names.split():
            log = subprocess.run(
                ["podman", "logs", "--tail=30", name], capture_output=True, text=True, check=False
            )
            parts.append(f"--- {name}\n{log.stdout}{log.stderr}")
        return "\n".join(parts)

    def close(self) -> None:
        """Remove every container, volume and the network, then let another StatefulSet run."""
        try:
            remove_everything()
        finally:
            self._turn.close()  # releases the lock


WAIT_S = 120.0


def wait_until(what: str, probe: Callable[[], bool], timeout: float = WAIT_S) -> float:
    """Poll ``probe`` every half second; return the seconds it took."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def nodes(pods: PodmanStatefulSet) -> list[dict[str, Any]]:
    """Every node as pod 0's node sees it."""
    return list(pods.ctl_json("nodes", pods.address(0))["nodes"])


def healthy(pods: PodmanStatefulSet, count: int) -> Callable[[], bool]:
    """``clusterctl check`` passes and the cluster has exactly ``count`` nodes."""

    def probe() -> bool:
        done = pods.ctl("check", pods.address(0))
        return done.returncode == 0 and f"{count} nodes agree" in " ".join(done.stdout.split())

    return probe
