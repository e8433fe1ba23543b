"""Kafka shared by teams: each team's own topics on both flavors, grants that stay inside the team, and (Strimzi)
client certificates that reach the client's own namespace without a private key in the plan.

Each component runs alone under the mocks (tests/helpers.py run_component), with two teams, one of which renames a
topic. Every referee here is paired with a test showing it fails on the defect it guards against.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from components.iam import policy_document
from components.kafka_access import KafkaClientAccess, KafkaGrant, check_grant, team_topics, teams_by_name
from components.kafka_msk import MskKafka, MskKafkaArgs
from components.kafka_strimzi import (CLIENT_NAMESPACE_LABEL, StrimziKafka, StrimziKafkaArgs, ca_generation,
                                      kafka_spec)
from components.team import TEAM_LABEL
from offline.harness import Plan
from platform_config.services_model import TOPIC_ROLES, KafkaConfig, TopicConfig
from platform_config.teams_model import TeamConfig
from tests.crd_validation import validate
from tests.helpers import run_component

TEAMS = [TeamConfig(name="fraud"), TeamConfig(name="risk", topics={"transactions": "risk_card_tx"})]
SIZING = {"transactions": TopicConfig("transactions", "transactions", partitions=12, replication_factor=3),
          "predictions": TopicConfig("predictions", "predictions", partitions=6, replication_factor=3),
          "deadLetter": TopicConfig("deadLetter", "transactions-dlq", partitions=3, replication_factor=3,
                                    retention_hours=720)}
STRIMZI_USER = "kubernetes:kafka.strimzi.io/v1:KafkaUser"
STRIMZI_TOPIC = "kubernetes:kafka.strimzi.io/v1:KafkaTopic"
SECRET = "kubernetes:core/v1:Secret"


def team_grants(team: TeamConfig) -> list[KafkaGrant]:
    """What the lead's workloads ask for: a lake ingestion per team and a serving deployment per model."""
    return [KafkaGrant(client=f"{team.name}-lake-ingestion", namespace=team.namespace, team=team.name,
                       read=[team.topic("transactions")], write=[team.topic("deadLetter")],
                       group=f"{team.name}.lake-ingestion"),
            KafkaGrant(client=f"{team.name}-detector", namespace=team.namespace, team=team.name,
                       write=[team.topic("predictions")])]


GRANTS = [g for t in TEAMS for g in team_grants(t)]


class Run:
    """A plan plus what the program saw: each grant's access and, for Secrets, the data the plan masks."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.access: dict[str, KafkaClientAccess] = {}
        self.secret_data: dict[str, dict[str, str]] = {}
        self.checksums: dict[str, str] = {}


def holder(grant: KafkaGrant) -> pulumi.ComponentResource:
    return pulumi.ComponentResource("test:kafka:Client", f"{grant.namespace}-{grant.client}")


def run_strimzi(grants=GRANTS, teams=TEAMS, extra=None) -> Run:
    run = Run()

    def declare() -> None:
        provider = k8s.Provider("k8s")
        namespaces = {t.name: k8s.core.v1.Namespace(t.namespace, metadata={"name": t.namespace, "labels": {
            TEAM_LABEL: t.name}}, opts=pulumi.ResourceOptions(provider=provider)) for t in teams}
        kafka = StrimziKafka("kafka", StrimziKafkaArgs(
            config=KafkaConfig(flavor="strimzi", topics=SIZING), teams=teams, namespace="kafka",
            operator_namespace="strimzi-system", k8s_provider=provider, team_namespaces=namespaces))
        for grant in grants:
            access = kafka.grant(grant, holder(grant))
            run.access[grant.client] = access
            for r in access.depends_on:
                if isinstance(r, k8s.core.v1.Secret):
                    r.string_data.apply(lambda d, c=grant.client: run.secret_data.__setitem__(c, dict(d)))
            for value in access.pod_annotations.values():
                pulumi.Output.from_input(value).apply(lambda v, c=grant.client: run.checksums.__setitem__(c, v))
        for ca in (kafka._cluster_ca, kafka._clients_ca):
            for secret in ca.secrets:
                pulumi.Output.all(secret.metadata, secret.string_data).apply(
                    lambda md: run.secret_data.__setitem__(md[0]["name"], dict(md[1])))
        if extra:
            extra(kafka)

    run.plan = run_component(declare)
    return run


def run_msk(grants=GRANTS, teams=TEAMS) -> Run:
    run = Run()

    def declare() -> None:
        kafka = MskKafka("kafka", MskKafkaArgs(
            config=KafkaConfig(flavor="msk", topics=SIZING), teams=teams, name_prefix="ml-platform-unit",
            vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"], cluster_security_group_id="sg-1"))
        for grant in grants:
            access = kafka.grant(grant, holder(grant))
            run.access[grant.client] = access
            aws.iam.RolePolicy(f"{grant.client}-kafka", role=grant.client, policy=policy_document(access.statements))

    run.plan = run_component(declare)
    return run


@pytest.fixture(scope="module")
def strimzi() -> Run:
    return run_strimzi()


@pytest.fixture(scope="module")
def msk() -> Run:
    return run_msk()


def by_name(plan: Plan, type_: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in plan.of_type(type_)}


# ---- topics ------------------------------------------------------------------------------------------------------

def expected_topics() -> dict[str, tuple[int, int, int]]:
    return {t.topic(role): (SIZING[role].partitions, SIZING[role].replication_factor,
                            SIZING[role].retention_hours * 3_600_000) for t in TEAMS for role in TOPIC_ROLES}


def test_each_team_has_its_own_topics_sized_by_role_on_strimzi(strimzi):
    topics = by_name(strimzi.plan, STRIMZI_TOPIC)
    named = {r["inputs"]["spec"].get("topicName", r["inputs"]["metadata"]["name"]): r["inputs"]
             for r in topics.values()}
    got = {n: (t["spec"]["partitions"], t["spec"]["replicas"], t["spec"]["config"]["retention.ms"])
           for n, t in named.items()}
    assert got == expected_topics()
    assert "risk_card_tx" in got and "fraud.transactions" in got and "risk.transactions-dlq" in got
    # Logical names carry team and role. The object is named after its topic where that is a valid object name
    # (Strimzi's advice); `risk_card_tx` is not, so it keeps a name of its own and says its topic in `topicName`.
    assert set(topics) == {f"kafka-topic-{t.name}-{role}" for t in TEAMS for role in TOPIC_ROLES}
    assert named["fraud.transactions"]["metadata"]["name"] == "fraud.transactions"
    assert "topicName" not in named["fraud.transactions"]["spec"]
    assert named["risk_card_tx"]["metadata"]["name"] == "risk-transactions"
    k8s_names = [r["inputs"]["metadata"]["name"] for r in topics.values()]
    assert len(set(k8s_names)) == len(k8s_names)
    assert {r["inputs"]["metadata"]["namespace"] for r in topics.values()} == {"kafka"}


def test_each_team_has_its_own_topics_sized_by_role_on_msk(msk):
    topics = by_name(msk.plan, "aws:msk/topic:Topic")
    got = {r["inputs"]["name"]: (r["inputs"]["partitionCount"], r["inputs"]["replicationFactor"],
                                 int(json.loads(r["inputs"]["configs"])["retention.ms"])) for r in topics.values()}
    assert got == expected_topics()
    assert set(topics) == {f"kafka-topic-{t.name}-{role}" for t in TEAMS for role in TOPIC_ROLES}


def test_two_teams_may_not_share_a_topic():
    clash = [TeamConfig(name="fraud"), TeamConfig(name="risk", topics={"predictions": "fraud.predictions"})]
    with pytest.raises(ValueError, match="'fraud.predictions' belongs to both team 'fraud' and team 'risk'"):
        teams_by_name(clash)


# ---- grants stay inside the team -----------------------------------------------------------------------------------

def own(team_name: str) -> set[str]:
    return set(team_topics(next(t for t in TEAMS if t.name == team_name)).values())


def test_strimzi_acls_reach_only_the_clients_team_topics_and_group(strimzi):
    users = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in strimzi.plan.of_type(STRIMZI_USER)}
    assert set(users) == {f"{g.namespace}.{g.client}" for g in GRANTS}
    for grant in GRANTS:
        acls = users[f"{grant.namespace}.{grant.client}"]["spec"]["authorization"]["acls"]
        topics = {a["resource"]["name"] for a in acls if a["resource"]["type"] == "topic"}
        groups = {a["resource"]["name"] for a in acls if a["resource"]["type"] == "group"}
        assert topics == {*grant.read, *grant.write} and topics <= own(grant.team), grant.client
        assert groups == ({grant.group} if grant.group else set()), grant.client
        assert all(a["resource"]["patternType"] == "literal" for a in acls)
        reads = {a["resource"]["name"] for a in acls if "Read" in a["operations"] and a["resource"]["type"] == "topic"}
        assert reads == set(grant.read)


def test_msk_statements_reach_only_the_clients_team_topics_and_group(msk):
    policies = {r["name"]: json.loads(r["inputs"]["policy"])["Statement"]
                for r in msk.plan.of_type("aws:iam/rolePolicy:RolePolicy")}
    for grant in GRANTS:
        actions: dict[str, list[str]] = {}
        for st in policies[f"{grant.client}-kafka"]:
            for action in st["Action"]:
                actions.setdefault(action, []).extend(st["Resource"])
        named = lambda action, kind: {r.split(":", 5)[5].split("/", 3)[3] for r in actions.get(action, [])
                                      if r.split(":", 5)[5].startswith(f"{kind}/")}
        assert named("kafka-cluster:ReadData", "topic") == set(grant.read), grant.client
        assert named("kafka-cluster:WriteData", "topic") == set(grant.write), grant.client
        assert named("kafka-cluster:DescribeTopic", "topic") <= own(grant.team)
        assert named("kafka-cluster:AlterGroup", "group") == ({grant.group} if grant.group else set())
        assert not any("*" in r for rs in actions.values() for r in rs), grant.client


@pytest.mark.parametrize("flavor", ["strimzi", "msk"])
@pytest.mark.parametrize("grant, message", [
    pytest.param(KafkaGrant(client="x", namespace="team-fraud", team="fraud", read=["risk_card_tx"]),
                 r"topic\(s\) \['risk_card_tx'\] are not team 'fraud'", id="another-teams-topic"),
    pytest.param(KafkaGrant(client="x", namespace="team-fraud", team="fraud", write=["predictions"]),
                 r"topic\(s\) \['predictions'\] are not team 'fraud'", id="the-old-shared-topic"),
    pytest.param(KafkaGrant(client="x", namespace="team-fraud", team="fraud", read=["fraud.transactions"],
                            group="risk.lake-ingestion"),
                 "consumer group 'risk.lake-ingestion' must be team 'fraud'", id="another-teams-group"),
    pytest.param(KafkaGrant(client="x", namespace="team-risk", team="fraud", read=["fraud.transactions"]),
                 "runs in namespace 'team-fraud', not 'team-risk'", id="another-teams-namespace"),
    pytest.param(KafkaGrant(client="x", namespace="team-ops", team="ops"), "unknown team 'ops'", id="unknown-team"),
])
def test_a_grant_outside_its_team_is_refused(flavor, grant, message):
    with pytest.raises(ValueError, match=message):
        (run_strimzi if flavor == "strimzi" else run_msk)(grants=[grant])


def test_check_grant_accepts_the_teams_own_grants():
    teams = teams_by_name(TEAMS)
    assert [check_grant(g, teams).name for g in GRANTS] == [g.team for g in GRANTS]


def test_msk_clients_wait_for_their_own_teams_topics_only(msk):
    for grant in GRANTS:
        waited = [r for r in msk.access[grant.client].depends_on if isinstance(r, aws.msk.Topic)]
        assert len(waited) == len(TOPIC_ROLES), grant.client
    fraud, risk = (msk.access[f"{t}-lake-ingestion"].depends_on for t in ("fraud", "risk"))
    assert not set(map(id, fraud)) & set(map(id, risk))


# ---- Strimzi: certificates in the client's namespace -------------------------------------------------------------

def test_client_secret_lands_in_the_clients_namespace_with_the_three_files(strimzi):
    secrets = by_name(strimzi.plan, SECRET)
    namespaces = {r["inputs"]["metadata"]["name"]: r["urn"]
                  for r in strimzi.plan.of_type("kubernetes:core/v1:Namespace")}
    cluster_ca_cert = strimzi.secret_data["platform-cluster-ca-cert"]["ca.crt"]
    clients_ca_cert = strimzi.secret_data["platform-clients-ca-cert"]["ca.crt"]
    for grant in GRANTS:
        secret = secrets[f"{grant.namespace}-{grant.client}-kafka-tls"]
        meta = secret["inputs"]["metadata"]
        assert (meta["namespace"], meta["name"]) == (grant.namespace, f"{grant.client}-kafka-tls")
        assert namespaces[grant.namespace] in secret["dependsOn"]
        data = strimzi.secret_data[grant.client]
        assert sorted(data) == ["ca.crt", "user.crt", "user.key"]
        # Clients verify the brokers against the cluster CA; the clients CA only signs their own certificates.
        assert data["ca.crt"] == cluster_ca_cert != clients_ca_cert
        assert "PRIVATE KEY" in data["user.key"] and "CERTIFICATE" in data["user.crt"]
        access = strimzi.access[grant.client]
        (volume,) = access.volumes
        assert volume["secret"]["secretName"] == meta["name"]
        assert sorted(i["path"] for i in volume["secret"]["items"]) == ["ca.crt", "user.crt", "user.key"]
        (mount,) = access.volume_mounts
        assert mount["mountPath"] == access.env["KAFKA_TLS_DIR"] and mount["readOnly"] is True
        assert access.env["KAFKA_AUTH"] == "mtls"
        assert len(strimzi.checksums[grant.client]) == 16


def test_the_client_certificate_is_the_kafka_users_and_signed_by_the_clients_ca(strimzi):
    plan = strimzi.plan
    users = {r["inputs"]["metadata"]["name"]: r for r in plan.of_type(STRIMZI_USER)}
    csrs = by_name(plan, "tls:index/certRequest:CertRequest")
    certs = by_name(plan, "tls:index/locallySignedCert:LocallySignedCert")
    clients_ca = plan.one("tls:index/selfSignedCert:SelfSignedCert", "kafka-clients-ca")["urn"]
    clients_key = plan.one("tls:index/privateKey:PrivateKey", "kafka-clients-ca-key")["urn"]
    for grant in GRANTS:
        res = f"{grant.namespace}-{grant.client}-kafka"
        # Kafka's principal is the whole subject DN and Strimzi's ACLs name `CN=<user>`: the CN alone, the user's name.
        assert csrs[f"{res}-csr"]["inputs"]["subject"] == {"commonName": f"{grant.namespace}.{grant.client}"}
        user = users[f"{grant.namespace}.{grant.client}"]["inputs"]
        assert user["spec"]["authentication"] == {"type": "tls-external"}
        cert = certs[f"{res}-cert"]
        assert {clients_ca, clients_key} <= set(cert["dependsOn"])
        assert cert["inputs"]["allowedUses"] == ["digital_signature", "client_auth"]
        assert cert["inputs"]["caPrivateKeyPem"] == "[secret]"
        assert 0 < cert["inputs"]["earlyRenewalHours"] < cert["inputs"]["validityPeriodHours"]


def test_same_client_name_in_two_team_namespaces_stays_apart():
    grants = [KafkaGrant(client="ingest", namespace=t.namespace, team=t.name, read=[t.topic("transactions")])
              for t in TEAMS]
    plan = run_strimzi(grants=grants).plan
    assert sorted(r["inputs"]["metadata"]["name"] for r in plan.of_type(STRIMZI_USER)) == [
        "team-fraud.ingest", "team-risk.ingest"]
    assert sorted(r["inputs"]["metadata"]["namespace"] for r in plan.of_type(SECRET)
                  if r["inputs"]["metadata"]["name"] == "ingest-kafka-tls") == ["team-fraud", "team-risk"]


def test_a_user_name_too_long_for_a_certificate_is_refused():
    grant = KafkaGrant(client="x" * 60, namespace="team-fraud", team="fraud")
    with pytest.raises(ValueError, match="longer than 64 characters"):
        run_strimzi(grants=[grant])


def test_strimzi_clients_wait_for_their_secret_user_and_own_topics(strimzi):
    for grant in GRANTS:
        deps = strimzi.access[grant.client].depends_on
        kinds = sorted(type(r).__name__ for r in deps)
        assert kinds == ["CustomResource"] * (1 + len(TOPIC_ROLES)) + ["Secret"], grant.client


# ---- Strimzi: the CAs ----------------------------------------------------------------------------------------------

def test_the_cas_are_supplied_as_strimzi_requires(strimzi):
    plan = strimzi.plan
    spec = plan.one("kubernetes:kafka.strimzi.io/v1:Kafka", "kafka-cluster")
    assert spec["inputs"]["spec"]["clusterCa"] == {"generateCertificateAuthority": False}
    assert spec["inputs"]["spec"]["clientsCa"] == {"generateCertificateAuthority": False}
    secrets = {r["inputs"]["metadata"]["name"]: r for r in plan.of_type(SECRET)
               if r["inputs"]["metadata"]["namespace"] == "kafka"}
    assert set(secrets) == {"platform-cluster-ca", "platform-cluster-ca-cert", "platform-clients-ca",
                            "platform-clients-ca-cert"}
    for name, r in secrets.items():
        meta = r["inputs"]["metadata"]
        # Strimzi finds its CA Secrets by name among those with these labels (CaReconciler.reconcileCas).
        assert meta["labels"] == {"strimzi.io/kind": "Kafka", "strimzi.io/cluster": "platform"}
        key = "ca.crt" if name.endswith("-cert") else "ca.key"
        assert list(strimzi.secret_data[name]) == [key]
        annotation = "strimzi.io/ca-cert-generation" if key == "ca.crt" else "strimzi.io/ca-key-generation"
        assert int(meta["annotations"][annotation]) >= 0
        assert r["urn"] in spec["dependsOn"], name
    assert "BEGIN PRIVATE KEY" in strimzi.secret_data["platform-clients-ca"]["ca.key"]
    for role in ("cluster", "clients"):
        ca = plan.one("tls:index/selfSignedCert:SelfSignedCert", f"kafka-{role}-ca")["inputs"]
        assert ca["isCaCertificate"] is True and "cert_signing" in ca["allowedUses"]
        assert 0 < ca["earlyRenewalHours"] < ca["validityPeriodHours"]
        key = plan.one("tls:index/privateKey:PrivateKey", f"kafka-{role}-ca-key")
        # A code change must not swap a CA key: that needs Strimzi's manual key-replacement procedure.
        assert key["ignoreChanges"] == ["algorithm", "rsaBits"]


def test_a_renewed_ca_certificate_gets_a_higher_generation():
    first, renewed = ca_generation("2026-01-01T00:00:00Z"), ca_generation("2030-01-01T00:00:00Z")
    assert int(renewed) > int(first) > 0
    assert int(ca_generation("3000-01-01T00:00:00Z")) < 2**31  # Strimzi parses a Java int


# ---- Strimzi: CRDs and the listener's network policy ---------------------------------------------------------------

def test_strimzi_resources_validate_against_the_vendored_crds(strimzi):
    crs = [r for r in strimzi.plan.resources if r["type"].startswith("kubernetes:kafka.strimzi.io/")]
    assert {r["inputs"]["kind"] for r in crs} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    errors = [f"{r['name']}: {e}" for r in crs for e in validate(r["inputs"])]
    assert errors == []


@pytest.mark.parametrize("mutate, expected", [
    pytest.param(lambda m: m["spec"]["authentication"].update(type="tls_external"),
                 "spec.authentication.type: 'tls_external' is not one of ['tls', 'tls-external', 'scram-sha-512']",
                 id="misspelt-type"),
    pytest.param(lambda m: m["spec"]["authentication"].update(validityDays=30, renewalDays=10),
                 "spec.authentication: 'validityDays' and 'renewalDays' can be configured only with 'type: tls'",
                 id="validity-on-external-certificates"),
])
def test_the_crd_check_catches_a_broken_kafka_user(strimzi, mutate, expected):
    manifest = json.loads(json.dumps(strimzi.plan.of_type(STRIMZI_USER)[0]["inputs"]))
    mutate(manifest)
    assert expected in validate(manifest)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for the parts the listener uses (matchLabels, Exists/In)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] not in ("Exists", "In"):
            raise ValueError(e["operator"])
    return True


def tls_listener_admits(spec: dict[str, Any], namespace_labels: dict[str, str]) -> bool:
    """Strimzi's generated NetworkPolicy for a listener (KafkaCluster.generateNetworkPolicy): no peers admit all."""
    (listener,) = spec["kafka"]["listeners"]
    peers = listener.get("networkPolicyPeers") or []
    return not peers or any(set(p) == {"namespaceSelector"} and selects(p["namespaceSelector"], namespace_labels)
                            for p in peers)


def test_only_team_namespaces_reach_the_client_listener():
    spec = kafka_spec(KafkaConfig(flavor="strimzi"))
    assert CLIENT_NAMESPACE_LABEL == TEAM_LABEL
    for team in TEAMS:
        assert tls_listener_admits(spec, {"kubernetes.io/metadata.name": team.namespace, TEAM_LABEL: team.name})
    for other in ("monitoring", "mlflow", "default", "kafka"):
        assert not tls_listener_admits(spec, {"kubernetes.io/metadata.name": other})


def test_the_listener_check_sees_a_listener_open_to_all():
    spec = kafka_spec(KafkaConfig(flavor="strimzi"))
    spec["kafka"]["listeners"][0].pop("networkPolicyPeers")
    assert tls_listener_admits(spec, {"kubernetes.io/metadata.name": "default"})


# ---- no private key in plain text -----------------------------------------------------------------------------

def plaintext_keys(plan: Plan) -> list[str]:
    """Resources (or outputs) whose recorded values hold a PEM private key in the clear."""
    found = [r["urn"] for r in plan.resources if "PRIVATE KEY" in json.dumps(r["inputs"])]
    return found + [name for name, value in plan.outputs.items() if "PRIVATE KEY" in json.dumps(value)]


def test_no_private_key_appears_in_plain_text_in_the_plan(strimzi):
    assert plaintext_keys(strimzi.plan) == []
    masked = [r for r in strimzi.plan.resources if r["type"] == SECRET]
    assert masked and all(r["inputs"]["stringData"] == "[secret]" for r in masked)


def test_the_plaintext_check_finds_a_key_that_lost_its_secrecy():
    def leak(kafka: StrimziKafka) -> None:
        k8s.core.v1.ConfigMap("leaked", metadata={"name": "leaked", "namespace": "kafka"},
                              data={"ca.key": pulumi.Output.unsecret(kafka._clients_ca.key.private_key_pem)},
                              opts=pulumi.ResourceOptions(provider=kafka._args.k8s_provider))
        pulumi.export("leakedKey", pulumi.Output.unsecret(kafka._cluster_ca.key.private_key_pem_pkcs8))

    plan = run_strimzi(grants=[], extra=leak).plan
    found = plaintext_keys(plan)
    assert len(found) == 2 and found[0].endswith("::leaked") and found[1] == "leakedKey"
