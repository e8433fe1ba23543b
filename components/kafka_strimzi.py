"""Kafka on the cluster with Strimzi: the operator from its pinned chart, a KRaft cluster, topics and users as code.

The Kafka cluster runs in the workloads' namespace so the KafkaUser certificate secrets the User Operator writes can
be mounted by the pods they belong to. Clients connect over the TLS listener and authenticate with those
certificates; `simple` authorization limits each user to the topics and group its grant names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.kafka_access import KafkaClientAccess, KafkaGrant
from upstream.catalog import strimzi_crd_documents
from platform_config.services_model import KafkaConfig
from platform_config.versions import (STRIMZI_CHART, STRIMZI_KAFKA_VERSION, STRIMZI_METADATA_VERSION,
                                      STRIMZI_VERSION)

API = "kafka.strimzi.io/v1"
# Pulumi waits for the brokers, each topic and each user's certificate before the workloads that need them are created;
# a first start (volumes, brokers, entity operator) takes minutes.
READY = {"pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": "1800"}
TLS_PORT = 9093
TLS_DIR = "/etc/kafka-tls"
METRICS_CONFIG = "kafka-metrics"

# JMX exporter rules for the broker metrics the dashboards use; everything else is dropped to keep series down.
JMX_RULES = """lowercaseOutputName: true
rules:
  - pattern: kafka.server<type=(.+), name=(.+), clientId=(.+), topic=(.+), partition=(.*)><>Value
    name: kafka_server_$1_$2
    type: GAUGE
    labels: {clientId: "$3", topic: "$4", partition: "$5"}
  - pattern: kafka.server<type=(.+), name=(.+)PerSec\\w*, topic=(.+)><>Count
    name: kafka_server_$1_$2_total
    type: COUNTER
    labels: {topic: "$3"}
  - pattern: kafka.server<type=(.+), name=(.+)PerSec\\w*><>Count
    name: kafka_server_$1_$2_total
    type: COUNTER
  - pattern: kafka.server<type=(.+), name=(.+)><>Value
    name: kafka_server_$1_$2
    type: GAUGE
  - pattern: kafka.controller<type=(.+), name=(.+)><>Value
    name: kafka_controller_$1_$2
    type: GAUGE
"""


@dataclass(frozen=True, kw_only=True)
class StrimziKafkaArgs:
    config: KafkaConfig
    namespace: str
    """Where the Kafka cluster, its topics and users live (the workloads' namespace)."""
    operator_namespace: str
    k8s_provider: k8s.Provider
    cluster_name: str = "platform"
    monitoring_crds: Sequence[pulumi.Resource] = ()
    """The monitoring chart, which installs the PodMonitor CRD."""
    disposable: bool = False
    """The brokers' volumes may go with the stack (`dataLake.forceDestroy`, dev)."""
    depends_on: Sequence[pulumi.Resource] = ()


def kafka_spec(cfg: KafkaConfig) -> dict:
    replication = min(3, cfg.brokers)
    return {
        "kafka": {
            "version": STRIMZI_KAFKA_VERSION, "metadataVersion": STRIMZI_METADATA_VERSION,
            "listeners": [{"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True,
                           "authentication": {"type": "tls"}}],
            "authorization": {"type": "simple"},
            # Replicas of a partition go to brokers in different zones, so one zone's loss keeps every partition.
            "rack": {"topologyKey": "topology.kubernetes.io/zone"},
            "config": {"offsets.topic.replication.factor": replication,
                       "transaction.state.log.replication.factor": replication,
                       "transaction.state.log.min.isr": cfg.min_insync_replicas,
                       "default.replication.factor": replication, "min.insync.replicas": cfg.min_insync_replicas,
                       "auto.create.topics.enable": False},
            "metricsConfig": {"type": "jmxPrometheusExporter", "valueFrom": {"configMapKeyRef": {
                "name": METRICS_CONFIG, "key": "kafka-metrics-config.yml"}}},
        },
        "entityOperator": {
            "topicOperator": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                            "limits": {"cpu": "500m", "memory": "512Mi"}}},
            "userOperator": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                           "limits": {"cpu": "500m", "memory": "512Mi"}}},
        },
        # Exposes kafka_consumergroup_lag for the Kafka dashboard.
        "kafkaExporter": {"topicRegex": ".*", "groupRegex": ".*",
                          "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                        "limits": {"cpu": "250m", "memory": "256Mi"}}},
    }


BROKER_POOL = {"strimzi.io/pool-name": "dual-role"}


def node_pool_spec(cfg: KafkaConfig, disposable: bool = False) -> dict:
    return {
        "replicas": cfg.brokers,
        "roles": ["controller", "broker"],
        "storage": {"type": "jbod", "volumes": [{
            "id": 0, "type": "persistent-claim", "size": f"{cfg.volume_size_gib}Gi", "kraftMetadata": "shared",
            # Claims outlive the Kafka resource (a re-created cluster finds its data) unless the data may go with the
            # stack (dataLake.forceDestroy). A stack destroy deletes the namespace, and the claims with it.
            "deleteClaim": disposable}]},
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        # One broker per node (required, not a skew), and brokers spread evenly over zones, so with as many brokers
        # as zones a node or a zone costs one replica at most. Karpenter launches in the zone a pending broker's
        # volume is in, so a broker whose node went away always gets a new one there.
        "template": {"pod": {
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": BROKER_POOL}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": BROKER_POOL}}]}},
    }


def acls(request: KafkaGrant) -> list[dict]:
    rules = [{"resource": {"type": "topic", "name": t, "patternType": "literal"}, "operations": ["Describe", "Read"]}
             for t in request.read]
    rules += [{"resource": {"type": "topic", "name": t, "patternType": "literal"}, "operations": ["Describe", "Write"]}
              for t in request.write]
    if request.group:
        rules.append({"resource": {"type": "group", "name": request.group, "patternType": "literal"},
                      "operations": ["Read"]})
    return rules


class StrimziKafka(pulumi.ComponentResource):
    bootstrap: pulumi.Output[str]

    def __init__(self, name: str, args: StrimziKafkaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:kafka:StrimziKafka", name, None, opts)
        cfg, ns, cluster = args.config, args.namespace, args.cluster_name
        self._args = args
        # Helm installs a chart's crds/ only on first install and never upgrades them, so the CRDs of the pinned
        # release (vendored under upstream/) are applied by Pulumi, before the operator, on every version bump.
        crds = [k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-crd-{doc['spec']['names']['plural']}", metadata=doc["metadata"], spec=doc["spec"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on)))
            for doc in strimzi_crd_documents()]
        operator = k8s.helm.v3.Release(
            f"{name}-operator", name="strimzi-kafka-operator", chart=STRIMZI_CHART, version=STRIMZI_VERSION,
            namespace=args.operator_namespace, atomic=True, skip_crds=True,
            values={"watchNamespaces": [ns], "watchAnyNamespace": False,
                    # The operator's own pod, and (through the restricted provider) every pod it creates, meet the
                    # `restricted` Pod Security Standard its namespaces enforce.
                    "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "extraEnvs": [{"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}],
                    "resources": {"requests": {"cpu": "200m", "memory": "384Mi"},
                                  "limits": {"cpu": "1", "memory": "384Mi"}}},
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.depends_on, *crds]))
        crs = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[operator])
        self._cr_opts = crs
        cluster_label = {"strimzi.io/cluster": cluster}
        metrics = k8s.core.v1.ConfigMap(f"{name}-metrics", metadata={"name": METRICS_CONFIG, "namespace": ns},
                                        data={"kafka-metrics-config.yml": JMX_RULES}, opts=crs)
        pool = k8s.apiextensions.CustomResource(
            f"{name}-nodes", api_version=API, kind="KafkaNodePool",
            metadata={"name": "dual-role", "namespace": ns, "labels": cluster_label},
            spec=node_pool_spec(cfg, args.disposable), opts=crs)
        kafka = k8s.apiextensions.CustomResource(
            f"{name}-cluster", api_version=API, kind="Kafka",
            metadata={"name": cluster, "namespace": ns, "annotations": READY},
            spec=kafka_spec(cfg),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[operator, pool, metrics]))
        topic_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[kafka])
        self._topics = [
            k8s.apiextensions.CustomResource(
                f"{name}-topic-{topic.role}", api_version=API, kind="KafkaTopic",
                metadata={"name": topic.name, "namespace": ns, "labels": cluster_label, "annotations": READY},
                spec={"partitions": topic.partitions, "replicas": topic.replication_factor,
                      "config": {"retention.ms": topic.retention_hours * 3_600_000,
                                 "min.insync.replicas": min(cfg.min_insync_replicas, topic.replication_factor)}},
                opts=topic_opts)
            for topic in cfg.topics.values()]
        # Brokers (JMX exporter) and the Kafka Exporter both serve metrics on the `tcp-prometheus` port.
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": f"{cluster}-kafka", "namespace": ns},
            spec={"selector": {"matchLabels": {"strimzi.io/cluster": cluster},
                               "matchExpressions": [{"key": "strimzi.io/kind", "operator": "In", "values": ["Kafka"]}]},
                  "podMetricsEndpoints": [{"port": "tcp-prometheus", "path": "/metrics", "interval": "30s"}]},
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider,
                                        depends_on=[*args.monitoring_crds, kafka]))
        self._kafka = kafka
        self.bootstrap = pulumi.Output.from_input(f"{cluster}-kafka-bootstrap.{ns}.svc.cluster.local:{TLS_PORT}")
        self.register_outputs({"bootstrap": self.bootstrap})

    def grant(self, request: KafkaGrant, parent: pulumi.Resource) -> KafkaClientAccess:
        args = self._args
        user = k8s.apiextensions.CustomResource(
            f"{request.client}-kafka-user", api_version=API, kind="KafkaUser",
            metadata={"name": request.client, "namespace": args.namespace,
                      "labels": {"strimzi.io/cluster": args.cluster_name}, "annotations": READY},
            spec={"authentication": {"type": "tls"}, "authorization": {"type": "simple", "acls": acls(request)}},
            opts=pulumi.ResourceOptions(parent=parent, provider=args.k8s_provider, depends_on=[self._kafka]))
        # The user's certificate and key (written by the User Operator under the user's name) plus the cluster CA
        # that signed the brokers' certificates, in the file names workloads/common/kafka_config.py expects.
        volume = {"name": "kafka-tls", "projected": {"sources": [
            {"secret": {"name": request.client, "items": [{"key": "user.crt", "path": "user.crt"},
                                                          {"key": "user.key", "path": "user.key"}]}},
            {"secret": {"name": f"{args.cluster_name}-cluster-ca-cert", "items": [{"key": "ca.crt",
                                                                                  "path": "ca.crt"}]}},
        ]}}
        return KafkaClientAccess(
            env={"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_AUTH": "mtls", "KAFKA_TLS_DIR": TLS_DIR},
            volumes=[volume], volume_mounts=[{"name": "kafka-tls", "mountPath": TLS_DIR, "readOnly": True}],
            depends_on=[user, *self._topics])
