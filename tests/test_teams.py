"""Teams and models, judged on each stack's plan: what a team gets, that every model is wired from config, and that
no team's identity reaches another team's data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offline import team_boundaries
from offline.harness import STACKS, Plan, run_program, stack_config
from platform_config.load import load_config
from platform_config.model import PlatformConfig
from tests.conftest import stack_plan

K8S = "kubernetes:"


def config(stack: str) -> PlatformConfig:
    values, _ = stack_config(stack)
    return load_config(values, "ml-platform", stack)


def k8s_objects(plan: Plan, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [r for r in plan.resources if r["type"].startswith(K8S) and r["type"].endswith(f":{kind}")
             or r["type"] == "kubernetes:apiextensions.k8s.io:CustomResource" and r["inputs"].get("kind") == kind]
    if namespace is not None:
        found = [r for r in found if (r["inputs"].get("metadata") or {}).get("namespace") == namespace]
    return found


def named(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r["inputs"] for r in objects}


@pytest.mark.parametrize("stack", STACKS)
def test_each_team_gets_a_fenced_namespace_with_a_quota(stack):
    cfg, plan = config(stack), stack_plan(stack)
    namespaces = named(k8s_objects(plan, "Namespace"))
    assert cfg.teams
    for team in cfg.teams:
        labels = namespaces[team.namespace]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["mlplatform.io/team"] == team.name
        quota = named(k8s_objects(plan, "ResourceQuota", team.namespace))["team"]["spec"]["hard"]
        assert quota["services.loadbalancers"] == "0"
        assert set(quota) >= {"requests.cpu", "requests.memory", "requests.nvidia.com/gpu"}
        assert "defaults" in named(k8s_objects(plan, "LimitRange", team.namespace))
        policies = named(k8s_objects(plan, "NetworkPolicy", team.namespace))
        deny = policies["default-deny"]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert "platform-egress" in policies


@pytest.mark.parametrize("stack", STACKS)
def test_members_can_edit_their_own_namespaces_and_nothing_else(stack):
    cfg, plan = config(stack), stack_plan(stack)
    entries = {r["inputs"]["principalArn"]: r["inputs"] for r in plan.of_type("aws:eks/accessEntry:AccessEntry")}
    associations = {}
    for r in plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation"):
        associations.setdefault(r["inputs"]["principalArn"], []).append(r["inputs"])
    members: dict[str, set[str]] = {}
    for team in cfg.teams:
        for arn in team.members:
            members.setdefault(arn, set()).add(team.name)
    assert members, "every stack declares team members"
    for arn, teams in members.items():
        assert set(entries[arn]["kubernetesGroups"]) == {f"mlplatform:team:{t}" for t in teams}
        (association,) = associations[arn]
        assert association["policyArn"].endswith("/AmazonEKSEditPolicy")
        assert association["accessScope"] == {"type": "namespace",
                                              "namespaces": sorted(f"team-{t}" for t in teams)} or \
            sorted(association["accessScope"]["namespaces"]) == sorted(f"team-{t}" for t in teams)
    for team in cfg.teams:
        binding = named(k8s_objects(plan, "RoleBinding", team.namespace))["queue-users"]
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                        "name": f"mlplatform:team:{team.name}"}]


@pytest.mark.parametrize("stack", STACKS)
def test_every_model_gets_its_own_workloads_in_its_team_namespace(stack):
    cfg, plan = config(stack), stack_plan(stack)
    for model in cfg.models:
        ns = next(t.namespace for t in cfg.teams if t.name == model.team)
        deployments = named(k8s_objects(plan, "Deployment", ns))
        assert model.name in deployments and f"{model.name}-drift" in deployments
        cronjob = named(k8s_objects(plan, "CronJob", ns))[f"{model.name}-training"]
        env = {e["name"]: e.get("value") for e in
               cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MODEL_NAME"] == model.name and env["MLFLOW_EXPERIMENT"] == model.experiment
        serving_env = {e["name"]: e for e in deployments[model.name]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert serving_env["MODEL_NAME"]["value"] == model.name
        assert "MLFLOW_TRACKING_PASSWORD" not in serving_env  # a file from the team's Secret, never an env var
        for pod in (deployments[model.name]["spec"]["template"]["spec"],
                    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]):
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert volumes["mlflow-credentials"]["secret"]["secretName"] == "mlflow-credentials"
            assert {"name": "mlflow-credentials", "mountPath": "/tmp/.mlflow", "readOnly": True} in \
                pod["containers"][0]["volumeMounts"]
    for team in cfg.teams:
        assert f"{team.name}-lake-ingestion" in named(k8s_objects(plan, "Deployment", team.namespace))


def test_staging_runs_two_teams_and_two_models():
    cfg = config("staging")
    assert len({t.name for t in cfg.teams}) >= 2
    assert len({m.team for m in cfg.models}) >= 2


@pytest.mark.parametrize("stack", STACKS)
def test_every_training_job_goes_through_its_team_queue(stack):
    cfg, plan = config(stack), stack_plan(stack)
    for team in cfg.teams:
        local_queues = named(k8s_objects(plan, "LocalQueue", team.namespace))
        cronjobs = named(k8s_objects(plan, "CronJob", team.namespace))
        for name, cronjob in cronjobs.items():
            labels = cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
            assert labels["kueue.x-k8s.io/queue-name"] in local_queues, name
            priority = named(k8s_objects(plan, "WorkloadPriorityClass"))
            assert labels["kueue.x-k8s.io/priority-class"] in priority, name
        queue = local_queues["default"]["spec"]
        assert queue["clusterQueue"] == team.name
    cluster_queues = named(k8s_objects(plan, "ClusterQueue"))
    assert set(cluster_queues) == {t.name for t in cfg.teams}


@pytest.mark.parametrize("stack", STACKS)
def test_one_flavor_per_gpu_pool_matching_its_nodes(stack):
    cfg, plan = config(stack), stack_plan(stack)
    flavors = named(k8s_objects(plan, "ResourceFlavor"))
    pools = named(k8s_objects(plan, "NodePool"))
    for pool in cfg.gpu_pools:
        flavor = flavors[pool.name]["spec"]
        template = pools[pool.name]["spec"]["template"]
        for key, value in flavor["nodeLabels"].items():
            assert template["metadata"]["labels"][key] == value
        # Taints, not tolerations: only pods that tolerate the GPU taint may use a GPU pool's quota.
        assert flavor["nodeTaints"] == template["spec"]["taints"], pool.name
    assert "general" in flavors


# --- data boundaries: every workload role, evaluated against every other team's data -------------------------------

def with_second_team(stack: str) -> tuple[dict[str, str], list[str]]:
    """The stack's config plus a `payments` team (no GPUs, so every stack's quotas still fit)."""
    values, secrets = stack_config(stack)
    teams = json.loads(values["ml-platform:teams"])
    if not any(t["name"] == "payments" for t in teams):
        teams.append({"name": "payments", "members": ["arn:aws:iam::123456789012:role/payments-scientists"],
                      "quotas": {"cpu": {"nominal": 2}, "memoryGiB": {"nominal": 8}}})
    values["ml-platform:teams"] = json.dumps(teams)
    return values, secrets


@pytest.mark.parametrize("stack", STACKS)
def test_no_team_role_reaches_another_teams_lake_prefix_or_topics(stack):
    # Every stack with two teams at least, so the check always has a pair to judge (prod runs MSK, IAM-authorised;
    # dev and staging Strimzi, ACL-authorised).
    values, secrets = with_second_team(stack)
    plan, cfg = run_program(stack, values, secrets), load_config(values, "ml-platform", stack)
    assert len(cfg.teams) >= 2
    assert team_boundaries.problems(plan, cfg) == []
    assert team_boundaries.problems(stack_plan(stack), config(stack)) == []


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_boundary_referee_catches_a_grant_wider_than_the_team(stack, monkeypatch):
    # The defect: lake grants cut at `teams/` instead of the team's own prefix.
    import components.ingestion
    monkeypatch.setattr(components.ingestion, "team_prefix", lambda ctx, prefix: "teams/")
    values, secrets = with_second_team(stack)
    found = team_boundaries.problems(run_program(stack, values, secrets), load_config(values, "ml-platform", stack))
    assert "team-fraud role fraud-lake-ingestion may s3:PutObject in payments's raw data (teams/payments/)" in found
    assert "team-payments role payments-lake-ingestion may s3:PutObject in fraud's curated data (teams/fraud/)" in found


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_boundary_referee_catches_a_topic_grant_wider_than_the_team(stack, monkeypatch):
    # The defect: read grants on every topic (`*`), the shortcut a failing consumer tempts one into.
    import components.kafka_msk
    import components.kafka_strimzi
    strimzi_acls, msk_arn = components.kafka_strimzi.acls, components.kafka_msk.resource_arn
    monkeypatch.setattr(components.kafka_strimzi, "acls", lambda request: [
        {**rule, "resource": {**rule["resource"], "name": "*"}} if "Read" in rule["operations"]
        and rule["resource"]["type"] == "topic" else rule for rule in strimzi_acls(request)])
    monkeypatch.setattr(components.kafka_msk, "resource_arn", lambda cluster, kind, name: msk_arn(
        cluster, kind, "*" if kind == "topic" and name.endswith(".transactions") else name))
    values, secrets = with_second_team(stack)
    found = team_boundaries.problems(run_program(stack, values, secrets), load_config(values, "ml-platform", stack))
    if stack == "prod":  # MSK: the IAM policy on the topic ARN
        assert "team-fraud role fraud-lake-ingestion may kafka-cluster:ReadData on payments's topic " \
               "payments.transactions" in found, found
    else:  # Strimzi: the KafkaUser's ACLs
        assert "KafkaUser team-fraud.fraud-lake-ingestion may Describe/Read topic payments.transactions of team " \
               "payments" in found, found


def test_the_boundary_referee_refuses_to_pass_when_nothing_is_granted(monkeypatch):
    import components.drift_monitor
    import components.ingestion
    import components.training_job
    for module in (components.ingestion, components.training_job, components.drift_monitor):
        monkeypatch.setattr(module, "s3_statements", lambda ctx, **_: [])
    found = team_boundaries.problems(run_program("dev"), config("dev"))
    assert found == ["team fraud: no workload role in team-fraud can read its own curated data (teams/fraud/); the "
                     "boundary check would prove nothing"]
