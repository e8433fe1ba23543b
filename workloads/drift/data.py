"""Loading reference/recent rows and scores from the lake (s3:// prefix) or local Parquet/JSON-lines files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from common import lake
from common.schema import parse_event_time


def load_table(source: str, *, name: str) -> pd.DataFrame:
    """``source``: s3://bucket/prefix/ (every Parquet file under it), a .parquet file or directory, or .jsonl."""
    if source.startswith("s3://"):
        table = lake.read_parquet_prefix(lake.parse_s3_uri(source, name=name, prefix=True))
        if table is None:
            raise ValueError(f"{name}: no Parquet files under {source}")
        return table.to_pandas()
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{name}: {source} does not exist")
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=True)
    return pq.read_table(path).to_pandas()


def split_at(frame: pd.DataFrame, cutoff: str, *, name: str = "--cutoff") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows before ``cutoff`` (the training reference) and from it on (recent)."""
    try:
        when: datetime = parse_event_time(cutoff)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if "event_time" not in frame.columns:
        raise ValueError(f"{name}: the data has no event_time column to split on")
    times = pd.to_datetime(frame["event_time"], utc=True)
    stamp = pd.Timestamp(when)
    return frame[times < stamp], frame[times >= stamp]


def load_scores(source: str, *, name: str) -> list[float]:
    frame = load_table(source, name=name)
    if "score" not in frame.columns:
        raise ValueError(f"{name}: needs a 'score' column, found {', '.join(map(str, frame.columns))}")
    return frame["score"].astype(float).tolist()
