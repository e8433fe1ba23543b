"""Kafka on the cluster with Strimzi: the operator from its pinned chart, a KRaft cluster, topics and users as code.

The cluster runs in its own namespace (`kafka`); its clients run in their teams' namespaces. A pod can mount Secrets
of its own namespace only, so the certificates Strimzi's User Operator would write next to the cluster (KafkaUser
`authentication: tls`) are out of reach. Pulumi is therefore the certificate authority for both of Strimzi's CAs
("installing your own CA certificates", `generateCertificateAuthority: false`):

- the cluster CA signs the brokers' certificates (Strimzi still issues and renews those, with this CA's key), and
  its certificate is what clients trust;
- the clients CA is what the TLS listener trusts for client certificates. Pulumi signs one certificate per workload,
  subject `CN=<namespace>.<client>`, and writes it, its key and the cluster CA certificate as a Secret into the
  workload's namespace. The KafkaUser of that name (`authentication: tls-external`: no credentials from the User
  Operator) carries the ACLs, which Strimzi sets for the principal `CN=<name>`.

The CA keys and client keys live in Pulumi state as secrets and in Kubernetes Secrets only (the CA keys in `kafka`,
where Strimzi needs them; each client key in its own namespace). Renewal: see CA_VALIDITY_HOURS and
CLIENT_VALIDITY_HOURS. `simple` authorization limits each user to the topics and group its grant names, which
`check_grant` keeps inside the client's team.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components.kafka_access import (KafkaClientAccess, KafkaGrant, check_grant, team_topics, teams_by_name,
                                     topic_sizing)
from upstream.catalog import strimzi_crd_documents
from platform_config.services_model import KafkaConfig
from platform_config.teams_model import TeamConfig
from platform_config.versions import (STRIMZI_CHART, STRIMZI_KAFKA_VERSION, STRIMZI_METADATA_VERSION,
                                      STRIMZI_VERSION)

API = "kafka.strimzi.io/v1"
# Pulumi waits for the brokers, each topic and each user's certificate before the workloads that need them are created;
# a first start (volumes, brokers, entity operator) takes minutes.
READY = {"pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": "1800"}
TLS_PORT = 9093
TLS_DIR = "/etc/kafka-tls"
METRICS_CONFIG = "kafka-metrics"
# Team namespaces carry this label (components/team.py TEAM_LABEL, which imports this module, so it is repeated here;
# tests/test_kafka_teams.py keeps the two equal). Only their pods may open connections to the client listener.
CLIENT_NAMESPACE_LABEL = "mlplatform.io/team"

# Lifetimes. Pulumi re-issues a certificate on the first `pulumi up` inside its early-renewal window, so the stack
# must be applied at least once in every such window (the README says so).
# CAs: Strimzi never renews a CA it did not generate. A renewed CA certificate keeps its key and subject, so every
# certificate signed before stays valid against it; its new `strimzi.io/ca-cert-generation` (ca_generation) makes
# the Cluster Operator re-issue the brokers' certificates and roll the brokers to trust it. The CA keys are never
# replaced by Pulumi (ignore_changes below): a new key needs Strimzi's manual "replacing private keys" procedure
# (reconciliation paused, the old certificate kept as `ca-<date>.crt` until everything moved).
CA_VALIDITY_HOURS = 5 * 365 * 24
CA_EARLY_RENEWAL_HOURS = 365 * 24
# Client certificates, as Strimzi's own user certificates (365 days), with a longer window (90 days, Strimzi: 30)
# because renewal waits for a `pulumi up`. A re-issued certificate reaches the pods through the Secret and
# KafkaClientAccess.pod_annotations (a rollout); the old one stays valid until it expires.
CLIENT_VALIDITY_HOURS = 365 * 24
CLIENT_EARLY_RENEWAL_HOURS = 90 * 24
# X.509 bounds a common name at 64 characters (RFC 5280 ub-common-name); Strimzi refuses longer `tls` users.
MAX_USER_NAME = 64

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
    teams: Sequence[TeamConfig]
    """Every team gets its own topic per role (sized by `config.topics[role]`); grants stay inside their team."""
    namespace: str
    """Where the Kafka cluster, its CAs, topics and users live (`kafka`)."""
    operator_namespace: str
    k8s_provider: k8s.Provider
    team_namespaces: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    """Team name -> its Namespace resource: each client's certificate Secret is created in it, so after it."""
    cluster_name: str = "platform"
    monitoring_crds: Sequence[pulumi.Resource] = ()
    """The monitoring chart, which installs the PodMonitor CRD."""
    disposable: bool = False
    """The brokers' volumes may go with the stack (`dataLake.forceDestroy`, dev)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Including the cluster's namespace, where the CA Secrets are created."""


def user_name(request: KafkaGrant) -> str:
    """The KafkaUser's name and its certificate's CN: unique in the Kafka namespace, since a namespace name holds no
    dot and a client's name is unique in its namespace."""
    return f"{request.namespace}.{request.client}"


def ca_generation(validity_start: str) -> str:
    """`strimzi.io/ca-cert-generation` of a CA certificate: minutes from the epoch to its start of validity.

    Strimzi wants a larger integer on every renewal (it compares generations to tell which certificates were issued
    under the old one); deriving it from the certificate makes every re-issue count up without a counter to keep.
    Minutes fit Strimzi's 32-bit int for millennia."""
    start = datetime.datetime.fromisoformat(validity_start.replace("Z", "+00:00"))
    return str(int(start.timestamp()) // 60)


# A Kubernetes object name (DNS subdomain). Strimzi names a topic after its KafkaTopic unless `spec.topicName` says
# otherwise, and advises setting that only when the topic's name is not a valid object name.
K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def topic_metadata(team: TeamConfig, role: str, topic: str) -> tuple[str, dict[str, str]]:
    """(KafkaTopic name, extra spec) for one of a team's topics."""
    if K8S_NAME.fullmatch(topic) and len(topic) <= 253:
        return topic, {}
    kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in role)
    return f"{team.name}-{kebab}", {"topicName": topic}


def kafka_spec(cfg: KafkaConfig) -> dict:
    replication = min(3, cfg.brokers)
    return {
        # Both CAs are Pulumi's (module docstring): Strimzi reads the four CA Secrets and never writes them.
        "clusterCa": {"generateCertificateAuthority": False},
        "clientsCa": {"generateCertificateAuthority": False},
        "kafka": {
            "version": STRIMZI_KAFKA_VERSION, "metadataVersion": STRIMZI_METADATA_VERSION,
            # `tls` authentication on the listener: clients must present a certificate the clients CA signed.
            # Strimzi's generated NetworkPolicy opens a listener to everyone unless peers are named; here only pods
            # in team namespaces may connect (the operators and the exporter use the internal listeners).
            "listeners": [{"name": "tls", "port": TLS_PORT, "type": "internal", "tls": True,
                           "authentication": {"type": "tls"},
                           "networkPolicyPeers": [{"namespaceSelector": {"matchExpressions": [
                               {"key": CLIENT_NAMESPACE_LABEL, "operator": "Exists"}]}}]}],
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
        cluster_label = {"strimzi.io/cluster": cluster}
        self._teams = teams_by_name(args.teams)
        self._cluster_ca = self._ca(name, "cluster")
        self._clients_ca = self._ca(name, "clients")
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
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[
                operator, pool, metrics, *self._cluster_ca.secrets, *self._clients_ca.secrets]))
        topic_opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[kafka])
        self._topics: dict[str, list[pulumi.Resource]] = {}
        for team in self._teams.values():
            self._topics[team.name] = []
            for role, topic_name in team_topics(team).items():
                size = topic_sizing(cfg, role)
                k8s_name, named = topic_metadata(team, role, topic_name)
                self._topics[team.name].append(k8s.apiextensions.CustomResource(
                    f"{name}-topic-{team.name}-{role}", api_version=API, kind="KafkaTopic",
                    metadata={"name": k8s_name, "namespace": ns, "labels": cluster_label, "annotations": READY},
                    spec={**named, "partitions": size.partitions, "replicas": size.replication_factor,
                          "config": {"retention.ms": size.retention_hours * 3_600_000,
                                     "min.insync.replicas": min(cfg.min_insync_replicas, size.replication_factor)}},
                    opts=topic_opts))
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

    def _ca(self, name: str, role: str) -> "_Ca":
        """One of Strimzi's CAs, generated here, as the two Secrets Strimzi looks up (by name, among the Secrets
        labelled with its kind and cluster): `<cluster>-<role>-ca` (ca.key) and `<cluster>-<role>-ca-cert` (ca.crt).
        PEM only (PKCS #8 key, as Strimzi writes its own): Strimzi uses no PKCS #12 store from a CA you supply."""
        args, cluster = self._args, self._args.cluster_name
        child = pulumi.ResourceOptions(parent=self)
        # RSA 4096, as the CAs Strimzi generates. Never replaced by a code change: see CA_VALIDITY_HOURS.
        key = tls.PrivateKey(f"{name}-{role}-ca-key", algorithm="RSA", rsa_bits=4096,
                             opts=pulumi.ResourceOptions(parent=self, ignore_changes=["algorithm", "rsa_bits"]))
        cert = tls.SelfSignedCert(
            f"{name}-{role}-ca", private_key_pem=key.private_key_pem,
            subject={"common_name": f"{cluster} {role} CA", "organization": "mlplatform"},
            is_ca_certificate=True, set_subject_key_id=True, allowed_uses=["cert_signing", "crl_signing"],
            validity_period_hours=CA_VALIDITY_HOURS, early_renewal_hours=CA_EARLY_RENEWAL_HOURS, opts=child)
        labels = {"strimzi.io/kind": "Kafka", "strimzi.io/cluster": cluster}
        opts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=list(args.depends_on))
        cert_secret = k8s.core.v1.Secret(
            f"{name}-{role}-ca-cert-secret", metadata={
                "name": f"{cluster}-{role}-ca-cert", "namespace": args.namespace, "labels": labels,
                "annotations": {"strimzi.io/ca-cert-generation": cert.validity_start_time.apply(ca_generation)}},
            string_data={"ca.crt": cert.cert_pem}, opts=opts)
        key_secret = k8s.core.v1.Secret(
            f"{name}-{role}-ca-key-secret", metadata={
                "name": f"{cluster}-{role}-ca", "namespace": args.namespace, "labels": labels,
                "annotations": {"strimzi.io/ca-key-generation": "0"}},
            string_data={"ca.key": pulumi.Output.secret(key.private_key_pem_pkcs8)}, opts=opts)
        return _Ca(key=key, cert=cert, secrets=[cert_secret, key_secret])

    def grant(self, request: KafkaGrant, parent: pulumi.Resource) -> KafkaClientAccess:
        args = self._args
        team = check_grant(request, self._teams)
        user = user_name(request)
        if len(user) > MAX_USER_NAME:
            raise ValueError(f"Kafka user {user!r} is longer than {MAX_USER_NAME} characters (a certificate's CN)")
        res = f"{request.namespace}-{request.client}-kafka"
        child = pulumi.ResourceOptions(parent=parent)
        kafka_user = k8s.apiextensions.CustomResource(
            f"{res}-user", api_version=API, kind="KafkaUser",
            metadata={"name": user, "namespace": args.namespace,
                      "labels": {"strimzi.io/cluster": args.cluster_name}, "annotations": READY},
            spec={"authentication": {"type": "tls-external"},
                  "authorization": {"type": "simple", "acls": acls(request)}},
            opts=pulumi.ResourceOptions(parent=parent, provider=args.k8s_provider, depends_on=[self._kafka]))
        # ECDSA P-256: cheap handshakes; the subject is the CN alone, because Kafka's default principal is the whole
        # subject DN and Strimzi's ACLs name `CN=<user>`.
        key = tls.PrivateKey(f"{res}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        csr = tls.CertRequest(f"{res}-csr", private_key_pem=key.private_key_pem,
                              subject={"common_name": user}, opts=child)
        ca = self._clients_ca
        cert = tls.LocallySignedCert(
            f"{res}-cert", cert_request_pem=csr.cert_request_pem, ca_cert_pem=ca.cert.cert_pem,
            ca_private_key_pem=ca.key.private_key_pem, allowed_uses=["digital_signature", "client_auth"],
            validity_period_hours=CLIENT_VALIDITY_HOURS, early_renewal_hours=CLIENT_EARLY_RENEWAL_HOURS, opts=child)
        # The file names workloads/common/kafka_config.py expects; ca.crt is the cluster CA the brokers' certificates
        # chain to (public).
        namespace = args.team_namespaces.get(team.name)
        secret_name = f"{request.client}-kafka-tls"
        secret = k8s.core.v1.Secret(
            f"{res}-tls", metadata={"name": secret_name, "namespace": request.namespace,
                                    "labels": {"app.kubernetes.io/name": request.client}},
            string_data={"user.crt": cert.cert_pem, "user.key": pulumi.Output.secret(key.private_key_pem_pkcs8),
                         "ca.crt": self._cluster_ca.cert.cert_pem},
            opts=pulumi.ResourceOptions(parent=parent, provider=args.k8s_provider,
                                        depends_on=[namespace] if namespace else []))
        volume = {"name": "kafka-tls", "secret": {"secretName": secret_name, "items": [
            {"key": k, "path": k} for k in ("user.crt", "user.key", "ca.crt")]}}
        checksum = pulumi.Output.all(cert.cert_pem, self._cluster_ca.cert.cert_pem).apply(
            lambda pems: hashlib.sha256("".join(pems).encode()).hexdigest()[:16])
        return KafkaClientAccess(
            env={"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_AUTH": "mtls", "KAFKA_TLS_DIR": TLS_DIR},
            volumes=[volume], volume_mounts=[{"name": "kafka-tls", "mountPath": TLS_DIR, "readOnly": True}],
            depends_on=[secret, kafka_user, *self._topics[team.name]],
            pod_annotations={"mlplatform.io/kafka-tls-checksum": checksum})


@dataclass(frozen=True)
class _Ca:
    key: tls.PrivateKey
    cert: tls.SelfSignedCert
    secrets: list[k8s.core.v1.Secret]
