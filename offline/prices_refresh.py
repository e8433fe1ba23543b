"""`make prices`: refresh `offline/prices.json` from the AWS Price List API and EC2 spot price history.

Needs AWS credentials (any the SDK finds: environment, profile, SSO, instance role); with none it fails and leaves
the table as it is. Every price the table holds, for every region a stack uses (`stacks/Pulumi.*.yaml`), is asked
for again; a query that finds no price, or more than one distinct price, fails the whole refresh and names it, so a
half-refreshed table is never written. The table's `date` becomes today's, and each refreshed price names
`aws-price-list-api` (or `ec2-spot-price-history`) as its source.

The Price List API is served from us-east-1 (`pricing` client), whatever region is priced. Spot prices: the latest
Linux/UNIX price per availability zone from `DescribeSpotPriceHistory`, recording the highest zone's (Karpenter may
launch in any of the cluster's zones).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from offline.cost import PRICES_PATH

ROOT = Path(__file__).resolve().parent.parent
PRICE_LIST_SOURCE = "aws-price-list-api"
SPOT_SOURCE = "ec2-spot-price-history"


class RefreshError(Exception):
    pass


@dataclass(frozen=True)
class Query:
    """One Price List query: the service code, TERM_MATCH filters, and the usage type's suffix (after the region
    prefix, e.g. `USW2-`) where filters alone cannot tell one product from another."""

    service_code: str
    filters: tuple[tuple[str, str], ...]
    usagetype_suffix: str = ""
    unit: str = ""


def _ec2(key: str) -> Query:
    return Query("AmazonEC2", (("instanceType", key), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
                               ("capacitystatus", "Used"), ("preInstalledSw", "NA"),
                               ("licenseModel", "No License required"), ("marketoption", "OnDemand")),
                 unit="instance-hour")


# What each (service, key) of the table is in the Price List. Keys not here and not EC2/RDS/MSK instance types
# cannot be refreshed and fail the refresh.
FIXED_QUERIES: dict[tuple[str, str], Query] = {
    ("eks", "cluster"): Query("AmazonEKS", (), "AmazonEKS-Hours:perCluster", "cluster-hour"),
    ("eks", "cluster_extended"): Query("AmazonEKS", (), "AmazonEKS-Hours:extendedSupport", "cluster-hour"),
    ("ebs", "gp3"): Query("AmazonEC2", (("productFamily", "Storage"), ("volumeApiName", "gp3")), "", "GB-month"),
    ("nat", "hour"): Query("AmazonEC2", (("productFamily", "NAT Gateway"),), "NatGateway-Hours", "gateway-hour"),
    ("nat", "gb"): Query("AmazonEC2", (("productFamily", "NAT Gateway"),), "NatGateway-Bytes", "GB processed"),
    ("ipv4", "hour"): Query("AmazonVPC", (), "PublicIPv4:InUseAddress", "IP-hour"),
    ("rds", "gp3"): Query("AmazonRDS", (("volumeType", "General Purpose-GP3"), ("deploymentOption", "Single-AZ"),
                                        ("databaseEngine", "PostgreSQL")), "", "GB-month (Single-AZ)"),
    ("rds", "backup"): Query("AmazonRDS", (("productFamily", "Storage Snapshot"),), "RDS:ChargedBackupUsage",
                             "GB-month beyond the free allowance"),
    ("msk", "storage"): Query("AmazonMSK", (), "Kafka.Storage.GP2", "GB-month"),
    ("elb", "nlb"): Query("AWSELB", (("productFamily", "Load Balancer-Network"),), "LoadBalancerUsage",
                          "load-balancer-hour"),
    ("elb", "alb"): Query("AWSELB", (("productFamily", "Load Balancer-Application"),), "LoadBalancerUsage",
                          "load-balancer-hour"),
    ("logs", "ingest"): Query("AmazonCloudWatch", (("productFamily", "Data Payload"),), "DataProcessing-Bytes",
                              "GB ingested"),
    ("s3", "standard"): Query("AmazonS3", (("storageClass", "General Purpose"), ("volumeType", "Standard")),
                              "TimedStorage-ByteHrs", "GB-month"),
    ("kms", "key"): Query("awskms", (), "KMS-Keys", "key-month"),
    ("vpce", "interface"): Query("AmazonVPC", (), "VpcEndpoint-Hours", "endpoint-AZ-hour"),
    ("vpce", "gb"): Query("AmazonVPC", (), "VpcEndpoint-Bytes", "GB processed"),
    ("tgw", "attachment"): Query("AmazonVPC", (), "TransitGateway-Hours", "attachment-hour"),
    ("tgw", "gb"): Query("AmazonVPC", (), "TransitGateway-Bytes", "GB processed"),
}


def query_for(service: str, key: str) -> Query | None:
    if service == "ec2":
        return _ec2(key)
    if service == "rds" and key.startswith("db."):
        return Query("AmazonRDS", (("instanceType", key), ("databaseEngine", "PostgreSQL"),
                                   ("deploymentOption", "Single-AZ")), unit="instance-hour (Single-AZ, PostgreSQL)")
    if service == "msk" and key.startswith("kafka."):
        return Query("AmazonMSK", (), f"Kafka.{key.removeprefix('kafka.')}", "broker-hour")
    return FIXED_QUERIES.get((service, key))


def stack_regions(root: Path = ROOT) -> list[str]:
    regions = set()
    for path in sorted((root / "stacks").glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        if config.get("aws:region"):
            regions.add(config["aws:region"])
    return sorted(regions)


def wanted(table: dict[str, Any], regions: list[str]) -> list[tuple[str, str, str]]:
    """Every (region, service, key) the table prices anywhere, for each region."""
    keys = sorted({(service, key) for region in table["regions"].values() for service, entries in region.items()
                   if isinstance(entries, dict) and service != "ec2_spot" for key in entries})
    return [(region, service, key) for region in regions for service, key in keys]


def on_demand_usd(item: dict[str, Any]) -> float | None:
    """The first-tier on-demand USD price of one Price List product (the JSON each `PriceList` string holds)."""
    prices = []
    for term in (item.get("terms") or {}).get("OnDemand", {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            if str(dimension.get("beginRange", "0")) not in ("0", "0.0"):
                continue  # a higher tier of a tiered price (S3, CloudWatch Logs)
            usd = (dimension.get("pricePerUnit") or {}).get("USD")
            if usd is not None:
                prices.append(float(usd))
    return min(prices) if prices else None


def price_list(pricing, region: str, query: Query) -> list[float]:
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    filters += [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in query.filters]
    found = set()
    for page in pricing.get_paginator("get_products").paginate(ServiceCode=query.service_code, Filters=filters,
                                                              FormatVersion="aws_v1"):
        for raw in page.get("PriceList", []):
            item = json.loads(raw) if isinstance(raw, str) else raw
            usagetype = ((item.get("product") or {}).get("attributes") or {}).get("usagetype", "")
            if query.usagetype_suffix and not usagetype.endswith(query.usagetype_suffix):
                continue
            usd = on_demand_usd(item)
            if usd:
                found.add(usd)
    return sorted(found)


def spot_price(ec2, instance_type: str, now: datetime.datetime) -> float | None:
    latest: dict[str, tuple[datetime.datetime, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=now)
    for page in pages:
        for entry in page.get("SpotPriceHistory", []):
            zone, stamp = entry["AvailabilityZone"], entry["Timestamp"]
            if zone not in latest or stamp > latest[zone][0]:
                latest[zone] = (stamp, float(entry["SpotPrice"]))
    return max(p for _, p in latest.values()) if latest else None


def refresh(table: dict[str, Any], regions: list[str], pricing, ec2_for: Callable[[str], Any],
            today: datetime.date, items: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """A new table with every wanted price asked again; raises RefreshError listing every failure."""
    items = items if items is not None else wanted(table, regions)
    new = json.loads(json.dumps(table))
    problems: list[str] = []
    now = datetime.datetime.combine(today, datetime.time(), tzinfo=datetime.timezone.utc)
    for region, service, key in items:
        query = query_for(service, key)
        if query is None:
            problems.append(f"{region} {service} {key}: no Price List query is known for it "
                            "(offline/prices_refresh.py)")
            continue
        found = price_list(pricing, region, query)
        if len(found) != 1:
            problems.append(f"{region} {service} {key}: the Price List returned "
                            f"{'no price' if not found else 'several prices ' + ', '.join(map(str, found))} "
                            f"for {query.service_code} {dict(query.filters)} {query.usagetype_suffix}")
            continue
        entries = new["regions"].setdefault(region, {}).setdefault(service, {})
        entries[key] = {"usd": found[0], "unit": query.unit or entries.get(key, {}).get("unit", ""),
                        "src": PRICE_LIST_SOURCE}
        if service == "ec2":
            usd = spot_price(ec2_for(region), key, now)
            if usd is not None:
                new["regions"][region].setdefault("ec2_spot", {})[key] = {
                    "usd": usd, "unit": "instance-hour", "src": SPOT_SOURCE}
    if problems:
        raise RefreshError("the price table was not changed:\n  " + "\n  ".join(problems))
    new["date"] = today.isoformat()
    new.setdefault("sources", {})[PRICE_LIST_SOURCE] = {
        "url": "https://pricing.us-east-1.amazonaws.com (Price List API, GetProducts)",
        "as_of": today.isoformat(), "basis": "AWS Price List API, on-demand terms, first tier"}
    new["sources"][SPOT_SOURCE] = {
        "url": "EC2 DescribeSpotPriceHistory (Linux/UNIX)", "as_of": today.isoformat(),
        "basis": "the latest spot price per availability zone, highest zone recorded; spot prices move hourly"}
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prices", type=Path, default=PRICES_PATH)
    args = parser.parse_args(argv)
    try:
        import boto3
    except ImportError:
        print("error: boto3 is not installed; run `make setup`", file=sys.stderr)
        return 2
    session = boto3.Session()
    try:
        credentials = session.get_credentials()
    except Exception as exc:  # a broken credential source (bad profile, unreachable SSO) reads the same to the user
        print(f"error: AWS credentials could not be loaded ({exc}); the table is unchanged.", file=sys.stderr)
        return 2
    if credentials is None:
        print("error: no AWS credentials found (environment, profile, SSO or instance role); `make prices` asks the "
              "AWS Price List API and needs them. The table is unchanged.", file=sys.stderr)
        return 2
    table = json.loads(args.prices.read_text())
    pricing = session.client("pricing", region_name="us-east-1")
    try:
        new = refresh(table, stack_regions(), pricing, lambda region: session.client("ec2", region_name=region),
                      datetime.date.today())
    except RefreshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.prices.write_text(json.dumps(new, indent=1) + "\n")
    print(f"wrote {args.prices} (prices as of {new['date']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
