from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import dig

LOG_TYPES = {"api", "audit", "authenticator", "controllerManager", "scheduler"}


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    props = args.props
    if "secrets" not in (dig(props, "encryptionConfig", "resources") or []):
        report_violation("Kubernetes secrets are not envelope-encrypted with KMS", None)
    missing = LOG_TYPES - set(props.get("enabledClusterLogTypes") or [])
    if missing:
        report_violation(f"control-plane log types not enabled: {', '.join(sorted(missing))}", None)
    if dig(props, "accessConfig", "authenticationMode") != "API":
        report_violation("authentication mode must be API (access entries, no aws-auth ConfigMap)", None)
    if dig(props, "vpcConfig", "endpointPrivateAccess") is not True:
        report_violation("the private API endpoint must be enabled", None)
    if dig(props, "vpcConfig", "endpointPublicAccess") is not False:
        cidrs = dig(props, "vpcConfig", "publicAccessCidrs") or ["0.0.0.0/0"]
        if "0.0.0.0/0" in cidrs:
            report_violation("the public API endpoint is open to 0.0.0.0/0; disable it or list allowed CIDRs", None)


aws_eks_cluster_hardened = ResourceValidationPolicy(
    name="aws-eks-cluster-hardened",
    description="EKS clusters encrypt secrets, log all control-plane types, use API auth and keep the API private.",
    validate=validate,
)
