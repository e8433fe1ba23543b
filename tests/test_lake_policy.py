"""What S3 decides at request time under each stack's lake bucket policies, evaluated with offline/iam_eval.py.

The local S3 server ignores policy conditions, so these are judged by the documented evaluation rules instead. The
writers (ingestion, training checkpoints, MLflow's artifact proxy) send no encryption headers and rely on the bucket
default (the lake key); multipart part uploads never carry them.
"""

from __future__ import annotations

import json

import pytest

from offline.iam_eval import condition_holds, denying_statements
from tests.conftest import stack_plan

TLS = {"aws:SecureTransport": "true"}
SSE = "s3:x-amz-server-side-encryption"
KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"


def lake_policies(stack: str) -> tuple[str, dict[str, dict]]:
    plan = stack_plan(stack)
    key_arn = plan.one("aws:kms/key:Key", "data-lake-key")["identity"]
    (arn,) = [v for v in key_arn if v.startswith("arn:aws:kms:")]
    policies = {r["name"].removeprefix("data-lake-"): json.loads(r["inputs"]["policy"])
                for r in plan.of_type("aws:s3/bucketPolicy:BucketPolicy") if r["name"] != "data-lake-access-logs"}
    return arn, {area: {"policy": p, "bucket": p["Statement"][0]["Resource"][0]} for area, p in policies.items()}


def requests(key_arn: str) -> list[tuple[str, dict, bool]]:
    """(what, request context, denied?) for uploads as the platform's writers and a few wrong ones make them."""
    return [
        ("PutObject with no encryption headers (the bucket default applies)", TLS, False),
        ("UploadPart (never carries encryption headers)", TLS, False),
        ("PutObject naming the lake key", {**TLS, SSE: "aws:kms", KEY: key_arn}, False),
        ("PutObject naming another KMS key", {**TLS, SSE: "aws:kms", KEY: key_arn.rsplit("/", 1)[0] + "/other"}, True),
        ("PutObject asking for SSE-S3", {**TLS, SSE: "AES256"}, True),
        ("PutObject asking for aws:kms with no key (the AWS-managed aws/s3 key)", {**TLS, SSE: "aws:kms"}, True),
        ("PutObject over plain HTTP", {"aws:SecureTransport": "false"}, True),
    ]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_lake_writes_are_denied_only_when_they_ask_for_the_wrong_encryption(stack):
    key_arn, buckets = lake_policies(stack)
    assert set(buckets) == {"raw", "curated", "artifacts"}
    for area, b in buckets.items():
        for what, context, denied in requests(key_arn):
            deny = denying_statements(b["policy"], "s3:PutObject", f"{b['bucket']}/transactions/x.parquet", context)
            assert bool(deny) is denied, f"{stack} {area}: {what} -> denied by {deny}"


def test_the_old_if_exists_deny_is_caught_rejecting_every_header_less_upload():
    # The statement the lake had (review finding W1), kept here as the failing case the referee must catch.
    old = {"Statement": [{"Sid": "DenyObjectsNotEncryptedWithLakeKey", "Effect": "Deny", "Principal": "*",
                          "Action": "s3:PutObject", "Resource": "arn:aws:s3:::lake/*",
                          "Condition": {"StringNotEqualsIfExists": {KEY: "arn:aws:kms:us-east-1:1:key/k"}}}]}
    assert denying_statements(old, "s3:PutObject", "arn:aws:s3:::lake/a", TLS) == ["DenyObjectsNotEncryptedWithLakeKey"]


@pytest.mark.parametrize("condition, context, holds", [
    # A key absent from the request: positive operators are false, negated ones true, ...IfExists true.
    ({"StringEquals": {"k": "v"}}, {}, False),
    ({"StringNotEquals": {"k": "v"}}, {}, True),
    ({"StringNotEqualsIfExists": {"k": "v"}}, {}, True),
    ({"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}, False),
    ({"Null": {"k": "true"}}, {}, True),
    ({"Null": {"k": "false"}}, {"k": "v"}, True),
    # Several values: ORed, and NORed under a negated operator; several operators or keys: ANDed.
    ({"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}, True),
    ({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "b"}, False),
    ({"StringNotEquals": {"k": ["a", "b"]}}, {"k": "c"}, True),
    ({"StringEquals": {"k": "a"}, "Null": {"j": "true"}}, {"k": "a", "j": "x"}, False),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::lake-*"}}, {"aws:SourceArn": "arn:aws:s3:::lake-raw"}, True),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
    # Key names are case-insensitive; values are not.
    ({"StringEquals": {"AWS:SourceAccount": "1"}}, {"aws:SourceAccount": "1"}, True),
    ({"StringEquals": {"aws:SourceAccount": "abc"}}, {"aws:SourceAccount": "ABC"}, False),
    # ARN operators compare the six parts separately: `*` does not run across a colon.
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:SourceArn": "arn:aws:s3:::lake-raw"}, True),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:*"}}, {"aws:SourceArn": "arn:aws:s3:::lake-raw"}, False),
    ({"ArnEquals": {"aws:SourceArn": "arn:aws:events:us-east-1:1:rule/*"}},
     {"aws:SourceArn": "arn:aws:events:us-east-1:1:rule/karpenter-health"}, True),
    ({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::lake-*"}}, {"aws:SourceArn": "arn:aws:s3:::logs"}, True),
])
def test_condition_semantics_follow_the_iam_documentation(condition, context, holds):
    assert condition_holds(condition, context) is holds


def test_a_deny_applies_whatever_the_case_of_its_action_names():
    policy = {"Statement": [{"Sid": "D", "Effect": "Deny", "Action": "S3:putobject", "Resource": "arn:aws:s3:::b/*"}]}
    assert denying_statements(policy, "s3:PutObject", "arn:aws:s3:::b/k", TLS) == ["D"]


def test_an_operator_it_does_not_know_is_an_error_not_a_silent_no_match():
    with pytest.raises(NotImplementedError, match="NumericLessThan"):
        condition_holds({"NumericLessThan": {"k": "1"}}, {"k": "0"})
