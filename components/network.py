"""VPC with private subnets for nodes, public subnets only for NAT and load balancers, and an S3 gateway endpoint."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import policy_document, scoped_service_trust_policy
from platform_config import NetworkConfig


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    """Tags subnets for Kubernetes load balancers and Karpenter discovery (`karpenter.sh/discovery`)."""
    region: str
    account_id: pulumi.Input[str] = ""
    """Flow logs may assume their role only for this account's flow logs (confused-deputy protection)."""


def subnet_layout(cidr: ipaddress.IPv4Network, zones: int) -> tuple[list[str], list[str]]:
    """Private subnets get most of the space (VPC CNI gives every pod a VPC address); public ones stay small.

    Private subnets are eighths of the VPC (a /16 gives /19s: 8k pod addresses each), up to 6 of them in the first
    three quarters; the last quarter is cut into eighths for public subnets (/21s in a /16).
    """
    private = list(cidr.subnets(prefixlen_diff=3))[:zones]
    public_space = list(cidr.subnets(prefixlen_diff=2))[3]
    public = list(public_space.subnets(prefixlen_diff=3))[:zones]
    return [str(n) for n in private], [str(n) for n in public]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    transit_routes: list[aws.ec2.Route]
    """Routes from the private subnets to `transitGateway.cidrs`: the way back to where `pulumi up` runs."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:network:Network", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=str(cfg.cidr), enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": f"{args.cluster_name}"}, opts=child)
        # CIS 5.4: the default security group must allow nothing; declaring it with no rules strips AWS's defaults.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags={"Name": f"{args.cluster_name}-default-deny"}, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": args.cluster_name}, opts=child)

        private_cidrs, public_cidrs = subnet_layout(cfg.cidr, len(cfg.availability_zones))
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                                       tags={"Name": f"{args.cluster_name}-public"}, opts=child)
        public_subnets, private_subnets, nats = [], [], []
        for zone, pub_cidr, priv_cidr in zip(cfg.availability_zones, public_cidrs, private_cidrs):
            suffix = zone[-1]
            pub = aws.ec2.Subnet(f"{name}-public-{suffix}", vpc_id=vpc.id, cidr_block=pub_cidr, availability_zone=zone,
                                 map_public_ip_on_launch=False,
                                 tags={"Name": f"{args.cluster_name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                                 opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{suffix}", subnet_id=pub.id, route_table_id=public_rt.id,
                                          opts=child)
            priv = aws.ec2.Subnet(f"{name}-private-{suffix}", vpc_id=vpc.id, cidr_block=priv_cidr,
                                  availability_zone=zone,
                                  tags={"Name": f"{args.cluster_name}-private-{zone}",
                                        "kubernetes.io/role/internal-elb": "1",
                                        "karpenter.sh/discovery": args.cluster_name}, opts=child)
            public_subnets.append(pub)
            private_subnets.append(priv)
            if cfg.nat_gateways == "perAz" or not nats:
                eip = aws.ec2.Eip(f"{name}-nat-{suffix}", domain="vpc",
                                  tags={"Name": f"{args.cluster_name}-nat-{zone}"}, opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{suffix}", allocation_id=eip.id, subnet_id=pub.id,
                                               tags={"Name": f"{args.cluster_name}-{zone}"},
                                               opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))

        attachment = None
        if cfg.transit_gateway_id:
            # The VPC is created by this stack, so the networks that deploy it (CI runners, VPN) reach it through a
            # Transit Gateway that already exists; its own route tables (the hub's side) are not managed here.
            attachment = aws.ec2transitgateway.VpcAttachment(
                f"{name}-tgw", transit_gateway_id=cfg.transit_gateway_id, vpc_id=vpc.id,
                subnet_ids=[s.id for s in private_subnets], dns_support="enable",
                tags={"Name": f"{args.cluster_name}-tgw"}, opts=child)

        private_rts, self.transit_routes = [], []
        for i, (zone, priv) in enumerate(zip(cfg.availability_zones, private_subnets)):
            # With one NAT, every zone routes through it; with perAz, a zone's outage leaves the others' egress up.
            nat = nats[i] if cfg.nat_gateways == "perAz" else nats[0]
            # Routes are separate resources (not inline): a Transit Gateway route must wait for the attachment,
            # and inline routes on the same table would overwrite them.
            rt = aws.ec2.RouteTable(f"{name}-private-{zone[-1]}", vpc_id=vpc.id,
                                    tags={"Name": f"{args.cluster_name}-private-{zone}"}, opts=child)
            aws.ec2.Route(f"{name}-private-{zone[-1]}-egress", route_table_id=rt.id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child)
            for cidr in cfg.transit_gateway_cidrs:
                self.transit_routes.append(aws.ec2.Route(
                    f"{name}-private-{zone[-1]}-to-{cidr.replace('/', '-')}", route_table_id=rt.id,
                    destination_cidr_block=cidr, transit_gateway_id=attachment.transit_gateway_id,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment])))
            aws.ec2.RouteTableAssociation(f"{name}-private-{zone[-1]}", subnet_id=priv.id, route_table_id=rt.id,
                                          opts=child)
            private_rts.append(rt)

        # Lake traffic from nodes stays on the AWS network and skips NAT data-processing charges.
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_rts],
                            tags={"Name": f"{args.cluster_name}-s3"}, opts=child)

        if cfg.flow_logs:
            self._flow_logs(name, vpc, cfg.flow_log_retention_days, args.cluster_name, args.region, args.account_id)

        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "public_subnet_ids": self.public_subnet_ids})

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, retention_days: int, cluster_name: str, region: str,
                   account_id: pulumi.Input[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(f"{name}-flow-logs", name=f"/vpc/{cluster_name}/flow-logs",
                                        retention_in_days=retention_days, opts=child)
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=scoped_service_trust_policy(
            "vpc-flow-logs.amazonaws.com", account_id=account_id,
            source_arn=pulumi.Output.concat("arn:aws:ec2:", region, ":", account_id, ":vpc-flow-log/*")), opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=policy_document([{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
        }, {
            # Listed by the VPC guide as a minimum for flow-log delivery; it lists groups by prefix, so no resource.
            "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*",
        }]), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                        log_destination=group.arn, iam_role_arn=role.arn, max_aggregation_interval=60, opts=child)
