"""A StatefulSet played by podman: the rendered pod spec, run container by container.

Each pod is its server container ``slotcache-N`` and its bootstrap sidecar
``slotcache-N-bootstrap``, which shares the server's network namespace as
containers of one pod do. Command, args and env come from the rendered
manifest; the volume is a named volume per ordinal (its PVC); the pod's
DNS names under the headless Service are network aliases on one network
created for the test, where each pod gets an address the test picks, so a
restarted pod can be given a new one. The host talks to the cluster only
through ``podman exec`` (clusterctl in a sidecar, the SDK in a client
container on the network), as an operator would with ``kubectl exec``.
Everything carries one label, and :meth:`PodmanStatefulSet.close` removes
all of it, as does the next run if a previous one was killed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.support.k8s import ROOT, PodFacts, pod_containers

LABEL = "slotcache.test=statefulset"
BASE_IMAGE = "localhost/debian-python:bookworm"
IMAGE = "localhost/slotcache:e2e"
NAMESPACE = "slotcache-dev"
HEADLESS = "slotcache-headless"
CLIENT = Path(__file__).with_name("container_client.py")
# Where this machine's pip finds PyPI (a proxy with its own CA): the image build's
# RUN steps see these read-only, and nothing of them stays in the image.
PIP_SETTINGS = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run podman; return its stdout, raising with its stderr on failure when ``check``."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def missing_tools() -> list[str]:
    """The tools the end-to-end test needs that are not installed."""
    return [t for t in ("podman", "runc", "mmdebstrap") if shutil.which(t) is None]


def build_images(workdir: Path) -> float:
    """The Debian-made Python base (once per machine) and the image; returns seconds taken."""
    started = time.monotonic()
    if not _exists(BASE_IMAGE):
        tarball = workdir / "base.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=python3,python3-venv",
                "bookworm",
                str(tarball),
            ],
            check=True,
            timeout=600,
            capture_output=True,
        )
        podman("import", str(tarball), BASE_IMAGE, timeout=300)
        tarball.unlink()
    mounts = [f"--volume={p}:{p}:ro" for p in PIP_SETTINGS if Path(p).exists()]
    podman(
        "build",
        "--quiet",
        *mounts,
        f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        f"--tag={IMAGE}",
        str(ROOT),
        timeout=600,
    )
    return time.monotonic() - started


def _exists(image: str) -> bool:
    done = subprocess.run(["podman", "image", "exists", image], check=False)
    return done.returncode == 0


def remove_everything() -> None:
    """Remove every container, volume and network this test ever created."""
    for kind in ("container", "network", "volume"):
        listed = podman(kind, "ls", "-q", "--filter", f"label={LABEL}", check=False).split()
        if listed:
            extra = ["--force", "--volumes", "--time", "0"] if kind == "container" else ["--force"]
            podman(kind, "rm", *extra, *listed, check=False)


def pod_name(ordinal: int) -> str:
    """The StatefulSet's name for pod ``ordinal``."""
    return f"slotcache-{ordinal}"


def dns_name(ordinal: int) -> str:
    """The pod's name under the headless Service, as the nodes announce it."""
    return f"{pod_name(ordinal)}.{HEADLESS}.{NAMESPACE}.svc"


class PodmanStatefulSet:
    """The rendered StatefulSet's pods as podman containers on the test's own network."""

    def __init__(self, docs: list[dict[str, Any]], memory_limit_bytes: int) -> None:
        self._docs = docs
        self._memory = memory_limit_bytes
        # A new name each run: podman's address bookkeeping is per network name, and
        # a container removed while its network went away can leave its address taken.
        self.network = f"slotcache-e2e-{os.getpid()}"
        remove_everything()
        podman("network", "create", f"--label={LABEL}", self.network)
        subnet = json.loads(podman("network", "inspect", self.network))[0]["subnets"][0]
        self._subnet = ipaddress.ip_network(subnet["subnet"])
        self._generation: dict[int, int] = {}
        self.client = "slotcache-client"
        podman(
            "run", "--detach", f"--label={LABEL}", f"--name={self.client}",
            f"--network={self.network}", "--read-only", "--cap-drop=ALL",
            # glibc's resolver: gRPC's own (c-ares) gives up on podman's DNS server
            # when the machine is loaded ("DNS query cancelled").
            "--env=GRPC_DNS_RESOLVER=native",
            "--entrypoint=sleep", IMAGE, "900",
        )  # fmt: skip

    def address(self, ordinal: int) -> str:
        """The pod's client address, by name."""
        return f"{dns_name(ordinal)}:7000"

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
        facts = PodFacts(pod_name(ordinal), NAMESPACE, self._memory)
        server, sidecar = pod_containers(self._docs, facts)
        name = pod_name(ordinal)
        volume = f"slotcache-e2e-data-{ordinal}"
        if subprocess.run(["podman", "volume", "exists", volume], check=False).returncode:
            podman("volume", "create", f"--label={LABEL}", volume)
        restricted = [
            f"--label={LABEL}", "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--user=10001:10001",
            "--tmpfs=/tmp:size=16m",
        ]  # fmt: skip
        env = [f"--env={k}={v}" for k, v in server.env.items()]
        podman(
            "run", "--detach", *restricted, f"--name={name}", f"--hostname={name}",
            f"--network={self.network}", f"--ip={self.ip(ordinal)}",
            f"--network-alias={dns_name(ordinal)}",
            f"--volume={volume}:{server.mounts['data']}:U",
            *env, *self._entrypoint(server.command), IMAGE, *server.args,
        )  # fmt: skip
        sidecar_env = [f"--env={k}={v}" for k, v in sidecar.env.items()]
        podman(
            "run", "--detach", *restricted, f"--name={name}-bootstrap",
            f"--network=container:{name}", *sidecar_env,
            *self._entrypoint(sidecar.command), IMAGE, *sidecar.args,
        )  # fmt: skip

    @staticmethod
    def _entrypoint(command: list[str]) -> list[str]:
        """The container's command replaces the image's ENTRYPOINT, as in Kubernetes."""
        return [f"--entrypoint={json.dumps(command)}"] if command else []

    def stop_all(self, ordinals: Sequence[int]) -> None:
        """Delete several pods at once (SIGTERM each), keeping their volumes."""
        with ThreadPoolExecutor(max_workers=len(ordinals)) as pool:
            list(pool.map(self.stop, ordinals))

    def stop(self, ordinal: int, *, graceful: bool = True) -> None:
        """Delete pod ``ordinal``: SIGTERM within the grace period, or SIGKILL; the volume stays."""
        grace = "60" if graceful else "0"
        name = pod_name(ordinal)
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
        """Remove every container, volume and the network."""
        remove_everything()
