"""The machine running `pulumi up` can reach the API server it configures (offline/reachability.py)."""

from __future__ import annotations

import copy

from offline.harness import Plan
from offline.reachability import deployer_networks, problems
from tests.conftest import stack_plan


def test_every_stack_can_reach_its_api_server(plan):
    assert problems(plan) == []


def test_private_stacks_admit_exactly_the_configured_deployer_networks():
    for stack in ("staging", "prod"):
        assert [str(n) for n in deployer_networks(stack_plan(stack))] == ["10.100.8.0/24"]


def _without(plan: Plan, type_: str) -> Plan:
    resources = copy.deepcopy([r for r in plan.resources if r["type"] != type_])
    return Plan(stack=plan.stack, project=plan.project, resources=resources, outputs=plan.outputs)


def test_a_private_endpoint_without_a_deployer_rule_is_reported():
    # The shape staging and prod had before (review findings B2/F02): private endpoint, no path in.
    found = problems(_without(stack_plan("staging"), "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"))
    assert len(found) == 1 and found[0].startswith("private endpoint, and no security group")


def test_a_deployer_network_with_no_route_back_is_reported_per_zone():
    plan = stack_plan("prod")
    resources = [r for r in copy.deepcopy(plan.resources)
                 if not (r["type"] == "aws:ec2/route:Route" and r["inputs"]["destinationCidrBlock"] == "10.100.0.0/16")]
    found = problems(Plan(stack="prod", project=plan.project, resources=resources, outputs=plan.outputs))
    assert sorted(found) == [f"10.100.8.0/24: the control plane's subnet in us-east-1{z} has no route back to it "
                             "(replies would leave through the NAT gateway and never arrive)" for z in "abc"]


def test_inline_routes_beside_route_resources_are_reported():
    plan = stack_plan("staging")
    resources = copy.deepcopy(plan.resources)
    table = next(r for r in resources if r["type"] == "aws:ec2/routeTable:RouteTable" and "private" in r["name"])
    table["inputs"]["routes"] = [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "nat-1"}]
    found = problems(Plan(stack="staging", project=plan.project, resources=resources, outputs=plan.outputs))
    assert found == [f"route table {table['name']} has inline routes and route resources; they overwrite each other, "
                     "so the route back to the deployer networks can vanish"]
