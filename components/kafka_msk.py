"""Amazon MSK: brokers in the private subnets of every AZ, TLS everywhere, IAM client auth, KMS at rest.

Clients authenticate with their pod's IAM role (SASL/OAUTHBEARER through the MSK IAM signer), so access is granted
by policy on the workload's own role, scoped to the topics and group it uses; there are no Kafka passwords.
Each team gets its own topics (`TeamConfig.topic(role)`, sized per role by `kafka.topics`), and a grant may name only
its team's topics and group, so one team's role can never read or write another's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws

from components.kafka_access import (KafkaClientAccess, KafkaGrant, check_grant, team_topics, teams_by_name,
                                     topic_sizing)
from components.service_access import allow_from_cluster, cluster_only_port, service_key
from platform_config.services_model import KafkaConfig
from platform_config.teams_model import TeamConfig
from platform_config.versions import MSK_KAFKA_VERSION

IAM_PORT = 9098
# Open monitoring: the brokers' JMX exporter and node exporter, scraped by the cluster's Prometheus.
JMX_EXPORTER_PORT, NODE_EXPORTER_PORT = 11001, 11002


@dataclass(frozen=True, kw_only=True)
class MskKafkaArgs:
    config: KafkaConfig
    teams: Sequence[TeamConfig]
    """Every team gets its own topic per role, sized by `config.topics[role]`."""
    name_prefix: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    cluster_security_group_id: pulumi.Input[str]
    log_retention_days: int = 30
    protect: bool = False


def server_properties(cfg: KafkaConfig) -> str:
    replication = min(3, cfg.brokers)
    return "\n".join([
        # Topics are declared in code (aws.msk.Topic); a typo in a client must not create a new one.
        "auto.create.topics.enable=false",
        f"default.replication.factor={replication}",
        f"min.insync.replicas={cfg.min_insync_replicas}",
        "unclean.leader.election.enable=false",
        "num.partitions=6",
    ]) + "\n"


def resource_arn(cluster_arn: str, kind: str, name: str) -> str:
    """arn:...:cluster/<name>/<uuid> -> arn:...:<kind>/<name>/<uuid>/<name> (the MSK IAM resource formats)."""
    return cluster_arn.replace(":cluster/", f":{kind}/", 1) + f"/{name}"


def scrape_specs(hosts: list[str]) -> dict[str, dict]:
    """ScrapeConfig specs (prometheus-operator) for MSK open monitoring: plain HTTP inside the VPC, as MSK serves it."""
    return {job: {"jobName": job, "staticConfigs": [{"targets": [f"{h}:{port}" for h in hosts]}],
                  "relabelings": [{"sourceLabels": ["__address__"], "regex": "([^:]+):.*", "targetLabel": "broker"}]}
            for job, port in (("msk-jmx", JMX_EXPORTER_PORT), ("msk-node", NODE_EXPORTER_PORT))}


class MskKafka(pulumi.ComponentResource):
    bootstrap: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    broker_hosts: pulumi.Output[list[str]]

    def __init__(self, name: str, args: MskKafkaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:kafka:MskKafka", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        key = service_key(name, f"{args.name_prefix} Kafka data at rest", args.protect, self)
        group = cluster_only_port(name, vpc_id=args.vpc_id, port=IAM_PORT,
                                  cluster_security_group_id=args.cluster_security_group_id,
                                  what="Kafka (TLS + IAM)", parent=self)
        allow_from_cluster(f"{name}-metrics", group, JMX_EXPORTER_PORT, NODE_EXPORTER_PORT,
                           args.cluster_security_group_id, "Prometheus open monitoring", self)
        logs = aws.cloudwatch.LogGroup(f"{name}-broker-logs", name=f"/aws/msk/{args.name_prefix}",
                                       retention_in_days=args.log_retention_days, opts=child)
        configuration = aws.msk.Configuration(f"{name}-config", name=f"{args.name_prefix}-kafka",
                                              kafka_versions=[MSK_KAFKA_VERSION],
                                              server_properties=server_properties(cfg), opts=child)
        cluster = aws.msk.Cluster(
            f"{name}-cluster", cluster_name=args.name_prefix, kafka_version=MSK_KAFKA_VERSION,
            number_of_broker_nodes=cfg.brokers,
            broker_node_group_info={"instance_type": cfg.broker_instance_type, "client_subnets": list(args.subnet_ids),
                                    "security_groups": [group.id],
                                    "storage_info": {"ebs_storage_info": {"volume_size": cfg.volume_size_gib}}},
            encryption_info={"encryption_at_rest_kms_key_arn": key.arn,
                             "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True}},
            client_authentication={"sasl": {"iam": True}, "unauthenticated": False},
            configuration_info={"arn": configuration.arn, "revision": configuration.latest_revision},
            open_monitoring={"prometheus": {"jmx_exporter": {"enabled_in_broker": True},
                                            "node_exporter": {"enabled_in_broker": True}}},
            logging_info={"broker_logs": {"cloudwatch_logs": {"enabled": True, "log_group": logs.name}}},
            enhanced_monitoring="PER_TOPIC_PER_BROKER",
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect))
        self._teams = teams_by_name(args.teams)
        self._topics: dict[str, list[aws.msk.Topic]] = {}
        for team in self._teams.values():
            self._topics[team.name] = []
            for role, topic_name in team_topics(team).items():
                size = topic_sizing(cfg, role)
                self._topics[team.name].append(aws.msk.Topic(
                    f"{name}-topic-{team.name}-{role}", name=topic_name, cluster_arn=cluster.arn,
                    partition_count=size.partitions, replication_factor=size.replication_factor,
                    configs=json.dumps({"retention.ms": str(size.retention_hours * 3_600_000),
                                        "min.insync.replicas": str(min(cfg.min_insync_replicas,
                                                                       size.replication_factor))}),
                    opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)))
        self.bootstrap = cluster.bootstrap_brokers_sasl_iam
        self.cluster_arn = cluster.arn
        self.broker_hosts = self.bootstrap.apply(
            lambda brokers: sorted(b.rsplit(":", 1)[0] for b in (brokers or "").split(",") if b))
        self.register_outputs({"bootstrap": self.bootstrap})

    def grant(self, request: KafkaGrant, parent: pulumi.Resource) -> KafkaClientAccess:
        team = check_grant(request, self._teams)
        arn = self.cluster_arn
        statements = [{"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
                       "Resource": [arn]}]
        if request.read:
            statements.append({"Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                               "Resource": [arn.apply(lambda a, t=t: resource_arn(a, "topic", t))
                                            for t in request.read]})
        if request.write:
            statements.append({"Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                               "Resource": [arn.apply(lambda a, t=t: resource_arn(a, "topic", t))
                                            for t in request.write]})
            # The clients' producers are idempotent (enable.idempotence); MSK authorizes that on the cluster.
            statements.append({"Effect": "Allow", "Action": ["kafka-cluster:WriteDataIdempotently"],
                               "Resource": [arn]})
        if request.group:
            statements.append({"Effect": "Allow", "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                               "Resource": [arn.apply(lambda a: resource_arn(a, "group", request.group))]})
        # Clients name their topics in plain env vars; waiting for the topics keeps a fresh consumer from
        # subscribing to a topic that does not exist yet (auto-creation is off).
        return KafkaClientAccess(env={"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_AUTH": "msk-iam"},
                                 statements=statements, depends_on=list(self._topics[team.name]))
