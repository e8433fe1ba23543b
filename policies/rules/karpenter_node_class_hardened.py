from collections.abc import Mapping

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import dig


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass":
        return
    spec = args.props.get("spec") or {}
    if dig(spec, "metadataOptions", "httpTokens") != "required":
        report_violation("EC2NodeClass must require IMDSv2 (spec.metadataOptions.httpTokens: required)", None)
    if not all(dig(m, "ebs", "encrypted") is True for m in spec.get("blockDeviceMappings") or [{}]):
        report_violation("EC2NodeClass volumes must be encrypted", None)
    aliases = [t.get("alias", "") for t in spec.get("amiSelectorTerms") or [] if isinstance(t, Mapping)]
    if any(a.endswith("@latest") for a in aliases):
        report_violation("AMI alias @latest makes node images change without a review; pin a release", None)


karpenter_node_class_hardened = ResourceValidationPolicy(
    name="karpenter-node-class-hardened",
    description="Karpenter EC2NodeClasses require IMDSv2, encrypt volumes and pin the AMI release.",
    validate=validate,
)
