"""What is vendored, from where: one row per upstream chart or CRD set.

Versions come from platform_config/versions.py, so a version bump there plus `python -m upstream.regenerate`
re-vendors the matching upstream files. Adding a CRD set is one more row, for example:

    Source("jobset", "kubernetes-sigs/jobset", JOBSET_VERSION, tag="v{version}",
           crds=("config/components/crd/bases/jobset.x-k8s.io_*.yaml",)),
"""

from __future__ import annotations

from dataclasses import dataclass

from platform_config import versions


@dataclass(frozen=True)
class Subchart:
    """A chart whose version is whatever its parent chart's Chart.yaml depends on, not a pin of ours."""

    parent: str
    dependency: str


@dataclass(frozen=True)
class Source:
    name: str  # vendored as crds/<name>-<version>/ and charts/<name>-<version>/
    repo: str  # GitHub owner/name
    version: str | Subchart
    tag: str  # git tag (a commit where upstream tags nothing), "{version}" substituted; a "*" matches one tag
    crds: tuple[str, ...] = ()  # CRD files inside the repo (globs allowed), vendored whole
    chart: str | None = None  # chart directory inside the repo: its values.yaml and Chart.yaml are vendored
    files: tuple[str, ...] = ()  # other data files (JSON schemas), vendored whole as schemas/<name>/<file name>


SOURCES: tuple[Source, ...] = (
    # The CRDs are the generated ones under pkg/apis/crds; the karpenter-crd chart wraps the same files in templating.
    Source("karpenter", "aws/karpenter-provider-aws", versions.KARPENTER_VERSION, tag="v{version}",
           crds=("pkg/apis/crds/karpenter.sh_nodepools.yaml", "pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml"),
           chart="charts/karpenter"),
    Source("karpenter-crd", "aws/karpenter-provider-aws", versions.KARPENTER_VERSION, tag="v{version}",
           chart="charts/karpenter-crd"),
    # All of the operator chart's CRDs: the program deploys them itself, so they must match the operator exactly.
    Source("strimzi-kafka-operator", "strimzi/strimzi-kafka-operator", versions.STRIMZI_VERSION, tag="{version}",
           crds=("helm-charts/helm3/strimzi-kafka-operator/crds/*.yaml",),
           chart="helm-charts/helm3/strimzi-kafka-operator"),
    # prometheus-operator CRDs as kube-prometheus-stack bundles them, so they match the operator the chart runs.
    Source("kube-prometheus-stack", "prometheus-community/helm-charts", versions.KUBE_PROMETHEUS_STACK_VERSION,
           tag="kube-prometheus-stack-{version}",
           crds=tuple(f"charts/kube-prometheus-stack/charts/crds/crds/crd-{kind}.yaml"
                      for kind in ("servicemonitors", "podmonitors", "prometheusrules", "scrapeconfigs")),
           chart="charts/kube-prometheus-stack"),
    Source("grafana", "grafana-community/helm-charts", Subchart("kube-prometheus-stack", "grafana"),
           tag="grafana-{version}", chart="charts/grafana"),
    # dcgm-exporter tags are "<DCGM version>-<chart version>".
    Source("dcgm-exporter", "NVIDIA/dcgm-exporter", versions.DCGM_EXPORTER_VERSION, tag="*-{version}",
           chart="deployment"),
    Source("nvidia-device-plugin", "NVIDIA/k8s-device-plugin", versions.NVIDIA_DEVICE_PLUGIN_VERSION,
           tag="v{version}", chart="deployments/helm/nvidia-device-plugin"),
    Source("metrics-server", "kubernetes-sigs/metrics-server", versions.METRICS_SERVER_VERSION,
           tag="metrics-server-helm-chart-{version}", chart="charts/metrics-server"),
    # The plain generated CRDs of the kinds the program declares (the chart's templates/crd are the same schemas
    # wrapped in Helm templating); the chart installs and upgrades them itself.
    Source("kueue", "kubernetes-sigs/kueue", versions.KUEUE_VERSION, tag="v{version}",
           crds=tuple(f"config/components/crd/bases/kueue.x-k8s.io_{plural}.yaml"
                      for plural in ("clusterqueues", "localqueues", "resourceflavors", "workloadpriorityclasses")),
           chart="charts/kueue"),
    # kube-prometheus-stack's kube-state-metrics, whose label allowlist the cost queries depend on.
    Source("kube-state-metrics", "prometheus-community/helm-charts", Subchart("kube-prometheus-stack",
                                                                              "kube-state-metrics"),
           tag="kube-state-metrics-{version}", chart="charts/kube-state-metrics"),
    # chart-releaser tags each published chart `opencost-<version>`.
    Source("opencost", "opencost/opencost-helm-chart", versions.OPENCOST_CHART_VERSION, tag="opencost-{version}",
           chart="charts/opencost"),
    # The GitHub Actions workflow schema tests/test_workflows.py validates .github/workflows against. SchemaStore
    # publishes no tags, so the pin is a commit; its NOTICE travels with the file as Apache-2.0 asks.
    Source("github-workflow", "SchemaStore/schemastore", "3b6446ad8a077bac56f4a4796c0b7fd88927fc8e", tag="{version}",
           files=("src/schemas/json/github-workflow.json", "NOTICE")),
)
