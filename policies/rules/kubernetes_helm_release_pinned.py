import re

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

EXACT_VERSION = re.compile(r"v?\d+\.\d+\.\d+([-+][\w.-]+)?")


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "kubernetes:helm.sh/v3:Release":
        return
    version = args.props.get("version")
    if not isinstance(version, str) or not EXACT_VERSION.fullmatch(version):
        report_violation(f"chart {args.props.get('chart')!r} must be pinned to an exact version, got {version!r}",
                         None)


kubernetes_helm_release_pinned = ResourceValidationPolicy(
    name="kubernetes-helm-release-pinned",
    description="Every Helm release is pinned to an exact chart version.",
    validate=validate,
)
