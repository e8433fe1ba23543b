"""Every version the platform pins, in one place, so upgrades are one reviewed diff.

EKS add-on versions are tied to the Kubernetes minor version; confirm a new row with
`aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>` before adding it.
"""

DEFAULT_CLUSTER_VERSION = "1.35"

EKS_ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.34": {
        "vpc-cni": "v1.20.4-eksbuild.1",
        "coredns": "v1.12.4-eksbuild.1",
        "kube-proxy": "v1.34.1-eksbuild.2",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-ebs-csi-driver": "v1.54.0-eksbuild.1",
    },
    "1.35": {
        "vpc-cni": "v1.21.1-eksbuild.3",
        "coredns": "v1.13.2-eksbuild.1",
        "kube-proxy": "v1.35.0-eksbuild.2",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-ebs-csi-driver": "v1.57.1-eksbuild.1",
    },
}

# End of standard support per Kubernetes minor (EKS user guide, "Amazon EKS Kubernetes release calendar",
# awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc; 1.35's date as published in that
# table's row, which the guide's copy available here did not yet carry). With upgrade_policy STANDARD, EKS upgrades
# the control plane itself on that date, past the pinned add-ons and nodes: bump clusterVersion before it.
EKS_END_OF_STANDARD_SUPPORT: dict[str, str] = {"1.34": "2026-12-02", "1.35": "2027-03-27"}
SUPPORT_WARNING_DAYS = 90

# Karpenter >= 1.11.1 is needed for `limits.nodes` on dynamic NodePools, which bounds each GPU pool exactly.
KARPENTER_CHART = "oci://public.ecr.aws/karpenter/karpenter"
KARPENTER_CRD_CHART = "oci://public.ecr.aws/karpenter/karpenter-crd"
KARPENTER_VERSION = "1.14.1"

# EKS-optimized AL2023 release; Karpenter picks the standard or NVIDIA variant for each instance type and the build for
# the cluster's Kubernetes minor. awslabs/amazon-eks-ami v20260714 publishes al2023 x86_64 standard and nvidia AMIs for
# 1.30-1.36 (its CHANGELOG.md). Nodes move to a new release only when this pin changes (components/node_class.py).
AL2023_AMI_ALIAS = "al2023@v20260714"

NVIDIA_DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
NVIDIA_DEVICE_PLUGIN_VERSION = "0.19.3"

# MLflow: the server image (workloads/mlflow-server) and every workload pin the same release.
MLFLOW_VERSION = "3.17.2"

# RDS picks the newest 17.x minor and applies minor upgrades in the maintenance window; the family must match.
RDS_POSTGRES_MAJOR = "17"
RDS_POSTGRES_FAMILY = "postgres17"
# The in-cluster (dev) database: the official image, pinned to a minor release.
POSTGRES_IMAGE = "docker.io/library/postgres:17.7-bookworm"

# Pinned to releases whose chart source (values, bundled CRDs) is vendored under upstream/ and checked by the tests;
# a newer pin needs `python -m upstream.regenerate` at the new tag first.
KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"
KUBE_PROMETHEUS_STACK_VERSION = "88.5.3"
DCGM_EXPORTER_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"
# Chart 4.8.2 ships exporter 4.5.3-4.8.2, which labels series `Hostname` (renamed `hostname` after this release).
DCGM_EXPORTER_VERSION = "4.8.2"

# Strimzi 1.x serves only the kafka.strimzi.io/v1 API and supports Kafka 4.2-4.3 in KRaft mode.
STRIMZI_CHART = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
STRIMZI_VERSION = "1.2.0"
STRIMZI_KAFKA_VERSION = "4.3.0"
STRIMZI_METADATA_VERSION = "4.3-IV0"
# Amazon MSK: "3.9.x" lets AWS apply patch releases; it is the newest 3.x line MSK lists.
MSK_KAFKA_VERSION = "3.9.x"

# metrics-server feeds the HorizontalPodAutoscaler's CPU metrics; EKS does not install it.
METRICS_SERVER_REPO = "https://kubernetes-sigs.github.io/metrics-server/"
METRICS_SERVER_VERSION = "3.13.0"

# Kueue: the chart is published at oci://registry.k8s.io/kueue/charts/kueue (charts/kueue/README.md at v0.19.2, whose
# Chart.yaml says 0.19.2). Its values.yaml in git names the staging image (tag release-0.19, pullPolicy Always); the
# release packaging (hack/helm-chart-package.sh at the tag, run by .github/workflows/release-utils.yml with
# IMAGE_REGISTRY=registry.k8s.io/kueue) rewrites it to registry.k8s.io/kueue/kueue:<tag>, IfNotPresent, for vX.Y.Z
# tags. The program pins that image explicitly.
KUEUE_CHART = "oci://registry.k8s.io/kueue/charts/kueue"
KUEUE_VERSION = "0.19.2"
KUEUE_IMAGE_REPOSITORY = "registry.k8s.io/kueue/kueue"
KUEUE_IMAGE_TAG = f"v{KUEUE_VERSION}"

# OpenCost: chart 2.5.17 is the newest `opencost-<version>` tag (chart-releaser's, one per published chart) in
# opencost/opencost-helm-chart; its values.yaml pins exporter 1.120.1 by digest, which the program pins explicitly.
OPENCOST_REPO = "https://opencost.github.io/opencost-helm-chart"
OPENCOST_CHART_VERSION = "2.5.17"
OPENCOST_IMAGE_REGISTRY = "ghcr.io"
OPENCOST_IMAGE_REPOSITORY = "opencost/opencost"
OPENCOST_IMAGE_TAG = "1.120.1@sha256:b0701f9b54e43c9abee98f5784792a5b469ca8951e87da32b161c1fa539ab0e1"
