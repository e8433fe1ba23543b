"""Pod and container building blocks every platform workload shares, so hardening is written once.

All platform pods run as a non-root user with a read-only root filesystem, no privilege escalation, no Linux
capabilities and the runtime's default seccomp profile: the Kubernetes `restricted` Pod Security Standard.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.gpu_pool import GPU_PRESENT_LABEL, GPU_TAINT, POOL_LABEL

# The uid/gid the workload images create (workloads/*/Dockerfile).
WORKLOAD_UID = 10001
PART_OF = "ml-platform"


def labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": "pulumi"}


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def pod_security(uid: int = WORKLOAD_UID) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    # Memory limit = request: a pod is never OOM-killed for using what it asked for, and never overcommits a node.
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        requests["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def gpu_placement(pool: str) -> dict[str, Any]:
    """Pod spec fields that put a pod on one GPU pool: the pool's label, plus a toleration of the GPU taint."""
    if not pool:
        return {}
    return {"nodeSelector": {POOL_LABEL: pool, GPU_PRESENT_LABEL: "true"},
            "tolerations": [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}]}


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp for read-only-root containers, capped so a runaway writer cannot fill the node's disk."""
    return ({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "tmp", "mountPath": "/tmp"})


def env(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def secret_volume(name: str, secret: pulumi.Input[str], mount_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Secret as read-only files: unlike environment variables, files do not show in the pod spec, in
    `kubectl describe`, or in the container runtime's config, and are readable only by the pod's group."""
    return ({"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}},
            {"name": name, "mountPath": mount_path, "readOnly": True})


# Pods of the platform's own workloads never call the Kubernetes API; Pod Identity and IRSA project their own tokens.
NO_API_TOKEN = {"automountServiceAccountToken": False}
# Tags are mutable: re-pulling on every start makes a re-pushed tag take effect and keeps nodes from running a stale
# copy (one registry round trip per pod start).
ALWAYS_PULL = {"imagePullPolicy": "Always"}


def http_probe(path: str, port: str | int, *, period: int = 10, failures: int = 3, delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
                             "failureThreshold": failures, "timeoutSeconds": 2}
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe
