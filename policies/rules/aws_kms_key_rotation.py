from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type == "aws:kms/key:Key" and args.props.get("enableKeyRotation") is not True:
        report_violation("customer-managed KMS keys must rotate (enableKeyRotation: true)", None)


aws_kms_key_rotation = ResourceValidationPolicy(
    name="aws-kms-key-rotation",
    description="Customer-managed KMS keys have automatic rotation enabled.",
    validate=validate,
)
