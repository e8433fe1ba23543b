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

# Karpenter >= 1.11.1 is needed for `limits.nodes` on dynamic NodePools, which bounds each GPU pool exactly.
KARPENTER_CHART = "oci://public.ecr.aws/karpenter/karpenter"
KARPENTER_CRD_CHART = "oci://public.ecr.aws/karpenter/karpenter-crd"
KARPENTER_VERSION = "1.14.1"

# EKS-optimized AL2023 release; Karpenter picks the NVIDIA variant of this release for GPU instance types.
AL2023_AMI_ALIAS = "al2023@v20260903"

NVIDIA_DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
NVIDIA_DEVICE_PLUGIN_VERSION = "0.19.3"
