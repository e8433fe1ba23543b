"""The Kafka-to-lake consumer: reads the transactions topic, writes Parquet to the raw and curated areas.

One runs per team. Its role may write only under the team's `transactions/` prefix in those two buckets; its Kafka
grant reads the team's transactions topic, writes the team's dead-letter topic and uses the team's consumer group. The grace period lets a pod finish and commit its current batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.kafka_access import KafkaGrant
from components.pod_spec import (ALWAYS_PULL, NO_API_TOKEN, container_security, env, http_probe, labels, pod_security,
                                 resources, selector, tmp_volume)
from components.workload_base import (MONITORING_NAMESPACE, WorkloadBase, WorkloadContext, from_namespaces, lake_uri,
                                      s3_statements, tcp, team_prefix)
from platform_config.services_model import IngestionConfig

METRICS_PORT = 9100
PREFIX = "transactions/"
CONSUMER_GROUP = "lake-ingestion"


@dataclass(frozen=True, kw_only=True)
class IngestionArgs:
    context: WorkloadContext
    config: IngestionConfig
    image: str


class Ingestion(WorkloadBase):
    def __init__(self, name: str, args: IngestionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:workloads:Ingestion", name, None, opts)
        ctx, cfg = args.context, args.config
        team = ctx.team
        transactions, dead_letter = team.topic("transactions"), team.topic("deadLetter")
        group = f"{team.name}.{CONSUMER_GROUP}"
        prefix = team_prefix(ctx, PREFIX)
        grant = KafkaGrant(client=name, namespace=ctx.namespace, team=team.name, read=[transactions],
                           write=[dead_letter], group=group)
        identity = self._identity(name, ctx, s3_statements(ctx, write=[("raw", prefix), ("curated", prefix)]),
                                  kafka=grant)
        opts_k8s = self._k8s_opts(ctx, identity)
        meta = {"name": name, "namespace": ctx.namespace, "labels": labels(name, "ingestion")}
        tmp, tmp_mount = tmp_volume()
        kafka_volumes, kafka_mounts = self._kafka_volumes()
        container = {
            "name": "consumer", "image": args.image, **ALWAYS_PULL,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
            "env": env({
                "KAFKA_TOPIC_TRANSACTIONS": transactions, "KAFKA_TOPIC_DEAD_LETTER": dead_letter,
                "KAFKA_CONSUMER_GROUP": group,
                "LAKE_RAW_URI": lake_uri(ctx, "raw", prefix), "LAKE_CURATED_URI": lake_uri(ctx, "curated", prefix),
                "INGEST_BATCH_RECORDS": str(cfg.batch_records), "METRICS_PORT": str(METRICS_PORT),
                "AWS_REGION": ctx.region, **self._kafka_env()}),
            # The consumer serves only /metrics; it answering proves the process and its event loop are alive, and
            # readiness gates rollouts and the disruption budget's count.
            "readinessProbe": http_probe("/metrics", "metrics", period=10, failures=3),
            "livenessProbe": http_probe("/metrics", "metrics", period=20, failures=3, delay=10),
            "resources": resources("500m", "1Gi"), "securityContext": container_security(),
            "volumeMounts": [tmp_mount, *kafka_mounts],
        }
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={
            "replicas": cfg.replicas, "selector": {"matchLabels": selector(name)},
            "template": {"metadata": {"labels": labels(name, "ingestion"), "annotations": self._pod_annotations()},
                         "spec": {
                "serviceAccountName": name, "securityContext": pod_security(), **NO_API_TOKEN,
                "terminationGracePeriodSeconds": 60, "containers": [container], "volumes": [tmp, *kafka_volumes],
            }},
        }, opts=opts_k8s)
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
            "maxUnavailable": 1, "selector": {"matchLabels": selector(name)}}, opts=opts_k8s)
        self._ingress_policy(name, ctx, opts_k8s, [{"from": from_namespaces(MONITORING_NAMESPACE),
                                                    "ports": tcp(METRICS_PORT)}])
        self._pod_monitor(name, ctx, "metrics")
        self.register_outputs({})
