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
    account_id: pulumi.Input[str]
    """The account whose buckets may deliver access logs (confused-deputy protection on the log bucket)."""


def tls_only_statement(bucket_arn: pulumi.Input[str]) -> dict:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


SSE_HEADER = "s3:x-amz-server-side-encryption"
SSE_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"


def lake_key_only_statements(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> list[dict]:
    """Deny uploads that ask for anything but the lake key; uploads that ask for nothing get the bucket default.

    S3 evaluates the bucket policy before applying default encryption, so a condition on an absent header must
    not match: writers (ingestion, checkpoints, MLflow's artifact proxy) send no encryption headers. Each deny
    therefore requires its header to be present (`Null: false`). A key given by id or alias instead of its ARN is
    refused too: the ARN is the only spelling that cannot resolve to another account's key.
    """
    objects = pulumi.Output.concat(bucket_arn, "/*")

    def deny(sid: str, condition: dict) -> dict:
        return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": objects,
                "Condition": condition}

    return [
        deny("DenyOtherKmsKeys", {"Null": {SSE_KEY_HEADER: "false"}, "StringNotEquals": {SSE_KEY_HEADER: key_arn}}),
        deny("DenyOtherEncryption", {"Null": {SSE_HEADER: "false"}, "StringNotEquals": {SSE_HEADER: "aws:kms"}}),
        # `aws:kms` without a key id means the AWS-managed aws/s3 key, not the lake key.
        deny("DenyKmsWithoutLakeKey", {"Null": {SSE_HEADER: "false", SSE_KEY_HEADER: "true"}}),
    ]


def access_log_delivery_statement(log_bucket_arn: pulumi.Input[str], source_arns: list[pulumi.Input[str]],
                                  account_id: pulumi.Input[str]) -> dict:
    # Confused-deputy protection: only this account's lake buckets may deliver logs here.
    return {"Sid": "AllowS3ServerAccessLogs", "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(log_bucket_arn, "/*"),
            "Condition": {"ArnLike": {"aws:SourceArn": source_arns},
                          "StringEquals": {"aws:SourceAccount": account_id}}}


class DataLake(pulumi.ComponentResource):
    kms_key_arn: pulumi.Output[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:storage:DataLake", name, None, opts)
        cfg = args.config
        # Prod data must outlive `pulumi destroy`: protect refuses it up front. Data that is not force-destroyed
        # (staging) is retained: a versioned, non-empty bucket would fail its delete anyway, half-way through a
        # destroy. The key is kept whenever the data is, or the retained data would become unreadable.
        retained = cfg.protect or not cfg.force_destroy
        self._cfg = cfg
        # A retained bucket keeps its guards too: deleting them would leave it without the TLS and key policy, with
        # versioning suspended and new objects under S3's own key.
        child = self._guard = pulumi.ResourceOptions(parent=self, retain_on_delete=retained)

        key = aws.kms.Key(f"{name}-key", description=f"{args.name_prefix}data-lake", enable_key_rotation=True,
                          deletion_window_in_days=cfg.kms_deletion_window_days,
                          opts=pulumi.ResourceOptions(parent=self, protect=cfg.protect, retain_on_delete=retained))
        # Never retained: an alias is only a name for the key, and a left-behind one would block the next deploy.
        aws.kms.Alias(f"{name}-key", name=f"alias/{args.name_prefix}data-lake", target_key_id=key.key_id,
                      opts=pulumi.ResourceOptions(parent=self))
        # Buckets wait for the key, so a destroy deletes them before it; the key never goes first.
        self._keep = pulumi.ResourceOptions(parent=self, protect=cfg.protect, retain_on_delete=retained,
                                            depends_on=[key])

        # S3 server access logging cannot deliver into an SSE-KMS bucket, so the log bucket alone uses SSE-S3.
        logs = self._bucket(f"{name}-access-logs", f"{args.name_prefix}access-logs-", sse_kms_key=None)
        self._lifecycle(f"{name}-access-logs", logs, [{
            "id": "expire-access-logs", "status": "Enabled", "filter": {},
            "expiration": {"days": cfg.access_log_retention_days},
            "noncurrent_version_expiration": {"noncurrent_days": 1},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        }])

        buckets = {area: self._bucket(f"{name}-{area}", f"{args.name_prefix}{area}-", sse_kms_key=key)
                   for area in LAKE_AREAS}
        log_policy = aws.s3.BucketPolicy(f"{name}-access-logs", bucket=logs.id, policy=policy_document([
            tls_only_statement(logs.arn),
            access_log_delivery_statement(logs.arn, [b.arn for b in buckets.values()], args.account_id),
        ]), opts=child)
        self.bucket_names, self.bucket_arns = {}, {}
        for area, bucket in buckets.items():
            aws.s3.BucketPolicy(f"{name}-{area}", bucket=bucket.id, policy=policy_document([
                tls_only_statement(bucket.arn), *lake_key_only_statements(bucket.arn, key.arn),
            ]), opts=child)
            # Logging is switched on once the log bucket lets S3 deliver into it.
            aws.s3.BucketLogging(f"{name}-{area}", bucket=bucket.id, target_bucket=logs.id,
                                 target_prefix=f"{area}/", opts=pulumi.ResourceOptions.merge(
                                     child, pulumi.ResourceOptions(depends_on=[log_policy])))
            self._lifecycle(f"{name}-{area}", bucket, self._rules(area))
            self.bucket_names[area] = bucket.bucket
            self.bucket_arns[area] = bucket.arn

        self.kms_key_arn = key.arn
        self.access_log_bucket = logs.bucket
        self.register_outputs({"kms_key_arn": self.kms_key_arn, "bucket_names": self.bucket_names})

    def _bucket(self, name: str, prefix: str, sse_kms_key: aws.kms.Key | None) -> aws.s3.Bucket:
        child = self._guard
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
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=rules, opts=self._guard)
