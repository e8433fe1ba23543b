from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import dig

ALLOWED = {"aws:kms", "aws:kms:dsse", "AES256"}


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != ("aws:s3/bucketServerSideEncryptionConfiguration:"
                              "BucketServerSideEncryptionConfiguration"):
        return
    rules = args.props.get("rules") or []
    if not rules:
        report_violation("no default encryption rule", None)
        return
    for rule in rules:
        algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if algorithm not in ALLOWED:
            report_violation(f"default encryption algorithm {algorithm!r} is not one of {sorted(ALLOWED)}", None)
        elif algorithm.startswith("aws:kms") and rule.get("bucketKeyEnabled") is not True:
            report_violation("SSE-KMS without an S3 bucket key: every object write becomes a KMS request", None)


aws_s3_bucket_encryption = ResourceValidationPolicy(
    name="aws-s3-bucket-encryption",
    description="S3 default encryption is configured, and SSE-KMS uses bucket keys.",
    validate=validate,
)
