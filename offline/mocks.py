"""Mock cloud responses: the outputs AWS would compute for the resources the program declares.

Only outputs the program actually reads need to be realistic (ARNs, names, the EKS endpoint). IDs are derived from
type and name so that a run is reproducible and a plan can be diffed between revisions.
"""

from __future__ import annotations

import base64
import datetime
import hashlib

import pulumi

ACCOUNT_ID = "123456789012"
# Who runs `pulumi up` offline: an assumed-role session, as in CI with OIDC credentials.
DEFAULT_CALLER = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/pulumi-deploy/offline"

# Prefixes AWS uses for the IDs of these resources, so references in the plan read like the real thing.
_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2/flowLog:FlowLog": "fl",
}


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def mock_id(type_: str, name: str) -> str:
    prefix = _ID_PREFIXES.get(type_)
    return f"{prefix}-{_digest(type_, name)}" if prefix else f"{name}-{_digest(type_, name, length=8)}"


# Every certificate the offline run "issues" starts here, so plans are reproducible.
TLS_VALIDITY_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _pem(label: str, *parts: str) -> str:
    """A PEM block with the right armour and placeholder content (the provider that would mint it is not here)."""
    body = base64.b64encode(f"offline {label} {'/'.join(parts)}".encode()).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _tls(type_: str, name: str, inputs: dict) -> dict:
    """pulumi_tls outputs (keys, requests, certificates); the SDK itself marks the private keys secret."""
    if type_ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": _pem("RSA PRIVATE KEY", name), "privateKeyPemPkcs8": _pem("PRIVATE KEY", name),
                "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", name), "publicKeyPem": _pem("PUBLIC KEY", name),
                "publicKeyOpenssh": f"ssh-offline {_digest(name)}", "publicKeyFingerprintSha256": _digest(name, 'fp')}
    if type_ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _pem("CERTIFICATE REQUEST", name)}
    if type_ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        end = TLS_VALIDITY_START + datetime.timedelta(hours=int(inputs.get("validityPeriodHours", 0)))
        return {"certPem": _pem("CERTIFICATE", name), "readyForRenewal": False,
                "validityStartTime": TLS_VALIDITY_START.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {}


def issuer_arn(arn: str) -> str:
    """What IAM's session context reports for a caller: an assumed role's session -> the role (no path is known
    offline); a user or role ARN -> itself."""
    if ":assumed-role/" not in arn:
        return arn
    head, role = arn.split(":assumed-role/", 1)
    return f"{head.replace(':sts::', ':iam::')}:role/{role.split('/')[0]}"


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes as AWS and Kubernetes would, deterministically."""

    def __init__(self, region: str, caller_arn: str = DEFAULT_CALLER):
        self.region = region
        self.caller_arn = caller_arn

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        rid = mock_id(args.typ, args.name)
        computed = self._computed(args.typ, args.name, rid, args.inputs)
        rid = computed.pop("id", rid)
        return rid, {**args.inputs, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": self.caller_arn, "userId": "OFFLINE"}
        if args.token == "aws:iam/getSessionContext:getSessionContext":
            return {"arn": args.args["arn"], "issuerArn": issuer_arn(args.args["arn"])}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        raise NotImplementedError(f"the offline run has no mock for invoke {args.token}")

    def _computed(self, type_: str, name: str, rid: str, inputs: dict) -> dict:
        region, acct = self.region, ACCOUNT_ID
        if type_ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}{_digest(name, length=12)}"
            return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "id": bucket}
        if type_ == "random:index/randomPassword:RandomPassword":
            return {"result": f"offline-{_digest(name, length=24)}"}
        if type_ == "random:index/randomString:RandomString":
            return {"result": _digest(name, length=int(inputs.get("length", 8)))}
        if type_ == "aws:iam/role:Role":
            role = inputs.get("name") or f"{name}-{_digest(name, length=7)}"
            return {"name": role, "arn": f"arn:aws:iam::{acct}:role/{role}", "uniqueId": f"AROA{_digest(name)}"}
        if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            url = inputs.get("url", "").removeprefix("https://")
            return {"arn": f"arn:aws:iam::{acct}:oidc-provider/{url}"}
        if type_ == "aws:kms/key:Key":
            return {"arn": f"arn:aws:kms:{region}:{acct}:key/{rid}", "keyId": rid}
        if type_ == "aws:eks/cluster:Cluster":
            cluster = inputs.get("name", name)
            oidc_id = _digest(cluster, length=32).upper()
            return {
                "arn": f"arn:aws:eks:{region}:{acct}:cluster/{cluster}",
                "endpoint": f"https://{oidc_id}.gr7.{region}.eks.amazonaws.com",
                "certificateAuthority": {"data": base64.b64encode(b"offline-ca-certificate").decode()},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{oidc_id}"}]}],
                "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": mock_id(
                    "aws:ec2/securityGroup:SecurityGroup", f"{cluster}-cluster")},
                "status": "ACTIVE",
            }
        if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1, "arn": f"arn:aws:ec2:{region}:{acct}:launch-template/{rid}"}
        if type_ == "aws:eks/nodeGroup:NodeGroup":
            return {"nodeGroupName": inputs.get("nodeGroupName", f"{name}-{_digest(name, length=8)}"),
                    "arn": f"arn:aws:eks:{region}:{acct}:nodegroup/{inputs.get('clusterName')}/{name}/{rid}"}
        if type_ == "aws:sqs/queue:Queue":
            queue = inputs.get("name", name)
            return {"arn": f"arn:aws:sqs:{region}:{acct}:{queue}", "url": f"https://sqs.{region}.amazonaws.com/{acct}/{queue}"}
        if type_ == "aws:rds/instance:Instance":
            ident = inputs.get("identifier", name)
            address = f"{ident}.c{_digest(ident, length=12)}.{region}.rds.amazonaws.com"
            return {"address": address, "port": 5432, "endpoint": f"{address}:5432",
                    "arn": f"arn:aws:rds:{region}:{acct}:db:{ident}"}
        if type_ == "aws:msk/cluster:Cluster":
            cluster, uuid = inputs.get("clusterName", name), f"{_digest(name, length=8)}-{_digest(name, 'u', length=4)}"
            brokers = ",".join(f"b-{i}.{cluster}.{_digest(cluster, length=6)}.c2.kafka.{region}.amazonaws.com:9098"
                               for i in range(1, int(inputs.get("numberOfBrokerNodes", 3)) + 1))
            return {"arn": f"arn:aws:kafka:{region}:{acct}:cluster/{cluster}/{uuid}-2", "clusterUuid": f"{uuid}-2",
                    "bootstrapBrokersSaslIam": brokers}
        if type_ == "aws:msk/configuration:Configuration":
            return {"arn": f"arn:aws:kafka:{region}:{acct}:configuration/{inputs.get('name', name)}/{rid}",
                    "latestRevision": 1}
        if type_ == "aws:cloudwatch/logGroup:LogGroup":
            return {"arn": f"arn:aws:logs:{region}:{acct}:log-group:{inputs.get('name', name)}"}
        if type_.startswith("tls:"):
            return _tls(type_, name, inputs)
        if type_.startswith("aws:") and "arn" not in inputs:
            service = type_.split(":")[1].split("/")[0]
            return {"arn": f"arn:aws:{service}:{region}:{acct}:{name}/{rid}"}
        return {}
