"""Unit tests: each component declared alone under the offline harness, checked resource by resource."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.cluster import CONTROL_PLANE_LOG_TYPES, Cluster, ClusterArgs
from components.data_lake import DataLake, DataLakeArgs
from components.gpu_pool import GpuPool, GpuPoolArgs
from components.iam import WildcardPolicyError, check_least_privilege
from components.network import Network, NetworkArgs, subnet_layout
from components.system_nodes import SystemNodes, SystemNodesArgs
from components.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from platform_config import (ClusterConfig, DataLakeConfig, GpuPoolConfig, NetworkConfig, NodeGroupConfig)
from tests.helpers import policy_json, run_component

import pulumi_kubernetes as k8s

NET = NetworkConfig(cidr=ipaddress.IPv4Network("10.0.0.0/16"), availability_zones=["us-west-2a", "us-west-2b",
                                                                                   "us-west-2c"])


def network_plan(**overrides):
    cfg = NetworkConfig(**{**NET.__dict__, **overrides})
    return run_component(lambda: Network("net", NetworkArgs(config=cfg, cluster_name="c1", region="us-west-2")))


class TestNetwork:
    def test_subnet_layout_never_overlaps_and_fits_six_zones(self):
        for cidr in ("10.0.0.0/16", "10.1.0.0/20"):
            private, public = subnet_layout(ipaddress.IPv4Network(cidr), 6)
            nets = [ipaddress.IPv4Network(n) for n in private + public]
            assert len(nets) == 12
            assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])

    @pytest.mark.parametrize("mode, expected", [("single", 1), ("perAz", 3)])
    def test_nat_gateways_follow_config(self, mode, expected):
        plan = network_plan(nat_gateways=mode)
        nats = plan.of_type("aws:ec2/natGateway:NatGateway")
        assert len(nats) == expected
        tables = {rt["id"] for rt in plan.of_type("aws:ec2/routeTable:RouteTable") if rt["name"].startswith("net-private")}
        egress = {r["inputs"]["routeTableId"]: r["inputs"]["natGatewayId"] for r in plan.of_type("aws:ec2/route:Route")
                  if r["inputs"]["destinationCidrBlock"] == "0.0.0.0/0"}
        assert set(egress) == tables and len(tables) == 3 and len(set(egress.values())) == expected
        assert set(egress.values()) == {n["id"] for n in nats}

    def test_a_transit_gateway_attaches_the_private_subnets_and_routes_its_networks_after_the_attachment(self):
        plan = network_plan(transit_gateway_id="tgw-0123456789abcdef0", transit_gateway_cidrs=["10.100.0.0/16"])
        (attachment,) = plan.of_type("aws:ec2transitgateway/vpcAttachment:VpcAttachment")
        private = {s["id"] for s in plan.of_type("aws:ec2/subnet:Subnet") if "private" in s["name"]}
        assert set(attachment["inputs"]["subnetIds"]) == private
        routed = [r for r in plan.of_type("aws:ec2/route:Route")
                  if r["inputs"]["destinationCidrBlock"] == "10.100.0.0/16"]
        assert len(routed) == 3 and all(attachment["urn"] in r["dependsOn"] for r in routed)
        assert all(r["inputs"]["transitGatewayId"] == "tgw-0123456789abcdef0" for r in routed)
        assert network_plan().of_type("aws:ec2transitgateway/vpcAttachment:VpcAttachment") == []

    def test_private_subnets_are_tagged_for_internal_lbs_and_karpenter_public_for_elbs(self):
        plan = network_plan()
        subnets = plan.of_type("aws:ec2/subnet:Subnet")
        private = [s for s in subnets if "private" in s["name"]]
        public = [s for s in subnets if "public" in s["name"]]
        assert len(private) == len(public) == 3
        assert {s["inputs"]["availabilityZone"] for s in private} == set(NET.availability_zones)
        for s in private:
            assert s["inputs"]["tags"]["kubernetes.io/role/internal-elb"] == "1"
            assert s["inputs"]["tags"]["karpenter.sh/discovery"] == "c1"
        for s in public:
            assert s["inputs"]["tags"]["kubernetes.io/role/elb"] == "1"
            assert s["inputs"]["mapPublicIpOnLaunch"] is False

    def test_s3_gateway_endpoint_serves_every_private_route_table(self):
        plan = network_plan()
        endpoint = plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3")
        private_rts = {rt["id"] for rt in plan.of_type("aws:ec2/routeTable:RouteTable") if "private" in rt["name"]}
        assert endpoint["inputs"]["serviceName"] == "com.amazonaws.us-west-2.s3"
        assert endpoint["inputs"]["vpcEndpointType"] == "Gateway"
        assert set(endpoint["inputs"]["routeTableIds"]) == private_rts

    def test_flow_logs_only_when_enabled(self):
        assert network_plan(flow_logs=False).of_type("aws:ec2/flowLog:FlowLog") == []
        plan = network_plan(flow_logs=True, flow_log_retention_days=7)
        (flow,) = plan.of_type("aws:ec2/flowLog:FlowLog")
        assert flow["inputs"]["trafficType"] == "ALL"
        assert plan.of_type("aws:cloudwatch/logGroup:LogGroup")[0]["inputs"]["retentionInDays"] == 7

    def test_default_security_group_allows_nothing(self):
        sg = network_plan().one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "net-default-sg")
        assert sg["inputs"].get("ingress", []) == [] and sg["inputs"].get("egress", []) == []


def lake_plan(**overrides):
    cfg = DataLakeConfig(**overrides)
    return run_component(lambda: DataLake("lake", DataLakeArgs(config=cfg, name_prefix="p-s-",
                                                               account_id="123456789012")))


class TestDataLake:
    def test_four_buckets_with_every_guard(self):
        plan = lake_plan()
        buckets = {b["name"]: b["id"] for b in plan.of_type("aws:s3/bucket:Bucket")}
        assert set(buckets) == {"lake-raw", "lake-curated", "lake-artifacts", "lake-access-logs"}

        def by_bucket(type_):
            return {r["inputs"]["bucket"]: r["inputs"] for r in plan.of_type(type_)}

        pab = by_bucket("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        sse = by_bucket("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        ver = by_bucket("aws:s3/bucketVersioning:BucketVersioning")
        own = by_bucket("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        pol = by_bucket("aws:s3/bucketPolicy:BucketPolicy")
        key_arn = plan.one("aws:kms/key:Key", "lake-key")
        for name, bucket in buckets.items():
            assert all(pab[bucket][f] is True for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                          "restrictPublicBuckets")), name
            assert ver[bucket]["versioningConfiguration"]["status"] == "Enabled"
            assert own[bucket]["rule"]["objectOwnership"] == "BucketOwnerEnforced"
            deny = [s for s in json.loads(pol[bucket]["policy"])["Statement"] if s["Sid"] == "DenyInsecureTransport"]
            assert deny[0]["Effect"] == "Deny" and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            default = sse[bucket]["rules"][0]["applyServerSideEncryptionByDefault"]
            if name == "lake-access-logs":
                assert default == {"sseAlgorithm": "AES256"}  # S3 access logs cannot target SSE-KMS buckets
            else:
                assert default["sseAlgorithm"] == "aws:kms"
                assert default["kmsMasterKeyId"].startswith("arn:aws:kms:") and sse[bucket]["rules"][0]["bucketKeyEnabled"]
        assert key_arn["inputs"]["enableKeyRotation"] is True

    def test_lake_buckets_log_to_the_access_log_bucket(self):
        plan = lake_plan()
        logs = plan.one("aws:s3/bucket:Bucket", "lake-access-logs")["id"]
        logging = plan.of_type("aws:s3/bucketLogging:BucketLogging")
        assert sorted(r["inputs"]["targetPrefix"] for r in logging) == ["artifacts/", "curated/", "raw/"]
        assert {r["inputs"]["targetBucket"] for r in logging} == {logs}

    def test_lifecycle_rules(self):
        plan = lake_plan(raw_infrequent_access_days=45, raw_glacier_days=200, noncurrent_version_days=12)
        rules = {r["name"]: {rule["id"]: rule for rule in r["inputs"]["rules"]}
                 for r in plan.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")}
        for area in ("raw", "curated", "artifacts"):
            assert rules[f"lake-{area}"]["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
                "daysAfterInitiation": 7}
            assert rules[f"lake-{area}"]["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
                "noncurrentDays": 12}
        assert rules["lake-raw"]["tier-down-raw-data"]["transitions"] == [
            {"days": 45, "storageClass": "STANDARD_IA"}, {"days": 200, "storageClass": "GLACIER_IR"}]
        assert "tier-down-raw-data" not in rules["lake-curated"]

    @pytest.mark.parametrize("protect", [True, False])
    def test_protection_follows_config(self, protect):
        plan = lake_plan(protect=protect, force_destroy=not protect)
        kept = plan.of_type("aws:s3/bucket:Bucket") + plan.of_type("aws:kms/key:Key")
        assert all(r["protect"] is protect and r["retainOnDelete"] is protect for r in kept)
        assert all(b["inputs"]["forceDestroy"] is (not protect) for b in plan.of_type("aws:s3/bucket:Bucket"))

    def test_unprotected_data_that_is_not_force_destroyed_is_retained_with_its_key(self):
        # Staging's shape: destroy leaves the buckets (and the key that can still decrypt them) in the account.
        plan = lake_plan(protect=False, force_destroy=False)
        kept = plan.of_type("aws:s3/bucket:Bucket") + plan.of_type("aws:kms/key:Key")
        assert all(r["protect"] is False and r["retainOnDelete"] is True for r in kept)
        key = plan.one("aws:kms/key:Key", "lake-key")["urn"]
        assert all(key in b["dependsOn"] for b in plan.of_type("aws:s3/bucket:Bucket"))

    def test_only_this_accounts_lake_buckets_may_deliver_access_logs(self):
        plan = lake_plan()
        logs = plan.one("aws:s3/bucket:Bucket", "lake-access-logs")
        policy = json.loads(plan.one("aws:s3/bucketPolicy:BucketPolicy", "lake-access-logs")["inputs"]["policy"])
        (delivery,) = [s for s in policy["Statement"] if s["Sid"] == "AllowS3ServerAccessLogs"]
        lake_arns = {b["inputs"]["arn"] if "arn" in b["inputs"] else f"arn:aws:s3:::{b['id']}"
                     for b in plan.of_type("aws:s3/bucket:Bucket") if b["urn"] != logs["urn"]}
        assert set(delivery["Condition"]["ArnLike"]["aws:SourceArn"]) == lake_arns
        assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def cluster_plan(**overrides):
    cfg = ClusterConfig(**{"name": "c1", "version": "1.35", **overrides})
    return run_component(lambda: Cluster("eks", ClusterArgs(config=cfg, region="us-west-2", vpc_id="vpc-1",
                                                           subnet_ids=["subnet-a", "subnet-b"])))


class TestCluster:
    def test_control_plane_is_private_encrypted_and_fully_logged(self):
        plan = cluster_plan()
        cluster = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]
        assert cluster["version"] == "1.35"
        assert cluster["accessConfig"]["authenticationMode"] == "API"
        assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
        assert cluster["vpcConfig"]["endpointPublicAccess"] is False
        assert "publicAccessCidrs" not in cluster["vpcConfig"]
        assert sorted(cluster["enabledClusterLogTypes"]) == sorted(CONTROL_PLANE_LOG_TYPES)
        assert len(CONTROL_PLANE_LOG_TYPES) == 5
        key = plan.one("aws:kms/key:Key", "eks-secrets")
        assert cluster["encryptionConfig"] == {"provider": {"keyArn": f"arn:aws:kms:us-west-2:123456789012:key/"
                                                                      f"{key['id']}"}, "resources": ["secrets"]}
        assert key["inputs"]["enableKeyRotation"] is True
        assert cluster["bootstrapSelfManagedAddons"] is False

    def test_public_endpoint_is_limited_to_configured_cidrs(self):
        cluster = cluster_plan(endpoint_public_access=True, public_access_cidrs=["198.51.100.0/24"]).one(
            "aws:eks/cluster:Cluster", "eks")["inputs"]
        assert cluster["vpcConfig"]["publicAccessCidrs"] == ["198.51.100.0/24"]

    def test_kubeconfig_is_a_secret_using_aws_eks_get_token_and_feeds_the_provider(self):
        captured = {}

        def declare():
            c = Cluster("eks", ClusterArgs(config=ClusterConfig(name="c1", version="1.35"), region="us-west-2",
                                          vpc_id="vpc-1", subnet_ids=["s"]))
            c.kubeconfig.apply(lambda k: captured.setdefault("kubeconfig", json.loads(k)))

        plan = run_component(declare)
        provider = plan.one("pulumi:providers:kubernetes", "eks-k8s")
        assert provider["inputs"]["kubeconfig"] == "[secret]"
        user = captured["kubeconfig"]["users"][0]["user"]
        assert user["exec"]["command"] == "aws"
        assert user["exec"]["args"][2:6] == ["eks", "get-token", "--cluster-name", "c1"]
        assert "token" not in user and "client-key-data" not in user

    def test_admins_get_access_entries_with_the_cluster_admin_policy(self):
        arn = "arn:aws:iam::123456789012:role/admins"
        plan = cluster_plan(admin_arns=[arn])
        (entry,) = plan.of_type("aws:eks/accessEntry:AccessEntry")
        assert entry["inputs"]["principalArn"] == arn
        (assoc,) = plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        assert assoc["inputs"]["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
        assert assoc["inputs"]["accessScope"] == {"type": "cluster"}
        # The Kubernetes provider is used only once the admins (the deployer among them) can authenticate.
        assert assoc["urn"] in plan.one("pulumi:providers:kubernetes", "eks-k8s")["dependsOn"]

    def test_one_entry_per_principal_for_admins_and_viewers_and_eks_bootstraps_none(self):
        # Review finding B4: EKS's bootstrap entry for the creator plus an explicit entry for the same role was a 409.
        admin, viewer = "arn:aws:iam::123456789012:role/deploy", "arn:aws:iam::123456789012:role/preview"
        plan = cluster_plan(admin_arns=[admin], viewer_arns=[viewer])
        cluster = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]
        assert cluster["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
        policies = {a["inputs"]["principalArn"]: a["inputs"]["policyArn"].rsplit("/", 1)[-1]
                    for a in plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
        assert policies == {admin: "AmazonEKSClusterAdminPolicy", viewer: "AmazonEKSAdminViewPolicy"}
        assert sorted(e["inputs"]["principalArn"] for e in plan.of_type("aws:eks/accessEntry:AccessEntry")) == [
            admin, viewer]

    def test_deployer_networks_reach_the_private_endpoint_through_their_own_security_group(self):
        plan = cluster_plan(deployer_cidrs=["10.100.8.0/24"])
        group = plan.one("aws:ec2/securityGroup:SecurityGroup", "eks-api-deployers")
        assert plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]["vpcConfig"]["securityGroupIds"] == [group["id"]]
        (rule,) = plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        assert rule["inputs"]["securityGroupId"] == group["id"]
        assert (rule["inputs"]["cidrIpv4"], rule["inputs"]["fromPort"], rule["inputs"]["toPort"]) == (
            "10.100.8.0/24", 443, 443)

    def test_irsa_mode_creates_the_oidc_provider(self):
        assert cluster_plan().of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
        (oidc,) = cluster_plan(workload_identity="irsa").of_type(
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
        assert oidc["inputs"]["clientIdLists"] == ["sts.amazonaws.com"]
        assert oidc["inputs"]["url"].startswith("https://oidc.eks.us-west-2.amazonaws.com/id/")


class TestSystemNodes:
    def test_on_demand_al2023_with_imdsv2_and_encrypted_root(self):
        cfg = NodeGroupConfig(instance_types=["m6i.large"], min_size=2, desired_size=3, max_size=5, disk_size_gib=80)
        plan = run_component(lambda: SystemNodes("sys", SystemNodesArgs(config=cfg, cluster_name="c1",
                                                                         subnet_ids=["s1", "s2"])))
        group = plan.one("aws:eks/nodeGroup:NodeGroup", "sys")
        template = plan.one("aws:ec2/launchTemplate:LaunchTemplate", "sys")
        assert group["inputs"]["capacityType"] == "ON_DEMAND"
        assert group["inputs"]["amiType"] == "AL2023_x86_64_STANDARD"
        assert group["inputs"]["scalingConfig"] == {"minSize": 2, "desiredSize": 3, "maxSize": 5}
        assert group["inputs"]["subnetIds"] == ["s1", "s2"]
        assert group["inputs"]["launchTemplate"]["id"] == template["id"]
        assert group["ignoreChanges"] == ["scalingConfig.desiredSize"]
        meta = template["inputs"]["metadataOptions"]
        assert meta["httpTokens"] == "required" and meta["httpPutResponseHopLimit"] == 1
        ebs = template["inputs"]["blockDeviceMappings"][0]["ebs"]
        assert ebs["encrypted"] == "true" and ebs["volumeSize"] == 80
        attached = {r["inputs"]["policyArn"].rsplit("/", 1)[-1] for r in
                    plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
        assert "AmazonEKS_CNI_Policy" not in attached  # the VPC CNI has its own identity


class TestWorkloadIdentity:
    def declare(self, **overrides):
        args = dict(cluster_name="c1", namespace="ml", service_account="trainer", account_id="123456789012",
                    statements=[{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}])
        args.update(overrides)
        return run_component(lambda: WorkloadIdentity("trainer", WorkloadIdentityArgs(**args)))

    def test_pod_identity_trust_is_pinned_to_one_service_account(self):
        plan = self.declare()
        trust = policy_json(plan.one("aws:iam/role:Role", "trainer"), "assumeRolePolicy")["Statement"][0]
        assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert trust["Condition"]["StringEquals"] == {
            "aws:SourceAccount": "123456789012", "aws:RequestTag/eks-cluster-name": "c1",
            "aws:RequestTag/kubernetes-namespace": "ml", "aws:RequestTag/kubernetes-service-account": "trainer"}
        assoc = plan.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "trainer")["inputs"]
        assert (assoc["namespace"], assoc["serviceAccount"], assoc["clusterName"]) == ("ml", "trainer", "c1")
        assert policy_json(plan.one("aws:iam/rolePolicy:RolePolicy", "trainer"))["Statement"][0]["Action"] == [
            "s3:GetObject"]

    def test_irsa_trust_uses_the_oidc_subject_and_annotates_the_service_account(self):
        plan = run_component(lambda: WorkloadIdentity("trainer", WorkloadIdentityArgs(
            cluster_name="c1", namespace="ml", service_account="trainer", mode="irsa",
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.x/id/ABC",
            oidc_issuer="https://oidc.eks.x/id/ABC", create_service_account=True,
            k8s_provider=k8s.Provider("k8s", kubeconfig="{}"))))
        trust = policy_json(plan.one("aws:iam/role:Role", "trainer"), "assumeRolePolicy")["Statement"][0]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Condition"]["StringEquals"]["oidc.eks.x/id/ABC:sub"] == "system:serviceaccount:ml:trainer"
        assert plan.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation") == []
        sa = plan.one("kubernetes:core/v1:ServiceAccount", "trainer")
        assert sa["inputs"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
            "arn:aws:iam::123456789012:role/trainer-")
        assert sa["provider"].endswith("::k8s")

    @pytest.mark.parametrize("statement, message", [
        ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}, "allows Action '*'"),
        ({"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}, "allows ['s3:*'] on Resource '*'"),
    ])
    def test_wildcards_are_rejected_before_declaring(self, statement, message):
        with pytest.raises(WildcardPolicyError, match=message.replace("[", r"\[").replace("*", r"\*")):
            check_least_privilege([statement], "t")

    def test_specific_actions_on_any_resource_and_denies_are_allowed(self):
        check_least_privilege([{"Effect": "Allow", "Action": ["ec2:DescribeSubnets"], "Resource": "*"},
                               {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}], "t")


class TestGpuPool:
    def plan(self, **overrides):
        cfg = GpuPoolConfig(**{"name": "train", "instance_types": ["g5.12xlarge", "g6e.xlarge"],
                               "max_gpus_per_node": 4, "capacity_type": "spot", "max_nodes": 3, **overrides})
        return run_component(lambda: GpuPool("gpu", GpuPoolArgs(
            config=cfg, cluster_name="c1", node_role_name="node-role", cluster_security_group_id="sg-1",
            k8s_provider=k8s.Provider("k8s", kubeconfig="{}"))))

    def test_node_pool_is_tainted_labelled_bounded_and_scales_to_zero(self):
        spec = self.plan().one("kubernetes:karpenter.sh/v1:NodePool", "gpu-nodepool")["inputs"]["spec"]
        template = spec["template"]["spec"]
        assert template["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
        # An unshared pool selects the device plugin's unshared default config (tests/test_gpu_sharing.py).
        assert spec["template"]["metadata"]["labels"] == {"mlplatform.io/gpu-pool": "train",
                                                          "nvidia.com/gpu.present": "true",
                                                          "nvidia.com/device-plugin.config": "default"}
        reqs = {r["key"]: r["values"] for r in template["requirements"]}
        assert reqs["node.kubernetes.io/instance-type"] == ["g5.12xlarge", "g6e.xlarge"]
        assert reqs["karpenter.sh/capacity-type"] == ["spot"]
        assert spec["limits"] == {"nodes": "3", "nvidia.com/gpu": "12"}
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
        assert template["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "train"}

    def test_node_class_uses_pinned_al2023_imdsv2_and_encrypted_root(self):
        spec = self.plan().one("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "gpu-nodeclass")["inputs"]["spec"]
        assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20260714"}]
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert spec["blockDeviceMappings"][0]["ebs"]["encrypted"] is True
        assert spec["securityGroupSelectorTerms"] == [{"id": "sg-1"}]
        assert spec["role"] == "node-role"
