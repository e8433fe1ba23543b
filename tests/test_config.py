"""Invalid stack config fails before any resource is declared, with one message naming every bad key."""

from __future__ import annotations

import json

import pytest

from offline.harness import STACKS, run_program, stack_config
from platform_config import ConfigError, load_config

PROJECT = "ml-platform"


DEV_TEAM = {"name": "fraud", "members": ["arn:aws:iam::123456789012:role/fraud-scientists"],
            "quotas": {"cpu": {"nominal": 4}, "memoryGiB": {"nominal": 16}, "gpus": {"gpu-small": {"nominal": 2}}}}
DEV_MODEL = {"name": "fraud-detector", "team": "fraud", "training": {"gpuPool": "gpu-small"}}


def dev_config(**overrides) -> dict[str, str]:
    config, _ = stack_config("dev")
    if "gpuPools" in overrides:
        # dev's team and model name its GPU pool; tests that replace the pools keep them off GPUs
        overrides.setdefault("teams", [{**DEV_TEAM, "quotas": {}}])
        overrides.setdefault("models", [{"name": "fraud-detector", "team": "fraud"}])
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
                       f"{PROJECT}:images": '{"tag": "1.0.0"}'}, PROJECT, "x")
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
    # No registry: the stack's own ECR repository (the caller's account, known only to the program).
    assert (services.images.registry, services.images.digests) == ("", {})
    assert services.images.ref("inference", "ecr.example/x/inference") == "ecr.example/x/inference:1.0.0"
    assert services.monitoring.queue_pending_minutes == 60
    assert cfg.teams == [] and cfg.models == []  # a platform with nobody on it yet is valid


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


# Teams, models and GPU sharing (issue 10). Each check below is shown failing on the defect it guards against.

def team(name: str, **fields) -> dict:
    return {"name": name, "members": [f"arn:aws:iam::123456789012:role/{name}-scientists"], **fields}


def teams_config(teams: list[dict], models: list[dict] | None = None, **overrides) -> dict[str, str]:
    return dev_config(teams=teams, models=[] if models is None else models, **overrides)


SMALL = {"gpu-small": {"nominal": 1}}
P = "ml-platform"


@pytest.mark.parametrize("teams, expected", [
    ([team("fraud"), team("fraud")], f"{P}:teams: team name 'fraud' is used more than once"),
    ([team("Fraud_Team")], f"{P}:teams[0].name: 'Fraud_Team' is not valid (lower-case letters, digits and '-', 2-20 "
                           "characters, starting with a letter)"),
    ([team("a-very-long-team-name")], f"{P}:teams[0].name: 'a-very-long-team-name' is not valid (lower-case "
                                      "letters, digits and '-', 2-20 characters, starting with a letter)"),
    ([{**team("fraud"), "members": ["fraud-scientists"]}],
     f"{P}:teams[0].members: 'fraud-scientists' is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)"),
    ([{**team("fraud"), "members": ["arn:aws:sts::123456789012:assumed-role/fraud/alice"]}],
     f"{P}:teams[0].members: 'arn:aws:sts::123456789012:assumed-role/fraud/alice' is not an IAM role or user ARN "
     "(arn:aws:iam::<account>:role/<name>)"),
    ([{**team("fraud"), "members": ["arn:aws:iam::123456789012:role/pulumi-deploy"]}],
     f"{P}:teams[0].members: arn:aws:iam::123456789012:role/pulumi-deploy is also in clusterAdmins; EKS allows one "
     "access entry per IAM principal and the admin's already reaches every namespace, so remove it here"),
    ([{**team("fraud"), "members": ["arn:aws:iam::123456789012:role/pulumi-preview"]}],
     f"{P}:teams[0].members: arn:aws:iam::123456789012:role/pulumi-preview is also in clusterViewers; EKS allows one "
     "access entry per IAM principal, so it cannot be both a viewer and a team member; use another role for one of "
     "them"),
    ([team("fraud", quotas={"gpus": {"gpu-big": {"nominal": 1}}})],
     f"{P}:teams[0].quotas.gpus.gpu-big: 'gpu-big' is not a GPU pool of this stack (gpuPools: gpu-small)"),
    ([team("fraud", quotas={"gpus": {"gpu-small": {"nominal": 2}}}),
      team("risk", quotas={"gpus": {"gpu-small": {"nominal": 1}}})],
     f"{P}:teams: nominal quotas on GPU pool 'gpu-small' add up to 3 units, more than the pool can hold (2: maxNodes "
     "x GPUs per node x sharing); Kueue would admit work Karpenter cannot place, so lower them or raise the pool's "
     "maxNodes"),
    ([team("fraud", quotas={"cpu": {"nominal": -1}})],
     f"{P}:teams[0].quotas.cpu.nominal: -1 is out of range; use a value from 0 to 2000"),
    ([team("fraud", quotas={"gpus": {"gpu-small": {"nominal": 1, "borrowingLimit": -1}}})],
     f"{P}:teams[0].quotas.gpus.gpu-small.borrowingLimit: -1 is out of range; use a value from 0 to 12800"),
    ([team("fraud", quotas={"gpus": {"gpu-small": {"nominal": 1.5}}})],
     f"{P}:teams[0].quotas.gpus.gpu-small.nominal: expected a whole number from 0 to 12800, got 1.5"),
    ([team("fraud", quotas={"cpu": {"borrowingLimit": 4}})],
     f"{P}:teams[0].quotas.cpu.nominal: required: the amount guaranteed to the team (0 to only borrow)"),
    ([team("fraud", quotas={"cpu": {"nominal": 4, "lendingLimit": 8}})],
     f"{P}:teams[0].quotas.cpu.lendingLimit: 8 is above nominal (4); Kueue rejects a ClusterQueue that lends more "
     "than its nominal quota"),
    ([team("fraud", quotas={"cpu": {"nominal": 12}}), team("risk", quotas={"cpu": {"nominal": 8}})],
     f"{P}:teams: nominal cpu quotas add up to 20, more than generalPool.maxCpu (16); the general pool could never "
     "hold what the teams are guaranteed"),
    ([team("fraud", quotas={"memoryGiB": {"nominal": 65}})],
     f"{P}:teams: nominal memoryGiB quotas add up to 65, more than generalPool.maxMemoryGiB (64); the general pool "
     "could never hold what the teams are guaranteed"),
    ([team("fraud", quotas={"cpus": {"nominal": 1}})], f"{P}:teams[0].quotas.cpus: unknown key; did you mean 'cpu'?"),
    ([team("fraud", quotas={"gpus": {"gpu-small": 2}})],
     f"{P}:teams[0].quotas.gpus.gpu-small: expected an object, got 2"),
    ([team("fraud", lakePrefix="teams/fraud")],
     f"{P}:teams[0].lakePrefix: 'teams/fraud' must end with '/', or it would also cover every prefix that starts the "
     "same way (teams/fraud-other/)"),
    ([team("fraud", lakePrefix="/teams/fraud/")],
     f"{P}:teams[0].lakePrefix: '/teams/fraud/' must not start with '/': S3 keys have no leading slash, so it would "
     "match nothing"),
    ([team("fraud", lakePrefix="teams/*/")],
     f"{P}:teams[0].lakePrefix: 'teams/*/' is not valid: lower-case letters, digits, '.', '_' and '-' between "
     "slashes, no empty segment ('*', '?' and '$' are wildcards in IAM policies)"),
    ([team("fraud", lakePrefix="mlflow/fraud/")],
     f"{P}:teams[0].lakePrefix: 'mlflow/fraud/' is inside MLflow's own artifacts area (mlflow/); choose another "
     "prefix"),
    ([team("fraud"), team("risk", lakePrefix="teams/fraud/")],
     f"{P}:teams[1].lakePrefix: 'teams/fraud/' is also team 'fraud''s; each team needs its own prefix"),
    ([team("fraud", lakePrefix="teams/"), team("risk")],
     f"{P}:teams[1].lakePrefix: 'teams/' contains 'teams/risk/' (teams 'fraud' and 'risk'); the outer team's roles "
     "would reach the other's data"),
    ([team("fraud", topics={"features": "fraud.features"})],
     f"{P}:teams[0].topics.features: unknown topic role; known: deadLetter, predictions, transactions"),
    ([team("fraud", topics={"transactions": "Fraud_Transactions"})],
     f"{P}:teams[0].topics.transactions: 'Fraud_Transactions' is not a valid topic name (lower-case letters, "
     "digits, '.' and '-', at most 249, starting and ending with a letter or digit)"),
    ([team("fraud"), team("risk", topics={"transactions": "fraud.transactions"})],
     f"{P}:teams[1].topics.transactions: topic 'fraud.transactions' is also team 'fraud''s transactions topic; every "
     "team and role needs its own, or they would share its data"),
    ([team("fraud", topics={"predictions": "fraud.transactions"})],
     f"{P}:teams[0].topics.predictions: topic 'fraud.transactions' is also its own transactions topic; every team "
     "and role needs its own, or they would share its data"),
])
def test_each_kind_of_bad_team_names_the_key_and_the_fix(teams, expected):
    assert problems(teams_config(teams)) == [expected]


def test_a_member_may_belong_to_several_teams():
    shared = "arn:aws:iam::123456789012:role/analysts"
    cfg = load_config(teams_config([{**team("fraud"), "members": [shared]}, {**team("risk"), "members": [shared]}]),
                      PROJECT, "dev")
    assert [t.members for t in cfg.teams] == [[shared], [shared]]


def test_team_defaults():
    (t,) = load_config(teams_config([{"name": "fraud"}]), PROJECT, "dev").teams
    assert t.namespace == "team-fraud" and t.lake_prefix == "teams/fraud/" and t.members == []
    assert t.topic("transactions") == "fraud.transactions" and t.topic("deadLetter") == "fraud.transactions-dlq"
    assert t.quotas.cpu.nominal == 0 and t.quotas.cpu.borrowing_limit is None and t.quotas.gpus == {}


FRAUD = team("fraud", quotas={"gpus": {"gpu-small": {"nominal": 1}}})


@pytest.mark.parametrize("models, expected", [
    ([{"name": "fraud-detector", "team": "fraud"}, {"name": "fraud-detector", "team": "fraud"}],
     f"{P}:models: model name 'fraud-detector' is used more than once"),
    ([{"name": "fraud-detector", "team": "payments"}],
     f"{P}:models[0].team: 'payments' is not a team of this stack (teams: fraud)"),
    ([{"name": "Fraud.Detector", "team": "fraud"}],
     f"{P}:models[0].name: 'Fraud.Detector' is not valid (lower-case letters, digits and '-', 2-40 characters, "
     "starting with a letter)"),
    ([{"name": "fraud-lake-ingestion", "team": "fraud"}],
     f"{P}:models[0].name: model 'fraud-lake-ingestion''s serving would be named 'fraud-lake-ingestion', like team "
     "'fraud''s ingestion; rename the model"),
    ([{"name": "scorer", "team": "fraud"}, {"name": "scorer-drift", "team": "fraud"}],
     f"{P}:models[1].name: model 'scorer-drift''s serving would be named 'scorer-drift', like model 'scorer''s drift "
     "monitor; rename the model"),
    ([{"name": "fraud-detector", "team": "fraud", "training": {"priorityClass": "urgent"}}],
     f"{P}:models[0].training.priorityClass: 'urgent' is not allowed; use one of: batch, experiment, production"),
    ([{"name": "fraud-detector", "team": "fraud", "training": {"gpuPool": "gpu-small", "workers": 2}}],
     f"{P}:models[0].training.workers: the job needs 2 units of pool 'gpu-small' (workers x gpusPerWorker) but team "
     "'fraud' can hold at most 1 there (nominal 1 + 0 borrowable from the other teams); Kueue would never admit it"),
    ([{"name": "fraud-detector", "team": "fraud", "training": {"gpuPool": "gpu-small", "workers": 3}}],
     f"{P}:models[0].training.workers: 3 workers x 1 GPUs exceed pool 'gpu-small''s limit of 2 GPU units"),
    ([{"name": "fraud-detector", "team": "fraud", "training": {"gpuPool": "gpu-small", "gpusPerWorker": 2}}],
     f"{P}:models[0].training.gpusPerWorker: 2 is more than the largest instance of pool 'gpu-small' has (1 GPU "
     "units)"),
    ([{"name": "fraud-detector", "team": "fraud", "serving": {"gpuPool": "gpu-small", "maxReplicas": 3}}],
     f"{P}:models[0].serving.maxReplicas: 3 GPU pods cannot fit pool 'gpu-small' (at most 2 GPU units)"),
    ([{"name": "fraud-detector", "team": "fraud", "serving": {"gpuPool": "gpu-small", "minReplicas": 2,
                                                              "maxReplicas": 2}}],
     f"{P}:models: GPU pool 'gpu-small': the teams' nominal quotas (1) plus GPU serving at maxReplicas (2) need 3 "
     "units, more than the pool has (2); serving bypasses the queues, so Kueue would admit jobs with no room left to "
     "run"),
    ([{"name": "fraud-detector", "team": "fraud", "serving": {"latencySloSeconds": 0.3}}],
     f"{P}:models[0].serving.latencySloSeconds: 0.3 is not a bucket boundary of the inference latency histogram, so "
     "the SLO could not be measured; use one of 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5"),
    ([{"name": "fraud-detector", "team": "fraud", "images": {"serving": "registry.example.com/ml/inference"}}],
     f"{P}:models[0].images.serving: 'registry.example.com/ml/inference' is not a full, pinned image reference (it "
     "has no tag or digest; pin one)"),
    ([{"name": "fraud-detector", "team": "fraud", "images": {"serving": "registry.example.com/ml/inference:latest"}}],
     f"{P}:models[0].images.serving: 'latest' is not allowed: it makes rollouts unrepeatable; use a version tag or a "
     "digest"),
    ([{"name": "fraud-detector", "team": "fraud", "images": {"drift": "drift:1.0.0"}}],
     f"{P}:models[0].images.drift: 'drift:1.0.0' is not a full, pinned image reference (use registry/path:tag or "
     "registry/path@sha256:<64 hex>)"),
    ([{"name": "fraud-detector", "team": "fraud", "images": {"drift": "team/drift:1.0.0"}}],
     f"{P}:models[0].images.drift: 'team/drift:1.0.0' names no registry host (e.g. "
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/name:tag); a bare name would be pulled from Docker Hub"),
    ([{"name": "fraud-detector", "team": "fraud", "drift": {"windowHours": 0}}],
     f"{P}:models[0].drift.windowHours: 0 is out of range; use a value from 1 to 720"),
    ([{"name": "fraud-detector", "team": "fraud", "serving": {"replicas": 2}}],
     f"{P}:models[0].serving.replicas: unknown key; did you mean 'minReplicas'?"),
])
def test_each_kind_of_bad_model_names_the_key_and_the_fix(models, expected):
    assert problems(teams_config([FRAUD], models)) == [expected]


def test_a_model_needs_its_team_even_when_there_are_no_teams():
    assert problems(teams_config([], [{"name": "fraud-detector", "team": "fraud"}])) == [
        f"{P}:models[0].team: 'fraud' is not a team of this stack (teams: none; add it to ml-platform:teams first)"]


def test_training_on_a_pool_without_the_teams_quota_could_never_be_admitted():
    assert problems(teams_config([team("fraud")], [DEV_MODEL])) == [
        f"{P}:models[0].training.gpuPool: team 'fraud' has no quota on GPU pool 'gpu-small' "
        f"({P}:teams[0].quotas.gpus.gpu-small), so its queue could never admit this job; give it one or train on "
        "another pool"]


@pytest.mark.parametrize("fraud, other, admitted", [
    ({"nominal": 0}, {"nominal": 1}, False),                            # the other team lends 1: 0 + 1 < 2
    ({"nominal": 1}, {"nominal": 1}, True),                             # borrows the other's whole nominal
    ({"nominal": 1, "borrowingLimit": 0}, {"nominal": 1}, False),       # may not borrow
    ({"nominal": 1}, {"nominal": 1, "lendingLimit": 0}, False),         # the other lends nothing
    ({"nominal": 0, "borrowingLimit": 2}, {"nominal": 2}, True),
])
def test_a_job_may_count_on_what_the_other_teams_lend(fraud, other, admitted):
    config = teams_config([team("fraud", quotas={"gpus": {"gpu-small": fraud}}),
                           team("risk", quotas={"gpus": {"gpu-small": other}})],
                          [{"name": "fraud-detector", "team": "fraud", "training": {"gpuPool": "gpu-small",
                                                                                     "workers": 2}}])
    if admitted:
        load_config(config, PROJECT, "dev")
    else:
        (problem,) = problems(config)
        assert problem.startswith(f"{P}:models[0].training.workers: the job needs 2 units of pool 'gpu-small'")


def test_model_defaults_come_from_the_platform():
    cfg = load_config(teams_config([FRAUD], [{"name": "fraud-detector", "team": "fraud"}],
                                   monitoring={"latencySloSeconds": 0.1, "sloObjective": 0.995,
                                               "driftPsiThreshold": 0.3}), PROJECT, "dev")
    (model,) = cfg.models
    # No override: the platform's images, resolved by the program (tests/test_image_registry.py).
    assert (model.images.training, model.images.serving, model.images.drift) == ("", "", "")
    assert (model.serving.latency_slo_seconds, model.serving.slo_objective) == (0.1, 0.995)
    assert model.drift.psi_threshold == 0.3 and model.drift.window_hours == 24
    assert model.training.priority_class == "batch" and model.training.gpu_pool == ""
    assert model.experiment == "fraud-detector"


def test_a_model_may_bring_its_own_pinned_images():
    digest = "registry.example.com:5000/team/trainer@sha256:" + "a" * 64
    cfg = load_config(teams_config([FRAUD], [{"name": "fraud-detector", "team": "fraud",
                                              "images": {"training": digest}}]), PROJECT, "dev")
    assert cfg.models[0].images.training == digest


def test_serving_and_training_moved_into_the_models():
    assert problems(dev_config(serving={"minReplicas": 1}, training={"epochs": 5})) == [
        f"{P}:serving: no longer a platform setting: each model has its own; move it to "
        f"{P}:models[i].serving (README: Configuration)",
        f"{P}:training: no longer a platform setting: each model has its own; move it to "
        f"{P}:models[i].training (README: Configuration)"]


def test_every_team_and_model_problem_is_reported_at_once():
    found = problems(teams_config(
        [team("fraud", quotas={"gpus": {"gpu-big": {"nominal": 1}}, "cpu": {"nominal": 2, "lendingLimit": 3}}),
         team("fraud", lakePrefix="teams/fraud")],
        [{"name": "fraud-detector", "team": "risk", "training": {"priorityClass": "asap"}},
         {"name": "fraud-detector", "team": "fraud"}]))
    assert found == [
        f"{P}:teams[0].quotas.cpu.lendingLimit: 3 is above nominal (2); Kueue rejects a ClusterQueue that lends more "
        "than its nominal quota",
        f"{P}:teams[0].quotas.gpus.gpu-big: 'gpu-big' is not a GPU pool of this stack (gpuPools: gpu-small)",
        f"{P}:teams[1].lakePrefix: 'teams/fraud' must end with '/', or it would also cover every prefix that starts "
        "the same way (teams/fraud-other/)",
        f"{P}:teams: team name 'fraud' is used more than once",
        f"{P}:models[0].team: 'risk' is not a team of this stack (teams: fraud)",
        f"{P}:models[0].training.priorityClass: 'asap' is not allowed; use one of: batch, experiment, production",
        f"{P}:models: model name 'fraud-detector' is used more than once",
    ]


# GPU sharing


def pool(**fields) -> dict:
    return {"name": "shared", "instanceTypes": ["g5.xlarge"], "maxNodes": 2, **fields}


@pytest.mark.parametrize("sharing, expected", [
    ({"timeSlicing": {"replicas": 4}, "mig": "1g.10gb"}, f"{P}:gpuPools[0].sharing: set timeSlicing or mig, not both"),
    ({"timeSlicing": {"replicas": 1}},
     f"{P}:gpuPools[0].sharing.timeSlicing.replicas: 1 is out of range; use a value from 2 to 16"),
    ({"timeSlicing": {"replicas": 32}},
     f"{P}:gpuPools[0].sharing.timeSlicing.replicas: 32 is out of range; use a value from 2 to 16"),
    ({"timeSlicing": {}},
     f"{P}:gpuPools[0].sharing.timeSlicing.replicas: required with timeSlicing: how many pods share each GPU (2-16)"),
    ({"mig": "1g.10gb"},
     f"{P}:gpuPools[0].sharing.mig: g5.xlarge has A10G GPUs, which have no MIG; use timeSlicing, or only types with "
     "MIG-capable GPUs (A100 40GB, A100 80GB, H100 80GB, H200 141GB)"),
    ({"timeslicing": {"replicas": 2}},
     f"{P}:gpuPools[0].sharing.timeslicing: unknown key; did you mean 'timeSlicing'?"),
])
def test_each_kind_of_bad_sharing_names_the_key_and_the_fix(sharing, expected):
    assert problems(dev_config(gpuPools=[pool(sharing=sharing)])) == [expected]


def test_a_mig_profile_must_exist_on_every_gpu_of_the_pool():
    bad = pool(instanceTypes=["p4d.24xlarge", "p5.48xlarge"], sharing={"mig": "1g.5gb"})
    assert problems(dev_config(gpuPools=[bad])) == [
        f"{P}:gpuPools[0].sharing.mig: '1g.5gb' is not a MIG profile of the H100 80GB (p5.48xlarge); its profiles: "
        "1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"]


@pytest.mark.parametrize("types, sharing, units_per_gpu, max_units", [
    (["g5.xlarge"], {}, 1, 2),
    (["g5.xlarge", "g5.12xlarge"], {"timeSlicing": {"replicas": 4}}, 4, 32),
    (["p5.48xlarge"], {"mig": "1g.10gb"}, 7, 112),
    (["p5e.48xlarge"], {"mig": "3g.71gb"}, 2, 32),
    # 1g.10gb is 4 instances on an A100 40GB and 7 on an 80GB: the pool promises what every node can give
    (["p4d.24xlarge", "p4de.24xlarge"], {"mig": "1g.10gb"}, 4, 64),
])
def test_sharing_turns_gpus_into_units(types, sharing, units_per_gpu, max_units):
    cfg = load_config(dev_config(gpuPools=[pool(instanceTypes=types, sharing=sharing)]), PROJECT, "dev")
    (p,) = cfg.gpu_pools
    assert p.sharing.units_per_gpu == units_per_gpu and p.max_units == max_units
    assert p.max_gpus == max_units // units_per_gpu  # Karpenter's limit stays in physical GPUs


def test_a_shared_pool_trains_single_unit_jobs_only():
    shared = pool(sharing={"timeSlicing": {"replicas": 4}})
    config = dev_config(gpuPools=[shared], teams=[team("fraud", quotas={"gpus": {"shared": {"nominal": 8}}})],
                        models=[{"name": "fraud-detector", "team": "fraud",
                                 "training": {"gpuPool": "shared", "workers": 2}}])
    assert problems(config) == [
        f"{P}:models[0].training.workers: pool 'shared' shares its GPUs, so a unit is a slice of one and torchrun's "
        "ranks would not get distinct whole GPUs; use workers: 1 and gpusPerWorker: 1 there, or train on a pool "
        "without sharing"]


def test_quotas_on_a_shared_pool_are_in_units():
    shared = pool(sharing={"timeSlicing": {"replicas": 4}})  # 2 GPUs, 8 units
    fits = dev_config(gpuPools=[shared], teams=[team("fraud", quotas={"gpus": {"shared": {"nominal": 8}}})])
    assert load_config(fits, PROJECT, "dev").teams[0].quotas.gpus["shared"].nominal == 8
    over = dev_config(gpuPools=[shared], teams=[team("fraud", quotas={"gpus": {"shared": {"nominal": 9}}})])
    assert problems(over)[0].startswith(f"{P}:teams: nominal quotas on GPU pool 'shared' add up to 9 units, more "
                                        "than the pool can hold (8:")


def test_every_mig_capable_gpu_of_the_catalog_has_its_profiles():
    from platform_config.gpu_catalog import GPU_INSTANCE_TYPES, MIG_PROFILES
    gpus = {(g.gpu, g.gpu_memory_gib) for g in GPU_INSTANCE_TYPES.values()}
    assert set(MIG_PROFILES) == {g for g in gpus if g[0] in ("A100", "H100", "H200")}
    for profiles in MIG_PROFILES.values():
        # a 1g slice is the smallest (7 fit, or 4 of the double-memory 1g), the 7g one is the whole GPU
        assert max(profiles.values()) == 7 and profiles[max(profiles, key=lambda p: int(p[0]))] == 1


def test_no_team_may_take_mlflows_artifacts_area():
    from components.mlflow import ARTIFACT_PREFIX
    from platform_config.load_teams import RESERVED_LAKE_PREFIXES
    assert RESERVED_LAKE_PREFIXES == (f"{ARTIFACT_PREFIX}/",)


@pytest.mark.parametrize("minutes, ok", [(60, True), (10, True), (1440, True), (5, False), (2000, False)])
def test_queue_pending_minutes_bounds(minutes, ok):
    config = dev_config(monitoring={"queuePendingMinutes": minutes})
    if ok:
        assert load_config(config, PROJECT, "dev").services.monitoring.queue_pending_minutes == minutes
    else:
        assert problems(config) == [f"{P}:monitoring.queuePendingMinutes: {minutes} is out of range; use a value "
                                    "from 10 to 1440"]


def test_staging_shares_its_small_pool_between_two_teams():
    cfg = load_config(stack_config("staging")[0], PROJECT, "staging")
    assert [t.name for t in cfg.teams] == ["fraud", "payments"]
    assert {m.name: m.team for m in cfg.models} == {"fraud-detector": "fraud", "chargeback-risk": "payments"}
    small = next(p for p in cfg.gpu_pools if p.name == "gpu-small")
    assert small.sharing.time_slicing_replicas == 4 and small.max_units == 16
