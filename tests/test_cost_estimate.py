"""`make cost` (offline/cost.py) and `make prices` (offline/prices_refresh.py).

The arithmetic is checked on a small hand-built plan priced from a small table with round prices, so every line's
amount is known exactly; each kind of line is shown to appear with its resource and to move with its input; the
real stacks are priced from `offline/prices.json`; the refresh parses Price List responses in the real format
through botocore's Stubber.
"""

from __future__ import annotations

import copy
import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber

from offline import cost, prices_refresh
from offline.cost import CostError, PriceTable, Usage, estimate
from offline.harness import STACKS, Plan
from platform_config.model import GENERAL_INSTANCE_TYPES
from tests.conftest import stack_plan

TODAY = datetime.date(2026, 12, 7)
P = "p"


def res(type_: str, name: str, inputs: dict, id_: str | None = None) -> dict:
    return {"urn": f"urn:pulumi:t::{P}::{type_}::{name}", "id": id_ or f"{name}-id", "type": type_, "name": name,
            "parent": None, "provider": None, "custom": True, "inputs": inputs, "protect": False,
            "retainOnDelete": False, "dependsOn": [], "ignoreChanges": [], "identity": []}


def entry(usd):
    return {"usd": usd, "unit": "u", "src": "fixture"}


TABLE = {
    "date": "2026-01-02", "currency": "USD",
    "sources": {"fixture": {"url": "test", "as_of": "2026-01-02", "basis": "round numbers"},
                "secondary-fixture": {"url": "test", "as_of": None, "basis": "secondary"}},
    "regions": {
        "us-east-1": {
            "ec2": {"m6i.large": entry(0.1), "m6a.large": entry(0.09), "m6i.xlarge": entry(0.2),
                    "m6i.2xlarge": entry(0.4), "g5.xlarge": entry(1.0), "g5.2xlarge": entry(1.5)},
            "ec2_spot": {},
            "eks": {"cluster": entry(0.1), "cluster_extended": entry(0.6)},
            "ebs": {"gp3": entry(0.08)},
            "nat": {"hour": entry(0.05), "gb": entry(0.05)},
            "ipv4": {"hour": entry(0.005)},
            "rds": {"db.t4g.medium": entry(0.07), "db.r7g.large": {"usd": None, "src": "unsourced",
                                                                   "note": "not sourced"},
                    "gp3": entry(0.1), "backup": entry(0.1)},
            "msk": {"kafka.m7g.large": entry(0.2), "storage": entry(0.1)},
            "elb": {"nlb": entry(0.02)},
            "logs": {"ingest": entry(0.5)},
            "s3": {"standard": entry(0.02)},
            "kms": {"key": entry(1.0)},
            "vpce": {"interface": entry(0.01), "gb": entry(0.01)},
            "tgw": {"attachment": entry(0.05), "gb": entry(0.02)},
        },
        "us-west-2": {"fallback": "us-east-1", "nat": {"hour": entry(0.06), "gb": entry(0.06)}},
    },
}


def gpu_pool(name="gpu", types=("g5.xlarge", "g5.2xlarge"), nodes=2, capacity=("spot",), root="100Gi",
             gpus=None):
    pool = res("kubernetes:karpenter.sh/v1:NodePool", f"{name}-nodepool", {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
        "spec": {"limits": {"nodes": str(nodes), "nvidia.com/gpu": str(nodes if gpus is None else gpus)},
                 "template": {
            "metadata": {"labels": {"mlplatform.io/gpu-pool": name}},
            "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
                     "requirements": [
                         {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(types)},
                         {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(capacity)}],
                     "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}}})
    node_class = res("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", f"{name}-nodeclass", {
        "metadata": {"name": name}, "spec": {"blockDeviceMappings": [
            {"deviceName": "/dev/xvda", "rootVolume": True, "ebs": {"volumeSize": root, "volumeType": "gp3"}}]}})
    return [pool, node_class]


def general_pool(cpu="16", memory="64Gi", types=("m6i.xlarge", "m6i.2xlarge")):
    return [res("kubernetes:karpenter.sh/v1:NodePool", "general-nodepool", {
        "metadata": {"name": "general"},
        "spec": {"limits": {"cpu": cpu, "memory": memory}, "template": {
            "metadata": {"labels": {"mlplatform.io/pool": "general"}},
            "spec": {"nodeClassRef": {"name": "general"}, "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(types)},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}}}}),
        res("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "general-nodeclass", {
            "metadata": {"name": "general"}, "spec": {"blockDeviceMappings": [
                {"rootVolume": True, "ebs": {"volumeSize": "50Gi", "volumeType": "gp3"}}]}})]


def deployment(name: str, cpu: str, memory: str, replicas: int = 1) -> dict:
    return res("kubernetes:apps/v1:Deployment", name, {
        "metadata": {"name": name, "namespace": "apps"}, "spec": {"replicas": replicas, "template": {"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}}})


def base(**over) -> list[dict]:
    """A small stack: provider, cluster, a 2-node group, one NAT with its address, one KMS key."""
    o = {"version": "1.35", "support": "STANDARD", "desired": 2, "max": 3, "types": ["m6i.large", "m6a.large"],
         **over}
    return [
        res("pulumi:providers:aws", "default", {"region": o.get("region", "us-east-1")}),
        res("aws:eks/cluster:Cluster", "eks", {"version": o["version"], "upgradePolicy": {"supportType": o["support"]},
                                               "enabledClusterLogTypes": []}),
        res("aws:ec2/launchTemplate:LaunchTemplate", "system", {"blockDeviceMappings": [
            {"deviceName": "/dev/xvda", "ebs": {"volumeSize": 50, "volumeType": "gp3"}}]}, id_="lt-1"),
        res("aws:eks/nodeGroup:NodeGroup", "system", {
            "instanceTypes": o["types"], "capacityType": "ON_DEMAND", "launchTemplate": {"id": "lt-1"},
            "labels": {"mlplatform.io/pool": "system"},
            "scalingConfig": {"desiredSize": o["desired"], "maxSize": o["max"], "minSize": o["desired"]}}),
        res("aws:ec2/natGateway:NatGateway", "nat-a", {"tags": {"Name": "a"}}),
        res("aws:ec2/eip:Eip", "nat-a", {"domain": "vpc"}),
        res("aws:kms/key:Key", "key", {"enableKeyRotation": True}),
    ]


def plan_of(resources: list[dict], stack: str = "fixture") -> Plan:
    return Plan(stack=stack, project=P, resources=sorted(resources, key=lambda r: r["urn"]), outputs={})


def run(resources: list[dict], table: dict | None = None, usage: Usage = Usage(), **kw) -> dict:
    return estimate(plan_of(resources), PriceTable(copy.deepcopy(table or TABLE)), usage, TODAY, **kw)


def lines(result: dict, prefix: str) -> list[dict]:
    return [x for x in result["lines"] if x["item"].startswith(prefix)]


def one(result: dict, prefix: str) -> dict:
    found = lines(result, prefix)
    assert len(found) == 1, [x["item"] for x in result["lines"]]
    return found[0]


# --- the arithmetic on a small fixture ------------------------------------------------------------------------------

def test_fixture_line_amounts_and_totals_are_exact():
    result = run(base() + gpu_pool())
    got = {x["item"]: (x["idle_floor"], x["maximum"]) for x in result["lines"]}
    assert got == {
        "EKS control plane": (73.0, 73.0),                              # 730 h × $0.10
        "System node group system": (146.0, 219.0),                     # 2 (3) × 730 h × $0.10, m6i.large first
        "EBS root volumes, node group system": (8.0, 12.0),             # 2 (3) × 50 GB × $0.08
        "Karpenter pool gpu": (0.0, 2190.0),                            # 0 idle; 2 × 730 h × $1.50 (g5.2xlarge)
        "EBS root volumes, pool gpu": (0.0, 16.0),                      # 2 × 100 GB × $0.08
        "NAT gateway nat-a": (36.5, 36.5),                              # 730 h × $0.05
        "NAT data processing": (5.0, 5.0),                              # 100 GB × $0.05
        "Public IPv4 address nat-a": (3.65, 3.65),                      # 730 h × $0.005
        "KMS key key": (1.0, 1.0),
    }
    assert result["total"] == {"idle_floor": 273.15, "maximum": 2556.15, "lower_bound": False}
    assert result["region"] == "us-east-1" and result["prices_date"] == "2026-01-02"
    assert result["hours_per_month"] == 730 and result["currency"] == "USD"
    for line in result["lines"]:
        assert set(line) >= {"item", "resource", "quantity", "unit", "unit_price", "idle_floor", "maximum", "note"}
        assert line["maximum"] == round(line["quantity"] * line["unit_price"], 2)


def test_general_pool_floor_holds_what_the_system_nodes_cannot():
    # Two m6i.large nodes leave ~3.3 vCPU for pods; 5 vCPU of long-running requests spill 1.7 vCPU into the pool,
    # which one m6i.xlarge (3.9 vCPU allocatable) holds; a Job does not count, it finishes.
    job = res("kubernetes:batch/v1:Job", "once", {"metadata": {"name": "once", "namespace": "apps"}, "spec": {
        "template": {"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "8", "memory": "1Gi"}}}]}}}})
    result = run(base() + general_pool() + [deployment("web", "1", "1Gi", replicas=5), job])
    pool = one(result, "Karpenter pool general")
    assert pool["idle_quantity"] == 730 and pool["idle_unit_price"] == 0.2 and pool["idle_floor"] == 146.0
    # cpu=16: 4 × m6i.xlarge ($0.80/h) or 2 × m6i.2xlarge ($0.80/h); the tie goes to more nodes: 4 × 730 × $0.2.
    assert pool["maximum"] == 584.0
    assert one(result, "EBS root volumes, pool general")["idle_floor"] == 4.0       # 1 × 50 GB × $0.08

    quiet = run(base() + general_pool() + [deployment("web", "1", "1Gi", replicas=1)])
    assert one(quiet, "Karpenter pool general")["idle_floor"] == 0.0


def test_gpu_pool_floor_is_zero_and_maximum_follows_its_limits():
    two = one(run(base() + gpu_pool(nodes=2)), "Karpenter pool gpu")
    three = one(run(base() + gpu_pool(nodes=3)), "Karpenter pool gpu")
    assert two["idle_floor"] == three["idle_floor"] == 0.0
    assert (two["maximum"], three["maximum"]) == (2190.0, 3285.0)
    # Whichever limit binds first: nodes (2 of 8 GPUs' worth), or GPUs (3 of 8 nodes' worth, one GPU each).
    assert one(run(base() + gpu_pool(nodes=2, gpus=8)), "Karpenter pool gpu")["maximum"] == 2190.0
    assert one(run(base() + gpu_pool(nodes=8, gpus=3)), "Karpenter pool gpu")["maximum"] == 3285.0
    cheaper = one(run(base() + gpu_pool(types=("g5.xlarge",))), "Karpenter pool gpu")
    assert cheaper["maximum"] == 1460.0                                             # 2 × 730 × $1.00


def test_spot_floor_uses_the_spot_price_when_the_table_has_one():
    bound = deployment("serve", "1", "1Gi")
    bound["inputs"]["spec"]["template"]["spec"].update({
        "nodeSelector": {"mlplatform.io/gpu-pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
    bound["inputs"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    without = run(base() + gpu_pool() + [bound])
    pool = one(without, "Karpenter pool gpu")
    assert pool["idle_floor"] == 730.0                                              # 1 × g5.xlarge at on-demand
    assert any("priced at the on-demand rate" in a for a in without["assumptions"])
    table = copy.deepcopy(TABLE)
    table["regions"]["us-east-1"]["ec2_spot"] = {"g5.xlarge": entry(0.4), "g5.2xlarge": entry(0.5)}
    spot = one(run(base() + gpu_pool() + [bound], table), "Karpenter pool gpu")
    assert spot["idle_floor"] == 292.0 and spot["maximum"] == 2190.0                # maximum stays on-demand


# --- each kind of line appears with its resource and moves with its input ------------------------------------------

def test_eks_extended_support_only_past_the_date_with_the_extended_policy():
    assert one(run(base(version="1.34", support="EXTENDED")), "EKS control plane")["maximum"] == 438.0
    assert one(run(base(version="1.34", support="STANDARD")), "EKS control plane")["maximum"] == 73.0
    assert one(run(base(version="1.35", support="EXTENDED")), "EKS control plane")["maximum"] == 73.0


def test_node_group_follows_desired_and_max_size_and_prices_the_first_type():
    a = one(run(base(desired=2, max=3)), "System node group")
    b = one(run(base(desired=3, max=6)), "System node group")
    c = one(run(base(types=["m6a.large", "m6i.large"])), "System node group")
    assert (a["idle_floor"], a["maximum"]) == (146.0, 219.0)
    assert (b["idle_floor"], b["maximum"]) == (219.0, 438.0)
    assert c["unit_price"] == 0.09 and "m6a.large" in c["note"]


def test_more_nat_gateways_cost_more():
    two = base() + [res("aws:ec2/natGateway:NatGateway", "nat-b", {}), res("aws:ec2/eip:Eip", "nat-b", {})]
    assert run(base())["total"]["idle_floor"] + 36.5 + 3.65 == pytest.approx(run(two)["total"]["idle_floor"])
    assert len(lines(run(two), "NAT gateway")) == 2
    data = one(run(base(), usage=Usage(nat_gb=1000)), "NAT data processing")
    assert data["maximum"] == 50.0


def rds(cls="db.t4g.medium", multi=False, storage=20, ceiling=100, retention=7):
    return res("aws:rds/instance:Instance", "db", {
        "engine": "postgres", "instanceClass": cls, "multiAz": multi, "allocatedStorage": storage,
        "maxAllocatedStorage": ceiling, "storageType": "gp3", "backupRetentionPeriod": retention,
        "enabledCloudwatchLogsExports": ["postgresql"]})


def test_rds_multi_az_doubles_the_instance_and_storage_lines():
    single, multi = run(base() + [rds()]), run(base() + [rds(multi=True)])
    assert one(single, "RDS postgres")["maximum"] == 51.1                           # 730 × $0.07
    assert one(multi, "RDS postgres")["maximum"] == 102.2
    assert one(single, "RDS storage")["idle_floor"] == 2.0                          # 20 GB × $0.10
    assert one(single, "RDS storage")["maximum"] == 10.0                            # autoscaling ceiling 100 GB
    assert one(multi, "RDS storage")["idle_floor"] == 4.0
    # 7 days × 2 % a day of 20 GB beyond the free allowance × $0.10
    assert one(single, "RDS backup")["idle_floor"] == pytest.approx(0.28)
    assert one(run(base() + [rds(retention=14)]), "RDS backup")["idle_floor"] == pytest.approx(0.56)
    assert one(single, "CloudWatch Logs: RDS")["maximum"] == 0.5


def msk(brokers=3, size=100):
    return res("aws:msk/cluster:Cluster", "kafka", {
        "numberOfBrokerNodes": brokers, "brokerNodeGroupInfo": {
            "instanceType": "kafka.m7g.large", "storageInfo": {"ebsStorageInfo": {"volumeSize": size}}},
        "loggingInfo": {"brokerLogs": {"cloudwatchLogs": {"enabled": True}}}})


def test_msk_brokers_and_storage_follow_the_broker_count():
    three, six = run(base() + [msk(3)]), run(base() + [msk(6)])
    assert one(three, "MSK brokers")["maximum"] == 438.0                            # 3 × 730 × $0.20
    assert one(six, "MSK brokers")["maximum"] == 876.0
    assert one(three, "MSK broker storage")["maximum"] == 30.0                      # 3 × 100 GB × $0.10
    assert one(run(base() + [msk(3, 200)]), "MSK broker storage")["maximum"] == 60.0
    assert one(three, "CloudWatch Logs: MSK")["maximum"] == 1.0                     # 2 GB × $0.50


def statefulset(size="20Gi", replicas=1):
    return res("kubernetes:apps/v1:StatefulSet", "db", {
        "metadata": {"name": "db", "namespace": "apps"}, "spec": {
            "replicas": replicas, "template": {"spec": {"containers": [{"name": "c"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"resources": {"requests": {"storage": size}}}}]}})


def test_ebs_claims_follow_size_and_replicas():
    assert one(run(base() + [statefulset()]), "EBS volumes, StatefulSet")["maximum"] == 1.6
    assert one(run(base() + [statefulset("40Gi")]), "EBS volumes, StatefulSet")["maximum"] == 3.2
    assert one(run(base() + [statefulset(replicas=3)]), "EBS volumes, StatefulSet")["maximum"] == 4.8
    pvc = res("kubernetes:core/v1:PersistentVolumeClaim", "scratch", {
        "metadata": {"name": "scratch"}, "spec": {"resources": {"requests": {"storage": "10Gi"}}}})
    assert one(run(base() + [pvc]), "EBS volumes, claim scratch")["maximum"] == 0.8


def service(type_="LoadBalancer"):
    return res("kubernetes:core/v1:Service", "svc", {
        "metadata": {"name": "svc", "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
        "spec": {"type": type_, "ports": [{"port": 80}]}})


def test_load_balancer_line_only_for_a_load_balancer_service():
    assert one(run(base() + [service()]), "Load balancer")["maximum"] == 14.6      # 730 × $0.02
    assert lines(run(base() + [service("ClusterIP")]), "Load balancer") == []


def test_log_lines_follow_what_sends_logs():
    cluster_logs = base()
    cluster_logs[1]["inputs"]["enabledClusterLogTypes"] = ["api", "audit"]
    assert one(run(cluster_logs), "CloudWatch Logs: EKS")["maximum"] == 5.0         # 10 GB × $0.50
    assert lines(run(base()), "CloudWatch Logs") == []
    flow = res("aws:ec2/flowLog:FlowLog", "flow", {"logDestinationType": "cloud-watch-logs", "trafficType": "ALL"})
    assert one(run(base() + [flow], usage=Usage(flow_log_gb=40)), "CloudWatch Logs: VPC")["maximum"] == 20.0


def test_s3_kms_endpoint_and_transit_lines():
    buckets = [res("aws:s3/bucket:Bucket", n, {}) for n in ("raw", "curated")]
    assert one(run(base() + buckets, usage=Usage(s3_gb=500)), "S3 Standard")["maximum"] == 10.0
    assert lines(run(base()), "S3") == []
    assert len(lines(run(base() + [res("aws:kms/key:Key", "key2", {})]), "KMS key")) == 2
    gateway = res("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway", "serviceName": "s3"})
    assert one(run(base() + [gateway]), "VPC endpoint s3")["maximum"] == 0.0
    interface = res("aws:ec2/vpcEndpoint:VpcEndpoint", "sts", {
        "vpcEndpointType": "Interface", "serviceName": "sts", "subnetIds": ["a", "b", "c"]})
    assert one(run(base() + [interface]), "VPC endpoint sts (Interface)")["maximum"] == 21.9   # 3 × 730 × $0.01
    tgw = res("aws:ec2transitgateway/vpcAttachment:VpcAttachment", "tgw", {"transitGatewayId": "tgw-1"})
    assert one(run(base() + [tgw]), "Transit Gateway VPC")["maximum"] == 36.5
    assert one(run(base() + [tgw]), "Transit Gateway data")["maximum"] == 0.4       # 20 GB × $0.02


def test_region_fallback_is_used_and_said():
    result = run(base(region="us-west-2"))
    assert one(result, "NAT gateway")["unit_price"] == 0.06                          # us-west-2's own
    assert one(result, "EKS control plane")["unit_price"] == 0.1                     # us-east-1's, said so
    assert any("No us-west-2 figure" in a and "eks cluster" in a for a in result["assumptions"])


# --- what cannot be priced fails clearly ---------------------------------------------------------------------------

def test_unknown_instance_type_fails_naming_it_and_make_prices():
    with pytest.raises(CostError, match=r"'m9z\.large'.*make prices"):
        run(base(types=["m9z.large"]))
    with pytest.raises(CostError, match=r"'g7\.xlarge'.*make prices"):
        run(base() + gpu_pool(types=("g5.xlarge", "g7.xlarge")))


def test_unsourced_price_counts_as_zero_in_a_lower_bound_and_fails_when_strict():
    result = run(base() + [rds("db.r7g.large")])
    line = one(result, "RDS postgres")
    assert line["maximum"] == 0.0 and line["note"].startswith("UNPRICED")
    assert result["unpriced"] and result["assumptions"][0].startswith("UNPRICED")
    assert result["total"]["lower_bound"] is True and run(base())["total"]["lower_bound"] is False
    assert "at least" in cost.render(result)
    with pytest.raises(CostError, match=r"db\.r7g\.large.*no sourced price"):
        run(base() + [rds("db.r7g.large")], strict=True)


def test_a_pool_without_limits_cannot_be_priced():
    pool = gpu_pool()
    pool[0]["inputs"]["spec"]["limits"] = {}
    with pytest.raises(CostError, match="unbounded"):
        run(base() + pool)


# --- the real stacks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_is_priced_from_the_table(stack):
    plan, table = stack_plan(stack), PriceTable.load()
    result = estimate(plan, table, today=TODAY)
    # Only what the table itself marks unsourced may be missing from an estimate.
    unsourced = {k for region in table.data["regions"].values() for service in region.values()
                 if isinstance(service, dict) for k, v in service.items() if v.get("usd") is None}
    assert all(any(f"'{k}'" in p for k in unsourced) for p in result.get("unpriced", []))
    assert result["total"]["lower_bound"] == bool(result.get("unpriced"))
    assert result["stack"] == stack and result["prices_date"] == table.date
    assert result["total"]["idle_floor"] == pytest.approx(sum(x["idle_floor"] for x in result["lines"]))
    assert result["total"]["maximum"] == pytest.approx(sum(x["maximum"] for x in result["lines"]))
    assert 0 < result["total"]["idle_floor"] < result["total"]["maximum"]
    items = {x["item"].split(" ")[0] for x in result["lines"]}
    assert {"EKS", "System", "Karpenter", "NAT", "KMS", "S3"} <= items
    # Doubling every EC2 price doubles the node lines: the figures come from the table.
    doubled = copy.deepcopy(table.data)
    for region in doubled["regions"].values():
        for e in (region.get("ec2") or {}).values():
            e["usd"] = e["usd"] * 2 if e["usd"] is not None else None
    again = estimate(plan, PriceTable(doubled), today=TODAY)
    before = {x["item"]: x for x in result["lines"]}
    for x in again["lines"]:
        if x["item"].startswith(("System node group", "Karpenter pool")):
            assert x["maximum"] == pytest.approx(2 * before[x["item"]]["maximum"], abs=0.02)


def test_cli_json_has_the_agreed_shape(capsys):
    assert cost.main(["--stack", "dev", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"stack", "region", "currency", "prices_date", "hours_per_month", "lines", "assumptions",
                        "total"}
    assert set(out["total"]) == {"idle_floor", "maximum", "lower_bound"}
    assert cost.main(["--stack", "dev"]) == 0
    assert "assumptions:" in capsys.readouterr().out


# --- the price table -----------------------------------------------------------------------------------------------

def test_price_table_names_a_source_for_every_price():
    data = json.loads(cost.PRICES_PATH.read_text())
    datetime.date.fromisoformat(data["date"])
    for region, services in data["regions"].items():
        for service, entries in services.items():
            if not isinstance(entries, dict):
                continue
            for key, e in entries.items():
                assert e["src"] in data["sources"], (region, service, key)
                if e["usd"] is None:
                    assert e["src"] == "unsourced" and e.get("note"), (region, service, key)
                else:
                    assert data["sources"][e["src"]]["url"], (region, service, key)


def test_price_table_lists_every_instance_type_the_stacks_can_use():
    table = PriceTable.load()
    used = set(GENERAL_INSTANCE_TYPES)
    for stack in STACKS:
        plan = stack_plan(stack)
        for r in plan.of_type("aws:eks/nodeGroup:NodeGroup"):
            used |= set(r["inputs"]["instanceTypes"])
        for r in plan.of_type("kubernetes:karpenter.sh/v1:NodePool"):
            used |= set(cost._requirement(r["inputs"]["spec"]["template"]["spec"], cost.INSTANCE_TYPE) or [])
        region = cost._region(plan)
        missing = [t for t in used if table.lookup(region, "ec2", t) is None]
        assert not missing, (stack, missing)


# --- make prices -----------------------------------------------------------------------------------------------------

def product(instance_type: str, region_code: str, usd: str, usagetype: str = "BoxUsage:x") -> str:
    """One PriceList entry as the Price List API returns it: a JSON string (aws_v1 format)."""
    sku = "SKU" + instance_type.replace(".", "")
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
            "instanceType": instance_type, "regionCode": region_code, "operatingSystem": "Linux",
            "tenancy": "Shared", "capacitystatus": "Used", "preInstalledSw": "NA", "usagetype": usagetype}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "sku": sku, "offerTermCode": "JRTCKXETXF", "effectiveDate": "2026-11-01T00:00:00Z", "termAttributes": {},
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "beginRange": "0", "endRange": "Inf", "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                "description": f"${usd} per On Demand Linux {instance_type} Instance Hour", "appliesTo": [],
                "pricePerUnit": {"USD": usd}}}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})


def clients():
    kw = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    return boto3.client("pricing", region_name="us-east-1", **kw), boto3.client("ec2", region_name="us-west-2", **kw)


def ec2_filters(instance_type: str, region: str) -> list[dict]:
    fields = [("regionCode", region), ("instanceType", instance_type), ("operatingSystem", "Linux"),
              ("tenancy", "Shared"), ("capacitystatus", "Used"), ("preInstalledSw", "NA"),
              ("licenseModel", "No License required"), ("marketoption", "OnDemand")]
    return [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in fields]


def test_refresh_parses_price_list_and_spot_history():
    pricing, ec2 = clients()
    with Stubber(pricing) as p, Stubber(ec2) as e:
        p.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
            product("g5.xlarge", "us-west-2", "1.0060000000", "USW2-BoxUsage:g5.xlarge")]},
            {"ServiceCode": "AmazonEC2", "Filters": ec2_filters("g5.xlarge", "us-west-2"), "FormatVersion": "aws_v1"})
        e.add_response("describe_spot_price_history", {"SpotPriceHistory": [
            {"AvailabilityZone": "us-west-2a", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
             "SpotPrice": "0.4100", "Timestamp": datetime.datetime(2026, 12, 7, 1, tzinfo=datetime.timezone.utc)},
            {"AvailabilityZone": "us-west-2b", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
             "SpotPrice": "0.3900", "Timestamp": datetime.datetime(2026, 12, 7, 2, tzinfo=datetime.timezone.utc)},
            {"AvailabilityZone": "us-west-2a", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
             "SpotPrice": "0.3500", "Timestamp": datetime.datetime(2026, 12, 7, 3, tzinfo=datetime.timezone.utc)}]})
        new = prices_refresh.refresh(copy.deepcopy(TABLE), ["us-west-2"], pricing, lambda region: ec2, TODAY,
                                     items=[("us-west-2", "ec2", "g5.xlarge")])
        p.assert_no_pending_responses()
    assert new["date"] == "2026-12-07"
    assert new["regions"]["us-west-2"]["ec2"]["g5.xlarge"] == {"usd": 1.006, "unit": "instance-hour",
                                                               "src": "aws-price-list-api"}
    # The latest price per zone (2a: 0.35, 2b: 0.39), the highest zone recorded.
    assert new["regions"]["us-west-2"]["ec2_spot"]["g5.xlarge"]["usd"] == 0.39
    assert new["sources"]["aws-price-list-api"]["as_of"] == "2026-12-07"
    assert TABLE["regions"]["us-west-2"].get("ec2") is None                          # the input is not changed


def test_refresh_keeps_only_the_usage_type_asked_for():
    pricing, _ = clients()
    with Stubber(pricing) as p:
        p.add_response("get_products", {"PriceList": [
            product("NA", "us-east-1", "0.0450000000", "NatGateway-Hours"),
            product("NA", "us-east-1", "0.0450000000", "NatGateway-Bytes").replace("0.045", "0.046")]})
        new = prices_refresh.refresh(copy.deepcopy(TABLE), ["us-east-1"], pricing, None, TODAY,
                                     items=[("us-east-1", "nat", "hour")])
    assert new["regions"]["us-east-1"]["nat"]["hour"]["usd"] == 0.045


def test_refresh_refuses_ambiguous_or_missing_prices_and_writes_nothing():
    pricing, _ = clients()
    with Stubber(pricing) as p:
        p.add_response("get_products", {"PriceList": [product("m6i.large", "us-east-1", "0.096"),
                                                      product("m6i.large", "us-east-1", "0.100")]})
        p.add_response("get_products", {"PriceList": []})
        with pytest.raises(prices_refresh.RefreshError,
                           match=r"(?s)several prices 0\.096, 0\.1.*m6a\.large.*no price"):
            prices_refresh.refresh(copy.deepcopy(TABLE), ["us-east-1"], pricing, lambda r: None, TODAY,
                                   items=[("us-east-1", "ec2", "m6i.large"), ("us-east-1", "ec2", "m6a.large")])


def test_refresh_asks_for_every_price_in_every_stack_region():
    table = json.loads(cost.PRICES_PATH.read_text())
    regions = prices_refresh.stack_regions()
    assert regions == ["us-east-1", "us-west-2"]
    items = prices_refresh.wanted(table, regions)
    assert ("us-west-2", "ec2", "g5.xlarge") in items and ("us-east-1", "rds", "db.r7g.large") in items
    assert all(prices_refresh.query_for(service, key) for _, service, key in items)


def test_make_prices_without_credentials_fails_clearly(monkeypatch, tmp_path, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    table = tmp_path / "prices.json"
    table.write_text(json.dumps(TABLE))
    assert prices_refresh.main(["--prices", str(table)]) == 2
    assert "no AWS credentials" in capsys.readouterr().err
    assert json.loads(table.read_text()) == TABLE
