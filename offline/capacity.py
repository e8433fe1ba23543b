"""Capacity referee: do the CPU, memory and pod-slot requests of every pod a stack runs fit the nodes that can exist?

A `Plan` declares workloads (Deployments, StatefulSets, Jobs, CronJobs, DaemonSets), custom resources whose operator
creates pods (Strimzi `Kafka`/`KafkaNodePool`), Helm releases (charts cannot be rendered offline) and EKS add-ons.
`pods()` turns each into pods with requests as the scheduler will see them; `ALLOWANCES` holds what the plan cannot
show (a chart's or add-on's pods, and their defaults), each with where it was read. Requests of a container resolve
as the API server does: its requests, else its limits, else the namespace's LimitRange default, else nothing.

Node sources: a managed node group (fixed size: nothing scales it), untainted Karpenter NodePools ("general": up to
their limits) and tainted NodePools ("dedicated", e.g. GPU). A pod may use a source when it tolerates the source's
taints and its nodeSelector/required node affinity matches the source's labels. Pods that can use only dedicated
sources are left out of the sums (their pools start at zero and grow per pod); every other pod must fit the group
plus the general pools, and pods that can use only the group must fit the group alone; both are checked for every
subset of sources (the fluid form of Hall's condition, so bin fragmentation is not modelled). Separately, every pod
must fit on one node of at least one instance type it can land on, after that node's DaemonSets.

Decisions:
- The node group's guarantee is `minSize`: `desiredSize` is what the first deploy creates, but the program ignores
  later changes to it, so anything may take the group down to `minSize`. Both are reported.
- A NodePool's limits count node capacity: kubernetes-sigs/karpenter at 6e7eab7a0f48 (the core that provider v1.14.1
  pins), `pkg/controllers/provisioning/scheduling/scheduler.go` `filterByRemainingResources`/`subtractMax` compare
  `InstanceType.Capacity` with what is left of the limits. So usable = limit − N × per-node overhead (kube-reserved,
  eviction threshold, DaemonSets) of the smallest allowed type, N being the most nodes of it the limits allow (the
  worst case: the most nodes, so the most overhead). A resource without a limit (pod slots always) gets N nodes'
  worth. Not modelled: the remainder of a limit smaller than a node, and fleets of large types that spend one limit
  while leaving the other unused.
- A Deployment scaled by an HPA must fit at `minReplicas`; `maxReplicas` is reported as headroom at maximum.
- Jobs count `min(parallelism, completions)` pods: they run during the deploy, next to everything else. A suspended
  CronJob counts too: its Job can be started on demand (`kubectl create job --from=cronjob/...`, as the README
  shows); such pods are marked `on_demand`.
- Helm hooks (webhook certificate Jobs) and test pods are not counted: they run before or after the release's pods
  and are deleted when they succeed.
- GPUs are counted in the units a node advertises as `nvidia.com/gpu`, read from the plan as the node will see them:
  the NodePool's `nvidia.com/device-plugin.config` label picks an entry of the device plugin release's `config.map`
  (config-manager's rules: the label, else `config.default`, else the `named`/`single` fallbacks; a name the map
  lacks stops the plugin, so the node advertises nothing). Time-slicing multiplies each GPU by its `replicas`
  (none left under `nvidia.com/gpu` if renamed), `failRequestsGreaterThanOne` caps each container at one unit, and
  `migStrategy: single` advertises the MIG devices the node class's boot script creates (`INSTANCES_PER_GPU`), or
  whole GPUs if it creates none (NVIDIA/k8s-device-plugin@v0.19.3 internal/rm/device_map.go). A GPU pod must also
  fit a type's physical GPUs: Karpenter sizes a new node by them (aws/karpenter-provider-aws@v1.14.1
  pkg/providers/instancetype/types.go `nvidiaGPUs`), so it launches no node for a pod asking for more.
- Pods that can run only on one GPU pool and are not Jobs (serving at its minimum) must fit that pool's units at
  its limits (the `nvidia.com/gpu` limit, physical, or `nodes` x the largest type's GPUs, times units per GPU).
  Jobs are left out: they queue (Kueue admits them against quotas counted in the same units).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from offline.harness import Plan
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.instance_catalog import INSTANCE_TYPES, allocatable, capacity
from upstream.catalog import chart_values

GPU = "nvidia.com/gpu"
INF = math.inf
PLUGIN_CHART = "nvidia-device-plugin"
PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"


# --- quantities -------------------------------------------------------------------------------------------------

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18, "m": 1e-3}


def cpu_m(value: Any) -> float:
    text = str(value).strip()
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def mib(value: Any) -> float:
    number, unit = re.fullmatch(r"([0-9.eE+-]+?)([KMGTPE]i|[kMGTPEm]?)", str(value).strip()).groups()
    return float(number) * (_BINARY.get(unit) or _DECIMAL[unit]) / 2 ** 20


@dataclass(frozen=True)
class Res:
    """CPU millicores, memory MiB and pod slots; arithmetic is per resource."""

    cpu: float = 0
    memory: float = 0
    pods: float = 0

    NAMES = ("cpu", "memory", "pods")

    def __add__(self, o: Res) -> Res:
        return Res(self.cpu + o.cpu, self.memory + o.memory, self.pods + o.pods)

    def __sub__(self, o: Res) -> Res:
        return Res(self.cpu - o.cpu, self.memory - o.memory, self.pods - o.pods)

    def __mul__(self, n: float) -> Res:
        return Res(*(0 if v == 0 else v * n for v in self))

    def __iter__(self):
        return iter((self.cpu, self.memory, self.pods))

    def fits(self, room: Res) -> bool:
        return all(need <= have + 1e-9 for need, have in zip(self, room))

    def as_dict(self) -> dict[str, float | None]:
        return {"cpu_m": _num(self.cpu), "memory_mib": _num(self.memory), "pods": _num(self.pods)}


def rsum(items: Iterable[Res]) -> Res:
    total = Res()
    for item in items:
        total = total + item
    return total


def _num(v: float) -> float | None:
    return None if v == INF else round(v, 1)


# --- allowances: what the plan cannot show ----------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    name: str
    resources: str | None
    """Values path of the block the chart renders as this container's resources."""
    template: tuple[str, str] | None = None
    """(cpu, memory) requests the chart's template writes when that block is empty."""
    when: str | None = None
    init: bool = False


@dataclass(frozen=True)
class ChartPod:
    name: str
    containers: tuple[Container, ...]
    replicas: str | int = 1
    per_node: bool = False
    when: str | None = None
    node_selector: str | None = "nodeSelector"
    tolerations: str | None = "tolerations"
    affinity: str | None = "affinity"
    replicas_key: str | None = None
    """For add-ons: the configurationValues path that overrides `replicas`."""


@dataclass(frozen=True)
class Allowance:
    kind: str  # "helm" (chart name) or "addon" (EKS add-on name)
    name: str
    version: str
    source: str
    defaults: dict[str, Any]
    """The chart's own values for every path `pods` reads; program values are deep-merged over them, as Helm does."""
    pods: tuple[ChartPod, ...] = ()
    note: str = ""


LINUX = {"kubernetes.io/os": "linux"}
ALL_TAINTS = [{"operator": "Exists"}]
NO_SCHEDULE_TAINTS = [{"effect": "NoSchedule", "operator": "Exists"}]
EBS_SIDECAR = ("10m", "32Mi")

ALLOWANCES: tuple[Allowance, ...] = (
    Allowance(
        "helm", "karpenter", "1.14.1",
        "aws/karpenter-provider-aws@v1.14.1 charts/karpenter/values.yaml (replicas 2, controller.resources {}, "
        "nodeSelector, CriticalAddonsOnly toleration, affinity karpenter.sh/nodepool DoesNotExist)",
        {"replicas": 2, "nodeSelector": LINUX, "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}]}]}}},
         "controller": {"resources": {}}},
        (ChartPod("controller", (Container("controller", "controller.resources"),), replicas="replicas"),)),
    Allowance("helm", "karpenter-crd", "1.14.1", "CRDs only", {}, note="no pods"),
    Allowance(
        "helm", "metrics-server", "3.13.0",
        "kubernetes-sigs/metrics-server@metrics-server-helm-chart-3.13.0 charts/metrics-server/values.yaml "
        "(replicas 1, requests 100m/200Mi, addonResizer off)",
        {"replicas": 1, "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}, "nodeSelector": {},
         "tolerations": [], "affinity": {}},
        (ChartPod("metrics-server", (Container("metrics-server", "resources"),), replicas="replicas"),)),
    Allowance(
        "helm", "strimzi-kafka-operator", "1.2.0",
        "strimzi/strimzi-kafka-operator@1.2.0 packaging/helm-charts/helm3/strimzi-kafka-operator/values.yaml "
        "(replicas 1, requests 200m/384Mi)",
        {"replicas": 1, "resources": {"requests": {"cpu": "200m", "memory": "384Mi"}}, "nodeSelector": {},
         "tolerations": [], "affinity": {}},
        (ChartPod("cluster-operator", (Container("strimzi-cluster-operator", "resources"),), replicas="replicas"),)),
    Allowance(
        "helm", "nvidia-device-plugin", "0.19.3",
        "NVIDIA/k8s-device-plugin@v0.19.3 deployments/helm/nvidia-device-plugin/values.yaml (resources {}, "
        "tolerations CriticalAddonsOnly + nvidia.com/gpu, NFD-or-gpu.present node affinity; gfd/nfd off) and "
        "templates/daemonset-device-plugin.yml (with config.map: config-manager init container and sidecar, "
        "neither with a resources block)",
        {"resources": {}, "nodeSelector": {}, "config": {"map": {}},
         "affinity": chart_values("nvidia-device-plugin", "0.19.3")["affinity"],
         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                         {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]},
        (ChartPod("device-plugin", (
            Container("nvidia-device-plugin-ctr", "resources"),
            Container("nvidia-device-plugin-init", None, when="config.map", init=True),
            Container("nvidia-device-plugin-sidecar", None, when="config.map")), per_node=True),)),
    Allowance(
        "helm", "dcgm-exporter", "4.8.2",
        "NVIDIA/dcgm-exporter@4.5.3-4.8.2 deployment/values.yaml (requests 100m/128Mi, tolerates control-plane "
        "nodes)",
        {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "nodeSelector": {},
         "tolerations": chart_values("dcgm-exporter", "4.8.2")["tolerations"], "affinity": {}},
        (ChartPod("dcgm-exporter", (Container("exporter", "resources"),), per_node=True),)),
    Allowance(
        "helm", "kube-prometheus-stack", "88.5.3",
        "prometheus-community/helm-charts@kube-prometheus-stack-88.5.3 values.yaml, and its subcharts grafana 12.11.1 "
        "(grafana-community/helm-charts), kube-state-metrics 8.4.0, prometheus-node-exporter 4.56.1. Every "
        "resources block defaults to {}; the operator is passed --config-reloader-*-request=0 for an empty "
        "prometheusConfigReloader.resources (templates/prometheus-operator/deployment.yaml), i.e. no request, so "
        "a LimitRange default applies to the reloader sidecar and init container. The admission-webhook patch Jobs "
        "are Helm hooks (not counted); the webhook Deployment is off by default",
        {"prometheusOperator": {"enabled": True, "resources": {}, "nodeSelector": {}, "tolerations": [],
                                "affinity": {}, "prometheusConfigReloader": {"resources": {}}},
         "prometheus": {"enabled": True, "prometheusSpec": {"replicas": 1, "resources": {}, "nodeSelector": {},
                                                            "tolerations": [], "affinity": {}}},
         "alertmanager": {"enabled": True, "alertmanagerSpec": {"replicas": 1, "resources": {}, "nodeSelector": {},
                                                                "tolerations": [], "affinity": {}}},
         "grafana": {"enabled": True, "replicas": 1, "resources": {}, "nodeSelector": {}, "tolerations": [],
                     "affinity": {}, "sidecar": {"resources": {}, "dashboards": {"enabled": True},
                                                 "datasources": {"enabled": True}}},
         "kubeStateMetrics": {"enabled": True},
         "kube-state-metrics": {"replicas": 1, "resources": {}, "nodeSelector": {}, "tolerations": [],
                                "affinity": {}},
         "nodeExporter": {"enabled": True},
         "prometheus-node-exporter": {"resources": {}, "nodeSelector": LINUX, "tolerations": NO_SCHEDULE_TAINTS,
                                      "affinity": {}}},
        (
            ChartPod("prometheus-operator", (Container("kube-prometheus-stack", "prometheusOperator.resources"),),
                     when="prometheusOperator.enabled", node_selector="prometheusOperator.nodeSelector",
                     tolerations="prometheusOperator.tolerations", affinity="prometheusOperator.affinity"),
            ChartPod("prometheus", (
                Container("prometheus", "prometheus.prometheusSpec.resources"),
                Container("config-reloader", "prometheusOperator.prometheusConfigReloader.resources"),
                Container("init-config-reloader", "prometheusOperator.prometheusConfigReloader.resources", init=True)),
                replicas="prometheus.prometheusSpec.replicas", when="prometheus.enabled",
                node_selector="prometheus.prometheusSpec.nodeSelector",
                tolerations="prometheus.prometheusSpec.tolerations", affinity="prometheus.prometheusSpec.affinity"),
            ChartPod("alertmanager", (
                Container("alertmanager", "alertmanager.alertmanagerSpec.resources"),
                Container("config-reloader", "prometheusOperator.prometheusConfigReloader.resources"),
                Container("init-config-reloader", "prometheusOperator.prometheusConfigReloader.resources", init=True)),
                replicas="alertmanager.alertmanagerSpec.replicas", when="alertmanager.enabled",
                node_selector="alertmanager.alertmanagerSpec.nodeSelector",
                tolerations="alertmanager.alertmanagerSpec.tolerations",
                affinity="alertmanager.alertmanagerSpec.affinity"),
            ChartPod("grafana", (
                Container("grafana", "grafana.resources"),
                Container("grafana-sc-dashboard", "grafana.sidecar.resources",
                          when="grafana.sidecar.dashboards.enabled"),
                Container("grafana-sc-datasources", "grafana.sidecar.resources",
                          when="grafana.sidecar.datasources.enabled")),
                replicas="grafana.replicas", when="grafana.enabled", node_selector="grafana.nodeSelector",
                tolerations="grafana.tolerations", affinity="grafana.affinity"),
            ChartPod("kube-state-metrics", (Container("kube-state-metrics", "kube-state-metrics.resources"),),
                     replicas="kube-state-metrics.replicas", when="kubeStateMetrics.enabled",
                     node_selector="kube-state-metrics.nodeSelector", tolerations="kube-state-metrics.tolerations",
                     affinity="kube-state-metrics.affinity"),
            ChartPod("node-exporter", (Container("node-exporter", "prometheus-node-exporter.resources"),),
                     per_node=True, when="nodeExporter.enabled",
                     node_selector="prometheus-node-exporter.nodeSelector",
                     tolerations="prometheus-node-exporter.tolerations", affinity="prometheus-node-exporter.affinity"),
        )),
    Allowance(
        "helm", "opencost", "2.5.17",
        "opencost/opencost-helm-chart@opencost-2.5.17 charts/opencost/values.yaml (exporter.replicas 1, exporter "
        "and ui resources requests 10m/55Mi, nodeSelector, tolerations and affinity empty) and templates/"
        "deployment.yaml (the exporter, plus the UI container when opencost.ui.enabled; the plugin and CA "
        "init containers and the AMP proxy are off by default)",
        {"opencost": {"exporter": {"replicas": 1, "resources": {"requests": {"cpu": "10m", "memory": "55Mi"}}},
                      "ui": {"enabled": True, "resources": {"requests": {"cpu": "10m", "memory": "55Mi"}}},
                      "nodeSelector": {}, "tolerations": [], "affinity": {}}},
        (ChartPod("opencost", (Container("opencost", "opencost.exporter.resources"),
                               Container("opencost-ui", "opencost.ui.resources", when="opencost.ui.enabled")),
                  replicas="opencost.exporter.replicas", node_selector="opencost.nodeSelector",
                  tolerations="opencost.tolerations", affinity="opencost.affinity"),)),
    # EKS add-on manifests are not published; each is read from the upstream chart or manifest it is built from.
    Allowance(
        "addon", "coredns", "v1.13.2-eksbuild.1",
        "estimate: coredns/deployment kubernetes/coredns.yaml.sed (requests 100m/70Mi), which the EKS add-on "
        "matches; 2 replicas is the add-on's default replicaCount",
        {"replicaCount": 2, "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}},
         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}]},
        (ChartPod("coredns", (Container("coredns", "resources"),), replicas="replicaCount", node_selector=None,
                  affinity=None),)),
    Allowance(
        "helm", "kueue", "0.19.2",
        "kubernetes-sigs/kueue@v0.19.2 charts/kueue/values.yaml (controllerManager.replicas 1, manager.resources "
        "requests 500m/512Mi, nodeSelector and tolerations {}) and templates/manager/manager.yaml (one container, "
        "no affinity key)",
        {"controllerManager": {"replicas": 1, "manager": {"resources": {"requests": {"cpu": "500m",
                                                                                   "memory": "512Mi"}}},
                               "nodeSelector": {}, "tolerations": []}},
        (ChartPod("kueue-controller-manager", (Container("manager", "controllerManager.manager.resources"),),
                  replicas="controllerManager.replicas", node_selector="controllerManager.nodeSelector",
                  tolerations="controllerManager.tolerations", affinity=None),)),
    Allowance(
        "addon", "aws-ebs-csi-driver", "v1.57.1-eksbuild.1",
        "kubernetes-sigs/aws-ebs-csi-driver@helm-chart-aws-ebs-csi-driver-2.57.1 (app 1.57.1) charts/aws-ebs-csi-"
        "driver: controller replicaCount 2, controller.resources 10m/40Mi inherited by the provisioner, attacher "
        "and resizer sidecars, liveness-probe 10m/32Mi from the template; node.resources 10m/40Mi, registrar and "
        "liveness-probe 10m/32Mi from the template, tolerateAllTaints. csi-snapshotter is rendered only when "
        "snapshot CRDs exist (the platform installs none); volumemodifier and metadataLabeler are off",
        {"controller": {"replicaCount": 2, "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}},
                        "nodeSelector": {}, "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}]},
         "node": {"resources": {"requests": {"cpu": "10m", "memory": "40Mi"}}, "nodeSelector": {},
                  "tolerations": ALL_TAINTS},
         "sidecars": {"livenessProbe": {"resources": {}}, "nodeDriverRegistrar": {"resources": {}}}},
        (ChartPod("ebs-csi-controller", (
            Container("ebs-plugin", "controller.resources"), Container("csi-provisioner", "controller.resources"),
            Container("csi-attacher", "controller.resources"), Container("csi-resizer", "controller.resources"),
            Container("liveness-probe", "sidecars.livenessProbe.resources", template=EBS_SIDECAR)),
            replicas="controller.replicaCount", node_selector="controller.nodeSelector",
            tolerations="controller.tolerations", affinity=None),
         ChartPod("ebs-csi-node", (
             Container("ebs-plugin", "node.resources"),
             Container("node-driver-registrar", "sidecars.nodeDriverRegistrar.resources", template=EBS_SIDECAR),
             Container("liveness-probe", "sidecars.livenessProbe.resources", template=EBS_SIDECAR)),
             per_node=True, node_selector="node.nodeSelector", tolerations="node.tolerations", affinity=None))),
    Allowance(
        "addon", "vpc-cni", "v1.21.1-eksbuild.3",
        "aws/amazon-vpc-cni-k8s@v1.21.1 charts/aws-vpc-cni: resources.requests.cpu 25m for aws-node, inherited by "
        "aws-eks-nodeagent (nodeAgent.resources {}) and the init container; no memory request; tolerates all",
        {"resources": {"requests": {"cpu": "25m"}}, "nodeAgent": {"resources": {"requests": {"cpu": "25m"}}},
         "init": {"resources": {"requests": {"cpu": "25m"}}}, "tolerations": ALL_TAINTS},
        (ChartPod("aws-node", (Container("aws-node", "resources"),
                               Container("aws-eks-nodeagent", "nodeAgent.resources"),
                               Container("aws-vpc-cni-init", "init.resources", init=True)),
                  per_node=True, node_selector=None, affinity=None),)),
    Allowance(
        "addon", "kube-proxy", "v1.35.0-eksbuild.2",
        "estimate: EKS's kube-proxy DaemonSet requests cpu 100m and no memory (a public dump of the add-on's "
        "manifest, v1.28.1-minimal-eksbuild.1; later builds not seen); tolerates all",
        {"resources": {"requests": {"cpu": "100m"}}, "tolerations": ALL_TAINTS},
        (ChartPod("kube-proxy", (Container("kube-proxy", "resources"),), per_node=True, node_selector=None,
                  affinity=None),)),
    Allowance(
        "addon", "eks-pod-identity-agent", "v1.3.10-eksbuild.2",
        "aws/eks-pod-identity-agent charts/eks-pod-identity-agent/values.yaml (chart 1.2.0 at d4dc0f3): resources "
        "{} and kube-system has no LimitRange, so the scheduler counts nothing for it; tolerates all",
        {"resources": {}, "tolerations": ALL_TAINTS},
        (ChartPod("eks-pod-identity-agent", (Container("eks-pod-identity-agent", "resources"),), per_node=True,
                  node_selector=None, affinity=None),)),
)

ALLOWANCE_BY_KEY = {(a.kind, a.name): a for a in ALLOWANCES}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(base.get(key), value)
        return merged
    return base if over is None else over


def _count(value: Any) -> int:
    # An unknown (computed) count is taken as 1, the Kubernetes default.
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def _at(values: dict[str, Any], path: str | None, default: Any = None) -> Any:
    if path is None:
        return default
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return default
        values = values[part]
    return values


def allowance_table() -> list[dict[str, Any]]:
    """One row per pod an allowance describes, with the requests it has when the program sets nothing."""
    rows = []
    for a in ALLOWANCES:
        pods_ = list(_allowance_pods(a, {}, "", a.name, {})) or [None]
        for pod in pods_:
            rows.append({"kind": a.kind, "name": a.name, "version": a.version,
                         "pod": pod.owner.split(": ", 1)[-1] if pod else "-",
                         "count": ("per node" if pod.per_node else pod.replicas) if pod else 0,
                         "requests": _describe(pod) if pod else "-",
                         "containers": "; ".join(b.replace(": none", ": no request (LimitRange default, if any)")
                                                 for b in pod.basis) if pod else a.note,
                         "source": a.source})
    return rows


# --- pods ------------------------------------------------------------------------------------------------------

@dataclass
class Pod:
    owner: str
    namespace: str
    requests: Res
    """One pod's requests (pods = 1)."""
    gpus: int = 0
    container_gpus: int = 0
    """The most `nvidia.com/gpu` one container asks for: the device plugin allocates per container."""
    replicas: int = 1
    max_replicas: int = 1
    per_node: bool = False
    on_demand: bool = False
    completes: bool = False
    """A Job's or CronJob's pod: it runs to completion, and can wait in a queue."""
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity_terms: list[list[dict[str, Any]]] = field(default_factory=list)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    basis: list[str] = field(default_factory=list)
    """Where each container's requests came from."""


def _limit_ranges(plan: Plan) -> dict[str, dict[str, dict[str, Any]]]:
    ranges: dict[str, dict[str, dict[str, Any]]] = {}
    for lr in plan.of_type("kubernetes:core/v1:LimitRange"):
        ns = lr["inputs"].get("metadata", {}).get("namespace", "default")
        for item in lr["inputs"].get("spec", {}).get("limits", []):
            if item.get("type") == "Container":
                # LimitRanger fills a missing request from defaultRequest, else from default (the limit).
                ranges[ns] = {**item.get("default", {}), **item.get("defaultRequest", {})}
    return ranges


def _container_requests(resources: dict[str, Any] | None, fallback: dict[str, Any],
                        template: tuple[str, str] | None = None) -> tuple[Res, int, str]:
    resources = resources or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not requests and not limits and template:
        requests, basis = {"cpu": template[0], "memory": template[1]}, "chart template"
    elif requests or limits:
        basis = "set"
    else:
        basis = "LimitRange" if fallback else "none"

    def pick(name: str) -> Any:
        return requests.get(name, limits.get(name, fallback.get(name)))

    cpu, memory, gpus = pick("cpu"), pick("memory"), requests.get(GPU, limits.get(GPU, 0))
    if (cpu is None or memory is None) and basis == "set" and fallback:
        basis = "set+LimitRange"
    return Res(cpu_m(cpu) if cpu is not None else 0, mib(memory) if memory is not None else 0, 0), int(gpus), basis


def _effective(containers: list[tuple[Res, int, str, bool, bool]]) -> tuple[Res, int]:
    """A pod's requests: its containers and sidecars summed, or its largest init step if that is larger."""
    running = Res()
    gpus = 0
    peak = Res()
    sidecars = Res()
    for req, gpu, _, init, sidecar in containers:
        if init and not sidecar:
            peak = Res(*(max(a, b) for a, b in zip(peak, req + sidecars)))
            gpus = max(gpus, gpu)
        elif init:
            sidecars = sidecars + req
        else:
            running = running + req
    total = running + sidecars
    total = Res(*(max(a, b) for a, b in zip(total, peak)))
    gpus = max(gpus, sum(g for _, g, _, init, _ in containers if not init))
    return Res(total.cpu, total.memory, 1), gpus


def _placement(spec: dict[str, Any]) -> tuple[dict[str, str], list[list[dict[str, Any]]], list[dict[str, Any]]]:
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [t.get("matchExpressions", []) for t in required.get("nodeSelectorTerms", [])]
    return dict(spec.get("nodeSelector") or {}), terms, list(spec.get("tolerations") or [])


def _pod_from_spec(owner: str, ns: str, spec: dict[str, Any], limit_ranges: dict[str, dict[str, Any]],
                   **kw: Any) -> Pod:
    fallback = limit_ranges.get(ns, {})
    parts = []
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            req, gpus, basis = _container_requests(c.get("resources"), fallback)
            parts.append((req, gpus, f"{c.get('name')}: {basis}", kind == "initContainers",
                          c.get("restartPolicy") == "Always"))
    requests, gpus = _effective(parts)
    selector, terms, tolerations = _placement(spec)
    return Pod(owner, ns, requests, gpus, container_gpus=max((p[1] for p in parts), default=0),
               node_selector=selector, affinity_terms=terms, tolerations=tolerations, basis=[p[2] for p in parts],
               **kw)


def _hpa_targets(plan: Plan) -> dict[tuple[str, str, str], tuple[int, int]]:
    targets = {}
    for hpa in plan.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"):
        i = hpa["inputs"]
        ref = i["spec"]["scaleTargetRef"]
        ns = i.get("metadata", {}).get("namespace", "default")
        targets[(ref["kind"], ns, ref["name"])] = (_count(i["spec"].get("minReplicas", 1)),
                                                   _count(i["spec"]["maxReplicas"]))
    return targets


def _workload_pods(plan: Plan, limit_ranges: dict[str, dict[str, Any]]) -> Iterable[Pod]:
    hpas = _hpa_targets(plan)
    for r in plan.resources:
        kind = r["type"].rsplit(":", 1)[-1]
        if not r["type"].startswith("kubernetes:") or kind not in (
                "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob", "Pod"):
            continue
        i = r["inputs"]
        meta, spec = i.get("metadata", {}), i.get("spec", {})
        ns, name = meta.get("namespace", "default"), meta.get("name", r["name"])
        owner = f"{kind} {ns}/{name}"
        if kind == "Pod":
            yield _pod_from_spec(owner, ns, spec, limit_ranges)
        elif kind == "DaemonSet":
            yield _pod_from_spec(owner, ns, spec["template"]["spec"], limit_ranges, per_node=True)
        elif kind in ("Job", "CronJob"):
            job = spec["jobTemplate"]["spec"] if kind == "CronJob" else spec
            parallelism = _count(job.get("parallelism", 1))
            count = min(parallelism, _count(job.get("completions", parallelism)))
            yield _pod_from_spec(owner, ns, job["template"]["spec"], limit_ranges, replicas=count,
                                 max_replicas=count, on_demand=bool(spec.get("suspend")), completes=True)
        else:
            low, high = hpas.get((kind, ns, name), (1, 1))
            if spec.get("replicas") is not None:
                low = high = _count(spec["replicas"])
            yield _pod_from_spec(owner, ns, spec["template"]["spec"], limit_ranges, replicas=low, max_replicas=high)


def _strimzi_pods(plan: Plan, limit_ranges: dict[str, dict[str, Any]]) -> Iterable[Pod]:
    """Pods the Strimzi operator creates: brokers per node pool, the entity operator, the Kafka exporter."""

    def pod(owner: str, ns: str, containers: dict[str, dict[str, Any] | None], template: dict[str, Any],
            replicas: int = 1) -> Pod:
        spec = {"containers": [{"name": n, "resources": (c or {}).get("resources")} for n, c in containers.items()],
                **{k: template[k] for k in ("affinity", "tolerations") if k in template}}
        return _pod_from_spec(owner, ns, spec, limit_ranges, replicas=replicas, max_replicas=replicas)

    for r in plan.of_type("kubernetes:kafka.strimzi.io/v1:KafkaNodePool"):
        i = r["inputs"]
        ns, name = i["metadata"].get("namespace", "default"), i["metadata"]["name"]
        spec = i["spec"]
        yield pod(f"KafkaNodePool {ns}/{name} (brokers)", ns, {"kafka": spec},
                  (spec.get("template") or {}).get("pod") or {}, replicas=_count(spec.get("replicas", 1)))
    for r in plan.of_type("kubernetes:kafka.strimzi.io/v1:Kafka"):
        i = r["inputs"]
        ns, name = i["metadata"].get("namespace", "default"), i["metadata"]["name"]
        spec = i["spec"]
        if "entityOperator" in spec:
            eo = spec["entityOperator"] or {}
            containers = {k: eo[k] for k in ("topicOperator", "userOperator") if k in eo}
            yield pod(f"Kafka {ns}/{name} (entity operator)", ns, containers,
                      ((eo.get("template") or {}).get("pod") or {}))
        for part, label in (("kafkaExporter", "Kafka exporter"), ("cruiseControl", "Cruise Control")):
            if part in spec:
                yield pod(f"Kafka {ns}/{name} ({label})", ns, {part: spec[part]},
                          ((spec[part] or {}).get("template") or {}).get("pod") or {})


def _allowance_pods(allowance: Allowance, values: dict[str, Any], ns: str, owner: str,
                    limit_ranges: dict[str, dict[str, Any]]) -> Iterable[Pod]:
    merged = _merge(allowance.defaults, values)
    fallback = limit_ranges.get(ns, {})
    for cp in allowance.pods:
        if cp.when and not _at(merged, cp.when, False):
            continue
        parts = []
        for c in cp.containers:
            if c.when and not _at(merged, c.when, False):
                continue
            req, gpus, basis = _container_requests(_at(merged, c.resources), fallback, c.template)
            if basis == "set":
                set_by_program = _at(values, c.resources) not in (None, {})
                basis = "values" if set_by_program else ("chart default" if allowance.kind == "helm" else "allowance")
            parts.append((req, gpus, f"{c.name}: {basis}", c.init, False))
        requests, gpus = _effective(parts)
        count = cp.replicas if isinstance(cp.replicas, int) else _count(_at(merged, cp.replicas, 1))
        selector = _at(merged, cp.node_selector, {}) or {}
        tolerations = _at(merged, cp.tolerations, []) or []
        spec_affinity = {"affinity": _at(merged, cp.affinity, {}) or {}}
        _, terms, _ = _placement(spec_affinity)
        yield Pod(f"{owner}: {cp.name}", ns, requests, gpus, replicas=count, max_replicas=count, per_node=cp.per_node,
                  node_selector=dict(selector), affinity_terms=terms, tolerations=list(tolerations),
                  basis=[p[2] for p in parts])


def _release_pods(plan: Plan, limit_ranges: dict[str, dict[str, Any]],
                  notes: list[str]) -> Iterable[Pod]:
    for r in plan.of_type("kubernetes:helm.sh/v3:Release"):
        i = r["inputs"]
        chart = i["chart"].rstrip("/").rsplit("/", 1)[-1]
        allowance = ALLOWANCE_BY_KEY.get(("helm", chart))
        if allowance is None:
            notes.append(f"unmodelled Helm chart {chart} (release {r['name']}): add it to ALLOWANCES")
            continue
        if i.get("version") != allowance.version:
            notes.append(f"chart {chart} is pinned at {i.get('version')}; its allowance was read at "
                         f"{allowance.version}: re-read it")
        yield from _allowance_pods(allowance, i.get("values") or {}, i.get("namespace", "default"),
                                   f"helm {i.get('name', chart)}", limit_ranges)
    for r in plan.of_type("aws:eks/addon:Addon"):
        i = r["inputs"]
        allowance = ALLOWANCE_BY_KEY.get(("addon", i["addonName"]))
        if allowance is None:
            notes.append(f"unmodelled EKS add-on {i['addonName']}: add it to ALLOWANCES")
            continue
        if i.get("addonVersion") != allowance.version:
            notes.append(f"add-on {i['addonName']} is pinned at {i.get('addonVersion')}; its allowance was read "
                         f"for {allowance.version}: re-check it")
        values = json.loads(i["configurationValues"]) if i.get("configurationValues") else {}
        yield from _allowance_pods(allowance, values, "kube-system", f"addon {i['addonName']}", limit_ranges)


def pods(plan: Plan, notes: list[str] | None = None) -> list[Pod]:
    """Every pod the plan causes, with its requests as the scheduler will count them."""
    notes = [] if notes is None else notes
    limit_ranges = _limit_ranges(plan)
    return [*_workload_pods(plan, limit_ranges), *_strimzi_pods(plan, limit_ranges),
            *_release_pods(plan, limit_ranges, notes)]


# --- node sources ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuAdvert:
    """What a node of a source advertises as `nvidia.com/gpu`, per physical GPU."""

    units_per_gpu: int = 1
    per_container: int | None = None
    """The most units the device plugin hands one container (time-slicing's failRequestsGreaterThanOne)."""
    how: str = "whole GPUs"


@dataclass
class NodeSource:
    name: str
    kind: str  # "group" (managed node group), "general" (untainted NodePool), "dedicated" (tainted NodePool)
    labels: dict[str, set[str]]
    taints: list[dict[str, Any]]
    instance_types: list[str]
    limits: dict[str, float] = field(default_factory=dict)
    limits_text: str = ""
    min_nodes: int = 0
    desired_nodes: int = 0
    notes: list[str] = field(default_factory=list)
    daemonsets: Res = field(default_factory=Res)
    capacity: Res = field(default_factory=Res)
    """What pods other than DaemonSets can request: the guarantee (group) or the limit's worst case (pool)."""
    capacity_desired: Res = field(default_factory=Res)
    nodes: float = 0
    worst_type: dict[str, str] = field(default_factory=dict)
    node_class: str = ""
    gpu: GpuAdvert = field(default_factory=GpuAdvert)


def _type_labels(name: str) -> dict[str, str]:
    family, size = name.split(".", 1)
    category, generation = re.match(r"([a-z]+)(\d+)", family).groups()
    it = INSTANCE_TYPES[name]
    return {"node.kubernetes.io/instance-type": name, "karpenter.k8s.aws/instance-family": family,
            "karpenter.k8s.aws/instance-category": category, "karpenter.k8s.aws/instance-generation": generation,
            "karpenter.k8s.aws/instance-size": size, "karpenter.k8s.aws/instance-cpu": str(it.vcpus),
            "karpenter.k8s.aws/instance-memory": str(it.memory_mib),
            "karpenter.k8s.aws/instance-gpu-count": str(_gpus(name)),
            "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}


def _gpus(name: str) -> int:
    gpu = GPU_INSTANCE_TYPES.get(name)
    return gpu.gpus if gpu else 0


def _requirement_holds(req: dict[str, Any], value: str | None) -> bool:
    op, values = req.get("operator"), [str(v) for v in req.get("values") or []]
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        return float(value) > float(values[0]) if op == "Gt" else float(value) < float(values[0])
    return False


def _node_group(r: dict[str, Any]) -> NodeSource:
    i = r["inputs"]
    types = list(i.get("instanceTypes") or ["t3.medium"])  # EKS's default when none is given
    taints = [{"key": t.get("key"), "value": t.get("value"),
               "effect": {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute",
                          "PREFER_NO_SCHEDULE": "PreferNoSchedule"}.get(t.get("effect"), t.get("effect"))}
              for t in i.get("taints") or []]
    labels = {k: {str(v)} for k, v in (i.get("labels") or {}).items()}
    labels.update({"eks.amazonaws.com/nodegroup": {r["name"]}, "kubernetes.io/os": {"linux"},
                   "kubernetes.io/arch": {"amd64"}, "node.kubernetes.io/instance-type": set(types)})
    scaling = i.get("scalingConfig") or {}
    return NodeSource(f"node group {r['name']}", "group", labels, taints, types,
                      min_nodes=_count(scaling.get("minSize", 0)), desired_nodes=_count(scaling.get("desiredSize", 0)))


def _node_pool(r: dict[str, Any]) -> NodeSource:
    i = r["inputs"]
    name = i["metadata"]["name"]
    template = i["spec"].get("template") or {}
    spec = template.get("spec") or {}
    requirements = spec.get("requirements") or []
    types = [t for t in INSTANCE_TYPES
             if all(_requirement_holds(req, _type_labels(t).get(req["key"])) for req in requirements
                    if req.get("key") in _type_labels(t))]
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    labels: dict[str, set[str]] = {k: {str(v)} for k, v in template_labels.items()}
    for req in requirements:
        if req.get("operator") == "In":
            labels[req["key"]] = labels.get(req["key"], set(map(str, req["values"]))) & set(map(str, req["values"]))
    for key in ("node.kubernetes.io/instance-type", "karpenter.k8s.aws/instance-family",
                "karpenter.k8s.aws/instance-category", "karpenter.k8s.aws/instance-size"):
        labels[key] = {_type_labels(t)[key] for t in types}
    labels.update({"karpenter.sh/nodepool": {name}, "kubernetes.io/os": {"linux"}, "kubernetes.io/arch": {"amd64"}})
    taints = [t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    limits = i["spec"].get("limits") or {}
    parsed = {}
    if "cpu" in limits:
        parsed["cpu"] = cpu_m(limits["cpu"])
    if "memory" in limits:
        parsed["memory"] = mib(limits["memory"])
    if "nodes" in limits:
        parsed["nodes"] = float(limits["nodes"])
    if GPU in limits:
        parsed[GPU] = float(limits[GPU])
    source = NodeSource(f"NodePool {name}", "dedicated" if taints else "general", labels, taints, types, parsed,
                        limits_text=", ".join(f"{k}={v}" for k, v in limits.items()),
                        node_class=(spec.get("nodeClassRef") or {}).get("name", ""))
    bounded = {"node.kubernetes.io/instance-type", "karpenter.k8s.aws/instance-family"}
    if not any(req.get("key") in bounded and req.get("operator") == "In" for req in requirements):
        source.notes.append("requirements admit instance types outside platform_config/instance_catalog.py; "
                            "the worst case is taken over the catalogued ones")
    if not types:
        source.notes.append("no catalogued instance type satisfies the requirements")
    return source


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") != taint.get("key"):
            continue
        if t.get("operator") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


def can_land(pod: Pod, source: NodeSource) -> bool:
    if not all(_tolerates(pod.tolerations, t) for t in source.taints if t.get("effect") in ("NoSchedule", "NoExecute")):
        return False
    if any(str(v) not in source.labels.get(k, set()) for k, v in pod.node_selector.items()):
        return False
    if not pod.affinity_terms:
        return True
    return any(all(_expression_may_hold(e, source.labels.get(e["key"])) for e in term) for term in pod.affinity_terms)


def _expression_may_hold(expression: dict[str, Any], values: set[str] | None) -> bool:
    if values is None:
        return _requirement_holds(expression, None)
    return any(_requirement_holds(expression, v) for v in values)


def _size(source: NodeSource, per_node_pods: list[Pod]) -> None:
    ds = [p for p in per_node_pods if can_land(p, source)]
    source.daemonsets = rsum(p.requests for p in ds)
    if not source.instance_types:
        return
    room = {t: Res(*allocatable(t), INSTANCE_TYPES[t].max_pods) - source.daemonsets for t in source.instance_types}
    if source.kind == "group":
        worst = Res(*(min(getattr(room[t], r) for t in room) for r in Res.NAMES))
        source.worst_type = {r: min(room, key=lambda t: getattr(room[t], r)) for r in Res.NAMES}
        source.nodes = source.min_nodes
        source.capacity, source.capacity_desired = worst * source.min_nodes, worst * source.desired_nodes
        return
    limits = source.limits

    def most_nodes(t: str) -> float:
        cap = Res(*capacity(t), INSTANCE_TYPES[t].max_pods)
        return min([limits[k] // getattr(cap, k) for k in ("cpu", "memory") if k in limits]
                   + [limits.get("nodes", INF)])

    # A type one node of which exceeds a limit is never launched; of the others, the one the limits allow the most
    # nodes of costs the most per-node overhead.
    launchable = [t for t in source.instance_types if most_nodes(t) >= 1]
    if not launchable:
        source.notes.append("no allowed instance type fits within the limits")
        return
    smallest = max(launchable, key=lambda t: (most_nodes(t), -INSTANCE_TYPES[t].vcpus, -INSTANCE_TYPES[t].memory_mib))
    n = source.nodes = most_nodes(smallest)
    source.worst_type = {r: smallest for r in Res.NAMES}
    if n == INF:
        source.notes.append("no cpu, memory or nodes limit: capacity is unbounded")
        source.capacity = source.capacity_desired = Res(INF, INF, INF)
        return
    cap = Res(*capacity(smallest), INSTANCE_TYPES[smallest].max_pods)
    # Limits count capacity; what pods can use is that less each node's reserve and DaemonSets.
    usable = [limits[r] - n * (c - a) if r in limits else n * a for r, c, a in zip(Res.NAMES, cap, room[smallest])]
    source.capacity = source.capacity_desired = Res(*(max(v, 0) for v in usable))


def _plugin_configs(plan: Plan) -> tuple[dict[str, dict[str, Any]], str] | None:
    """The device plugin's named configs and the one a node without the label gets; None without the plugin."""
    releases = [r["inputs"] for r in plan.of_type("kubernetes:helm.sh/v3:Release")
                if r["inputs"]["chart"].rstrip("/").rsplit("/", 1)[-1] == PLUGIN_CHART]
    if not releases:
        return None
    config = (releases[0].get("values") or {}).get("config") or {}
    named = {n: yaml.safe_load(text) or {} for n, text in (config.get("map") or {}).items()}
    # cmd/config-manager/main.go updateConfigName, with the chart's default fallbackStrategies ["named", "single"].
    default = config.get("default") or ("default" if "default" in named else next(iter(named)) if len(named) == 1
                                        else "")
    return named, default


_MIG_COUNT = re.compile(r"^INSTANCES_PER_GPU=(\d+)$", re.M)
_MIG_PROFILE = re.compile(r"^MIG_PROFILE=(\S+)$", re.M)


def _gpu_advert(source: NodeSource, plugin: tuple[dict[str, dict[str, Any]], str] | None,
                user_data: str) -> GpuAdvert:
    named, default = plugin if plugin else ({}, "")
    if not named:
        # No config-manager: every node runs the plugin's defaults, one unit per GPU.
        return GpuAdvert()
    label = sorted(source.labels.get(PLUGIN_CONFIG_LABEL, set()))
    name = label[0] if label else default
    if name not in named:
        return GpuAdvert(0, how=f"device plugin config {name or '(none)'} is not in its config.map, so "
                                "config-manager stops the plugin")
    cfg = named[name]
    units, how = 1, "whole GPUs"
    strategy = (cfg.get("flags") or {}).get("migStrategy") or "none"
    if strategy == "single":
        count, profile = _MIG_COUNT.search(user_data or ""), _MIG_PROFILE.search(user_data or "")
        if count:
            units, how = int(count.group(1)), f"{count.group(1)} MIG {profile.group(1) if profile else '?'} per GPU"
        else:
            how = "migStrategy single, but the node class creates no MIG devices: whole GPUs"
    elif strategy != "none":
        source.notes.append(f"device plugin migStrategy {strategy} is not modelled; counted as whole GPUs")
    slicing = (cfg.get("sharing") or {}).get("timeSlicing") or {}
    for res in slicing.get("resources") or []:
        if res.get("name") != GPU:
            continue
        if slicing.get("renameByDefault") or res.get("rename"):
            return GpuAdvert(0, how=f"time-slicing renames {GPU}, so none is advertised under that name")
        sliced = f"time-sliced x{res.get('replicas')}"
        units, how = units * int(res.get("replicas", 1)), sliced if units == 1 else f"{how}, {sliced}"
        if slicing.get("failRequestsGreaterThanOne"):
            return GpuAdvert(units, 1, how)
    return GpuAdvert(units, None, how)


def node_sources(plan: Plan, per_node_pods: list[Pod]) -> list[NodeSource]:
    sources = [_node_group(r) for r in plan.of_type("aws:eks/nodeGroup:NodeGroup")]
    sources += [_node_pool(r) for r in plan.of_type("kubernetes:karpenter.sh/v1:NodePool")]
    plugin = _plugin_configs(plan)
    user_data = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"].get("userData") or ""
                 for r in plan.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")}
    for s in sources:
        if any(_gpus(t) for t in s.instance_types):
            s.gpu = _gpu_advert(s, plugin, user_data.get(s.node_class, ""))
        unknown = [t for t in s.instance_types if t not in INSTANCE_TYPES]
        if unknown:
            s.notes.append(f"not in the instance catalog (ignored): {', '.join(unknown)}")
            s.instance_types = [t for t in s.instance_types if t in INSTANCE_TYPES]
        _size(s, per_node_pods)
    return sources


# --- the referee -----------------------------------------------------------------------------------------------

@dataclass
class SubsetCheck:
    sources: list[str]
    requests: Res
    capacity: Res
    requests_at_max: Res

    @property
    def fits(self) -> bool:
        return self.requests.fits(self.capacity)


@dataclass
class Report:
    stack: str
    pods: list[Pod]
    sources: list[NodeSource]
    checks: list[SubsetCheck]
    """Every subset of the non-dedicated sources, the whole set last."""
    not_fitting: list[tuple[str, int]]
    oversize: list[str]
    too_small_types: list[str]
    unschedulable: list[str]
    notes: list[str]
    gpu_pools: list[GpuPoolCheck] = field(default_factory=list)
    """Per GPU pool: the units its long-running pods ask for, against what the pool offers at its limits."""

    @property
    def shared(self) -> list[NodeSource]:
        return [s for s in self.sources if s.kind != "dedicated"]

    @property
    def total(self) -> SubsetCheck:
        return self.checks[-1]

    @property
    def fits(self) -> bool:
        return (all(c.fits for c in self.checks) and not self.oversize and not self.unschedulable
                and all(g.fits for g in self.gpu_pools))

    def as_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "fits": self.fits,
            "requests": total.requests.as_dict(),
            "capacity": total.capacity.as_dict(),
            "headroom": (total.capacity - total.requests).as_dict(),
            "headroom_pct": _pct(total.capacity - total.requests, total.capacity),
            "requests_pct": _pct(total.requests, total.capacity),
            "requests_at_hpa_max": total.requests_at_max.as_dict(),
            "headroom_at_hpa_max": (total.capacity - total.requests_at_max).as_dict(),
            "checks": [{"sources": c.sources, "fits": c.fits, "requests": c.requests.as_dict(),
                        "capacity": c.capacity.as_dict()} for c in self.checks],
            "sources": [{"name": s.name, "kind": s.kind, "nodes": _num(s.nodes), "min_nodes": s.min_nodes,
                         "desired_nodes": s.desired_nodes, "instance_types": s.instance_types,
                         "daemonsets_per_node": s.daemonsets.as_dict(), "capacity": s.capacity.as_dict(),
                         "gpu_units_per_gpu": s.gpu.units_per_gpu, "gpu_advertised": s.gpu.how,
                         "capacity_at_desired": s.capacity_desired.as_dict(), "worst_type": s.worst_type,
                         "notes": s.notes} for s in self.sources],
            "not_fitting": [{"pod": owner, "replicas": n} for owner, n in self.not_fitting],
            "gpu_pools": [{"source": g.source, "fits": g.fits, "units_at_limits": _num(g.units),
                           "requests": g.requests, "pods": g.pods} for g in self.gpu_pools],
            "oversize": self.oversize,
            "unschedulable": self.unschedulable,
            "notes": self.notes,
        }


def _pct(part: Res, whole: Res) -> dict[str, float | None]:
    return {k: (None if w in (0, INF) else round(100 * p / w, 1))
            for k, p, w in zip(("cpu", "memory", "pods"), part, whole)}


def _gpu_misfit(pod: Pod, source: NodeSource, instance_type: str) -> str | None:
    """Why a node of this type cannot take the pod's `nvidia.com/gpu` request, or None."""
    if not pod.gpus:
        return None
    physical = _gpus(instance_type)
    units = physical * source.gpu.units_per_gpu
    if pod.gpus > units:
        return f"{instance_type} advertises {units} {GPU} ({source.gpu.how})"
    if source.gpu.per_container is not None and pod.container_gpus > source.gpu.per_container:
        return (f"{instance_type}: the device plugin gives one container at most {source.gpu.per_container} "
                f"time-sliced unit (failRequestsGreaterThanOne)")
    if pod.gpus > physical:
        return (f"{instance_type} advertises {units} {GPU}, but Karpenter sizes a new node by its {physical} "
                "physical GPUs and launches none for this pod")
    return None


def _fits_a_node(pod: Pod, sources: list[NodeSource]) -> tuple[list[str], list[str], list[str]]:
    fit, small, why = [], [], []
    for s in sources:
        if not can_land(pod, s):
            continue
        for t in s.instance_types:
            room = Res(*allocatable(t), INSTANCE_TYPES[t].max_pods) - s.daemonsets
            gpu = _gpu_misfit(pod, s, t)
            (fit if pod.requests.fits(room) and gpu is None else small).append(t)
            if gpu:
                why.append(gpu)
    return fit, small, why


@dataclass
class GpuPoolCheck:
    source: str
    units: float
    """`nvidia.com/gpu` units the pool offers at its limits."""
    requests: int
    pods: list[str]
    how: str = ""
    """What its nodes advertise (GpuAdvert.how)."""

    @property
    def fits(self) -> bool:
        # A pool whose nodes advertise no `nvidia.com/gpu` is broken before any pod asks.
        return 0 < self.units and self.requests <= self.units


def _gpu_pool_checks(placed: list[Pod], sources: list[NodeSource]) -> list[GpuPoolCheck]:
    checks = []
    for s in sources:
        physical = [_gpus(t) for t in s.instance_types if _gpus(t)]
        if s.kind != "dedicated" or not physical:
            continue
        at_limit = min(s.limits.get(GPU, INF), s.limits.get("nodes", INF) * max(physical))
        counted = [p for p in placed if p.gpus and not p.completes
                   and [o.name for o in sources if can_land(p, o)] == [s.name]]
        units = at_limit * s.gpu.units_per_gpu if s.gpu.units_per_gpu else 0
        checks.append(GpuPoolCheck(s.name, units, sum(p.gpus * p.replicas for p in counted), [p.owner for p in counted],
                                   s.gpu.how))
    return checks


def referee(plan: Plan) -> Report:
    notes: list[str] = []
    every = pods(plan, notes)
    per_node = [p for p in every if p.per_node]
    sources = node_sources(plan, per_node)
    shared = [s for s in sources if s.kind != "dedicated"]
    placed = [p for p in every if not p.per_node]

    eligible = {i: [s.name for s in shared if can_land(p, s)] for i, p in enumerate(placed)}
    anywhere = {i: any(can_land(p, s) for s in sources) for i, p in enumerate(placed)}
    unschedulable = [p.owner for i, p in enumerate(placed) if not anywhere[i]]

    checks = []
    for size in range(0 if not shared else 1, len(shared) + 1):
        for subset in itertools.combinations(shared, size):
            names = {s.name for s in subset}
            counted = [p for i, p in enumerate(placed) if eligible[i] and set(eligible[i]) <= names]
            checks.append(SubsetCheck([s.name for s in subset], rsum(p.requests * p.replicas for p in counted),
                                      rsum(s.capacity for s in subset),
                                      rsum(p.requests * p.max_replicas for p in counted)))

    oversize, too_small = [], []
    for i, p in enumerate(placed):
        fit, small, why = _fits_a_node(p, sources)
        because = f" ({'; '.join(sorted(set(why)))})" if why else ""
        if anywhere[i] and not fit:
            oversize.append(f"{p.owner} ({_describe(p)}) fits no node it can land on: "
                            f"{', '.join(sorted(set(small)))}{because}")
        elif small and not eligible[i]:
            # A dedicated pool lists its types on purpose; one its pods never fit is a type it cannot use.
            too_small.append(f"{p.owner} ({_describe(p)}) is too big for {', '.join(sorted(set(small)))}{because}")
    return Report(plan.stack, every, sources, checks,
                  _assign(placed, eligible, shared), oversize, too_small, unschedulable,
                  notes + [f"{s.name}: {n}" for s in sources for n in s.notes], _gpu_pool_checks(placed, sources))


def _assign(placed: list[Pod], eligible: dict[int, list[str]], shared: list[NodeSource]) -> list[tuple[str, int]]:
    """Pour replicas into sources, most constrained and largest first; what finds no room does not fit."""
    room = {s.name: s.capacity for s in shared}
    full = dict(room)
    order = sorted((i for i in eligible if eligible[i]),
                   key=lambda i: (len(eligible[i]), -placed[i].requests.cpu, -placed[i].requests.memory))
    missing: list[tuple[str, int]] = []
    for i in order:
        pod, left = placed[i], 0
        for _ in range(pod.replicas):
            options = [n for n in eligible[i] if pod.requests.fits(room[n])]
            if not options:
                left += 1
                continue
            # The source left least squeezed, measured by its scarcest resource.
            best = max(options, key=lambda n: min((h - q) / c if c not in (0, INF) else INF
                                                  for h, q, c in zip(room[n], pod.requests, full[n])))
            room[best] = room[best] - pod.requests
        if left:
            missing.append((pod.owner, left))
    return missing


def _describe(p: Pod) -> str:
    text = f"{p.requests.cpu:.0f}m / {p.requests.memory:.0f}Mi"
    return text + (f" / {p.gpus} GPU" if p.gpus else "")


# --- text -------------------------------------------------------------------------------------------------------

def _fmt(r: Res) -> str:
    def one(v: float, unit: str, scale: float, digits: int = 2) -> str:
        return "unbounded" if v == INF else f"{v / scale:.{digits}f}{unit}"
    return f"cpu {one(r.cpu, '', 1000)} · memory {one(r.memory, 'Gi', 1024)} · pods {one(r.pods, '', 1, 0)}"


def render(report: Report) -> list[str]:
    t = report.total
    used, head = _pct(t.requests, t.capacity), _pct(t.capacity - t.requests, t.capacity)
    lines = [f"capacity: {'fits' if report.fits else 'DOES NOT FIT'} (pods that can run off dedicated (GPU) pools, on "
             f"{' + '.join(s.name for s in report.shared) or 'no node source'})"]
    for key, unit, scale, digits in (("cpu", " vCPU", 1000, 2), ("memory", " GiB", 1024, 2), ("pods", "", 1, 0)):
        req, cap, top = getattr(t.requests, key), getattr(t.capacity, key), getattr(t.requests_at_max, key)
        if cap == INF:
            lines.append(f"  {key:<7} requests {req / scale:.{digits}f}{unit} of unbounded")
            continue
        lines.append(f"  {key:<7} requests {req / scale:.{digits}f}{unit} of {cap / scale:.{digits}f} "
                     f"({used[key]:.0f} %)"
                     f"  headroom {(cap - req) / scale:+.{digits}f} ({head[key]:+.0f} %)"
                     f"  at HPA max {(cap - top) / scale:+.{digits}f}")
    for s in report.shared:
        size = (f"{s.min_nodes} nodes (minSize; desired {s.desired_nodes}) of the smallest of "
                f"{', '.join(s.instance_types)}" if s.kind == "group" else
                f"limits {s.limits_text or 'none'}: up to {s.nodes:.0f} nodes of the smallest allowed type, "
                f"{', '.join(sorted(set(s.worst_type.values()))) or 'none'}")
        lines.append(f"  {s.name}: {size}")
        lines.append(f"    usable {_fmt(s.capacity)}  (DaemonSets per node: {_fmt(s.daemonsets)})")
    for c in report.checks:
        if len(c.sources) < len(report.shared) and c.requests.pods:
            lines.append(f"  {'ok  ' if c.fits else 'FAIL'} pods that can use only {' + '.join(c.sources)}: "
                         f"{_fmt(c.requests)} of {_fmt(c.capacity)}")
    if report.not_fitting:
        lines.append("  left over (largest placed first): "
                     + ", ".join(f"{owner} ×{n}" for owner, n in report.not_fitting))
    on_demand = [p.owner for p in report.pods if p.on_demand and any(can_land(p, s) for s in report.shared)]
    if on_demand:
        lines.append(f"  counted though suspended (can be started on demand): {', '.join(on_demand)}")
    for g in report.gpu_pools:
        if g.requests or not g.fits:
            lines.append(f"  {'ok  ' if g.fits else 'FAIL'} {g.source}: long-running pods ask for {g.requests} {GPU} "
                         f"of {g.units:g} at its limits ({g.how})")
    lines += [f"  oversize: {text}" for text in report.oversize]
    lines += [f"  unschedulable (no node source matches): {text}" for text in report.unschedulable]
    lines += [f"  note: {text}" for text in report.too_small_types + report.notes]
    return lines


if __name__ == "__main__":
    print("| kind | name | version | pod | count | requests (chart defaults) | containers | source |")
    print("|---|---|---|---|---|---|---|---|")
    for row in allowance_table():
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
