"""The reachability referee: can the machine running `pulumi up` reach the Kubernetes API server it configures?

Everything Kubernetes in a stack (Helm releases, objects) is created by talking to the API server from wherever
Pulumi runs. With a public endpoint, that is the internet path limited to `publicAccessCidrs`. With a private-only
endpoint, the API server answers only on network interfaces in the cluster's subnets, and the VPC is created by the
same stack, so the path must be declared in the plan itself:
1. a security group on the control plane (`vpcConfig.securityGroupIds`) admits the deployer network on 443;
2. a network outside the VPC has a way in and back: the cluster's subnets route it to a Transit Gateway that this
   VPC is attached to, with an attachment subnet in each of the cluster's zones;
3. the Kubernetes provider is used only after those rules and routes exist (they are among its dependencies).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from offline.harness import Plan
from offline.ordering import ancestors

Network = ipaddress.IPv4Network
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def _covers_443(rule: dict[str, Any]) -> bool:
    i = rule["inputs"]
    if i.get("ipProtocol") == "-1":
        return True
    return i.get("ipProtocol") == "tcp" and i.get("fromPort", 0) <= 443 <= i.get("toPort", -1)


def deployer_networks(plan: Plan) -> list[Network]:
    cluster = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]
    groups = set(cluster["vpcConfig"].get("securityGroupIds", []))
    return [Network(r["inputs"]["cidrIpv4"]) for r in plan.of_type(INGRESS_RULE)
            if r["inputs"].get("securityGroupId") in groups and _covers_443(r) and r["inputs"].get("cidrIpv4")]


def problems(plan: Plan) -> list[str]:
    cluster = plan.one("aws:eks/cluster:Cluster", "eks")
    vpc_config = cluster["inputs"]["vpcConfig"]
    if vpc_config.get("endpointPublicAccess"):
        cidrs = vpc_config.get("publicAccessCidrs") or []
        if not cidrs:
            return ["public endpoint open to every address: list publicAccessCidrs"]
        return []
    found: list[str] = []
    deployers = deployer_networks(plan)
    if not deployers:
        return ["private endpoint, and no security group on the control plane admits any network on 443: nothing "
                "outside the cluster's own nodes can reach the API server, so every Kubernetes resource times out"]
    (vpc,) = plan.of_type("aws:ec2/vpc:Vpc")
    vpc_cidr = Network(vpc["inputs"]["cidrBlock"])
    subnets = {s["id"]: s for s in plan.of_type("aws:ec2/subnet:Subnet")}
    table_of = {a["inputs"]["subnetId"]: a["inputs"]["routeTableId"]
                for a in plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    routes = plan.of_type("aws:ec2/route:Route")
    attachments = [a for a in plan.of_type("aws:ec2transitgateway/vpcAttachment:VpcAttachment")
                   if a["inputs"].get("vpcId") == vpc["id"]]
    # Inline routes on a table that also has route resources overwrite them (one of the two wins on every update).
    for table in plan.of_type("aws:ec2/routeTable:RouteTable"):
        if table["inputs"].get("routes") and any(r["inputs"]["routeTableId"] == table["id"] for r in routes):
            found.append(f"route table {table['name']} has inline routes and route resources; they overwrite "
                         "each other, so the route back to the deployer networks can vanish")
    provider = plan.one("pulumi:providers:kubernetes", "eks-k8s")
    before_provider = ancestors(plan)[provider["urn"]]
    for network in deployers:
        if network.subnet_of(vpc_cidr):
            continue  # inside the VPC: local routing (a runner there exists only after a first deploy)
        for subnet_id in vpc_config["subnetIds"]:
            zone = subnets[subnet_id]["inputs"]["availabilityZone"] if subnet_id in subnets else "?"
            back = [r for r in routes if r["inputs"]["routeTableId"] == table_of.get(subnet_id)
                    and network.subnet_of(Network(r["inputs"]["destinationCidrBlock"]))
                    and r["inputs"].get("transitGatewayId")]
            if not back:
                found.append(f"{network}: the control plane's subnet in {zone} has no route back to it (replies "
                             "would leave through the NAT gateway and never arrive)")
                continue
            tgw = back[0]["inputs"]["transitGatewayId"]
            zones = {subnets[s]["inputs"]["availabilityZone"] for a in attachments
                     if a["inputs"].get("transitGatewayId") == tgw for s in a["inputs"]["subnetIds"] if s in subnets}
            if zone not in zones:
                found.append(f"{network}: routed to {tgw}, but the VPC has no attachment to it in {zone}")
            if back[0]["urn"] not in before_provider:
                found.append(f"{network}: the Kubernetes provider does not wait for the route in {zone}")
    rules = [r for r in plan.of_type(INGRESS_RULE)
             if r["inputs"].get("securityGroupId") in set(vpc_config.get("securityGroupIds", []))]
    for rule in rules:
        if rule["urn"] not in before_provider:
            found.append(f"{rule['inputs'].get('cidrIpv4')}: the Kubernetes provider does not wait for the "
                         "security-group rule that admits it")
    return found
