"""The per-partition pending-batch marker that lets a restarted consumer remove a crashed batch's files.

One small JSON object per (consumer group, topic, partition), overwritten before each batch's data files are
written: ``{"first_offset", "last_offset", "keys": [every S3 URI the batch writes]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from common import lake
from common.lake import S3Uri


@dataclass(frozen=True)
class Marker:
    first_offset: int
    last_offset: int
    keys: tuple[str, ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {"first_offset": self.first_offset, "last_offset": self.last_offset, "keys": list(self.keys)}
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Marker":
        obj = json.loads(data)
        return cls(int(obj["first_offset"]), int(obj["last_offset"]), tuple(obj["keys"]))


def marker_uri(raw_prefix: S3Uri, group: str, topic: str, partition: int) -> S3Uri:
    # Under a "_" directory so lake readers (Hive convention, lake.read_parquet_prefix) skip it.
    return raw_prefix.join("_ingestion_state", group, topic, f"partition={partition}.json")


def read(uri: S3Uri) -> Marker | None:
    data = lake.get_bytes(uri)
    return Marker.from_json(data) if data is not None else None


def write(uri: S3Uri, marker: Marker) -> None:
    lake.put_bytes(uri, marker.to_json(), "application/json")


def orphans(marker: Marker | None, resume_offset: int) -> tuple[str, ...]:
    """Files to delete before re-reading from ``resume_offset``: the marker's, if its batch is being re-read.

    The marker's batch was committed iff the group resumes after its last offset. If it resumes at or before
    it, the batch's files (all, some or none of them written) hold records about to be read again.
    """
    if marker is None or resume_offset > marker.last_offset:
        return ()
    return marker.keys
