from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:rds/instance:Instance":
        return
    p = args.props
    if p.get("storageEncrypted") is not True:
        report_violation("database storage must be encrypted (storageEncrypted: true)", None)
    if p.get("publiclyAccessible") is True:
        report_violation("the database must not be publicly accessible", None)
    if p.get("skipFinalSnapshot") is True:
        report_violation("a final snapshot must be taken on delete (skipFinalSnapshot: false)", None)


aws_rds_instance_hardened = ResourceValidationPolicy(
    name="aws-rds-instance-hardened",
    description="RDS instances are encrypted, private, and keep a final snapshot.",
    validate=validate,
)
