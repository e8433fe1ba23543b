from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import as_list, dig, statements


def denies_plain_http(statement: dict) -> bool:
    return (statement.get("Effect") == "Deny" and "s3:*" in as_list(statement.get("Action"))
            and str(dig(statement, "Condition", "Bool", "aws:SecureTransport")).lower() == "false")


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:s3/bucketPolicy:BucketPolicy":
        return
    if not any(denies_plain_http(s) for s in statements(args.props.get("policy"))):
        report_violation("bucket policy must deny s3:* when aws:SecureTransport is false", None)


aws_s3_bucket_tls_only = ResourceValidationPolicy(
    name="aws-s3-bucket-tls-only",
    description="S3 bucket policies deny every request that does not use TLS.",
    validate=validate,
)
