"""The S3 data lake: raw, curated and artifacts buckets encrypted with one customer-managed key, plus access logs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import policy_document
from platform_config import DataLakeConfig

LAKE_AREAS = ("raw", "curated", "artifacts")


@dataclass(frozen=True, kw_only=True)
class DataLakeArgs:
    config: DataLakeConfig
    name_prefix: str
    """Bucket name prefix (`<project>-<stack>-`); S3 appends a unique suffix so names never collide globally."""


def tls_only_statement(bucket_arn: pulumi.Input[str]) -> dict:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


class DataLake(pulumi.ComponentResource):
    kms_key_arn: pulumi.Output[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:storage:DataLake", name, None, opts)
        cfg = args.config
        # Prod data must outlive `pulumi destroy`: protect blocks it, retainOnDelete covers `--remove`/state edits.
        keep = pulumi.ResourceOptions(parent=self, protect=cfg.protect, retain_on_delete=cfg.protect)
        self._keep = keep
        self._cfg = cfg

        key = aws.kms.Key(f"{name}-key", description=f"{args.name_prefix}data-lake", enable_key_rotation=True,
                          deletion_window_in_days=cfg.kms_deletion_window_days, opts=keep)
        aws.kms.Alias(f"{name}-key", name=f"alias/{args.name_prefix}data-lake", target_key_id=key.key_id,
                      opts=pulumi.ResourceOptions(parent=self))

        # S3 server access logging cannot deliver into an SSE-KMS bucket, so the log bucket alone uses SSE-S3.
        logs = self._bucket(f"{name}-access-logs", f"{args.name_prefix}access-logs-", sse_kms_key=None)
        aws.s3.BucketPolicy(f"{name}-access-logs", bucket=logs.id, policy=policy_document([
            tls_only_statement(logs.arn),
            {"Sid": "AllowS3ServerAccessLogs", "Effect": "Allow",
             "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
             "Resource": pulumi.Output.concat(logs.arn, "/*")},
        ]), opts=pulumi.ResourceOptions(parent=self))
        self._lifecycle(f"{name}-access-logs", logs, [{
            "id": "expire-access-logs", "status": "Enabled", "filter": {},
            "expiration": {"days": cfg.access_log_retention_days},
            "noncurrent_version_expiration": {"noncurrent_days": 1},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        }])

        self.bucket_names, self.bucket_arns = {}, {}
        for area in LAKE_AREAS:
            bucket = self._bucket(f"{name}-{area}", f"{args.name_prefix}{area}-", sse_kms_key=key)
            aws.s3.BucketPolicy(f"{name}-{area}", bucket=bucket.id, policy=policy_document([
                tls_only_statement(bucket.arn),
                {"Sid": "DenyObjectsNotEncryptedWithLakeKey", "Effect": "Deny", "Principal": "*",
                 "Action": "s3:PutObject", "Resource": pulumi.Output.concat(bucket.arn, "/*"),
                 "Condition": {"StringNotEqualsIfExists": {
                     "s3:x-amz-server-side-encryption-aws-kms-key-id": key.arn}}},
            ]), opts=pulumi.ResourceOptions(parent=self))
            aws.s3.BucketLogging(f"{name}-{area}", bucket=bucket.id, target_bucket=logs.id,
                                 target_prefix=f"{area}/", opts=pulumi.ResourceOptions(parent=self))
            self._lifecycle(f"{name}-{area}", bucket, self._rules(area))
            self.bucket_names[area] = bucket.bucket
            self.bucket_arns[area] = bucket.arn

        self.kms_key_arn = key.arn
        self.access_log_bucket = logs.bucket
        self.register_outputs({"kms_key_arn": self.kms_key_arn, "bucket_names": self.bucket_names})

    def _bucket(self, name: str, prefix: str, sse_kms_key: aws.kms.Key | None) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, bucket_prefix=prefix, force_destroy=self._cfg.force_destroy, opts=self._keep)
        aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                       ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
                                       opts=child)
        aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        default = ({"sse_algorithm": "aws:kms", "kms_master_key_id": sse_kms_key.arn} if sse_kms_key
                   else {"sse_algorithm": "AES256"})
        # Bucket keys cut KMS requests (and their cost) by about 99% for high-volume writers such as ingestion.
        aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[{
            "apply_server_side_encryption_by_default": default, "bucket_key_enabled": sse_kms_key is not None,
        }], opts=child)
        return bucket

    def _rules(self, area: str) -> list[dict]:
        cfg = self._cfg
        rules: list[dict] = [{
            "id": "abort-incomplete-multipart-uploads", "status": "Enabled", "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }, {
            "id": "expire-noncurrent-versions", "status": "Enabled", "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": cfg.noncurrent_version_days},
        }]
        if area == "raw":
            rules.append({
                "id": "tier-down-raw-data", "status": "Enabled", "filter": {},
                "transitions": [
                    {"days": cfg.raw_infrequent_access_days, "storage_class": "STANDARD_IA"},
                    {"days": cfg.raw_glacier_days, "storage_class": "GLACIER_IR"},
                ],
            })
        return rules

    def _lifecycle(self, name: str, bucket: aws.s3.Bucket, rules: list[dict]) -> None:
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=rules,
                                            opts=pulumi.ResourceOptions(parent=self))
