from pulumi_policy import StackValidationArgs, StackValidationPolicy

# Each bucket must have one of each of these companion resources. They are matched through the engine's dependency
# graph (a companion depends on its bucket), which is known even in a preview, before bucket names are.
COMPANIONS = {
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "public access block",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "default encryption",
    "aws:s3/bucketVersioning:BucketVersioning": "versioning",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "ownership controls",
    "aws:s3/bucketPolicy:BucketPolicy": "bucket policy",
}


def validate(args: StackValidationArgs, report_violation) -> None:
    covered = {kind: {d.urn for r in args.resources if r.resource_type == kind for d in r.dependencies}
               for kind in COMPANIONS}
    for bucket in (r for r in args.resources if r.resource_type == "aws:s3/bucket:Bucket"):
        missing = [label for kind, label in COMPANIONS.items() if bucket.urn not in covered[kind]]
        if missing:
            report_violation(f"bucket {bucket.name} has no {', '.join(missing)}", bucket.urn)


aws_s3_bucket_guarded = StackValidationPolicy(
    name="aws-s3-bucket-guarded",
    description="Every S3 bucket has a public access block, default encryption, versioning, ownership controls and "
                "a bucket policy.",
    validate=validate,
)
