from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        return
    off = [flag for flag in FLAGS if args.props.get(flag) is not True]
    if off:
        report_violation(f"public access block must set all four flags; not true: {', '.join(off)}", None)


aws_s3_bucket_public_access_block = ResourceValidationPolicy(
    name="aws-s3-bucket-public-access-block",
    description="S3 public access blocks set all four flags to true.",
    validate=validate,
)
