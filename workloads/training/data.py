"""Curated lake data -> validated, deterministically split training arrays, with a report of what was rejected."""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.lake import S3Uri, get_bytes, list_keys, parse_s3_uri
from common.schema import ALL_FIELDS, FEATURE_FIELDS, LABEL, encode_features, validate_record

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


class DataError(RuntimeError):
    """The lake holds nothing this job can train on; the message says what and where."""


@dataclass
class QualityReport:
    source: str
    total_rows: int = 0
    accepted_rows: int = 0
    # Reason ("amount: must be a number > 0 ...", "card_id: null") -> rows; a row with two problems counts twice.
    reasons: Counter = field(default_factory=Counter)
    # Field -> rows rejected because of it, for metrics with bounded names.
    fields: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rejected_rows(self) -> int:
        return self.total_rows - self.accepted_rows

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "total_rows": self.total_rows,
            "accepted_rows": self.accepted_rows,
            "rejected_rows": self.rejected_rows,
            "rejected_by_reason": dict(self.reasons.most_common()),
            "rejected_by_field": dict(self.fields.most_common()),
            "example_transaction_ids": self.examples,
        }


@dataclass
class Split:
    features: np.ndarray  # float32 (n, len(FEATURE_NAMES))
    labels: np.ndarray  # float32 (n,)
    transaction_ids: list[str]

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


@dataclass
class PreparedData:
    splits: dict[str, Split]
    report: QualityReport
    example_rows: list[dict]  # a few accepted rows' feature fields: the MLflow input example


def split_of(transaction_id: str, train_fraction: float, validation_fraction: float) -> str:
    """A transaction's split from a hash of its id alone, so it never moves as the lake grows."""
    bucket = int.from_bytes(hashlib.sha256(transaction_id.encode()).digest()[:8], "big") / 2.0**64
    if bucket < train_fraction:
        return "train"
    if bucket < train_fraction + validation_fraction:
        return "validation"
    return "test"


def _row_problems(row: dict) -> list[str]:
    nulls = {name for name in ALL_FIELDS if row.get(name) is None}
    checked = {k: v for k, v in row.items() if k not in nulls}
    if isinstance(checked.get("event_time"), datetime):
        # validate_record checks the JSON form; Parquet hands back a datetime.
        checked["event_time"] = checked["event_time"].isoformat()
    problems = [f"{name}: null" for name in ALL_FIELDS if name in nulls]
    problems += [
        p.split(", got ")[0]  # drop the offending value so identical problems group into one reason
        for p in validate_record(checked, require_label=True, require_ids=True)
        if p.partition(":")[0] not in nulls
    ]
    return problems


def validate_rows(table: pa.Table, source: str) -> tuple[list[dict], QualityReport]:
    """Rows that pass every check (first occurrence of each transaction_id), sorted by transaction_id."""
    report = QualityReport(source=source, total_rows=table.num_rows)
    missing = [name for name in ALL_FIELDS if name not in table.column_names]
    if missing:
        raise DataError(
            f"curated data at {source} has no column(s) {', '.join(missing)}; "
            f"every row needs {', '.join(ALL_FIELDS)}"
        )
    seen: set[str] = set()
    accepted: list[dict] = []
    for row in table.select(list(ALL_FIELDS)).to_pylist():
        problems = _row_problems(row)
        tid = row.get("transaction_id")
        if not problems and tid in seen:
            problems = ["transaction_id: duplicate"]
        if problems:
            for reason in problems:
                report.reasons[reason] += 1
                examples = report.examples.setdefault(reason, [])
                if len(examples) < 5:
                    examples.append(str(tid))
            for name in {p.partition(":")[0] for p in problems}:
                report.fields[name] += 1
            continue
        seen.add(tid)
        accepted.append(row)
    report.accepted_rows = len(accepted)
    # Sorted by id so the row order (and so the training order) does not depend on how files were listed.
    accepted.sort(key=lambda r: r["transaction_id"])
    return accepted, report


def snapshot(source: str) -> list[str]:
    """The Parquet object keys under the prefix now, sorted; markers and state (``_*``) skipped as Hive does.

    A restarted job re-reads exactly this list, not the prefix: ingestion keeps adding files, and resuming on
    different data would not be a resume.
    """
    prefix = parse_s3_uri(source, name="LAKE_CURATED_URI", prefix=True)
    keys = []
    for uri in list_keys(prefix, ".parquet"):
        relative = uri.key[len(prefix.key) :]
        if not any(part.startswith("_") for part in relative.split("/")):
            keys.append(uri.key)
    return sorted(keys)


def read_snapshot(source: str, keys: list[str]) -> pa.Table | None:
    bucket = parse_s3_uri(source, name="LAKE_CURATED_URI", prefix=True).bucket
    tables = []
    for key in keys:
        raw = get_bytes(S3Uri(bucket, key))
        if raw is None:
            raise DataError(f"s3://{bucket}/{key} was listed when this job started and is gone now")
        tables.append(pq.read_table(io.BytesIO(raw)))
    if not tables:
        return None
    try:
        # Files missing a column get nulls there, which validation then reports per row.
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"curated data at {source} has files with incompatible column types: {exc}") from exc


def prepare(
    source: str, keys: list[str], *, train_fraction: float, validation_fraction: float, min_positives: int
) -> PreparedData:
    """Reads, validates and splits. Raises DataError (after building the report) when nothing usable remains."""
    table = read_snapshot(source, keys)
    if table is None or table.num_rows == 0:
        raise DataError(f"no Parquet rows under {source}")
    rows, report = validate_rows(table, source)
    prepared = PreparedData(splits={}, report=report, example_rows=[])
    log.info(
        "data quality: %d rows read, %d accepted, %d rejected %s",
        report.total_rows,
        report.accepted_rows,
        report.rejected_rows,
        dict(report.reasons.most_common()),
    )
    if not rows:
        raise DataQualityError(prepared, f"all {report.total_rows} rows under {source} were rejected")

    assignment = [split_of(r["transaction_id"], train_fraction, validation_fraction) for r in rows]
    features = encode_features(rows)
    labels = np.fromiter((r[LABEL] for r in rows), dtype=np.float32, count=len(rows))
    ids = np.array([r["transaction_id"] for r in rows], dtype=object)
    which = np.array(assignment)
    for name in SPLITS:
        mask = which == name
        prepared.splits[name] = Split(features[mask], labels[mask], ids[mask].tolist())
    prepared.example_rows = [{k: r[k] for k in FEATURE_FIELDS} for r in rows[:5]]

    problems = []
    counts = {name: (len(s.labels), s.positives) for name, s in prepared.splits.items()}
    if counts["train"][1] < min_positives:
        problems.append(f"train split has {counts['train'][1]} fraud rows, MIN_POSITIVES is {min_positives}")
    for name in ("validation", "test"):
        rows_n, pos = counts[name]
        if pos == 0 or pos == rows_n:
            problems.append(f"{name} split has {pos} fraud rows of {rows_n}; it needs both classes for PR/ROC AUC")
    if problems:
        raise DataQualityError(prepared, "not enough usable data: " + "; ".join(problems))
    return prepared


class DataQualityError(DataError):
    """Raised after validation, carrying the report so it can still be logged."""

    def __init__(self, prepared: PreparedData, message: str):
        super().__init__(message)
        self.prepared = prepared
