"""The Kubernetes manifests as tests read them: the tools, the rendered overlays, a pod's spec.

Tools are looked for beside the test's Python (the dev extras), in
``SLOTCACHE_TOOLS`` (default ``~/.cache/slotcache-tools``: checkov, whose
pins would clash with the project's, gets its own venv there, once per
machine; ``make k8s-tools`` installs it) and on PATH. Nothing is installed
here: a missing tool is reported so the caller can skip, naming it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
# Where `make k8s-tools` puts checkov's venv, once per machine.
TOOLS = Path(os.environ.get("SLOTCACHE_TOOLS", Path.home() / ".cache" / "slotcache-tools"))
_SEARCH = (Path(sys.executable).parent, TOOLS / "checkov" / "bin")


def tool(name: str) -> str | None:
    """The path of ``name`` (the dev venv first, then TOOLS, then PATH), or None."""
    for folder in _SEARCH:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def kustomize_command() -> list[str] | None:
    """``kubectl kustomize`` or, failing that, a standalone ``kustomize build``."""
    kubectl = tool("kubectl")
    if kubectl is not None:
        return [kubectl, "kustomize"]
    kustomize = tool("kustomize")
    return [kustomize, "build"] if kustomize is not None else None


def render(overlay: str) -> str:
    """The overlay's manifests as one multi-document YAML text."""
    command = kustomize_command()
    assert command is not None, "no kubectl or kustomize"
    done = subprocess.run(
        [*command, str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    """The resources of a rendered overlay."""
    return [d for d in yaml.safe_load_all(text) if d]


def resource(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one resource of ``kind`` named ``name``."""
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@dataclass(frozen=True)
class Container:
    """One container of the StatefulSet's pod template, as a container runtime needs it."""

    name: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, str]


_REF = re.compile(r"\$\((\w+)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, others left."""
    return _REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


Secrets = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class PodFacts:
    """What the kubelet knows of a pod that its containers' env may refer to."""

    name: str
    namespace: str
    memory_limit_bytes: int
    ip: str = ""
    # The Secrets' keys, by Secret name (operators create them; tests generate them).
    secrets: Secrets = field(default_factory=dict)


def pod_containers(
    docs: list[dict[str, Any]], pod: PodFacts, kind: str = "StatefulSet"
) -> list[Container]:
    """Each container of the ``kind`` workload's pod with its env resolved as the kubelet would.

    Handles what the manifests use: literal values, the pod's name, namespace
    and IP, ConfigMap and Secret keys, ``envFrom`` ConfigMaps, and the memory
    limit through ``resourceFieldRef`` (in bytes, divisor 1).
    """
    workload = next(d for d in docs if d["kind"] == kind)
    configmaps: Secrets = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "status.podIP": pod.ip,
    }
    result = []
    for spec in workload["spec"]["template"]["spec"]["containers"]:
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            env.update(configmaps[source["configMapRef"]["name"]])
        for var in spec.get("env", []):
            env[var["name"]] = _value(var, env, fields, configmaps, pod)
        result.append(
            Container(
                spec["name"],
                [expand(c, env) for c in spec.get("command", [])],
                [expand(a, env) for a in spec.get("args", [])],
                env,
                {m["name"]: m["mountPath"] for m in spec.get("volumeMounts", [])},
            )
        )
    return result


def _value(
    var: dict[str, Any],
    env: Mapping[str, str],
    fields: Mapping[str, str],
    configmaps: Secrets,
    pod: PodFacts,
) -> str:
    if "value" in var:
        return expand(str(var["value"]), env)
    source = var["valueFrom"]
    if "fieldRef" in source:
        return fields[source["fieldRef"]["fieldPath"]]
    for kind, maps in (("configMapKeyRef", configmaps), ("secretKeyRef", pod.secrets)):
        if kind in source:
            ref = source[kind]
            return str(maps[ref["name"]][ref["key"]])
    ref = source["resourceFieldRef"]
    assert ref["resource"] == "limits.memory" and str(ref.get("divisor", "1")) == "1", ref
    return str(pod.memory_limit_bytes)
