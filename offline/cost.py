"""`make cost STACK=<dev|staging|prod> [FORMAT=json]`: a monthly estimate of what a stack costs, from its offline plan.

Every line comes from a resource in the plan (`offline.harness.run_program`) and its inputs, priced from the dated
table `offline/prices.json` (`make prices` refreshes it). Each line has two figures: the idle floor (what the stack
costs with no work running: GPU pools at zero, the general pool holding only what the system nodes cannot) and the
maximum (every node group and pool at its configured limit, storage at its autoscaling ceiling). What the plan
cannot tell (data volumes, log volumes, stored bytes) is a stated usage in `Usage`, printed with the assumptions.

Decisions:
- 730 hours a month (AWS's own monthly convention).
- A managed node group with ON_DEMAND capacity launches the first instance type of its list (EKS's `prioritized`
  allocation strategy), so that type is priced. Its idle floor is `desiredSize` nodes; nothing here scales it (no
  cluster autoscaler), and `maxSize` is its maximum.
- Karpenter pools: the idle floor packs the long-running pods (not Jobs, DaemonSets counted per node) that the
  system nodes cannot hold into the cheapest allowed type, summing requests against allocatable
  (`offline/capacity.py`'s model, without bin fragmentation). A pool's maximum is the dearest single-type fleet its
  `spec.limits` allow, counting capacity as Karpenter does. A pool without limits cannot be priced.
- Spot: a spot pool's idle floor is priced at the table's spot price for the type, or, where the table has none,
  at the on-demand price, which is the most a spot instance costs (the default spot max price is the on-demand
  price). Maximums are always on-demand: Karpenter falls back to on-demand when spot capacity runs out.
- An instance type, class or volume type the table does not list is an error. A price the table lists as unsourced
  (null) counts as zero, said on its line, in the assumptions and in the totals (`lower_bound`), so a stack is still
  estimated while one rate awaits `make prices`; `strict` (`make cost STRICT=1`) makes it an error instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline import capacity
from offline.capacity import Res, mib
from offline.harness import STACKS, Plan, run_program
from platform_config import ConfigError
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.instance_catalog import INSTANCE_TYPES, allocatable
from platform_config.instance_catalog import capacity as node_capacity
from platform_config.versions import EKS_END_OF_STANDARD_SUPPORT

HOURS_PER_MONTH = 730
PRICES_PATH = Path(__file__).resolve().parent / "prices.json"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
# Karpenter's own root volume when an EC2NodeClass names none (aws/karpenter-provider-aws v1.14 docs, EC2NodeClass
# blockDeviceMappings: AL2023 defaults to a 20Gi gp3 root volume).
KARPENTER_DEFAULT_ROOT_GIB = 20


class CostError(Exception):
    """The plan names something the price table cannot price."""


@dataclass(frozen=True)
class Usage:
    """What the plan cannot tell: the stated volumes each usage-priced line assumes (per stack, per month)."""

    nat_gb: float = 100.0
    """GB processed by all NAT gateways together."""
    s3_gb: float = 100.0
    """GB stored in the lake's buckets together (S3 Standard), noncurrent versions and access logs included."""
    control_plane_log_gb: float = 10.0
    """GB of EKS control-plane logs ingested (all enabled log types; audit dominates)."""
    flow_log_gb: float = 20.0
    """GB of VPC flow-log records ingested, per flow log."""
    msk_broker_log_gb: float = 2.0
    """GB of MSK broker logs ingested, per cluster."""
    rds_log_gb: float = 1.0
    """GB of RDS log exports ingested, per instance."""
    tgw_gb: float = 20.0
    """GB sent through each Transit Gateway attachment."""
    interface_endpoint_gb: float = 10.0
    """GB processed by each interface VPC endpoint."""
    rds_daily_change: float = 0.02
    """Share of an RDS instance's storage that changes per day: incremental backups beyond the free allowance."""

    def describe(self) -> list[str]:
        return [f"NAT gateways process {self.nat_gb:g} GB a month in all; the lake stores {self.s3_gb:g} GB "
                f"(S3 Standard); CloudWatch Logs ingests {self.control_plane_log_gb:g} GB of EKS control-plane logs, "
                f"{self.flow_log_gb:g} GB per VPC flow log, {self.msk_broker_log_gb:g} GB per MSK cluster's broker "
                f"logs, {self.rds_log_gb:g} GB per RDS instance's log exports; {self.tgw_gb:g} GB cross each Transit "
                f"Gateway attachment; {self.interface_endpoint_gb:g} GB through each interface endpoint; "
                f"{self.rds_daily_change:.0%} of an RDS instance's storage changes a day (stated usage: "
                "offline/cost.py Usage)."]


@dataclass(frozen=True)
class Price:
    usd: float | None
    unit: str
    source: str
    region: str
    """The region whose figure this is (the asked region, or its fallback)."""
    why: str = ""


class PriceTable:
    """`offline/prices.json`: per region and service, `{"usd", "unit", "src"}`; a region's `fallback` fills gaps."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.date = data["date"]
        self.sources = data.get("sources", {})

    @classmethod
    def load(cls, path: Path = PRICES_PATH) -> PriceTable:
        return cls(json.loads(Path(path).read_text()))

    def lookup(self, region: str, service: str, key: str) -> Price | None:
        seen = set()
        while region and region not in seen:
            seen.add(region)
            table = self.data["regions"].get(region) or {}
            entry = (table.get(service) or {}).get(key)
            if entry is not None:
                return Price(entry.get("usd"), entry.get("unit", ""), entry.get("src", ""), region,
                             entry.get("note", ""))
            region = table.get("fallback")
        return None

    def source_text(self, source: str) -> str:
        info = self.sources.get(source) or {}
        return f"{source} ({info.get('url') or 'no url'}, as of {info.get('as_of') or 'undated'})"


class Rate(float):
    """A price per unit; `unpriced` says why it is a stand-in zero."""

    def __new__(cls, value: float, unpriced: str = ""):
        rate = super().__new__(cls, value)
        rate.unpriced = unpriced
        return rate


@dataclass
class Pricer:
    """Looks prices up for one stack, collecting every problem so the error lists them all at once."""

    table: PriceTable
    region: str
    strict: bool = False
    unknown: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    fallbacks: set[str] = field(default_factory=set)
    secondary: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)

    def rate(self, service: str, key: str, what: str) -> float:
        price = self.table.lookup(self.region, service, key)
        if price is None:
            self.unknown.append(f"{what}: no {service} price for {key!r} in {self.region} in "
                                f"{PRICES_PATH.name}; add it with `make prices`")
            return Rate(0.0)
        if price.usd is None:
            self.unpriced.append(f"{what}: {service} {key!r} in {price.region} has no sourced price "
                                 f"({price.why or 'see the table'}); run `make prices` with AWS credentials")
            return Rate(0.0, f"UNPRICED: no sourced price for {service} {key!r}, counted as $0")
        if price.region != self.region:
            self.fallbacks.add(f"{service} {key}")
        if price.source.startswith("secondary"):
            self.secondary.add(f"{service} {key}")
        self.used.add(price.source)
        return Rate(price.usd)

    def check(self) -> None:
        problems = self.unknown + (self.unpriced if self.strict else [])
        if problems:
            raise CostError("cannot price this stack:\n  " + "\n  ".join(problems))


@dataclass
class Line:
    item: str
    resource: str | None
    unit: str
    unit_price: float
    quantity: float
    """At the maximum."""
    idle_quantity: float
    note: str = ""
    idle_unit_price: float | None = None
    """When the idle floor is priced at another rate (another instance type, or spot)."""

    def __post_init__(self):
        why = [getattr(p, "unpriced", "") for p in (self.unit_price, self.idle_unit_price)]
        if any(why):
            self.note = "; ".join([next(w for w in why if w)] + ([self.note] if self.note else []))

    def as_dict(self) -> dict[str, Any]:
        idle_price = self.unit_price if self.idle_unit_price is None else self.idle_unit_price
        return {"item": self.item, "resource": self.resource, "quantity": round(self.quantity, 4), "unit": self.unit,
                "unit_price": float(self.unit_price), "idle_floor": round(self.idle_quantity * idle_price, 2),
                "maximum": round(self.quantity * self.unit_price, 2), "note": self.note,
                "idle_quantity": round(self.idle_quantity, 4), "idle_unit_price": float(idle_price)}


# --- helpers ------------------------------------------------------------------------------------------------------

def _gib(value: Any) -> float:
    """A Kubernetes quantity ("20Gi") or a bare number of GiB, as GiB (EBS bills GiB as its "GB")."""
    if isinstance(value, (int, float)):
        return float(value)
    return mib(value) / 1024


def _requirement(spec: dict[str, Any], key: str) -> list[str] | None:
    for req in spec.get("requirements") or []:
        if req.get("key") == key and req.get("operator") == "In":
            return [str(v) for v in req.get("values") or []]
    return None


def _lookup(value: Any, path: str, default: Any = None) -> Any:
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return default
    return value


def _fmt_usd(value: float) -> str:
    return f"${value:,.2f}"


# --- the estimate -------------------------------------------------------------------------------------------------

def estimate(plan: Plan, prices: PriceTable | None = None, usage: Usage = Usage(), today: datetime.date | None = None,
             strict: bool = False) -> dict[str, Any]:
    """The monthly estimate of `plan` as the JSON `make cost FORMAT=json` prints (see the module docstring)."""
    prices = prices or PriceTable.load()
    region = _region(plan)
    pricer = Pricer(prices, region, strict)
    today = today or datetime.date.today()
    lines: list[Line] = []
    assumptions: list[str] = [f"{HOURS_PER_MONTH} hours a month; on-demand Linux, shared tenancy; list prices "
                              "without savings plans, reserved instances, credits, support plans or taxes."]
    for build in (_eks, _node_groups, _pools, _nat, _rds, _msk, _claims, _load_balancers, _logs, _s3, _kms,
                  _endpoints, _transit):
        build(plan, pricer, usage, lines, assumptions, today)
    pricer.check()
    assumptions.extend(usage.describe())
    if pricer.fallbacks:
        assumptions.append(f"No {region} figure in the table for: {', '.join(sorted(pricer.fallbacks))}; the "
                           f"{_fallback(prices, region)} price is used (`make prices` records {region}'s).")
    if pricer.secondary:
        assumptions.append("Priced from secondary sources (third-party pages quoting AWS's pricing pages, see "
                           f"offline/prices.json): {', '.join(sorted(pricer.secondary))}.")
    result: dict[str, Any] = {
        "stack": plan.stack, "region": region, "currency": prices.data.get("currency", "USD"),
        "prices_date": prices.date, "hours_per_month": HOURS_PER_MONTH,
        "lines": [line.as_dict() for line in lines], "assumptions": assumptions,
    }
    if pricer.unpriced:
        result["unpriced"] = pricer.unpriced
        assumptions.insert(0, f"UNPRICED: {len(pricer.unpriced)} price(s) have no source and count as $0, so the "
                              "totals are lower bounds: " + "; ".join(pricer.unpriced))
    # lower_bound: some line counts an unsourced price as $0, so the stack costs at least this.
    result["total"] = {"idle_floor": round(sum(x["idle_floor"] for x in result["lines"]), 2),
                       "maximum": round(sum(x["maximum"] for x in result["lines"]), 2),
                       "lower_bound": bool(pricer.unpriced)}
    result["sources"] = {s: prices.sources.get(s, {}) for s in sorted(pricer.used)}
    return result


def _region(plan: Plan) -> str:
    providers = [r for r in plan.resources if r["type"] == "pulumi:providers:aws"]
    region = providers[0]["inputs"].get("region") if providers else None
    if not region:
        raise CostError("the plan's AWS provider has no region")
    return region


def _fallback(prices: PriceTable, region: str) -> str:
    return (prices.data["regions"].get(region) or {}).get("fallback", "")


def _eks(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:eks/cluster:Cluster"):
        version = str(r["inputs"].get("version") or "")
        support = (r["inputs"].get("upgradePolicy") or {}).get("supportType") or "EXTENDED"  # the API's default
        end = EKS_END_OF_STANDARD_SUPPORT.get(version)
        key, note = "cluster", f"Kubernetes {version}, upgrade policy {support}"
        if end is None:
            note += "; no end-of-standard-support date in platform_config/versions.py, priced as standard"
        elif today.isoformat() > end and support == "EXTENDED":
            key, note = "cluster_extended", note + f"; past standard support ({end}): extended-support price"
        elif today.isoformat() > end:
            note += f"; past standard support ({end}): EKS upgrades the control plane itself (STANDARD policy)"
        else:
            note += f"; standard support until {end}"
            if support == "EXTENDED":
                note += ", then the extended-support price applies unless upgraded"
        rate = pricer.rate("eks", key, f"EKS cluster {r['name']}")
        lines.append(Line("EKS control plane", r["urn"], "cluster-hour", rate, HOURS_PER_MONTH, HOURS_PER_MONTH,
                          note))


def _root_gib(pricer: Pricer, what: str, mappings: list[dict[str, Any]], default: float) -> float:
    """The root volume of a node, from launch-template or EC2NodeClass block device mappings (gp3 only)."""
    if not mappings:
        return default
    root = next((m for m in mappings if m.get("rootVolume")), mappings[0])
    ebs = root.get("ebs") or {}
    volume_type = ebs.get("volumeType", "gp3")
    if volume_type != "gp3":
        pricer.rate("ebs", volume_type, what)  # records the unknown type
    return _gib(ebs.get("volumeSize", default))


def _node_groups(plan, pricer, usage, lines, assumptions, today):
    templates = {r["id"]: r for r in plan.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for r in plan.of_type("aws:eks/nodeGroup:NodeGroup"):
        i = r["inputs"]
        types = list(i.get("instanceTypes") or ["t3.medium"])  # EKS's default when none is given
        scaling = i.get("scalingConfig") or {}
        desired, maximum = float(scaling.get("desiredSize", 0)), float(scaling.get("maxSize", 0))
        spot = i.get("capacityType") == "SPOT"
        what = f"node group {r['name']}"
        priced = types[0]
        rate = pricer.rate("ec2", priced, what)
        idle_rate = rate
        note = (f"{desired:g} nodes (desiredSize) idle, {maximum:g} (maxSize) at most, of {priced}: "
                f"the first of {', '.join(types)} (on-demand node groups launch the first type listed)")
        if spot:
            priced = max(types, key=lambda t: pricer.rate("ec2", t, what))
            rate = pricer.rate("ec2", priced, what)
            idle_rate = _spot_rate(pricer, priced, what, assumptions)
            note = f"SPOT group of {', '.join(types)}: idle at spot, maximum at {priced}'s on-demand price"
        lines.append(Line(f"System node group {r['name']}", r["urn"], "node-hour", rate,
                          maximum * HOURS_PER_MONTH, desired * HOURS_PER_MONTH, note, idle_rate))
        template = templates.get((i.get("launchTemplate") or {}).get("id"))
        mappings = (template or {}).get("inputs", {}).get("blockDeviceMappings") or []
        gib = _root_gib(pricer, what, mappings, 20)  # EKS's default node disk is 20 GiB
        gp3 = pricer.rate("ebs", "gp3", what)
        lines.append(Line(f"EBS root volumes, node group {r['name']}", (template or {}).get("urn"), "GB-month", gp3,
                          gib * maximum, gib * desired, f"{gib:g} GB gp3 per node (launch template)"))


def _spot_rate(pricer: Pricer, instance_type: str, what: str, assumptions: list[str]) -> float:
    spot = pricer.table.lookup(pricer.region, "ec2_spot", instance_type)
    if spot is not None and spot.usd is not None and spot.region == pricer.region:
        pricer.used.add(spot.source)
        return Rate(spot.usd)
    text = ("Spot capacity without a spot price in the table is priced at the on-demand rate, the most a spot "
            "instance costs (its default max price); `make prices` records spot prices.")
    if text not in assumptions:
        assumptions.append(text)
    return pricer.rate("ec2", instance_type, what)


def _pools(plan, pricer, usage, lines, assumptions, today):
    nodepools = plan.of_type("kubernetes:karpenter.sh/v1:NodePool")
    if not nodepools:
        return
    every = capacity.pods(plan)
    sources = {s.name: s for s in capacity.node_sources(plan, [p for p in every if p.per_node])}
    steady = [p for p in every if not p.per_node and not p.completes]
    general_need = _general_need(steady, list(sources.values()))
    classes = {r["inputs"]["metadata"]["name"]: r for r in plan.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")}
    for r in sorted(nodepools, key=lambda r: r["inputs"]["metadata"]["name"]):
        name = r["inputs"]["metadata"]["name"]
        source = sources[f"NodePool {name}"]
        spec = (r["inputs"]["spec"].get("template") or {}).get("spec") or {}
        what = f"NodePool {name}"
        types = _requirement(spec, INSTANCE_TYPE)
        if not types:
            pricer.unknown.append(f"{what}: no `{INSTANCE_TYPE} In` requirement, so any type may launch and the "
                                  "pool cannot be priced; list its instance types")
            continue
        for t in types:
            pricer.rate("ec2", t, what)
        capacity_types = _requirement(spec, CAPACITY_TYPE) or ["on-demand"]  # Karpenter's default
        spot = "spot" in capacity_types
        dedicated = source.kind == "dedicated"
        if dedicated:
            need = rsum_pods(p for p in steady if _only(p, source, sources.values()))
            gpu_need = sum(p.gpus * p.replicas for p in steady if _only(p, source, sources.values()))
        else:
            need, gpu_need = general_need.get(source.name, Res()), 0
        idle_type, idle_nodes = _cheapest_fleet(pricer, source, types, need, gpu_need, spot, what, assumptions)
        max_type, max_nodes, limit_text = _dearest_fleet(pricer, source, types, what)
        rate = pricer.rate("ec2", max_type, what) if max_type else 0.0
        idle_rate = (_spot_rate(pricer, idle_type, what, assumptions) if spot else pricer.rate("ec2", idle_type, what)
                     ) if idle_type else rate
        if dedicated and not idle_nodes:
            idle_text = "0 nodes idle: GPU pools scale to zero (no long-running pod is bound to the pool)"
        elif not idle_nodes:
            idle_text = "0 nodes idle: the system nodes hold every long-running pod"
        elif dedicated:
            idle_text = (f"{idle_nodes} × {idle_type} idle: long-running pods bound to the pool ask for "
                         f"{gpu_need} GPU unit(s), cpu {need.cpu / 1000:.2f}, memory {need.memory / 1024:.2f}Gi")
        else:
            idle_text = (f"{idle_nodes} × {idle_type} idle: the long-running pods the system nodes cannot hold ask "
                         f"for cpu {need.cpu / 1000:.2f}, memory {need.memory / 1024:.2f}Gi, {need.pods:g} pods "
                         "(cheapest allowed type that holds them)")
        note = (f"{idle_text}; at most {max_nodes} × {max_type} ({limit_text}; the dearest single-type fleet "
                f"the limits allow); capacity {'/'.join(capacity_types)}")
        lines.append(Line(f"Karpenter pool {name}", r["urn"], "node-hour", rate, max_nodes * HOURS_PER_MONTH,
                          idle_nodes * HOURS_PER_MONTH, note, idle_rate))
        node_class = classes.get((spec.get("nodeClassRef") or {}).get("name", ""))
        mappings = ((node_class or {}).get("inputs", {}).get("spec") or {}).get("blockDeviceMappings") or []
        gib = _root_gib(pricer, what, mappings, KARPENTER_DEFAULT_ROOT_GIB)
        gp3 = pricer.rate("ebs", "gp3", what)
        lines.append(Line(f"EBS root volumes, pool {name}", (node_class or {}).get("urn"), "GB-month", gp3,
                          gib * max_nodes, gib * idle_nodes, f"{gib:g} GB gp3 per node (EC2NodeClass)"))


def rsum_pods(pods) -> Res:
    return capacity.rsum(p.requests * p.replicas for p in pods)


def _only(pod, source, sources) -> bool:
    return [s.name for s in sources if capacity.can_land(pod, s)] == [source.name]


def _general_need(steady, sources) -> dict[str, Res]:
    """Per untainted pool: what long-running pods need there once the node groups (at desiredSize) are full.

    Pods that can land only on a group stay there; pods that can land on a group or a pool fill the group's room
    first (the scheduler places pending pods on existing nodes before Karpenter launches any); the rest, and pods
    that can land only on pools, go to the first pool (by name) they can land on.
    """
    groups = [s for s in sources if s.kind == "group"]
    pools = sorted((s for s in sources if s.kind == "general"), key=lambda s: s.name)
    room = capacity.rsum(s.capacity_desired for s in groups)
    need: dict[str, Res] = {}
    flexible: list = []
    for p in steady:
        on_group = any(capacity.can_land(p, s) for s in groups)
        pool = next((s for s in pools if capacity.can_land(p, s)), None)
        if on_group and pool is None:
            room = room - p.requests * p.replicas
        elif pool is not None and not on_group:
            need[pool.name] = need.get(pool.name, Res()) + p.requests * p.replicas
        elif pool is not None:
            flexible.append((p, pool))
    for p, pool in flexible:
        spill = Res(*(max(0.0, q - max(0.0, r)) for q, r in zip(p.requests * p.replicas, room)))
        room = room - p.requests * p.replicas
        need[pool.name] = need.get(pool.name, Res()) + spill
    return need


def _units_per_node(source, instance_type: str) -> int:
    gpu = GPU_INSTANCE_TYPES.get(instance_type)
    return (gpu.gpus if gpu else 0) * (source.gpu.units_per_gpu or 0)


def _cheapest_fleet(pricer, source, types, need: Res, gpu_need: int, spot: bool, what: str,
                    assumptions: list[str]) -> tuple[str | None, int]:
    if not any(need) and not gpu_need:
        return None, 0
    best: tuple[float, int, str] | None = None
    for t in types:
        if t not in INSTANCE_TYPES:
            continue
        usable = Res(*allocatable(t), INSTANCE_TYPES[t].max_pods) - source.daemonsets
        if min(usable) <= 0:
            continue
        nodes = max([math.ceil(q / u - 1e-9) for q, u in zip(need, usable)] + [0])
        if gpu_need:
            units = _units_per_node(source, t)
            if not units:
                continue
            nodes = max(nodes, math.ceil(gpu_need / units))
        price = _spot_rate(pricer, t, what, assumptions) if spot else pricer.rate("ec2", t, what)
        if best is None or (nodes * price, nodes) < best[:2]:
            best = (nodes * price, nodes, t)
    if best is None:
        pricer.unknown.append(f"{what}: no allowed type in platform_config/instance_catalog.py can hold the "
                              "long-running pods it must run")
        return None, 0
    return best[2], best[1]


def _dearest_fleet(pricer, source, types, what: str) -> tuple[str | None, int, str]:
    limits = source.limits
    text = source.limits_text or "no limits"
    best: tuple[float, int, str] | None = None
    for t in types:
        bounds = [limits.get("nodes", math.inf)]
        if any(k in limits for k in ("cpu", "memory")) or (capacity.GPU in limits and t in GPU_INSTANCE_TYPES):
            if t not in INSTANCE_TYPES:
                pricer.unknown.append(f"{what}: {t} is not in platform_config/instance_catalog.py, so its share of "
                                      "the pool's cpu/memory limits is unknown")
                continue
            cpu, memory = node_capacity(t)
            bounds += [limits[k] // v for k, v in (("cpu", cpu), ("memory", memory)) if k in limits]
        # Karpenter counts a node's physical GPUs against the limit (its instance-type capacity knows nothing of
        # time-slicing), as offline/capacity.py does.
        physical = GPU_INSTANCE_TYPES[t].gpus if t in GPU_INSTANCE_TYPES else 0
        if capacity.GPU in limits and physical:
            bounds.append(limits[capacity.GPU] // physical)
        nodes = min(bounds)
        if nodes == math.inf:
            pricer.unknown.append(f"{what}: no nodes, cpu, memory or GPU limit bounds {t}, so the pool's maximum "
                                  "is unbounded; set spec.limits")
            return None, 0, text
        price = pricer.rate("ec2", t, what)
        if best is None or (nodes * price, nodes) > best[:2]:
            best = (nodes * price, int(nodes), t)
    if best is None:
        return None, 0, text
    return best[2], best[1], text


def _nat(plan, pricer, usage, lines, assumptions, today):
    gateways = plan.of_type("aws:ec2/natGateway:NatGateway")
    for r in gateways:
        rate = pricer.rate("nat", "hour", f"NAT gateway {r['name']}")
        lines.append(Line(f"NAT gateway {r['name']}", r["urn"], "gateway-hour", rate, HOURS_PER_MONTH,
                          HOURS_PER_MONTH, r["inputs"].get("tags", {}).get("Name", "")))
    if gateways:
        rate = pricer.rate("nat", "gb", "NAT data processing")
        lines.append(Line("NAT data processing", None, "GB", rate, usage.nat_gb, usage.nat_gb,
                          f"stated volume: {usage.nat_gb:g} GB a month through {len(gateways)} gateway(s)"))
    for r in plan.of_type("aws:ec2/eip:Eip"):
        rate = pricer.rate("ipv4", "hour", f"Elastic IP {r['name']}")
        lines.append(Line(f"Public IPv4 address {r['name']}", r["urn"], "IP-hour", rate, HOURS_PER_MONTH,
                          HOURS_PER_MONTH, "every public IPv4 address is billed, attached or not"))


def _rds(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:rds/instance:Instance"):
        i, what = r["inputs"], f"RDS instance {r['name']}"
        multi = bool(i.get("multiAz"))
        copies = 2 if multi else 1
        az = "Multi-AZ: primary and standby" if multi else "Single-AZ"
        cls = i.get("instanceClass", "")
        rate = pricer.rate("rds", cls, what)
        lines.append(Line(f"RDS {i.get('engine', '')} {cls}", r["urn"], "instance-hour", rate,
                          copies * HOURS_PER_MONTH, copies * HOURS_PER_MONTH, f"{az} ({copies} × 730 h)"))
        storage_type = i.get("storageType", "gp2")
        storage = pricer.rate("rds", storage_type, what)
        allocated = float(i.get("allocatedStorage", 0))
        ceiling = float(i.get("maxAllocatedStorage") or allocated)
        lines.append(Line(f"RDS storage ({storage_type})", r["urn"], "GB-month", storage, copies * ceiling,
                          copies * allocated, f"{allocated:g} GB allocated, autoscaling up to {ceiling:g} GB; {az}"))
        retention = float(i.get("backupRetentionPeriod", 0))
        if retention:
            backup = pricer.rate("rds", "backup", what)
            # Backup storage up to the provisioned size is free; incremental snapshots over the retention window
            # add the daily change each day.
            extra = usage.rds_daily_change * retention
            lines.append(Line("RDS backup storage beyond the free allowance", r["urn"], "GB-month", backup,
                              ceiling * extra, allocated * extra,
                              f"{retention:g} days retained × {usage.rds_daily_change:.0%} of storage changed a day "
                              "(stated); storage up to the provisioned size is free"))


def _msk(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:msk/cluster:Cluster"):
        i, what = r["inputs"], f"MSK cluster {r['name']}"
        info = i.get("brokerNodeGroupInfo") or {}
        brokers = float(i.get("numberOfBrokerNodes", 0))
        broker_type = info.get("instanceType", "")
        rate = pricer.rate("msk", broker_type, what)
        lines.append(Line(f"MSK brokers ({broker_type})", r["urn"], "broker-hour", rate, brokers * HOURS_PER_MONTH,
                          brokers * HOURS_PER_MONTH, f"{brokers:g} brokers"))
        gib = float(_lookup(info, "storageInfo.ebsStorageInfo.volumeSize", 1000))  # MSK's default volume
        storage = pricer.rate("msk", "storage", what)
        lines.append(Line("MSK broker storage", r["urn"], "GB-month", storage, gib * brokers, gib * brokers,
                          f"{gib:g} GB per broker × {brokers:g}"))


def _claims(plan, pricer, usage, lines, assumptions, today):
    default_class = next((r for r in plan.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
                          if _lookup(r["inputs"], "metadata.annotations", {}).get(
                              "storageclass.kubernetes.io/is-default-class") == "true"), None)
    classes = {_lookup(r["inputs"], "metadata.name"): r
               for r in plan.of_type("kubernetes:storage.k8s.io/v1:StorageClass")}

    def add(r, label: str, claim_spec: dict[str, Any], replicas: float, what: str) -> None:
        cls = classes.get(claim_spec.get("storageClassName")) or default_class
        volume_type = _lookup(cls, "inputs.parameters.type", "gp3") if cls else "gp3"
        rate = pricer.rate("ebs", volume_type, what)
        gib = _gib(_lookup(claim_spec, "resources.requests.storage", 0))
        lines.append(Line(f"EBS volumes, {label}", r["urn"], "GB-month", rate, gib * replicas, gib * replicas,
                          f"{replicas:g} × {gib:g} GB {volume_type}"))

    for r in plan.of_type("kubernetes:apps/v1:StatefulSet"):
        spec = r["inputs"].get("spec") or {}
        for t in spec.get("volumeClaimTemplates") or []:
            add(r, f"StatefulSet {_lookup(r['inputs'], 'metadata.name')} claim {_lookup(t, 'metadata.name')}",
                t.get("spec") or {}, float(spec.get("replicas", 1)), f"StatefulSet {r['name']}")
    for r in plan.of_type("kubernetes:core/v1:PersistentVolumeClaim"):
        add(r, f"claim {_lookup(r['inputs'], 'metadata.name')}", r["inputs"].get("spec") or {}, 1, r["name"])
    for r in plan.of_type("kubernetes:kafka.strimzi.io/v1:KafkaNodePool"):
        spec = r["inputs"].get("spec") or {}
        storage = spec.get("storage") or {}
        volumes = storage.get("volumes") if storage.get("type") == "jbod" else [storage]
        for v in volumes or []:
            if v.get("type") == "persistent-claim":
                add(r, f"KafkaNodePool {_lookup(r['inputs'], 'metadata.name')} volume {v.get('id', 0)}",
                    {"storageClassName": v.get("class"), "resources": {"requests": {"storage": v.get("size")}}},
                    float(spec.get("replicas", 1)), f"KafkaNodePool {r['name']}")
    for r in plan.of_type("kubernetes:helm.sh/v3:Release"):
        values = r["inputs"].get("values") or {}
        claim = _lookup(values, "prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec")
        if claim:
            # kube-prometheus-stack's values.yaml defaults prometheusSpec.replicas to 1 (upstream/, 88.5.3).
            replicas = float(_lookup(values, "prometheus.prometheusSpec.replicas", 1))
            add(r, f"Helm release {r['name']} (Prometheus)", claim, replicas, f"release {r['name']}")


def _load_balancers(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("kubernetes:core/v1:Service"):
        if _lookup(r["inputs"], "spec.type") != "LoadBalancer":
            continue
        annotations = _lookup(r["inputs"], "metadata.annotations", {}) or {}
        kind = annotations.get("service.beta.kubernetes.io/aws-load-balancer-type", "classic")
        key = "nlb" if kind in ("nlb", "external", "nlb-ip") else kind
        rate = pricer.rate("elb", key, f"Service {r['name']}")
        lines.append(Line(f"Load balancer ({key}) for Service {_lookup(r['inputs'], 'metadata.name')}", r["urn"],
                          "LB-hour", rate, HOURS_PER_MONTH, HOURS_PER_MONTH, "hours only: capacity units (LCUs) "
                          "and data transfer are usage and not included"))
    for r in plan.of_type("kubernetes:networking.k8s.io/v1:Ingress"):
        rate = pricer.rate("elb", "alb", f"Ingress {r['name']}")
        lines.append(Line(f"Load balancer (alb) for Ingress {_lookup(r['inputs'], 'metadata.name')}", r["urn"],
                          "LB-hour", rate, HOURS_PER_MONTH, HOURS_PER_MONTH, "one ALB per Ingress; hours only"))


def _logs(plan, pricer, usage, lines, assumptions, today):
    def add(r, item: str, gb: float) -> None:
        rate = pricer.rate("logs", "ingest", item)
        lines.append(Line(item, r["urn"], "GB ingested", rate, gb, gb, f"stated volume: {gb:g} GB a month; "
                          "stored-log (archive) charges not included"))

    for r in plan.of_type("aws:eks/cluster:Cluster"):
        if r["inputs"].get("enabledClusterLogTypes"):
            add(r, f"CloudWatch Logs: EKS control plane ({', '.join(r['inputs']['enabledClusterLogTypes'])})",
                usage.control_plane_log_gb)
    for r in plan.of_type("aws:ec2/flowLog:FlowLog"):
        if r["inputs"].get("logDestinationType", "cloud-watch-logs") == "cloud-watch-logs":
            add(r, f"CloudWatch Logs: VPC flow logs ({r['inputs'].get('trafficType', 'ALL')})", usage.flow_log_gb)
    for r in plan.of_type("aws:msk/cluster:Cluster"):
        if _lookup(r["inputs"], "loggingInfo.brokerLogs.cloudwatchLogs.enabled"):
            add(r, "CloudWatch Logs: MSK broker logs", usage.msk_broker_log_gb)
    for r in plan.of_type("aws:rds/instance:Instance"):
        if r["inputs"].get("enabledCloudwatchLogsExports"):
            add(r, f"CloudWatch Logs: RDS exports ({', '.join(r['inputs']['enabledCloudwatchLogsExports'])})",
                usage.rds_log_gb)


def _s3(plan, pricer, usage, lines, assumptions, today):
    buckets = plan.of_type("aws:s3/bucket:Bucket")
    if buckets:
        rate = pricer.rate("s3", "standard", "S3 buckets")
        lines.append(Line(f"S3 Standard storage ({len(buckets)} buckets)", None, "GB-month", rate, usage.s3_gb,
                          usage.s3_gb, f"stated size: {usage.s3_gb:g} GB across "
                          f"{', '.join(sorted(b['name'] for b in buckets))}; requests not included"))


def _kms(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:kms/key:Key"):
        rate = pricer.rate("kms", "key", f"KMS key {r['name']}")
        note = "first year; each yearly rotation adds a key-month" if r["inputs"].get("enableKeyRotation") else ""
        lines.append(Line(f"KMS key {r['name']}", r["urn"], "key-month", rate, 1, 1, note))


def _endpoints(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"):
        kind = r["inputs"].get("vpcEndpointType", "Gateway")
        service = r["inputs"].get("serviceName", "")
        if kind == "Gateway":
            lines.append(Line(f"VPC endpoint {service} (Gateway)", r["urn"], "endpoint-hour", 0.0, HOURS_PER_MONTH,
                              HOURS_PER_MONTH, "gateway endpoints (S3, DynamoDB) are not billed"))
            continue
        zones = float(len(r["inputs"].get("subnetIds") or [])) or 1.0
        rate = pricer.rate("vpce", "interface", f"VPC endpoint {r['name']}")
        lines.append(Line(f"VPC endpoint {service} ({kind})", r["urn"], "endpoint-AZ-hour", rate,
                          zones * HOURS_PER_MONTH, zones * HOURS_PER_MONTH, f"{zones:g} AZ(s)"))
        gb = pricer.rate("vpce", "gb", f"VPC endpoint {r['name']}")
        lines.append(Line(f"VPC endpoint {service} data", r["urn"], "GB", gb, usage.interface_endpoint_gb,
                          usage.interface_endpoint_gb, f"stated volume: {usage.interface_endpoint_gb:g} GB"))


def _transit(plan, pricer, usage, lines, assumptions, today):
    for r in plan.of_type("aws:ec2transitgateway/vpcAttachment:VpcAttachment"):
        rate = pricer.rate("tgw", "attachment", f"Transit Gateway attachment {r['name']}")
        lines.append(Line("Transit Gateway VPC attachment", r["urn"], "attachment-hour", rate, HOURS_PER_MONTH,
                          HOURS_PER_MONTH, f"to {r['inputs'].get('transitGatewayId', '')}"))
        gb = pricer.rate("tgw", "gb", f"Transit Gateway attachment {r['name']}")
        lines.append(Line("Transit Gateway data processing", r["urn"], "GB", gb, usage.tgw_gb, usage.tgw_gb,
                          f"stated volume: {usage.tgw_gb:g} GB"))


# --- output -------------------------------------------------------------------------------------------------------

def render(result: dict[str, Any]) -> str:
    out = [f"monthly cost estimate: stack {result['stack']} ({result['region']}), {result['currency']}, "
           f"prices as of {result['prices_date']}, {result['hours_per_month']} h/month", ""]
    header = f"{'item':<52} {'quantity':>22} {'unit price':>11} {'idle floor':>12} {'maximum':>12}"
    out += [header, "-" * len(header)]
    for line in result["lines"]:
        qty = f"{line['quantity']:g} {line['unit']}"
        out.append(f"{line['item'][:52]:<52} {qty:>22} {line['unit_price']:>11.4f} "
                   f"{_fmt_usd(line['idle_floor']):>12} {_fmt_usd(line['maximum']):>12}")
        if line["note"]:
            out.append(f"    {line['note']}")
    total = result["total"]
    at_least = "at least " if total.get("lower_bound") else ""
    out += ["-" * len(header),
            f"{'total' + (' (a lower bound: see UNPRICED)' if at_least else ''):<52} {'':>22} {'':>11} "
            f"{at_least + _fmt_usd(total['idle_floor']):>12} {at_least + _fmt_usd(total['maximum']):>12}", "",
            "assumptions:"]
    out += [f"  - {a}" for a in result["assumptions"]]
    out += ["", "price sources:"]
    out += [f"  - {name}: {info.get('url') or 'no url'} (as of {info.get('as_of') or 'undated'})"
            for name, info in result["sources"].items()]
    out += ["", "not included: data transfer beyond the stated volumes, load-balancer capacity units, requests "
            "(S3, KMS, SQS), CloudWatch metrics and stored logs, support plans, taxes, spot price swings, savings "
            "plans and reserved-instance discounts."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of {', '.join(STACKS)}")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--prices", type=Path, default=PRICES_PATH, help="price table (default offline/prices.json)")
    parser.add_argument("--strict", action="store_true",
                        help="fail where the table lists a price as unsourced, instead of counting it as $0 and "
                             "marking the totals a lower bound")
    args = parser.parse_args(argv)
    try:
        result = estimate(run_program(args.stack), PriceTable.load(args.prices), strict=args.strict)
    except (ConfigError, FileNotFoundError, CostError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2) if args.format == "json" else render(result)
    try:
        print(text)
    except BrokenPipeError:
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
