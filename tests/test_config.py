"""Invalid stack config fails before any resource is declared, with one message naming every bad key."""

from __future__ import annotations

import json

import pytest

from offline.harness import STACKS, run_program, stack_config
from platform_config import ConfigError, load_config

PROJECT = "ml-platform"


def dev_config(**overrides) -> dict[str, str]:
    config, _ = stack_config("dev")
    if "gpuPools" in overrides and "training" not in overrides:
        overrides["training"] = {}  # dev's training names its GPU pool; tests that replace the pools drop it
    for key, value in overrides.items():
        config[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return config


def problems(config: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(config, PROJECT, "dev")
    return err.value.problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_is_valid(stack):
    config, _ = stack_config(stack)
    assert load_config(config, PROJECT, stack).environment == stack


def test_defaults_apply_when_optional_keys_are_absent():
    cfg = load_config({"aws:region": "eu-west-1", f"{PROJECT}:environment": "dev",
                       f"{PROJECT}:availabilityZones": '["eu-west-1a", "eu-west-1b"]',
                       # The one key a private endpoint (the default) cannot do without: where pulumi runs from.
                       f"{PROJECT}:deployerCidrs": '["10.0.64.0/24"]',
                       f"{PROJECT}:clusterAdmins": '["arn:aws:iam::123456789012:role/deploy"]',
                       f"{PROJECT}:images": '{"registry": "registry.example.com/ml", "tag": "1.0.0"}'}, PROJECT, "x")
    assert str(cfg.network.cidr) == "10.0.0.0/16"
    assert cfg.network.nat_gateways == "single"
    assert cfg.cluster.endpoint_public_access is False
    assert cfg.cluster.workload_identity == "pod-identity"
    assert cfg.data_lake.protect is True and cfg.data_lake.force_destroy is False
    assert cfg.system_nodes.min_size == 2 and cfg.gpu_pools == []
    assert cfg.cluster.name == "ml-platform-x"
    services = cfg.services
    assert services.kafka.flavor == "strimzi" and services.mlflow.database.backend == "rds"
    assert services.mlflow.exposure == "cluster" and services.mlflow.database.deletion_protection is True
    assert {t.name for t in services.kafka.topics.values()} == {"transactions", "predictions", "transactions-dlq"}
    assert services.serving.gpu_pool == "" and services.training.schedule == ""
    assert services.images.ref("inference") == "registry.example.com/ml/ml-platform-inference:1.0.0"


def test_unknown_key_is_an_error_with_a_suggestion():
    assert problems(dev_config(clusterVersionn="1.35")) == [
        "ml-platform:clusterVersionn: unknown key; did you mean 'clusterVersion'?"]


def test_unknown_nested_key_is_an_error():
    nodes = {"instanceTypes": ["m6i.large"], "minSize": 2, "maxSize": 3, "desiredSize": 2, "maxsize": 4}
    assert problems(dev_config(systemNodes=nodes)) == [
        "ml-platform:systemNodes.maxsize: unknown key; did you mean 'maxSize'?"]


def test_every_problem_is_reported_at_once():
    found = problems(dev_config(
        natGateways="everywhere",
        vpcCidr="10.0.0.0/8",
        clusterVersion="1.12",
        systemNodes={"instanceTypes": ["m6i.large"], "minSize": 5, "maxSize": 3, "desiredSize": "two"},
        gpuPools=[{"name": "train", "instanceTypes": ["g5.xlarge", "g9.huge"], "capacityType": "cheap"}],
    ))
    assert found == [
        "ml-platform:vpcCidr: prefix /8 is out of range; use /16 to /20",
        "ml-platform:natGateways: 'everywhere' is not allowed; use one of: perAz, single",
        "ml-platform:clusterVersion: '1.12' is not allowed; use one of: 1.34, 1.35",
        'ml-platform:systemNodes.desiredSize: expected a whole number from 1 to 100, got "two"',
        "ml-platform:systemNodes.minSize: 5 is above maxSize (3)",
        "ml-platform:systemNodes.desiredSize: 2 must be between minSize (5) and maxSize (3)",
        "ml-platform:gpuPools[0].instanceTypes: 'g9.huge' is not a known GPU instance type; known families: g4dn, "
        "g5, g6, g6e, p3, p4d, p4de, p5, p5e, p5en (platform_config/gpu_catalog.py)",
        "ml-platform:gpuPools[0].capacityType: 'cheap' is not allowed; use one of: on-demand, spot",
    ]


@pytest.mark.parametrize("overrides, expected", [
    ({"gpuPools": [{"name": "a1", "instanceTypes": ["g5.xlarge"], "maxNodes": 0}]},
     "ml-platform:gpuPools[0].maxNodes: 0 is out of range; use a value from 1 to 100"),
    ({"gpuPools": [{"name": "a1", "instanceTypes": ["g5.xlarge"], "maxNodes": "lots"}]},
     'ml-platform:gpuPools[0].maxNodes: expected a whole number from 1 to 100, got "lots"'),
    ({"gpuPools": [{"name": "Big_Pool", "instanceTypes": ["g5.xlarge"]}]},
     "ml-platform:gpuPools[0].name: 'Big_Pool' is not valid (lower-case letters, digits and '-', 2-32 characters)"),
    ({"gpuPools": [{"name": "a1", "instanceTypes": ["g5.xlarge"]}, {"name": "a1", "instanceTypes": ["g6.xlarge"]}]},
     "ml-platform:gpuPools: pool name 'a1' is used more than once"),
    ({"gpuPools": [{"name": "a1", "instanceTypes": []}]},
     "ml-platform:gpuPools[0].instanceTypes: needs at least 1 item(s), got 0"),
    ({"gpuPools": [{"name": "a1", "instanceTypes": ["g5.xlarge"], "consolidateAfter": "soon"}]},
     "ml-platform:gpuPools[0].consolidateAfter: 'soon' is not valid (e.g. 30s, 10m, 1h)"),
    ({"systemNodes": {"instanceTypes": ["p5.48xlarge"]}},
     "ml-platform:systemNodes.instanceTypes: p5.48xlarge is a GPU type; system nodes run add-ons, put GPUs in gpuPools"),
    ({"availabilityZones": ["us-west-2a", "eu-west-1b"]},
     "ml-platform:availabilityZones: 'eu-west-1b' is not a zone of aws:region 'us-west-2' (expected e.g. us-west-2a)"),
    ({"availabilityZones": ["us-west-2a"]}, "ml-platform:availabilityZones: needs at least 2 item(s), got 1"),
    ({"endpointPublicAccess": "true", "publicAccessCidrs": ["0.0.0.0/0"]},
     "ml-platform:publicAccessCidrs: 0.0.0.0/0 opens the API server to the internet; list your office or VPN ranges "
     "instead"),
    ({"endpointPublicAccess": "true", "publicAccessCidrs": []},
     "ml-platform:publicAccessCidrs: required when endpointPublicAccess is true; list the CIDR blocks allowed to "
     "reach the API server"),
    ({"endpointPublicAccess": "false", "deployerCidrs": ["10.10.8.0/24"]},
     "ml-platform:publicAccessCidrs: set, but endpointPublicAccess is false; remove it or set endpointPublicAccess: "
     "true"),
    ({"endpointPublicAccess": "maybe", "publicAccessCidrs": [], "deployerCidrs": ["10.10.8.0/24"]},
     'ml-platform:endpointPublicAccess: expected true or false, got "maybe"'),
    ({"endpointPublicAccess": "false", "publicAccessCidrs": []},
     "ml-platform:deployerCidrs: required when endpointPublicAccess is false: the API server is then private, and "
     "this stack creates the VPC, so list the networks pulumi up and the preview job run from (a CI runner subnet or "
     "VPN behind transitGateway)"),
    ({"deployerCidrs": ["192.168.1.0/24"]},
     "ml-platform:deployerCidrs: 192.168.1.0/24 is neither inside the VPC (10.10.0.0/16) nor behind "
     "transitGateway.cidrs, so no route reaches it; add it there with the Transit Gateway it comes through"),
    ({"deployerCidrs": ["0.0.0.0/0"]},
     "ml-platform:deployerCidrs: 0.0.0.0/0 is the whole internet; list your runner or VPN ranges instead"),
    ({"transitGateway": {"id": "tgw-123", "cidrs": ["192.168.0.0/16"]}},
     "ml-platform:transitGateway.id: 'tgw-123' is not valid (a Transit Gateway id such as tgw-0123456789abcdef0)"),
    ({"transitGateway": {"id": "tgw-0123456789abcdef0", "cidrs": ["10.10.0.0/20"]}},
     "ml-platform:transitGateway.cidrs: 10.10.0.0/20 overlaps the VPC (10.10.0.0/16); list only networks behind the "
     "Transit Gateway"),
    ({"transitGateway": {"id": "tgw-0123456789abcdef0"}},
     "ml-platform:transitGateway.cidrs: required with transitGateway.id: the networks the private subnets route "
     "through it (CI runners, VPN)"),
    ({"bootstrapCreatorAdmin": True},
     "ml-platform:bootstrapCreatorAdmin: no longer a setting (EKS's bootstrap entry for the creator collides with an "
     "explicit one for the same role); list the deploy role in clusterAdmins and the preview role in clusterViewers"),
    ({"clusterAdmins": []},
     "ml-platform:clusterAdmins: required: at least the role that runs pulumi up, or nothing could manage the "
     "cluster's Kubernetes objects"),
    ({"clusterViewers": ["arn:aws:iam::123456789012:role/pulumi-deploy"]},
     "ml-platform:clusterViewers: arn:aws:iam::123456789012:role/pulumi-deploy is also in clusterAdmins; an IAM "
     "principal can have only one access entry, so list it once"),
    ({"controlPlaneLogRetentionDays": 100},
     "ml-platform:controlPlaneLogRetentionDays: 100 is not a CloudWatch Logs retention period; use one of 1, 3, 5, "
     "7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"),
    ({"clusterAdmins": ["alice"]},
     "ml-platform:clusterAdmins: 'alice' is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)"),
    ({"addonVersions": {"vpc-cnii": "v1"}},
     "ml-platform:addonVersions.vpc-cnii: unknown add-on; known: aws-ebs-csi-driver, coredns, "
     "eks-pod-identity-agent, kube-proxy, vpc-cni"),
    ({"dataLake": {"protect": True, "forceDestroy": True}},
     "ml-platform:dataLake.forceDestroy: true conflicts with dataLake.protect=true; protected data is never "
     "destroyed, so set one of them to false"),
    ({"dataLake": {"protect": False, "rawInfrequentAccessDays": 90, "rawGlacierDays": 60}},
     "ml-platform:dataLake.rawGlacierDays: 60 must be greater than rawInfrequentAccessDays (90)"),
    ({"workloadIdentity": "kiam"},
     "ml-platform:workloadIdentity: 'kiam' is not allowed; use one of: irsa, pod-identity"),
    ({"tags": {"team": 7}}, 'ml-platform:tags: expected an object of string values, got {"team": 7}'),
])
def test_each_kind_of_bad_value_names_the_key_and_the_fix(overrides, expected):
    assert problems(dev_config(**overrides)) == [expected]


def test_missing_region_and_environment_are_reported():
    config = dev_config()
    del config["aws:region"], config[f"{PROJECT}:environment"]
    assert problems(config) == [
        "aws:region: required; set it with `pulumi config set aws:region us-east-1`",
        "ml-platform:environment: required; set it",
    ]


def test_bad_config_declares_nothing(monkeypatch):
    """The program raises before its first resource: only the root stack was registered."""
    from offline import harness
    config, secrets = stack_config("dev")
    config[f"{PROJECT}:natGateways"] = "none"
    seen = []
    original = harness.RecordingMonitor.RegisterResource

    def spy(self, request):
        seen.append(request.type)
        return original(self, request)

    monkeypatch.setattr(harness.RecordingMonitor, "RegisterResource", spy)
    with pytest.raises(ConfigError, match="natGateways"):
        run_program("dev", config, secrets)
    assert seen == ["pulumi:pulumi:Stack"]


def test_error_message_lists_problems_and_says_where_to_fix():
    config = dev_config(natGateways="none", clusterVersionn="1.35")
    with pytest.raises(ConfigError) as err:
        load_config(config, PROJECT, "dev")
    message = str(err.value)
    assert message.startswith("stack 'dev' has 2 config problem(s); nothing was declared. Fix them in "
                              "stacks/Pulumi.dev.yaml")
    assert "  - ml-platform:natGateways:" in message and "  - ml-platform:clusterVersionn:" in message


def test_every_pinned_kubernetes_minor_has_an_end_of_standard_support_date():
    from platform_config.versions import EKS_ADDON_VERSIONS, EKS_END_OF_STANDARD_SUPPORT
    assert set(EKS_END_OF_STANDARD_SUPPORT) == set(EKS_ADDON_VERSIONS)


@pytest.mark.parametrize("today, expected", [
    ("2026-12-01", None),
    ("2026-12-27", "clusterVersion 1.35: EKS standard support ends on 2027-03-27 (90 days)"),
    ("2027-04-01", "clusterVersion 1.35: EKS standard support ended on 2027-03-27"),
])
def test_the_program_warns_ahead_of_the_end_of_standard_support(today, expected):
    import datetime

    from platform_config import support_warning
    warning = support_warning("1.35", datetime.date.fromisoformat(today))
    assert (warning is None) if expected is None else warning.startswith(expected)


@pytest.mark.parametrize("caller, preview, allowed", [
    ("arn:aws:sts::123456789012:assumed-role/pulumi-deploy/ci", False, True),
    ("arn:aws:sts::123456789012:assumed-role/pulumi-preview/pr-7", True, True),
    ("arn:aws:sts::123456789012:assumed-role/pulumi-preview/pr-7", False, False),  # a viewer cannot deploy
    ("arn:aws:iam::123456789012:user/alice", False, False),
])
def test_who_runs_the_program_must_have_an_access_entry(caller, preview, allowed):
    # Review finding B4 and its follow-up: access no longer follows the caller, so the caller is checked instead.
    from offline.mocks import issuer_arn
    from platform_config import access_problem
    cfg = load_config(stack_config("prod")[0], PROJECT, "prod").cluster
    problem = access_problem(cfg, issuer_arn(caller), preview)
    assert (problem is None) is allowed
    if not allowed:
        assert "has no access entry" in problem and "clusterAdmins" in problem


def test_an_update_by_a_principal_without_access_fails_before_anything_is_declared():
    from offline.harness import run_program
    with pytest.raises(ConfigError, match="alice runs this update but has no access entry in clusterAdmins"):
        run_program("dev", caller_arn="arn:aws:iam::123456789012:user/alice")
