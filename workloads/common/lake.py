"""S3 access for the lake: URI parsing, put/get/list/delete and reading Parquet under a prefix.

``S3_ENDPOINT_URL`` is honoured when set (local S3-compatible server); in AWS it is unset and boto3 uses the
pod's IAM role. Each PUT is atomic per object, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config
from botocore.exceptions import ClientError


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str  # for a prefix: "" or ends with "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> "S3Uri":
        key = self.key
        if key and not key.endswith("/"):
            key += "/"
        return S3Uri(self.bucket, key + "/".join(p.strip("/") for p in parts))


def parse_s3_uri(uri: str, *, name: str = "uri", prefix: bool = False) -> S3Uri:
    """``s3://bucket/key``; with ``prefix=True`` the key is normalised to end with ``/``. Errors name ``name``."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{name}: must look like s3://bucket/prefix/, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or "/" in bucket or bucket != bucket.strip() or not (3 <= len(bucket) <= 63):
        raise ValueError(f"{name}: bucket name in {uri!r} must be 3-63 characters with no '/'")
    if prefix and key and not key.endswith("/"):
        key += "/"
    return S3Uri(bucket, key)


@lru_cache(maxsize=8)
def _client(endpoint: str | None, region: str | None):
    # Adaptive retries absorb S3 throttling (503 SlowDown) during bursts of small PUTs.
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=32),
    )


def s3_client():
    return _client(os.environ.get("S3_ENDPOINT_URL") or None, os.environ.get("AWS_REGION") or None)


def put_bytes(uri: S3Uri, data: bytes, content_type: str = "application/octet-stream") -> None:
    s3_client().put_object(Bucket=uri.bucket, Key=uri.key, Body=data, ContentType=content_type)


def get_bytes(uri: S3Uri) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return s3_client().get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def delete(uri: S3Uri) -> None:
    s3_client().delete_object(Bucket=uri.bucket, Key=uri.key)


def list_keys(prefix: S3Uri, suffix: str = "") -> Iterator[S3Uri]:
    paginator = s3_client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(suffix):
                yield S3Uri(prefix.bucket, obj["Key"])


def table_to_parquet_bytes(table: pa.Table, *, dictionary: bool | list[str] = True) -> bytes:
    """Zstandard-compressed Parquet; ``dictionary`` names the columns worth dictionary-encoding (default: all)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=dictionary)
    return sink.getvalue()


def read_parquet_prefix(prefix: str | S3Uri, *, columns: list[str] | None = None) -> pa.Table | None:
    """Every ``*.parquet`` object under the prefix, concatenated; None when there is none.

    Keys whose path has a component starting with ``_`` (state, markers) are skipped, as Hive readers do.
    """
    uri = parse_s3_uri(prefix, name="prefix", prefix=True) if isinstance(prefix, str) else prefix
    tables = []
    for key in list_keys(uri, ".parquet"):
        relative = key.key[len(uri.key) :]
        if any(part.startswith("_") for part in relative.split("/")):
            continue
        data = get_bytes(key)
        if data is None:  # deleted since the listing (e.g. ingestion removing a crashed batch's files)
            continue
        tables.append(pq.read_table(io.BytesIO(data), columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")
