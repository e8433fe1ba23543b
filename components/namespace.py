"""A namespace with Pod Security admission labels and default limits, so nothing lands in it unhardened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.pod_spec import PART_OF


@dataclass(frozen=True, kw_only=True)
class PlatformNamespaceArgs:
    k8s_provider: k8s.Provider
    enforce: Literal["restricted", "baseline", "privileged"] = "restricted"
    """The Pod Security Standard the API server enforces; `restricted` unless a third-party chart needs less."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels, e.g. the team a namespace belongs to (Kueue and network policies select on it)."""


class PlatformNamespace(pulumi.ComponentResource):
    name: str
    namespace: k8s.core.v1.Namespace

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:cluster:PlatformNamespace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)
        self.namespace = k8s.core.v1.Namespace(name, metadata={"name": name, "labels": {
            "app.kubernetes.io/part-of": PART_OF,
            "pod-security.kubernetes.io/enforce": args.enforce,
            # Warn and audit at `restricted` even where less is enforced, so drift shows up in kubectl and logs.
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
            **args.labels,
        }}, opts=child)
        # Containers that forget requests/limits get these instead of running unbounded.
        k8s.core.v1.LimitRange(name, metadata={"name": "defaults", "namespace": name}, spec={"limits": [{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }]}, opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[self.namespace]))
        self.name = name
        self.register_outputs({"name": name})
