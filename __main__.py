"""The ML platform: network, data lake, EKS with GPU pools, platform services, teams, and each team's models.

Wiring only; each piece lives in components/."""

import datetime

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster, ClusterArgs, deployer_principal
from components.cluster_addons import AFTER_NODES, BEFORE_NODES, ClusterAddons, ClusterAddonsArgs
from components.data_lake import DataLake, DataLakeArgs
from components.drift_monitor import DriftMonitor, DriftMonitorArgs
from components.general_pool import GeneralPool, GeneralPoolArgs
from components.gpu_pool import GpuPool, GpuPoolArgs
from components.image_registry import ImageRegistry, ImageRegistryArgs
from components.ingestion import Ingestion, IngestionArgs
from components.kafka_msk import MskKafka, MskKafkaArgs
from components.kafka_strimzi import StrimziKafka, StrimziKafkaArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.kueue import QUEUE_USER_CLUSTER_ROLE, Kueue, KueueArgs
from components.metrics_server import MetricsServer, MetricsServerArgs
from components.mlflow import Mlflow, MlflowArgs
from components.mlflow_database import MlflowDatabase, MlflowDatabaseArgs
from components.model_serving import ModelServing, ModelServingArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.namespace import PlatformNamespace, PlatformNamespaceArgs
from components.network import Network, NetworkArgs
from components.nvidia_device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.opencost import OpenCost, OpenCostArgs
from components.system_nodes import SystemNodes, SystemNodesArgs
from components.team import Team, TeamArgs, kafka_client_egress
from components.training_job import TrainingJob, TrainingJobArgs
from components.workload_base import WorkloadContext
from platform_config import ConfigError, access_problem, load_stack_config, support_warning
from platform_config.services_model import TOPIC_ROLES

project, stack = pulumi.get_project(), pulumi.get_stack()
# Validate the whole config first: a bad stack fails here, before a single resource is declared.
cfg = load_stack_config(project, stack)
if warning := support_warning(cfg.cluster.version, datetime.date.today()):
    pulumi.log.warn(warning)

aws_provider = aws.Provider("aws", region=cfg.region, default_tags={"tags": {
    **cfg.tags, "mlplatform.io/project": project, "mlplatform.io/stack": stack, "environment": cfg.environment,
    "managed-by": "pulumi"}})
with_aws = pulumi.ResourceOptions(providers=[aws_provider])
# Whoever runs this must be able to reach the Kubernetes part too: refuse before anything is declared if not.
deployer = deployer_principal(pulumi.InvokeOptions(provider=aws_provider))
if problem := access_problem(cfg.cluster, deployer, pulumi.runtime.is_dry_run()):
    raise ConfigError(stack, [problem])
account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=aws_provider)).account_id

network = Network("network", NetworkArgs(config=cfg.network, cluster_name=cfg.cluster.name, region=cfg.region,
                                         account_id=account_id), opts=with_aws)
lake = DataLake("data-lake", DataLakeArgs(config=cfg.data_lake, name_prefix=f"{project}-{stack}-",
                                          account_id=account_id), opts=with_aws)
# The workload images: this stack's ECR repositories, which .github/workflows/images.yml pushes to, unless
# images.registry points elsewhere.
images = ImageRegistry("images", ImageRegistryArgs(config=cfg.services.images, name_prefix=f"{project}-{stack}",
                                                   region=cfg.region, protect=cfg.data_lake.protect), opts=with_aws)
cluster = Cluster("eks", ClusterArgs(config=cfg.cluster, region=cfg.region, vpc_id=network.vpc_id,
                                     subnet_ids=network.private_subnet_ids, network_ready=network.transit_routes,
                                     teams=cfg.teams), opts=with_aws)

identity = {"mode": cfg.cluster.workload_identity, "oidc_provider_arn": cluster.oidc_provider_arn,
            "oidc_issuer": cluster.oidc_issuer, "account_id": account_id}
addons = ClusterAddons("addons", ClusterAddonsArgs(cluster_name=cluster.name, versions=cfg.cluster.addon_versions,
                                                   identity=identity), opts=with_aws)
networking_addons = addons.install(BEFORE_NODES, depends_on=[])
system_nodes = SystemNodes("system-nodes", SystemNodesArgs(
    config=cfg.system_nodes, cluster_name=cluster.name, subnet_ids=network.private_subnet_ids,
    depends_on=networking_addons), opts=with_aws)
node_addons = addons.install(AFTER_NODES, depends_on=[system_nodes])
storage_class = addons.default_storage_class(cluster.provider)
addons.finish()

karpenter = Karpenter("karpenter", KarpenterArgs(
    cluster_name=cluster.name, cluster_key=cfg.cluster.name, cluster_arn=cluster.arn, region=cfg.region,
    account_id=account_id,
    k8s_provider=cluster.provider, identity=identity, depends_on=[system_nodes, *node_addons]), opts=with_aws)
# CPU capacity that scales: platform services and CPU workloads land here when the system nodes are full.
general_pool = GeneralPool("general-pool", GeneralPoolArgs(
    config=cfg.general_pool, cluster_name=cfg.cluster.name, node_role_name=karpenter.node_role_name,
    cluster_security_group_id=cluster.security_group_id, k8s_provider=cluster.provider,
    depends_on=[karpenter.crds, karpenter.controller]))
gpu_pools = [GpuPool(f"gpu-pool-{pool.name}", GpuPoolArgs(
    config=pool, cluster_name=cfg.cluster.name, node_role_name=karpenter.node_role_name,
    cluster_security_group_id=cluster.security_group_id, k8s_provider=cluster.provider,
    depends_on=[karpenter.crds, karpenter.controller])) for pool in cfg.gpu_pools]
NvidiaDevicePlugin("nvidia-device-plugin", NvidiaDevicePluginArgs(k8s_provider=cluster.provider, gpu_pools=cfg.gpu_pools,
                                                                  depends_on=[system_nodes]))
MetricsServer("metrics-server", MetricsServerArgs(k8s_provider=cluster.provider, depends_on=[system_nodes]))

# Platform services. Namespaces first: `monitoring` runs node-level exporters (privileged); everything else,
# Strimzi's Kafka pods included, meets `restricted`.
svc = cfg.services
name_prefix = f"{project}-{stack}"
on_nodes = [system_nodes, *node_addons, storage_class, general_pool.node_pool]
strimzi = svc.kafka.flavor == "strimzi"
namespaces = {name: PlatformNamespace(name, PlatformNamespaceArgs(k8s_provider=cluster.provider, enforce=level),
                                      opts=pulumi.ResourceOptions(depends_on=on_nodes))
              for name, level in (("mlflow", "restricted"), ("monitoring", "privileged"), ("kueue-system", "restricted"),
                                  ("kafka", "restricted"), ("strimzi-system", "restricted"),
                                  ("opencost", "restricted"))
              if strimzi or name not in ("kafka", "strimzi-system")}

# Teams: each gets a namespace with its quota and network fence; its people got their access entries with the
# cluster.
teams = {team.name: Team(f"team-{team.name}", TeamArgs(
    config=team, models=cfg.models, general_pool=cfg.general_pool, gpu_pools=cfg.gpu_pools,
    ingestion_replicas=svc.ingestion.replicas, k8s_provider=cluster.provider,
    kafka_egress=kafka_client_egress(svc.kafka.flavor, str(cfg.network.cidr)),
    queue_user_cluster_role=QUEUE_USER_CLUSTER_ROLE, depends_on=on_nodes)) for team in cfg.teams}
# MSK lives outside the cluster and comes first, so Prometheus can be told where its brokers' exporters are;
# Strimzi runs on the cluster and comes after monitoring, whose CRDs its PodMonitor needs.
msk = None
if svc.kafka.flavor == "msk":
    msk = MskKafka("kafka", MskKafkaArgs(
        config=svc.kafka, teams=cfg.teams, name_prefix=name_prefix, vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids, cluster_security_group_id=cluster.security_group_id,
        log_retention_days=cfg.cluster.log_retention_days, protect=cfg.data_lake.protect), opts=with_aws)
monitoring = Monitoring("monitoring", MonitoringArgs(
    config=svc.monitoring, namespace="monitoring", k8s_provider=cluster.provider, storage_class="gp3-encrypted",
    models=cfg.models, gpu_pools=cfg.gpu_pools, msk_broker_hosts=msk.broker_hosts if msk else None,
    disposable=cfg.data_lake.force_destroy, depends_on=[namespaces["monitoring"]]))

# Kueue gives each team a queue over the shared pools (its chart's ServiceMonitor needs monitoring's CRDs).
kueue = Kueue("kueue", KueueArgs(
    teams=cfg.teams, gpu_pools=cfg.gpu_pools, general_pool=cfg.general_pool, k8s_provider=cluster.provider,
    namespace="kueue-system", team_namespaces={n: t.namespace.namespace for n, t in teams.items()},
    monitoring_crds=[monitoring.stack_release], depends_on=[namespaces["kueue-system"], general_pool.node_pool]))

# OpenCost prices what every pod holds from the cluster's Prometheus; its rules give cost per team, model and pool to
# the Cost dashboard and check each team's monthly budget.
OpenCost("opencost", OpenCostArgs(
    cluster_name=cluster.name, cluster_id=cfg.cluster.name, region=cfg.region, prometheus_url=monitoring.prometheus_url,
    k8s_provider=cluster.provider, identity=identity, teams=cfg.teams, namespace="opencost",
    monitoring_crds=[monitoring.stack_release], depends_on=[namespaces["opencost"]]), opts=with_aws)

database = MlflowDatabase("mlflow-db", MlflowDatabaseArgs(
    config=svc.mlflow.database, name_prefix=name_prefix, namespace="mlflow", k8s_provider=cluster.provider,
    vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids, cluster_security_group_id=cluster.security_group_id,
    protect=cfg.data_lake.protect, disposable=cfg.data_lake.force_destroy,
    log_retention_days=cfg.cluster.log_retention_days, depends_on=[namespaces["mlflow"]]), opts=with_aws)
mlflow = Mlflow("mlflow", MlflowArgs(
    config=svc.mlflow, namespace="mlflow", image=images.ref("mlflow-server"), region=cfg.region,
    backend_uri=database.uri, artifacts_bucket=lake.bucket_names["artifacts"],
    artifacts_bucket_arn=lake.bucket_arns["artifacts"], lake_kms_key_arn=lake.kms_key_arn,
    k8s_provider=cluster.provider, identity=identity, cluster_name=cluster.name, vpc_cidr=str(cfg.network.cidr),
    teams=cfg.teams, models=cfg.models, team_namespaces={n: t.namespace.namespace for n, t in teams.items()},
    depends_on=[namespaces["mlflow"], database]), opts=with_aws)

if msk:
    kafka = msk
else:
    kafka = StrimziKafka("kafka", StrimziKafkaArgs(
        config=svc.kafka, teams=cfg.teams, team_namespaces={n: t.namespace.namespace for n, t in teams.items()},
        namespace="kafka", operator_namespace="strimzi-system",
        k8s_provider=cluster.provider, monitoring_crds=[monitoring.stack_release],
        disposable=cfg.data_lake.force_destroy, depends_on=[namespaces["strimzi-system"], namespaces["kafka"]]))

# Each team's workloads (workloads/), in its namespace, under its identities, topics, queue and MLflow user:
# one lake ingestion per team, and serving, training and drift monitoring per model.
contexts = {name: WorkloadContext(
    team=team.config, namespace=team.config.namespace, cluster_name=cluster.name, region=cfg.region,
    k8s_provider=cluster.provider, identity=identity, kafka=kafka, mlflow_tracking_uri=mlflow.tracking_uri,
    mlflow_credentials=mlflow.credentials_files(name), lake_buckets=pulumi.Output.all(**lake.bucket_names),
    lake_bucket_arns=pulumi.Output.all(**lake.bucket_arns), lake_kms_key_arn=lake.kms_key_arn,
    monitoring_crds=[monitoring.stack_release],
    depends_on=[team.namespace.namespace, mlflow.credentials_secrets[name]]) for name, team in teams.items()}
for name, ctx in contexts.items():
    Ingestion(f"{name}-lake-ingestion", IngestionArgs(context=ctx, config=svc.ingestion,
                                                      image=images.ref("ingestion")), opts=with_aws)
serving = {}
for model in cfg.models:
    ctx = contexts[model.team]
    serving[model.name] = ModelServing(model.name, ModelServingArgs(
        context=ctx, config=model.serving, image=images.ref("inference", model.images.serving), model_name=model.name),
        opts=with_aws)
    TrainingJob(f"{model.name}-training", TrainingJobArgs(
        context=ctx, config=model.training, image=images.ref("training", model.images.training), model_name=model.name,
        experiment=model.experiment, pool=next((p for p in cfg.gpu_pools if p.name == model.training.gpu_pool), None),
        queue=kueue.queue_ready(model.team)), opts=with_aws)
    DriftMonitor(f"{model.name}-drift", DriftMonitorArgs(context=ctx, image=images.ref("drift", model.images.drift),
                                                         config=model.drift), opts=with_aws)

pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("workloadIdentityMode", cfg.cluster.workload_identity)
pulumi.export("dataLakeBuckets", lake.bucket_names)
pulumi.export("dataLakeKmsKeyArn", lake.kms_key_arn)
pulumi.export("imageRepositories", images.repository_urls)
pulumi.export("gpuNodePools", [{"name": p.name, "instanceTypes": p.instance_types, "capacityType": p.capacity_type,
                                "maxNodes": p.max_nodes, "maxGpus": p.max_gpus} for p in cfg.gpu_pools])
pulumi.export("mlflowTrackingUri", mlflow.tracking_uri)
pulumi.export("mlflowDatabaseBackend", svc.mlflow.database.backend)
pulumi.export("kafkaFlavor", svc.kafka.flavor)
pulumi.export("kafkaBootstrapServers", kafka.bootstrap)
pulumi.export("kafkaTopics", {t.name: {role: t.topic(role) for role in TOPIC_ROLES} for t in cfg.teams})
pulumi.export("modelServingUrls", {name: s.url for name, s in serving.items()})
pulumi.export("grafanaUrl", monitoring.grafana_url)
pulumi.export("prometheusUrl", monitoring.prometheus_url)
pulumi.export("teamNamespaces", {t.name: t.namespace for t in cfg.teams})
