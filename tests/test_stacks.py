"""Whole-graph tests: each stack's full plan, as `make plan` prints it, checked for the platform's guarantees."""

from __future__ import annotations

import json

import pytest

from components.iam import check_least_privilege
from offline.harness import run_program, stack_config
from platform_config.load import load_config
from platform_config.versions import EKS_ADDON_VERSIONS
from tests.conftest import stack_plan

EXPECTED = {  # per-environment shape, from the stack files
    "dev": {"zones": 2, "nats": 1, "flow_logs": 0, "public_api": True, "protect": False, "retain": False,
            "pools": {"gpu-small": 2}, "general": (16, "64Gi")},
    "staging": {"zones": 3, "nats": 1, "flow_logs": 1, "public_api": False, "protect": False, "retain": True,
                "pools": {"gpu-small": 4, "gpu-train": 1}, "general": (32, "128Gi")},
    "prod": {"zones": 3, "nats": 3, "flow_logs": 1, "public_api": False, "protect": True, "retain": True,
             "pools": {"inference": 6, "training": 2}, "general": (64, "256Gi")},
}


def test_every_aws_resource_uses_the_explicit_tagged_provider(plan):
    (provider,) = plan.of_type("pulumi:providers:aws")
    tags = json.loads(provider["inputs"]["defaultTags"])["tags"]  # provider config travels JSON-encoded
    assert tags["mlplatform.io/stack"] == plan.stack and tags["environment"] == plan.stack
    for r in plan.resources:
        if r["type"].startswith("aws:") and r["custom"]:
            assert r["provider"] == provider["urn"], r["urn"]


def test_every_kubernetes_resource_uses_the_cluster_provider(plan):
    (provider,) = plan.of_type("pulumi:providers:kubernetes")
    k8s = [r for r in plan.resources if r["type"].startswith("kubernetes:")]
    assert k8s and all(r["provider"] == provider["urn"] for r in k8s)
    assert provider["inputs"]["kubeconfig"] == "[secret]"


def test_every_resource_lives_in_a_component(plan):
    root = plan.one("pulumi:pulumi:Stack", f"ml-platform-{plan.stack}")["urn"]
    at_root = {r["type"] for r in plan.resources if r["parent"] == root and r["custom"]}
    assert at_root == {"pulumi:providers:aws"}
    components = {r["type"] for r in plan.resources if r["parent"] == root and not r["custom"]}
    assert all(t.startswith("mlplatform:") for t in components)


def test_environment_differences_come_from_config(plan):
    want = EXPECTED[plan.stack]
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    assert len({s["inputs"]["availabilityZone"] for s in subnets}) == want["zones"]
    assert len(plan.of_type("aws:ec2/natGateway:NatGateway")) == want["nats"]
    assert len(plan.of_type("aws:ec2/flowLog:FlowLog")) == want["flow_logs"]
    cluster = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]
    assert cluster["vpcConfig"]["endpointPublicAccess"] is want["public_api"]
    assert cluster["deletionProtection"] is (plan.stack == "prod")
    for bucket in plan.of_type("aws:s3/bucket:Bucket"):
        assert bucket["protect"] is want["protect"] and bucket["retainOnDelete"] is want["retain"]
        assert bucket["inputs"]["forceDestroy"] is (plan.stack == "dev")
    pools = {p["inputs"]["metadata"]["name"]: p["inputs"]["spec"]["limits"]
             for p in plan.of_type("kubernetes:karpenter.sh/v1:NodePool")}
    general = pools.pop("general")
    assert {name: int(limits["nodes"]) for name, limits in pools.items()} == want["pools"]
    assert (int(general["cpu"]), general["memory"]) == want["general"]


def test_prod_control_plane_is_private_and_dev_public_endpoint_is_limited():
    prod = stack_plan("prod").one("aws:eks/cluster:Cluster", "eks")["inputs"]["vpcConfig"]
    assert prod["endpointPublicAccess"] is False and prod["endpointPrivateAccess"] is True
    dev = stack_plan("dev").one("aws:eks/cluster:Cluster", "eks")["inputs"]["vpcConfig"]
    assert dev["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_addons_are_pinned_to_the_table_for_the_cluster_version(plan):
    version = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]["version"]
    addons = {a["inputs"]["addonName"]: a["inputs"]["addonVersion"] for a in plan.of_type("aws:eks/addon:Addon")}
    assert addons == EKS_ADDON_VERSIONS[version]
    assert {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"} <= set(addons)


def test_bring_up_order_is_encoded_in_dependencies(plan):
    urn = {(r["type"], r["name"]): r["urn"] for r in plan.resources}
    group = plan.one("aws:eks/nodeGroup:NodeGroup", "system-nodes")
    for addon in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert urn[("aws:eks/addon:Addon", f"addons-{addon}")] in group["dependsOn"]
    # Depending on a component means depending on its children, so the node group itself is listed.
    system = group["urn"]
    assert system in plan.one("aws:eks/addon:Addon", "addons-coredns")["dependsOn"]
    controller = plan.one("kubernetes:helm.sh/v3:Release", "karpenter")
    assert system in controller["dependsOn"]
    assert urn[("kubernetes:helm.sh/v3:Release", "karpenter-crd")] in controller["dependsOn"]
    for pool in plan.of_type("kubernetes:karpenter.sh/v1:NodePool"):
        assert controller["urn"] in pool["dependsOn"]


def test_gpu_pools_are_tainted_and_the_device_plugin_tolerates_them(plan):
    plugin = plan.one("kubernetes:helm.sh/v3:Release", "nvidia-device-plugin")["inputs"]
    tolerated = {(t["key"], t.get("effect")) for t in plugin["values"]["tolerations"]}
    for pool in plan.of_type("kubernetes:karpenter.sh/v1:NodePool"):
        template = pool["inputs"]["spec"]["template"]
        if pool["inputs"]["metadata"]["name"] == "general":
            assert "taints" not in template["spec"]  # the CPU pool takes any pod
            continue
        for taint in template["spec"]["taints"]:
            assert (taint["key"], taint["effect"]) in tolerated
        selector = plugin["values"]["nodeSelector"]
        assert all(template["metadata"]["labels"].get(k) == v for k, v in selector.items())


def test_helm_releases_are_pinned_and_not_on_gpu_nodes_unless_meant_to(plan):
    releases = plan.of_type("kubernetes:helm.sh/v3:Release")
    strimzi = {"kafka-operator"} if plan.stack != "prod" else set()
    assert {r["name"] for r in releases} == {"karpenter", "karpenter-crd", "nvidia-device-plugin", "metrics-server",
                                             "monitoring-stack", "monitoring-dcgm-exporter", "kueue", "opencost",
                                             *strimzi}
    assert all(r["inputs"]["version"] for r in releases)
    assert plan.one("kubernetes:helm.sh/v3:Release", "karpenter")["inputs"]["values"]["nodeSelector"] == {
        "mlplatform.io/pool": "system"}


def test_every_workload_identity_trust_names_its_own_service_account(plan):
    roles = {r["urn"].rsplit("::", 1)[-1]: json.loads(r["inputs"]["assumeRolePolicy"])
             for r in plan.of_type("aws:iam/role:Role")}
    associations = plan.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    # vpc-cni, ebs-csi, karpenter, mlflow and opencost; lake ingestion per team; training, serving and drift per model
    values, _ = stack_config(plan.stack)
    cfg = load_config(values, "ml-platform", plan.stack)
    assert len(associations) == 5 + len(cfg.teams) + 3 * len(cfg.models)
    for assoc in associations:
        condition = roles[assoc["name"]]["Statement"][0]["Condition"]["StringEquals"]
        assert condition["aws:RequestTag/kubernetes-namespace"] == assoc["inputs"]["namespace"]
        assert condition["aws:RequestTag/kubernetes-service-account"] == assoc["inputs"]["serviceAccount"]
        assert assoc["inputs"]["roleArn"].split("/")[-1].startswith(assoc["name"])


def test_no_inline_policy_grants_wildcards(plan):
    for r in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        check_least_privilege(json.loads(r["inputs"]["policy"])["Statement"], r["urn"])


def test_secrets_never_appear_in_plain_text(plan):
    assert plan.outputs["kubeconfig"] == "[secret]"
    text = json.dumps(plan.as_json())
    assert "certificate-authority-data" not in text and "get-token" not in text


def test_plan_is_deterministic():
    first = json.dumps(run_program("staging").as_json(), sort_keys=True)
    assert json.dumps(run_program("staging").as_json(), sort_keys=True) == first


def test_irsa_mode_swaps_pod_identity_for_oidc_trust():
    from offline.harness import stack_config
    config, secrets = stack_config("prod")
    config["ml-platform:workloadIdentity"] = "irsa"
    plan = run_program("prod", config, secrets)
    assert plan.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation") == []
    (oidc,) = plan.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    controller = plan.one("kubernetes:helm.sh/v3:Release", "karpenter")["inputs"]["values"]
    assert controller["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::123456789012:role/karpenter-controller")
    addons = {a["inputs"]["addonName"]: a["inputs"] for a in plan.of_type("aws:eks/addon:Addon")}
    assert addons["vpc-cni"]["serviceAccountRoleArn"].startswith("arn:aws:iam::123456789012:role/addons-vpc-cni")
    trusts = [json.loads(r["inputs"]["assumeRolePolicy"])["Statement"][0] for r in plan.of_type("aws:iam/role:Role")
              if r["name"].startswith(("addons-", "karpenter-controller"))]
    assert trusts and all(t["Principal"] == {"Federated": oidc["inputs"].get("arn", t["Principal"]["Federated"])}
                          and t["Action"] == "sts:AssumeRoleWithWebIdentity" for t in trusts)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_outputs_a_data_scientist_needs(stack):
    outputs = stack_plan(stack).outputs
    assert set(outputs) == {"region", "vpcId", "privateSubnetIds", "clusterName", "clusterEndpoint", "kubeconfig",
                            "workloadIdentityMode", "dataLakeBuckets", "dataLakeKmsKeyArn", "imageRepositories",
                            "gpuNodePools", "mlflowTrackingUri", "mlflowDatabaseBackend", "kafkaFlavor",
                            "kafkaBootstrapServers", "kafkaTopics", "modelServingUrls", "grafanaUrl", "prometheusUrl",
                            "teamNamespaces"}
    assert set(outputs["dataLakeBuckets"]) == {"raw", "curated", "artifacts"}


def karpenter_statements(plan) -> dict[str, dict]:
    policy = next(r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r["name"] == "karpenter-controller")
    return {st["Sid"]: st for st in json.loads(policy["inputs"]["policy"])["Statement"]}


def test_karpenter_may_create_only_the_spot_service_linked_role(plan):
    # W2: in an account that never ran Spot, CreateFleet needs its caller to be able to create AWSServiceRoleForEC2Spot.
    st = karpenter_statements(plan)["CreateSpotServiceLinkedRole"]
    assert st["Action"] == "iam:CreateServiceLinkedRole"
    assert st["Resource"] == ("arn:aws:iam::123456789012:role/aws-service-role/spot.amazonaws.com/"
                              "AWSServiceRoleForEC2Spot")
    assert st["Condition"] == {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}


def test_karpenter_tags_carry_the_cluster_name_as_the_reference_policy_requires(plan):
    # S1: the three conditions of Karpenter v1.14.1's reference controller policy that the role lacked.
    sts, name = karpenter_statements(plan), f"ml-platform-{plan.stack}"
    assert sts["TagOwnInstances"]["Condition"]["StringEqualsIfExists"] == {"aws:RequestTag/eks:eks-cluster-name": name}
    for sid in ("CreateInstanceProfiles", "TagOwnInstanceProfiles"):
        assert sts[sid]["Condition"]["StringEquals"]["aws:RequestTag/eks:eks-cluster-name"] == name


def test_only_this_clusters_interruption_rules_feed_its_queue(plan):
    policy = json.loads(plan.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruptions")["inputs"]["policy"])
    (events,) = [st for st in policy["Statement"] if st["Sid"] == "EventBridgeDelivers"]
    rules = {next(v for v in r["identity"] if v.startswith("arn:"))
             for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert set(events["Condition"]["ArnEquals"]["aws:SourceArn"]) == rules and len(rules) == 4
