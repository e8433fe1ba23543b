"""The generator. Fraud is drawn first (about 1.5 %), then each feature from a label-dependent distribution.

The distributions overlap, and a fifth of the frauds are drawn from the legitimate distributions ("camouflaged"
fraud), so a good model lands around ROC AUC 0.9 rather than a perfect 1.0.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np

from common.schema import CHANNELS, MERCHANT_CATEGORIES

DEFAULT_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFAULT_SPAN = timedelta(hours=6)
FRAUD_RATE = 0.015
CAMOUFLAGED_FRAUD = 0.2

_COUNTRIES = ("US", "GB", "DE", "FR", "CA", "MX", "BR", "IN", "JP", "NG", "RU", "CN")
_HOME_COUNTRY_P = np.array([0.70, 0.06, 0.05, 0.04, 0.05, 0.02, 0.02, 0.02, 0.02, 0.01, 0.005, 0.005])
_HOME_COUNTRY_P = _HOME_COUNTRY_P / _HOME_COUNTRY_P.sum()

# Weights in MERCHANT_CATEGORIES order: grocery, restaurants, fuel, travel, electronics, online_services,
# jewelry, cash_advance, entertainment, pharmacy.
_CATEGORY_P = {
    "legit": [0.25, 0.18, 0.12, 0.05, 0.05, 0.12, 0.01, 0.02, 0.10, 0.10],
    "fraud": [0.06, 0.05, 0.05, 0.10, 0.22, 0.14, 0.16, 0.14, 0.05, 0.03],
    "legit_drift": [0.15, 0.12, 0.08, 0.10, 0.12, 0.25, 0.03, 0.03, 0.08, 0.04],
}
# Weights in CHANNELS order: atm, online, pos.
_CHANNEL_P = {"legit": [0.05, 0.30, 0.65], "fraud": [0.15, 0.55, 0.30], "legit_drift": [0.08, 0.60, 0.32]}


def _p(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def generate(
    n: int,
    seed: int,
    *,
    drift: bool = False,
    start: datetime = DEFAULT_START,
    span: timedelta = DEFAULT_SPAN,
) -> list[dict]:
    """``n`` valid transaction records (with label), event times increasing from ``start`` over ``span``.

    ``drift=True`` moves the legitimate traffic: amounts about 2.5x, far more online and foreign spending,
    a different category mix, so PSI on those features clearly exceeds 0.2.
    """
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    if start.tzinfo is None:
        raise ValueError("start: must be timezone-aware")
    # Seeding with (seed, drift) keeps drifted and normal data sets from sharing transaction ids.
    rng = np.random.default_rng([seed, int(drift)])
    fraud = rng.random(n) < FRAUD_RATE
    # Camouflaged frauds get legitimate-looking features: the label noise that keeps AUC below 1.
    looks_fraud = fraud & (rng.random(n) >= CAMOUFLAGED_FRAUD)
    legit_kind = "legit_drift" if drift else "legit"

    amount = np.where(
        looks_fraud,
        rng.lognormal(4.6, 1.2, n),
        rng.lognormal(3.5 + (np.log(2.5) if drift else 0.0), 1.0, n),
    )
    amount = np.clip(np.round(amount, 2), 0.5, 50_000.0)

    cat_legit = rng.choice(len(MERCHANT_CATEGORIES), n, p=_p(_CATEGORY_P[legit_kind]))
    cat_fraud = rng.choice(len(MERCHANT_CATEGORIES), n, p=_p(_CATEGORY_P["fraud"]))
    category = np.where(looks_fraud, cat_fraud, cat_legit)
    ch_legit = rng.choice(len(CHANNELS), n, p=_p(_CHANNEL_P[legit_kind]))
    ch_fraud = rng.choice(len(CHANNELS), n, p=_p(_CHANNEL_P["fraud"]))
    channel = np.where(looks_fraud, ch_fraud, ch_legit)

    home = rng.choice(len(_COUNTRIES), n, p=_HOME_COUNTRY_P)
    foreign_p = np.where(looks_fraud, 0.30, 0.20 if drift else 0.04)
    foreign = rng.random(n) < foreign_p
    # A different country: shift by 1..len-1 so it never equals home.
    abroad = (home + rng.integers(1, len(_COUNTRIES), n)) % len(_COUNTRIES)
    country = np.where(foreign, abroad, home)

    distance = np.where(
        looks_fraud, rng.lognormal(3.6, 1.8, n), rng.lognormal(2.0 + (0.8 if drift else 0.0), 1.2, n)
    )
    distance = np.where(foreign, distance + rng.uniform(300, 8000, n), distance)
    distance = np.clip(np.round(distance, 3), 0.0, 20_000.0)
    seconds = np.where(looks_fraud, rng.lognormal(6.5, 2.0, n), rng.lognormal(10.0, 1.5, n))
    seconds = np.clip(np.round(seconds, 1), 0.0, 31_536_000.0)
    count = np.where(looks_fraud, rng.poisson(2.5, n), rng.poisson(0.6, n))
    count = np.clip(count, 0, 1000)

    card = rng.integers(0, 50_000, n)
    merchant = rng.integers(0, 8_000, n)
    offsets_ms = np.sort(rng.integers(0, max(int(span.total_seconds() * 1000), 1), n))
    ids = rng.integers(0, 2**63 - 1, n, dtype=np.int64)

    records = []
    for i in range(n):
        records.append(
            {
                "transaction_id": f"tx-{int(ids[i]):016x}",
                "event_time": (start + timedelta(milliseconds=int(offsets_ms[i]))).isoformat(timespec="milliseconds"),
                "card_id": f"card-{int(card[i]):06d}",
                "merchant_id": f"m-{int(merchant[i]):05d}",
                "merchant_category": MERCHANT_CATEGORIES[category[i]],
                "channel": CHANNELS[channel[i]],
                "amount": float(amount[i]),
                "country": _COUNTRIES[country[i]],
                "card_country": _COUNTRIES[home[i]],
                "distance_from_home_km": float(distance[i]),
                "seconds_since_last_txn": float(seconds[i]),
                "txn_count_1h": int(count[i]),
                "is_fraud": int(fraud[i]),
            }
        )
    return records


def make_bad_records(n: int, seed: int) -> list[tuple[bytes, str]]:
    """``n`` malformed Kafka values for dead-letter tests, each with the word its error must contain."""
    rng = np.random.default_rng([seed, 7])
    good = generate(max(n, 1), seed + 1_000_003)
    out: list[tuple[bytes, str]] = []
    for i in range(n):
        record = dict(good[i])
        kind = i % 6
        if kind == 0:
            out.append((b'{"transaction_id": "broken", "amount": ', "json"))
            continue
        if kind == 1:
            out.append((b"\xff\xfe not utf-8 \xc3\x28", "utf-8"))
            continue
        if kind == 2:
            record["amount"] = "12.50"
            out.append((json.dumps(record).encode(), "amount"))
        elif kind == 3:
            record["channel"] = "web"
            out.append((json.dumps(record).encode(), "channel"))
        elif kind == 4:
            del record["country"]
            out.append((json.dumps(record).encode(), "country"))
        else:
            out.append((json.dumps([record["transaction_id"], int(rng.integers(0, 9))]).encode(), "object"))
    return out
