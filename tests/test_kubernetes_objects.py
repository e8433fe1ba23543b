"""Every Kubernetes object in every stack is valid: built-in kinds against the cluster version's OpenAPI schemas
(kubernetes-validate, strict mode), custom resources against the real upstream CRDs vendored under upstream/."""

from __future__ import annotations

import copy
import hashlib

import kubernetes_validate
import pytest

from offline.harness import SECRET
from tests import crd_validation
from tests.conftest import stack_plan
from upstream import catalog

# Helm releases are not Kubernetes objects: their charts render server-side; tests/test_helm_values.py checks them.
NOT_OBJECTS = {"kubernetes:helm.sh/v3:Release"}


def objects(plan):
    return [r for r in plan.resources if r["type"].startswith("kubernetes:") and r["type"] not in NOT_OBJECTS]


def validate(manifest: dict, version: str) -> list[str]:
    if crd_validation.has_crd(manifest.get("apiVersion", ""), manifest.get("kind", "")):
        return crd_validation.validate(manifest)
    if manifest.get("kind") == "Secret" and manifest.get("stringData") == SECRET:
        # Secret data is masked in the plan as a whole; its shape (string -> string) is fixed by the SDK's types.
        manifest = {**manifest, "stringData": {"masked": "value"}}
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        # Not a built-in kind, so a custom resource without a vendored CRD: the CRD validator says so, and fails.
        return crd_validation.validate(manifest)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def test_every_object_is_valid_for_the_cluster_version(plan):
    version = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]["version"]
    found = objects(plan)
    kinds = {r["inputs"]["kind"] for r in found}
    assert {"StorageClass", "NodePool", "EC2NodeClass"} <= kinds
    errors = [f"{r['inputs']['kind']} {r['name']}: {e}" for r in found for e in validate(r["inputs"], version)]
    if errors:
        pytest.fail(f"{plan.stack}:\n" + "\n".join(errors), pytrace=False)


def test_strimzi_resources_name_the_cluster_that_reconciles_them(plan):
    # Not in the CRDs: Strimzi's operators pick up node pools, topics and users by this label and ignore the rest.
    for r in objects(plan):
        manifest = r["inputs"]
        if manifest["apiVersion"].startswith("kafka.strimzi.io/") and manifest["kind"] != "Kafka":
            assert manifest["metadata"].get("labels", {}).get("strimzi.io/cluster"), r["urn"]


def dev_manifest(kind: str) -> dict:
    return copy.deepcopy(next(r["inputs"] for r in objects(stack_plan("dev")) if r["inputs"]["kind"] == kind))


def rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


@pytest.mark.parametrize("kind, mutate, expected", [
    pytest.param("StorageClass", lambda m: m.update(volumeBindingMode=None, provisoner="x"),
                 [": Additional properties are not allowed ('provisoner' was unexpected)"], id="built-in-unknown"),
    pytest.param("NodePool", lambda m: m["spec"]["template"]["spec"].update(taint=[]),
                 ["spec.template.spec: Additional properties are not allowed ('taint' was unexpected)"],
                 id="nodepool-unknown-field"),
    pytest.param("NodePool", lambda m: m["spec"]["disruption"].update(consolidationPolicy="Always"),
                 ["spec.disruption.consolidationPolicy: 'Always' is not one of "
                  "['WhenEmpty', 'WhenEmptyOrUnderutilized', 'Balanced']"], id="nodepool-bad-enum"),
    pytest.param("NodePool", lambda m: m["spec"]["template"]["metadata"]["labels"].update({"karpenter.sh/zone": "a"}),
                 ['spec.template.metadata.labels: label domain "karpenter.sh" is restricted'],
                 id="cel-restricted-label"),
    pytest.param("NodePool", lambda m: m["spec"]["template"]["spec"]["requirements"][0].update(values=[]),
                 ["spec.template.spec.requirements: requirements with operator 'In' must have a value defined"],
                 id="cel-empty-requirement"),
    pytest.param("NodePool", lambda m: m["spec"]["limits"].update(cpu={"cores": 4}),
                 ["spec.limits.cpu: {'cores': 4} is not of type 'integer', 'string'",
                  "spec.limits.cpu: {'cores': 4} is not valid under any of the given schemas"], id="int-or-string"),
    pytest.param("NodePool", lambda m: m["spec"]["template"]["spec"].update(expireAfter=None),
                 ["spec.template.spec.expireAfter: None is not of type 'string'"], id="null-not-nullable"),
    pytest.param("EC2NodeClass", lambda m: m["spec"]["metadataOptions"].update(httpTokens="require"),
                 ["spec.metadataOptions.httpTokens: 'require' is not one of ['required', 'optional']"],
                 id="nodeclass-bad-enum"),
    pytest.param("EC2NodeClass", lambda m: m["spec"]["amiSelectorTerms"][0].update(alias="ubuntu@v20260903"),
                 ["spec.amiSelectorTerms.0.alias: family is not supported, must be one of the following: "
                  "'al2', 'al2023', 'bottlerocket', 'windows2019', 'windows2022', 'windows2025'"],
                 id="cel-bad-ami-alias"),
    pytest.param("EC2NodeClass", lambda m: m["spec"].update(instanceProfile="karpenter-node"),
                 ["spec: must specify exactly one of ['role', 'instanceProfile']"], id="cel-role-or-profile"),
    pytest.param("EC2NodeClass", lambda m: m["spec"]["tags"].update({"kubernetes.io/cluster/ml": "owned"}),
                 ["spec.tags: tag contains a restricted tag matching kubernetes.io/cluster/"],
                 id="cel-restricted-tag"),
    pytest.param("EC2NodeClass", lambda m: m["metadata"].update(namespace="ml-workloads"),
                 ["metadata: Additional properties are not allowed ('namespace' was unexpected)"],
                 id="cluster-scoped-namespace"),
    pytest.param("Kafka", lambda m: rename(m["spec"]["kafka"], "listeners", "listners"),
                 ["spec.kafka: 'listeners' is a required property",
                  "spec.kafka: Additional properties are not allowed ('listners' was unexpected)"],
                 id="strimzi-misspelt-field"),
    pytest.param("Kafka", lambda m: m["spec"]["kafka"]["listeners"][0].update(type="clusterip"),
                 ["spec.kafka.listeners.0.type: 'clusterip' is not one of "
                  "['internal', 'route', 'tlsroute', 'loadbalancer', 'nodeport', 'ingress', 'cluster-ip']"],
                 id="strimzi-bad-enum"),
    pytest.param("Kafka", lambda m: m["spec"]["kafka"]["metricsConfig"].pop("valueFrom"),
                 ["spec.kafka.metricsConfig: valueFrom property is required"], id="strimzi-cel"),
    pytest.param("KafkaUser", lambda m: m["spec"]["authentication"].update(validityDays=30),
                 ["spec.authentication: 'validityDays' and 'renewalDays' can be configured only with 'type: tls'"],
                 id="strimzi-user-cel"),
    pytest.param("KafkaTopic", lambda m: m["metadata"].pop("namespace"),
                 ["metadata: 'namespace' is a required property"], id="namespaced-without-namespace"),
    pytest.param("PrometheusRule", lambda m: rename(m["spec"]["groups"][0]["rules"][0], "record", "recrod"),
                 ["spec.groups.0.rules.0: Additional properties are not allowed ('recrod' was unexpected)"],
                 id="prometheus-rule-misspelt-field"),
    pytest.param("ServiceMonitor", lambda m: m["metadata"]["labels"].update(team="ml platform"),
                 ["metadata.labels.team: 'ml platform' does not match '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'"],
                 id="bad-label-value"),
    pytest.param("PodMonitor", lambda m: m["metadata"].update(labelz={}),
                 ["metadata: Additional properties are not allowed ('labelz' was unexpected)"],
                 id="metadata-unknown-field"),
    pytest.param("NodePool", lambda m: m.update(apiVersion="karpenter.sh/v1beta1"),
                 [": NodePool.karpenter.sh has no version 'v1beta1'; served: ['v1']"], id="unserved-version"),
    pytest.param("NodePool", lambda m: m.update(kind="NodeClaim"),
                 [": no CRD vendored for NodeClaim.karpenter.sh; add its source to upstream/sources.py and run "
                  "`python -m upstream.regenerate`"], id="kind-without-crd"),
    pytest.param("NodePool", lambda m: m.update(apiVersion="jobset.x-k8s.io/v1alpha2", kind="JobSet"),
                 [": no CRD vendored for JobSet.jobset.x-k8s.io; add its source to upstream/sources.py and run "
                  "`python -m upstream.regenerate`"], id="group-without-crd"),
])
def test_validation_is_strict(kind, mutate, expected):
    manifest = dev_manifest(kind)
    assert validate(manifest, "1.35") == [], "the fixture must start from a valid manifest"
    mutate(manifest)
    assert validate(manifest, "1.35") == expected


@pytest.mark.parametrize("kind", sorted(catalog.sources()["crds"]))
def test_every_vendored_crd_converts_and_its_rules_compile(kind):
    # The program may start using any vendored kind (it deploys all of Strimzi's CRDs), so none may be unusable.
    group, name = kind.split("/")
    definition = catalog.crd(group, name)
    for served in (v["name"] for v in definition["spec"]["versions"] if v.get("served")):
        crd_validation._definition(f"{group}/{served}", name)

    def rules(node):
        if isinstance(node, dict):
            yield from (r["rule"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                yield from rules(value)
        elif isinstance(node, list):
            for value in node:
                yield from rules(value)

    for rule in rules(definition["spec"]["versions"]):
        if not crd_validation.TRANSITION.search(rule):
            crd_validation._cel_program(rule)


def test_vendored_upstream_files_are_unedited_and_at_the_pinned_versions():
    from upstream.sources import SOURCES, Subchart

    record = catalog.sources()
    on_disk = {str(p.relative_to(catalog.HERE)) for d in ("crds", "charts") for p in (catalog.HERE / d).rglob("*")
               if p.is_file()}
    assert on_disk == set(record["files"]), "upstream/ and SOURCES.json disagree: run `python -m upstream.regenerate`"
    edited = [f for f, entry in record["files"].items()
              if hashlib.sha256((catalog.HERE / f).read_bytes()).hexdigest() != entry["sha256"]]
    assert edited == [], "vendored files are upstream's verbatim; rerun `python -m upstream.regenerate`"
    # A version bump in platform_config/versions.py without re-vendoring would validate against the old release.
    for source in SOURCES:
        if isinstance(source.version, Subchart):
            continue
        if source.crds:
            assert any(f.startswith(f"crds/{source.name}-{source.version}/") for f in record["files"]), source.name
        if source.chart:
            assert catalog.is_vendored(source.name, source.version), source.name
