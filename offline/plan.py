"""`make plan STACK=<dev|staging|prod> [FORMAT=json]`: print everything a stack declares, with no engine or cloud.

The tree shows each resource under its parent with its key settings, then the capacity referee's verdict
(`offline/capacity.py`), the team-boundary referee's (`offline/team_boundaries.py`) and the network-policy
referee's (`offline/netpol.py`); JSON gives every recorded field. Both are sorted, so two revisions' plans can be diffed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from offline import capacity, netpol, team_boundaries
from offline.harness import STACKS, Plan, run_program, stack_config
from platform_config import ConfigError
from platform_config.load import load_config

# The few inputs per type that a reviewer wants to see at a glance (`label=path` renames one); JSON has all of them.
KEY_SETTINGS: dict[str, list[str]] = {
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["availabilityZone", "cidrBlock", "mapPublicIpOnLaunch"],
    "aws:ec2/natGateway:NatGateway": ["subnetId"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["serviceName", "vpcEndpointType"],
    "aws:ec2/flowLog:FlowLog": ["trafficType", "logDestinationType"],
    "aws:ec2/launchTemplate:LaunchTemplate": ["metadataOptions.httpTokens", "metadataOptions.httpPutResponseHopLimit",
                                              "blockDeviceMappings.0.ebs.encrypted"],
    "aws:kms/key:Key": ["enableKeyRotation", "deletionWindowInDays"],
    "aws:s3/bucket:Bucket": ["bucketPrefix", "forceDestroy"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": [
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm", "rules.0.bucketKeyEnabled"],
    "aws:s3/bucketVersioning:BucketVersioning": ["versioningConfiguration.status"],
    "aws:s3/bucketLogging:BucketLogging": ["targetPrefix"],
    "aws:eks/cluster:Cluster": ["name", "version", "accessConfig.authenticationMode",
                                "vpcConfig.endpointPrivateAccess", "vpcConfig.endpointPublicAccess",
                                "vpcConfig.publicAccessCidrs", "deletionProtection"],
    "aws:eks/nodeGroup:NodeGroup": ["amiType", "capacityType", "instanceTypes", "scalingConfig"],
    "aws:eks/addon:Addon": ["addonName", "addonVersion"],
    "aws:eks/accessEntry:AccessEntry": ["principalArn", "type"],
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ["namespace", "serviceAccount"],
    "aws:cloudwatch/logGroup:LogGroup": ["name", "retentionInDays"],
    "kubernetes:helm.sh/v3:Release": ["chart", "version", "namespace"],
    "kubernetes:karpenter.sh/v1:NodePool": ["metadata.name", "spec.limits",
                                            "instanceTypes=spec.template.spec.requirements.0.values",
                                            "capacityType=spec.template.spec.requirements.1.values"],
    "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass": ["spec.amiSelectorTerms.0.alias"],
    "kubernetes:storage.k8s.io/v1:StorageClass": ["metadata.name", "provisioner"],
    "kubernetes:core/v1:ServiceAccount": ["metadata.namespace", "metadata.name"],
}


def lookup(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def describe(resource: dict[str, Any]) -> str:
    settings = []
    for entry in KEY_SETTINGS.get(resource["type"], []):
        label, _, path = entry.rpartition("=")
        value = lookup(resource["inputs"], path)
        if value is not None:
            settings.append(f"{label or path.split('.')[-1]}={json.dumps(value, separators=(',', ':'))}")
    flags = [flag for flag, on in (("protected", resource["protect"]), ("retained", resource["retainOnDelete"])) if on]
    text = f"{resource['type']}  {resource['name']}"
    if settings:
        text += "  " + " ".join(settings)
    if flags:
        text += "  [" + ", ".join(flags) + "]"
    return text


def render_tree(plan: Plan) -> str:
    lines = [f"stack {plan.stack} (project {plan.project}): {len(plan.resources)} resources"]
    roots = [r for r in plan.resources if r["parent"] is None]

    def walk(resource: dict[str, Any], indent: str, last: bool) -> None:
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{describe(resource)}")
        kids = sorted(plan.children(resource["urn"]), key=lambda r: (r["custom"], r["type"], r["name"]))
        for i, kid in enumerate(kids):
            walk(kid, indent + ("   " if last else "│  "), i == len(kids) - 1)

    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    lines.append("")
    lines.append("outputs:")
    for name, value in plan.outputs.items():
        lines.append(f"  {name}: {json.dumps(value)}")
    lines.append("")
    lines.append("resources by type:")
    for type_, count in sorted(Counter(r["type"] for r in plan.resources).items()):
        lines.append(f"  {count:4d}  {type_}")
    lines.append("")
    try:
        lines.extend(capacity.render(capacity.referee(plan)))
    except Exception as exc:  # the plan is still worth printing when the referee meets a shape it does not know
        lines.append(f"capacity: not computed ({type(exc).__name__}: {exc})")
    try:
        values, _ = stack_config(plan.stack)
        lines.extend(team_boundaries.render(plan, load_config(values, plan.project, plan.stack)))
    except Exception as exc:  # as above
        lines.append(f"team boundaries: not judged ({type(exc).__name__}: {exc})")
    try:
        lines.extend(netpol.render(plan))
    except Exception as exc:  # as above: an unknown shape must not hide the plan
        lines.append(f"network policies: not judged ({type(exc).__name__}: {exc})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of {', '.join(STACKS)}")
    parser.add_argument("--format", choices=("tree", "json"), default="tree")
    args = parser.parse_args(argv)
    try:
        plan = run_program(args.stack)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(plan.as_json(), indent=2) if args.format == "json" else render_tree(plan)
    try:
        print(text)
    except BrokenPipeError:  # `make plan | head` is a normal way to read it
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
