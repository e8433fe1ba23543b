from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import dig


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:ec2/launchTemplate:LaunchTemplate":
        return
    if dig(args.props, "metadataOptions", "httpTokens") != "required":
        report_violation("instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens: required)", None)
    hops = dig(args.props, "metadataOptions", "httpPutResponseHopLimit")
    if not isinstance(hops, (int, float)) or hops > 2:
        report_violation(f"metadataOptions.httpPutResponseHopLimit must be 1 or 2, got {hops!r}", None)
    for mapping in args.props.get("blockDeviceMappings") or [{}]:
        if str(dig(mapping, "ebs", "encrypted")).lower() != "true":
            report_violation(f"volume {mapping.get('deviceName')} is not encrypted", None)


aws_ec2_launch_template_hardened = ResourceValidationPolicy(
    name="aws-ec2-launch-template-hardened",
    description="Launch templates require IMDSv2 with a hop limit of at most 2 and encrypt every volume.",
    validate=validate,
)
