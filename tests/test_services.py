"""Platform services and workload components, in each stack's plan and in config variants of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.kafka_access import KafkaGrant
from components.kafka_msk import resource_arn, server_properties
from components.kafka_strimzi import acls
from components.mlflow import allowed_hosts
from components.training_job import launch_command
from offline.harness import SECRET, run_program, stack_config
from platform_config import versions
from platform_config.services_model import KafkaConfig, MlflowConfig, DatabaseConfig, TrainingConfig
from tests.conftest import stack_plan

REPO = Path(__file__).resolve().parents[1]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")


def variant(stack: str, **overrides) -> object:
    config, secrets = stack_config(stack)
    for key, value in overrides.items():
        config[f"ml-platform:{key}"] = json.dumps(value)
    return run_program(stack, config, secrets)


def model_overrides(stack: str, **sections) -> dict:
    """The stack's `models` with the first model's sections (serving, training, ...) updated: the override for
    `variant` or for a bad-config case."""
    config, _ = stack_config(stack)
    models = json.loads(config["ml-platform:models"])
    for section, fields in sections.items():
        models[0][section] = {**models[0].get(section, {}), **fields}
    return {"models": models}


def pod_specs(plan) -> list[tuple[str, dict]]:
    out = []
    for r in plan.resources:
        kind = r["inputs"].get("kind") if r["type"].startswith("kubernetes:") else None
        if kind in ("Deployment", "StatefulSet"):
            out.append((r["name"], r["inputs"]["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            out.append((r["name"], r["inputs"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def images_in(value) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "image" and isinstance(v, str)] + \
            [i for v in value.values() for i in images_in(v)]
    if isinstance(value, list):
        return [i for v in value for i in images_in(v)]
    return []


# ---- secrets ---------------------------------------------------------------------------------------------------

def test_generated_passwords_never_appear_in_plain_text(plan):
    passwords = plan.of_type("random:index/randomPassword:RandomPassword")
    teams = [r for r in passwords if re.fullmatch(r"mlflow-team-[a-z0-9-]+-password", r["name"])]
    # The MLflow database, Grafana, MLflow's admin and CSRF key, and one MLflow user per team.
    assert len(passwords) == 4 + len(teams) and teams
    text = json.dumps(plan.as_json())
    # The mock makes each password "offline-<digest>"; none of them may be readable anywhere in the plan.
    assert not re.search(r"offline-[0-9a-f]{24}", text)
    for secret in plan.of_type("kubernetes:core/v1:Secret"):
        assert secret["inputs"]["stringData"] == SECRET, secret["urn"]
    for db in plan.of_type("aws:rds/instance:Instance"):
        assert db["inputs"]["password"] == SECRET


def test_the_password_check_would_catch_a_leak():
    plan = stack_plan("dev")
    leaked = json.dumps({**plan.as_json(), "outputs": {"oops": "offline-" + "a" * 24}})
    assert re.search(r"offline-[0-9a-f]{24}", leaked)


def test_grafana_admin_password_reaches_the_chart_only_through_a_secret(plan):
    values = plan.one("kubernetes:helm.sh/v3:Release", "monitoring-stack")["inputs"]["values"]
    assert values["grafana"]["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user",
                                          "passwordKey": "admin-password"}
    assert "adminPassword" not in values["grafana"]


# ---- MLflow ----------------------------------------------------------------------------------------------------

def test_rds_backend_is_private_encrypted_backed_up_and_snapshotted():
    for stack, multi_az, protect in (("staging", False, False), ("prod", True, True)):
        plan = stack_plan(stack)
        db = plan.one("aws:rds/instance:Instance", "mlflow-db-postgres")
        i = db["inputs"]
        assert i["engine"] == "postgres" and i["engineVersion"] == versions.RDS_POSTGRES_MAJOR
        assert i["storageEncrypted"] is True and i["kmsKeyId"].startswith("arn:aws:kms:")
        assert i["publiclyAccessible"] is False and i["skipFinalSnapshot"] is False
        assert re.fullmatch(rf"ml-platform-{stack}-mlflow-final-[0-9a-f]{{8}}", i["finalSnapshotIdentifier"])
        assert i["multiAz"] is multi_az and i["deletionProtection"] is protect and db["protect"] is protect
        assert i["backupRetentionPeriod"] >= 7
        params = plan.one("aws:rds/parameterGroup:ParameterGroup", "mlflow-db-params")["inputs"]
        assert {"name": "rds.force_ssl", "value": "1"} in [{k: p[k] for k in ("name", "value")}
                                                           for p in params["parameters"]]
        rules = [r["inputs"] for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                 if r["name"] == "mlflow-db-from-cluster"]
        assert rules == [{**rules[0], "fromPort": 5432, "toPort": 5432, "ipProtocol": "tcp"}]
        assert "cidrIpv4" not in rules[0] and rules[0]["referencedSecurityGroupId"].startswith("sg-")


def test_dev_runs_postgres_in_the_cluster_as_non_root_without_rds():
    plan = stack_plan("dev")
    assert plan.of_type("aws:rds/instance:Instance") == []
    (sts,) = [r for r in plan.of_type("kubernetes:apps/v1:StatefulSet")]
    pod = sts["inputs"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 999 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["image"] == versions.POSTGRES_IMAGE


def test_mlflow_deployment_shape_per_environment():
    for stack, replicas, exposed in (("dev", 1, False), ("staging", 2, False), ("prod", 3, True)):
        plan = stack_plan(stack)
        deploy = plan.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")["inputs"]
        assert deploy["spec"]["replicas"] == replicas
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(f"/ml-platform-{stack}/mlflow-server:0.1.0")
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MLFLOW_SERVE_ARTIFACTS"] == "true"
        assert re.fullmatch(r"s3://ml-platform-\w+-artifacts-\w+/mlflow", env["MLFLOW_ARTIFACTS_DESTINATION"])
        # The backend URI (password included) arrives as a read-only file, never in the pod spec's environment.
        assert "envFrom" not in container and "MLFLOW_BACKEND_STORE_URI" not in env
        assert {"name": "backend", "mountPath": "/etc/mlflow-backend", "readOnly": True} in container["volumeMounts"]
        assert {"name": "backend", "secret": {"secretName": "mlflow-backend", "defaultMode": 0o440}} in deploy[
            "spec"]["template"]["spec"]["volumes"]
        assert container["command"][-1].endswith("exec mlflow server --app-name basic-auth")
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        pdbs = [r for r in plan.of_type("kubernetes:policy/v1:PodDisruptionBudget") if r["name"] == "mlflow-pdb"]
        assert len(pdbs) == (1 if replicas > 1 else 0)
        svc = plan.one("kubernetes:core/v1:Service", "mlflow-svc")["inputs"]
        assert (svc["spec"].get("type") == "LoadBalancer") is exposed
        if exposed:
            assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
        assert plan.outputs["mlflowTrackingUri"] == "http://mlflow.mlflow.svc.cluster.local:5000"


def test_mlflow_identity_reaches_only_the_artifact_prefix():
    policy = next(json.loads(r["inputs"]["policy"]) for r in stack_plan("prod").of_type("aws:iam/rolePolicy:RolePolicy")
                  if r["name"] == "mlflow")
    objects = policy["Statement"][0]
    assert objects["Resource"] == [next(iter(objects["Resource"])).split("/")[0] + "/mlflow/*"]
    assert policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/*"]}}


def test_mlflow_allowed_hosts():
    cfg = MlflowConfig(database=DatabaseConfig(), exposure="vpc", allowed_hosts=["mlflow.corp.example"])
    hosts = allowed_hosts(cfg, "mlflow", "us-east-1").split(",")
    assert "mlflow.mlflow.svc.cluster.local:*" in hosts and "*.elb.us-east-1.amazonaws.com:*" in hosts
    assert hosts[-1] == "mlflow.corp.example" and "*" not in hosts


# ---- Kafka -----------------------------------------------------------------------------------------------------

def test_prod_msk_is_tls_iam_only_encrypted_and_monitored():
    plan = stack_plan("prod")
    assert plan.of_type("kubernetes:kafka.strimzi.io/v1:Kafka") == []
    cluster = plan.one("aws:msk/cluster:Cluster", "kafka-cluster")["inputs"]
    assert cluster["kafkaVersion"] == versions.MSK_KAFKA_VERSION and cluster["numberOfBrokerNodes"] == 3
    assert cluster["encryptionInfo"]["encryptionInTransit"] == {"clientBroker": "TLS", "inCluster": True}
    assert cluster["encryptionInfo"]["encryptionAtRestKmsKeyArn"].startswith("arn:aws:kms:")
    assert cluster["clientAuthentication"] == {"sasl": {"iam": True}, "unauthenticated": False}
    assert cluster["openMonitoring"]["prometheus"]["jmxExporter"]["enabledInBroker"] is True
    assert cluster["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]["enabled"] is True
    assert len(cluster["brokerNodeGroupInfo"]["clientSubnets"]) == 3
    topics = {t["inputs"]["name"]: t["inputs"] for t in plan.of_type("aws:msk/topic:Topic")}
    assert {n: (t["partitionCount"], t["replicationFactor"]) for n, t in topics.items()} == {
        "fraud.transactions": (12, 3), "fraud.predictions": (12, 3), "fraud.transactions-dlq": (3, 3)}
    assert json.loads(topics["fraud.transactions-dlq"]["configs"])["retention.ms"] == str(720 * 3_600_000)
    assert plan.outputs["kafkaBootstrapServers"].endswith(":9098")


def test_msk_grants_are_scoped_to_topics_and_group():
    roles = {r["name"]: json.loads(r["inputs"]["policy"])["Statement"]
             for r in stack_plan("prod").of_type("aws:iam/rolePolicy:RolePolicy")}
    kafka = {name: {a: s["Resource"] for s in stmts for a in s["Action"] if a.startswith("kafka-cluster:")}
             for name, stmts in roles.items()}
    ingestion = kafka["fraud-lake-ingestion"]
    assert [r.rsplit("/", 1)[-1] for r in ingestion["kafka-cluster:ReadData"]] == ["fraud.transactions"]
    assert [r.rsplit("/", 1)[-1] for r in ingestion["kafka-cluster:WriteData"]] == ["fraud.transactions-dlq"]
    assert ingestion["kafka-cluster:AlterGroup"][0].split(":")[5].startswith("group/ml-platform-prod/")
    assert ingestion["kafka-cluster:AlterGroup"][0].endswith("/fraud.lake-ingestion")
    assert [r.rsplit("/", 1)[-1] for r in kafka["fraud-detector"]["kafka-cluster:WriteData"]] == ["fraud.predictions"]
    assert "kafka-cluster:ReadData" not in kafka["fraud-detector"]
    assert not any(kafka[n] for n in ("fraud-detector-training", "fraud-detector-drift", "mlflow"))


def test_msk_resource_arns_and_server_properties():
    arn = "arn:aws:kafka:us-east-1:123456789012:cluster/ml/abc-1"
    assert resource_arn(arn, "topic", "t") == "arn:aws:kafka:us-east-1:123456789012:topic/ml/abc-1/t"
    props = server_properties(KafkaConfig(flavor="msk", brokers=3))
    assert "auto.create.topics.enable=false" in props and "min.insync.replicas=2" in props


def test_strimzi_cluster_is_kraft_tls_authenticated_and_authorized():
    plan = stack_plan("staging")
    assert plan.of_type("aws:msk/cluster:Cluster") == []
    kafka = plan.one("kubernetes:kafka.strimzi.io/v1:Kafka", "kafka-cluster")["inputs"]["spec"]["kafka"]
    assert kafka["version"] == versions.STRIMZI_KAFKA_VERSION
    assert kafka["listeners"] == [{"name": "tls", "port": 9093, "type": "internal", "tls": True,
                                   "authentication": {"type": "tls"},
                                   "networkPolicyPeers": [{"namespaceSelector": {"matchExpressions": [
                                       {"key": "mlplatform.io/team", "operator": "Exists"}]}}]}]
    assert kafka["authorization"] == {"type": "simple"} and kafka["config"]["min.insync.replicas"] == 2
    pool = plan.one("kubernetes:kafka.strimzi.io/v1:KafkaNodePool", "kafka-nodes")["inputs"]["spec"]
    assert pool["roles"] == ["controller", "broker"] and pool["replicas"] == 3
    assert pool["storage"]["volumes"][0]["deleteClaim"] is False
    monitor = plan.one("kubernetes:monitoring.coreos.com/v1:PodMonitor", "kafka-podmonitor")["inputs"]["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "tcp-prometheus"
    operator = plan.one("kubernetes:helm.sh/v3:Release", "kafka-operator")["inputs"]
    assert operator["version"] == versions.STRIMZI_VERSION and operator["values"]["watchNamespaces"] == ["kafka"]


def test_strimzi_users_get_only_their_topics_and_mount_their_certificates():
    plan = stack_plan("dev")
    users = {u["inputs"]["metadata"]["name"]: u["inputs"]["spec"]["authorization"]["acls"]
             for u in plan.of_type("kubernetes:kafka.strimzi.io/v1:KafkaUser")}
    assert set(users) == {"team-fraud.fraud-lake-ingestion", "team-fraud.fraud-detector"}
    assert users["team-fraud.fraud-lake-ingestion"] == acls(KafkaGrant(
        client="fraud-lake-ingestion", namespace="team-fraud", team="fraud", read=["fraud.transactions"],
        write=["fraud.transactions-dlq"], group="fraud.lake-ingestion"))
    assert users["team-fraud.fraud-detector"] == [{"resource": {"type": "topic", "name": "fraud.predictions",
                                                                "patternType": "literal"},
                                                   "operations": ["Describe", "Write"]}]
    ingestion = plan.one("kubernetes:apps/v1:Deployment", "fraud-lake-ingestion-deployment")["inputs"]["spec"]
    env = {e["name"]: e.get("value") for e in ingestion["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKA_AUTH"] == "mtls" and env["KAFKA_BOOTSTRAP_SERVERS"].endswith(".kafka.svc.cluster.local:9093")
    # The certificate Strimzi trusts, written by Pulumi into the workload's own namespace (tests/test_kafka_teams.py).
    (tls,) = [v for v in ingestion["template"]["spec"]["volumes"] if v["name"] == "kafka-tls"]
    assert tls["secret"]["secretName"] == "fraud-lake-ingestion-kafka-tls"
    secret = plan.one("kubernetes:core/v1:Secret", "team-fraud-fraud-lake-ingestion-kafka-tls")["inputs"]
    assert secret["metadata"]["namespace"] == "team-fraud" and secret["stringData"] == "[secret]"


# ---- workloads -------------------------------------------------------------------------------------------------

def test_every_platform_pod_is_hardened_and_bounded(plan):
    specs = pod_specs(plan)
    assert len(specs) >= 5
    for name, pod in specs:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"]), name


def test_every_long_running_container_has_probes(plan):
    for r in plan.resources:
        if r["type"] in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
            for c in r["inputs"]["spec"]["template"]["spec"]["containers"]:
                assert "livenessProbe" in c, r["name"]


def test_no_image_is_latest_or_untagged(plan):
    images = [i for r in plan.resources if r["type"].startswith("kubernetes:") for i in images_in(r["inputs"])]
    assert len(images) >= 6
    for image in images:
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "@", "digest")
        assert "@sha256:" in image or (name and tag and tag != "latest" and "/" not in tag), image


def test_every_helm_release_is_pinned_to_versions_py(plan):
    pinned = {v for k, v in vars(versions).items() if k.endswith("_VERSION") and isinstance(v, str)}
    for release in plan.of_type("kubernetes:helm.sh/v3:Release"):
        assert release["inputs"]["version"] in pinned, release["name"]


def test_serving_is_autoscaled_drainable_and_scraped(plan):
    deploy = plan.one("kubernetes:apps/v1:Deployment", "fraud-detector-deployment")["inputs"]["spec"]
    assert "replicas" not in deploy  # the HPA owns it
    pod = deploy["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODEL_URI"] == "models:/fraud-detector@champion"
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c)
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + int(env["DRAIN_SECONDS"]) + 30
    assert [t["topologyKey"] for t in pod["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone",
                                                                            "kubernetes.io/hostname"]
    hpa = plan.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "fraud-detector-hpa")["inputs"]["spec"]
    want = {"dev": (1, 2), "staging": (2, 4), "prod": (3, 12)}[plan.stack]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == want
    pdb = plan.one("kubernetes:policy/v1:PodDisruptionBudget", "fraud-detector-pdb")["inputs"]["spec"]
    assert pdb["maxUnavailable"] == 1
    monitor = plan.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "fraud-detector-servicemonitor")
    assert monitor["inputs"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_serving_on_a_gpu_pool_tolerates_the_taint_and_asks_for_a_gpu():
    # Serving bypasses the queues, so the team's GPU quota leaves it room: one GPU queued, one served.
    config, _ = stack_config("dev")
    teams = json.loads(config["ml-platform:teams"])
    teams[0]["quotas"]["gpus"]["gpu-small"] = {"nominal": 1}
    plan = variant("dev", teams=teams,
                   **model_overrides("dev", serving={"minReplicas": 1, "maxReplicas": 1, "gpuPool": "gpu-small"}))
    pod = plan.one("kubernetes:apps/v1:Deployment", "fraud-detector-deployment")["inputs"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"mlplatform.io/gpu-pool": "gpu-small", "nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu_pod = stack_plan("dev").one("kubernetes:apps/v1:Deployment", "fraud-detector-deployment")
    assert "tolerations" not in cpu_pod["inputs"]["spec"]["template"]["spec"]


def test_prod_training_is_distributed_over_two_gpu_nodes():
    plan = stack_plan("prod")
    cron = plan.one("kubernetes:batch/v1:CronJob", "fraud-detector-training-cronjob")["inputs"]["spec"]
    assert cron["schedule"] == "0 3 * * 0" and cron["suspend"] is False and cron["concurrencyPolicy"] == "Forbid"
    job = cron["jobTemplate"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 2, 2)
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in \
        job["podFailurePolicy"]["rules"]
    # A bad config or an MLflow refusal fails the job at once: each retry would be refused the same way.
    codes = re.search(r"^EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = (\d+), (\d+), (\d+)$",
                      (REPO / "workloads" / "training" / "main.py").read_text(), re.M)
    assert {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In",
                                                 "values": [int(codes[2]), int(codes[3])]}} in job["podFailurePolicy"]["rules"]
    pod = job["template"]["spec"]
    (c,) = pod["containers"]
    # F09: c10d rendezvous hosted by pod 0's agent, which survivors rejoin when a peer is replaced after a reclaim.
    assert c["command"] == [
        "torchrun", "--nnodes=2", "--nproc-per-node=8", "--rdzv-backend=c10d",
        "--rdzv-endpoint=$(JOB_NAME)-0.fraud-detector-training.team-fraud.svc.cluster.local:29400",
        "--rdzv-id=$(JOB_NAME)", "--rdzv-conf=join_timeout=1800", "--max-restarts=3", "-m", "training"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8" and pod["subdomain"] == "fraud-detector-training"
    assert pod["nodeSelector"]["mlplatform.io/gpu-pool"] == "training"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CHECKPOINT_URI"].endswith("/checkpoints/fraud-detector-training/$(JOB_NAME)/")
    assert [e["name"] for e in c["env"]][:2] == ["JOB_NAME", "JOB_COMPLETION_INDEX"]  # defined before use
    svc = plan.one("kubernetes:core/v1:Service", "fraud-detector-training-workers")["inputs"]["spec"]
    assert svc["clusterIP"] == "None" and svc["publishNotReadyAddresses"] is True


def test_dev_training_without_schedule_is_a_suspended_template():
    cron = stack_plan("dev").one("kubernetes:batch/v1:CronJob", "fraud-detector-training-cronjob")["inputs"]["spec"]
    assert cron["suspend"] is True
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "training"]


def test_launch_commands():
    assert launch_command("t", "ns", TrainingConfig()) == ["python", "-m", "training"]
    assert launch_command("t", "ns", TrainingConfig(gpu_pool="p", gpus_per_worker=4)) == [
        "torchrun", "--standalone", "--nproc-per-node=4", "-m", "training"]
    multi = launch_command("t", "ns", TrainingConfig(workers=3))
    assert "--nnodes=3" in multi and "--rdzv-endpoint=$(JOB_NAME)-0.t.ns.svc.cluster.local:29400" in multi


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_gpu_training_pods_fit_every_instance_type_of_their_pool(stack):
    # Review finding F12: 4 vCPU / 16 GiB requested on a pool of 4 vCPU / 16 GiB types left one type launchable.
    from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
    from platform_config.instance_catalog import allocatable
    plan = stack_plan(stack)
    job = plan.one("kubernetes:batch/v1:CronJob", "fraud-detector-training-cronjob")["inputs"]["spec"]["jobTemplate"]
    pod = job["spec"]["template"]["spec"]
    requests = pod["containers"][0]["resources"]["requests"]
    pool = next(p for p in plan.of_type("kubernetes:karpenter.sh/v1:NodePool")
                if p["inputs"]["metadata"]["name"] == pod["nodeSelector"]["mlplatform.io/gpu-pool"])
    types = pool["inputs"]["spec"]["template"]["spec"]["requirements"][0]["values"]
    gpus = int(requests["nvidia.com/gpu"])
    for t in types:
        if GPU_INSTANCE_TYPES[t].gpus >= gpus:
            cpu_m, memory_mib = allocatable(t)
            share = gpus / GPU_INSTANCE_TYPES[t].gpus
            assert int(requests["cpu"].removesuffix("m")) <= cpu_m * share, t
            assert int(requests["memory"].removesuffix("Mi")) <= memory_mib * share, t


def test_workload_roles_touch_only_their_lake_prefixes():
    roles = {r["name"]: json.loads(r["inputs"]["policy"])["Statement"]
             for r in stack_plan("dev").of_type("aws:iam/rolePolicy:RolePolicy")}

    def objects(name: str, action: str) -> list[str]:
        """bucket area + key pattern for each object ARN the role may use with `action`."""
        arns = [a for st in roles[name] if action in st["Action"] for a in st["Resource"]]
        return sorted(re.sub(r"^arn:aws:s3:::ml-platform-dev-(\w+)-\w+/", r"\1:", a) for a in arns)

    # Each under the team's prefix (teams/fraud/ in dev): test_teams proves no role reaches another team's.
    assert objects("fraud-lake-ingestion", "s3:PutObject") == [
        "curated:teams/fraud/transactions/*", "raw:teams/fraud/transactions/*"]
    assert objects("fraud-detector-training", "s3:PutObject") == [
        "artifacts:teams/fraud/checkpoints/fraud-detector-training/*"]
    assert objects("fraud-detector-training", "s3:GetObject") == [
        "artifacts:teams/fraud/checkpoints/fraud-detector-training/*", "curated:teams/fraud/transactions/*"]
    assert objects("fraud-detector-drift", "s3:PutObject") == []
    assert "fraud-detector" not in roles  # serving needs no S3 (models come through MLflow) and no MSK in dev


def test_ingestion_replicas_follow_config():
    for stack, n in (("dev", 1), ("staging", 2), ("prod", 6)):
        deploy = stack_plan(stack).one("kubernetes:apps/v1:Deployment", "fraud-lake-ingestion-deployment")
        assert deploy["inputs"]["spec"]["replicas"] == n


def test_namespaces_enforce_pod_security():
    plan = stack_plan("prod")
    levels = {n["inputs"]["metadata"]["name"]: n["inputs"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for n in plan.of_type("kubernetes:core/v1:Namespace")}
    # Only the monitoring stack's node exporter needs the host; every team namespace is restricted.
    assert levels == {"mlflow": "restricted", "kueue-system": "restricted", "team-fraud": "restricted",
                      "opencost": "restricted", "monitoring": "privileged"}
    staging = {n["inputs"]["metadata"]["name"] for n in stack_plan("staging").of_type("kubernetes:core/v1:Namespace")}
    assert "strimzi-system" in staging
    operator = stack_plan("staging").one("kubernetes:helm.sh/v3:Release", "kafka-operator")["inputs"]["values"]
    assert {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"} in operator["extraEnvs"]


def test_mlflow_is_reachable_only_from_its_clients():
    for stack, exposed in (("dev", False), ("prod", True)):
        plan = stack_plan(stack)
        policy = plan.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-ingress")["inputs"]["spec"]
        peers = policy["ingress"][0]["from"]
        namespaces = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers
                      if "namespaceSelector" in p]
        teams = [n["inputs"]["metadata"]["name"] for n in plan.of_type("kubernetes:core/v1:Namespace")
                 if "mlplatform.io/team" in (n["inputs"]["metadata"].get("labels") or {})]
        assert sorted(namespaces) == sorted([*teams, "monitoring"]) and teams
        # The auth sync Job, from MLflow's own namespace.
        assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow-auth-sync"}}} in peers
        assert [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p] == (["10.30.0.0/16"] if exposed else [])
    svc = stack_plan("prod").one("kubernetes:core/v1:Service", "mlflow-svc")["inputs"]["spec"]
    assert svc["loadBalancerSourceRanges"] == ["10.30.0.0/16"]
    cni = [a for a in stack_plan("prod").of_type("aws:eks/addon:Addon") if a["inputs"]["addonName"] == "vpc-cni"]
    assert json.loads(cni[0]["inputs"]["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_mlflow_migrates_once_per_image_before_the_servers_start():
    plan = stack_plan("prod")
    job = plan.one("kubernetes:batch/v1:Job", "mlflow-db-upgrade")
    assert re.fullmatch(r"mlflow-db-upgrade-[0-9a-f]{8}", job["inputs"]["metadata"]["name"])
    deploy = plan.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")
    assert job["urn"] in deploy["dependsOn"]
    assert "initContainers" not in deploy["inputs"]["spec"]["template"]["spec"]
    # Only what `mlflow db upgrade` reads: a server-only setting (allowed hosts, workers) must not replace the Job.
    (migrate,) = job["inputs"]["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in migrate["env"]] == ["HOME"] and "envFrom" not in migrate


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_mlflow_disruption_budget_never_selects_the_migration_pod(stack):
    # Review finding F03: a PDB whose selector matches a Job's pod cannot compute its scale and allows no eviction.
    plan = stack_plan(stack)
    selector = plan.one("kubernetes:policy/v1:PodDisruptionBudget", "mlflow-pdb")["inputs"]["spec"]["selector"]
    job_labels = plan.one("kubernetes:batch/v1:Job", "mlflow-db-upgrade")["inputs"]["spec"]["template"]["metadata"][
        "labels"]
    assert not all(job_labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_the_dev_database_admits_the_server_and_the_migration_and_goes_with_the_stack():
    plan = stack_plan("dev")
    policy = plan.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-db-ingress")["inputs"]["spec"]
    (expression,) = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    labels = {plan.one("kubernetes:batch/v1:Job", "mlflow-db-upgrade")["inputs"]["spec"]["template"]["metadata"][
        "labels"]["app.kubernetes.io/name"], plan.one("kubernetes:apps/v1:Deployment", "mlflow-deployment")[
        "inputs"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]}
    assert set(expression["values"]) == labels and expression["operator"] == "In"
    database = plan.one("kubernetes:apps/v1:StatefulSet", "mlflow-db-statefulset")["inputs"]["spec"]
    assert database["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"  # dev data is disposable
    headless = plan.one("kubernetes:core/v1:Service", "mlflow-db-headless")["inputs"]
    assert database["serviceName"] == headless["metadata"]["name"] and headless["spec"]["clusterIP"] == "None"
    env = {e["name"]: e for e in database["template"]["spec"]["containers"][0]["env"]}
    assert "POSTGRES_PASSWORD" not in env and env["POSTGRES_PASSWORD_FILE"]["value"] == "/etc/postgres-password/password"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_database_key_outlives_the_final_snapshot_and_the_suffix_follows_replacements(stack):
    plan = stack_plan(stack)
    # W4: the final snapshot is always kept, and can only be restored with its key.
    assert plan.one("aws:kms/key:Key", "mlflow-db-key")["retainOnDelete"] is True
    # W6: the snapshot suffix is regenerated whenever an input that replaces the instance changes.
    suffix = plan.one("random:index/randomString:RandomString", "mlflow-db-snapshot-suffix")["inputs"]["keepers"]
    instance = plan.one("aws:rds/instance:Instance", "mlflow-db-postgres")
    assert suffix["identifier"] == instance["inputs"]["identifier"]
    assert suffix["kmsKeyId"] == instance["inputs"]["kmsKeyId"] and suffix["dbName"] == instance["inputs"]["dbName"]
    # C3: RDS log exports land in groups with a retention, declared before the instance.
    groups = {g["inputs"]["name"]: g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup")
              if g["inputs"]["name"].startswith("/aws/rds/")}
    ident = instance["inputs"]["identifier"]
    assert set(groups) == {f"/aws/rds/instance/{ident}/{log}" for log in instance["inputs"]["enabledCloudwatchLogsExports"]}
    assert all(g["urn"] in instance["dependsOn"] and g["inputs"]["retentionInDays"] > 0 for g in groups.values())


@pytest.mark.parametrize("overrides, problem", [
    (model_overrides("dev", training={"gpuPool": "nope"}),
     "ml-platform:models[0].training.gpuPool: 'nope' is not a GPU pool of this stack (gpuPools: gpu-small)"),
    ({"kafka": {"flavor": "strimzi", "brokers": 1, "topics": {"transactions": {"replicationFactor": 3}}}},
     "ml-platform:kafka.topics.transactions.replicationFactor: 3 is more than kafka.brokers (1); a topic cannot "
     "have more replicas than brokers"),
    ({"kafka": {"flavor": "msk", "brokers": 3}}, "ml-platform:kafka.brokers: MSK needs a multiple of the AZ count (2); "
                                                 "got 3"),
    ({"images": {"registry": "r.example.com", "tag": "latest"}},
     "ml-platform:images.tag: 'latest' is not allowed: it makes rollouts unrepeatable; use a version tag or a digest"),
    ({"monitoring": {"latencySloSeconds": 0.3}},
     "ml-platform:monitoring.latencySloSeconds: 0.3 is not a bucket boundary of the inference latency histogram, so "
     "the SLO could not be measured; use one of 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5"),
    ({"mlflow": {"database": {"backend": "in-cluster", "multiAz": True}}},
     "ml-platform:mlflow.database.multiAz: only applies to backend 'rds'; remove it or set backend: rds"),
    (model_overrides("dev", training={"gpuPool": "gpu-small", "workers": 3}),
     "ml-platform:models[0].training.workers: 3 workers x 1 GPUs exceed pool 'gpu-small''s limit of 2 GPU units"),
    ({"ingestion": {"replicas": 9}},
     "ml-platform:ingestion.replicas: 9 consumers for 3 partitions of the transactions topic would leave some idle; "
     "lower it or add partitions"),
    (model_overrides("dev", serving={"cpu": "lots"}),
     "ml-platform:models[0].serving.cpu: 'lots' is not valid (e.g. 500m or 2)"),
    (model_overrides("dev", training={"schedule": "every monday"}),
     "ml-platform:models[0].training.schedule: 'every monday' is not a 5-field cron expression (e.g. '0 3 * * 1')"),
    ({"serving": {"cpu": "1"}}, "ml-platform:serving: no longer a platform setting: each model has its own; move it "
                                "to ml-platform:models[i].serving (README: Configuration)"),
])
def test_bad_service_config_names_the_key_and_the_fix(overrides, problem):
    from platform_config import ConfigError, load_config
    config, _ = stack_config("dev")
    for key, value in overrides.items():
        config[f"ml-platform:{key}"] = json.dumps(value)
    with pytest.raises(ConfigError) as err:
        load_config(config, "ml-platform", "dev")
    assert problem in err.value.problems


def test_alerts_route_to_the_webhook_without_its_url_in_helm_values():
    quiet = stack_plan("dev").one("kubernetes:helm.sh/v3:Release", "monitoring-stack")["inputs"]["values"]
    receivers = {r["name"]: r for r in quiet["alertmanager"]["config"]["receivers"]}
    assert "webhook_configs" not in receivers["platform"]
    url = "https://hooks.example.com/services/T000/B000/offline-webhook-token"
    plan = variant("dev", monitoring={"retention": "3d", "storageGiB": 20, "alertWebhookUrl": url})
    values = plan.one("kubernetes:helm.sh/v3:Release", "monitoring-stack")["inputs"]["values"]["alertmanager"]
    hook = next(r for r in values["config"]["receivers"] if r["name"] == "platform")["webhook_configs"][0]
    assert hook == {"url_file": "/etc/alertmanager/secrets/alertmanager-webhook/url", "send_resolved": True}
    assert values["alertmanagerSpec"]["secrets"] == ["alertmanager-webhook"]
    assert plan.one("kubernetes:core/v1:Secret", "monitoring-alert-webhook")["inputs"]["stringData"] == SECRET
    assert "offline-webhook-token" not in json.dumps(plan.as_json())
    from components.monitoring import PLATFORM_INHIBIT_RULES
    assert values["config"]["inhibit_rules"] == PLATFORM_INHIBIT_RULES


def test_the_charts_own_inhibitions_are_kept_and_eks_control_plane_scrapes_are_off():
    # F05: Helm replaces lists, so the chart's default inhibit rules must be repeated, exactly as the chart has them.
    from components.monitoring import CHART_INHIBIT_RULES
    from upstream.catalog import chart_values
    defaults = chart_values("kube-prometheus-stack", versions.KUBE_PROMETHEUS_STACK_VERSION)
    assert CHART_INHIBIT_RULES == defaults["alertmanager"]["config"]["inhibit_rules"]
    values = stack_plan("dev").one("kubernetes:helm.sh/v3:Release", "monitoring-stack")["inputs"]["values"]
    # One change only: a critical alert silences a warning of the same model, not every model in the namespace.
    from components.monitoring import PLATFORM_INHIBIT_RULES
    assert values["alertmanager"]["config"]["inhibit_rules"] == PLATFORM_INHIBIT_RULES
    assert PLATFORM_INHIBIT_RULES[1:] == CHART_INHIBIT_RULES[1:]
    assert PLATFORM_INHIBIT_RULES[0] == {**CHART_INHIBIT_RULES[0], "equal": ["namespace", "alertname", "model"]}
    # F04: components EKS does not expose would raise "down" alerts forever; the chart enables all four.
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert defaults[component]["enabled"] is True and values[component] == {"enabled": False}
    # F13: the chart's CRDs are applied again on every upgrade.
    assert values["crds"]["upgradeJob"]["enabled"] is True


def test_workload_roles_use_the_lake_key_only_through_s3():
    # S4: the grant is for S3's server-side encryption, not for calling KMS directly with the lake key.
    plan = stack_plan("prod")
    grants = [st for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")
              for st in json.loads(r["inputs"]["policy"])["Statement"] if "kms:Decrypt" in st["Action"]]
    assert len(grants) >= 4
    assert all(st["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}} for st in grants)


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_strimzi_crds_are_applied_by_pulumi_before_the_operator_and_match_the_pinned_release(stack):
    # F13: Helm never upgrades a chart's crds/; Pulumi applies the vendored CRDs of the pinned release instead.
    from upstream.catalog import strimzi_crd_documents
    plan = stack_plan(stack)
    operator = plan.one("kubernetes:helm.sh/v3:Release", "kafka-operator")
    assert operator["inputs"]["skipCrds"] is True
    crds = {r["inputs"]["metadata"]["name"]: r for r in
            plan.of_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")}
    vendored = {d["metadata"]["name"]: d for d in strimzi_crd_documents()}
    assert set(crds) == set(vendored) and all(r["urn"] in operator["dependsOn"] for r in crds.values())
    assert all(crds[n]["inputs"]["spec"] == vendored[n]["spec"] for n in vendored)


def test_brokers_one_per_node_spread_over_zones_and_pulumi_waits_for_kafka_and_its_users():
    plan = stack_plan("staging")
    pod = plan.one("kubernetes:kafka.strimzi.io/v1:KafkaNodePool", "kafka-nodes")["inputs"]["spec"]["template"]["pod"]
    # F10: maxSkew 1 on hostname let two of three brokers share a node; the anti-affinity is required.
    (anti,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone"]
    # F08: workloads mount the user certificates Strimzi issues only once Kafka is up.
    for kind, name in (("Kafka", "kafka-cluster"), ("KafkaUser", "team-fraud-fraud-lake-ingestion-kafka-user"),
                       ("KafkaTopic", "kafka-topic-fraud-transactions")):
        annotations = plan.one(f"kubernetes:kafka.strimzi.io/v1:{kind}", name)["inputs"]["metadata"]["annotations"]
        assert annotations["pulumi.com/waitFor"] == "condition=Ready"


@pytest.mark.parametrize("stack, deleted", [("dev", True), ("staging", False)])
def test_broker_volumes_go_with_the_stack_only_where_data_is_disposable(stack, deleted):
    spec = stack_plan(stack).one("kubernetes:kafka.strimzi.io/v1:KafkaNodePool", "kafka-nodes")["inputs"]["spec"]
    assert spec["storage"]["volumes"][0]["deleteClaim"] is deleted
