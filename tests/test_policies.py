"""The CrossGuard rules: the shipped stacks pass all of them; one changed field per case gives the exact violation."""

from __future__ import annotations

import copy
import json

import pytest

from offline.policy_check import check
from policies.rules import ALL_POLICIES
from tests.conftest import stack_plan

RULES = {p.name: p for p in ALL_POLICIES}


def test_every_rule_file_holds_the_rule_named_after_it():
    import pathlib
    files = {f.stem.replace("_", "-") for f in pathlib.Path("policies/rules").glob("*.py")
             if not f.stem.startswith("_")}
    assert files == set(RULES)


def test_shipped_stacks_pass_every_rule(plan):
    assert check(plan) == []


def mutated(type_: str, mutate, name: str | None = None):
    """The prod plan with one resource of `type_` changed by `mutate(inputs)`; returns (plan, urn)."""
    plan = copy.deepcopy(stack_plan("prod"))
    target = next(r for r in plan.resources if r["type"] == type_ and (name is None or r["name"] == name))
    mutate(target["inputs"])
    return plan, target["urn"]


def set_path(*path, value):
    def mutate(inputs):
        for part in path[:-1]:
            inputs = inputs[part]
        inputs[path[-1]] = value
    return mutate


def rewrite_policy(field, change):
    def mutate(inputs):
        doc = json.loads(inputs[field])
        change(doc["Statement"])
        inputs[field] = json.dumps(doc)
    return mutate


CASES = [
    ("aws-s3-bucket-public-access-block", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
     set_path("restrictPublicBuckets", value=False), None,
     "public access block must set all four flags; not true: restrictPublicBuckets"),
    ("aws-s3-bucket-encryption",
     "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     set_path("rules", 0, "bucketKeyEnabled", value=False), "data-lake-raw",
     "SSE-KMS without an S3 bucket key: every object write becomes a KMS request"),
    ("aws-s3-bucket-encryption",
     "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     set_path("rules", value=[]), None, "no default encryption rule"),
    ("aws-s3-bucket-tls-only", "aws:s3/bucketPolicy:BucketPolicy",
     rewrite_policy("policy", lambda sts: sts.pop(0)), "data-lake-raw",
     "bucket policy must deny s3:* when aws:SecureTransport is false"),
    ("aws-iam-no-wildcard-admin", "aws:iam/rolePolicy:RolePolicy",
     rewrite_policy("policy", lambda sts: sts.insert(0, {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"})),
     "karpenter-controller", "statement 0 allows wildcard actions ['ec2:*'] on Resource '*'"),
    ("aws-iam-no-wildcard-admin", "aws:iam/rolePolicy:RolePolicy",
     rewrite_policy("policy", lambda sts: sts[0].update(Action="*")), "karpenter-controller",
     "statement 0 allows Action '*'"),
    ("aws-ec2-launch-template-hardened", "aws:ec2/launchTemplate:LaunchTemplate",
     set_path("metadataOptions", "httpTokens", value="optional"), None,
     "instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens: required)"),
    ("aws-ec2-launch-template-hardened", "aws:ec2/launchTemplate:LaunchTemplate",
     set_path("blockDeviceMappings", 0, "ebs", "encrypted", value="false"), None,
     "volume /dev/xvda is not encrypted"),
    ("aws-eks-cluster-hardened", "aws:eks/cluster:Cluster",
     set_path("enabledClusterLogTypes", value=["api", "audit"]), None,
     "control-plane log types not enabled: authenticator, controllerManager, scheduler"),
    ("aws-eks-cluster-hardened", "aws:eks/cluster:Cluster",
     set_path("encryptionConfig", value={}), None, "Kubernetes secrets are not envelope-encrypted with KMS"),
    ("aws-eks-cluster-hardened", "aws:eks/cluster:Cluster",
     set_path("vpcConfig", "endpointPublicAccess", value=True), None,
     "the public API endpoint is open to 0.0.0.0/0; disable it or list allowed CIDRs"),
    ("aws-eks-cluster-hardened", "aws:eks/cluster:Cluster",
     set_path("accessConfig", "authenticationMode", value="CONFIG_MAP"), None,
     "authentication mode must be API (access entries, no aws-auth ConfigMap)"),
    ("aws-kms-key-rotation", "aws:kms/key:Key", set_path("enableKeyRotation", value=False), "eks-secrets",
     "customer-managed KMS keys must rotate (enableKeyRotation: true)"),
    ("aws-ecr-repository-hardened", "aws:ecr/repository:Repository", set_path("imageTagMutability", value="MUTABLE"),
     "images-inference", "repository images-inference: tags must be immutable (imageTagMutability: IMMUTABLE), or a "
                         "push can change what a tag runs"),
    ("aws-ecr-repository-hardened", "aws:ecr/repository:Repository",
     set_path("imageScanningConfiguration", "scanOnPush", value=False), "images-training",
     "repository images-training: images must be scanned on push (imageScanningConfiguration.scanOnPush: true)"),
    ("aws-ecr-repository-hardened", "aws:ecr/repository:Repository",
     set_path("encryptionConfigurations", value=[{"encryptionType": "AES256"}]), "images-mlflow-server",
     "repository images-mlflow-server: images must be encrypted with a customer-managed KMS key (encryptionType KMS "
     "with a kmsKey)"),
    ("aws-ecr-repository-hardened", "aws:ecr/repository:Repository",  # KMS without a key: the AWS-managed aws/ecr
     set_path("encryptionConfigurations", 0, "kmsKey", value=""), "images-drift",
     "repository images-drift: images must be encrypted with a customer-managed KMS key (encryptionType KMS with a "
     "kmsKey)"),
    ("karpenter-node-class-hardened", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
     set_path("spec", "amiSelectorTerms", value=[{"alias": "al2023@latest"}]), None,
     "AMI alias @latest makes node images change without a review; pin a release"),
    ("karpenter-node-class-hardened", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
     set_path("spec", "metadataOptions", "httpTokens", value="optional"), None,
     "EC2NodeClass must require IMDSv2 (spec.metadataOptions.httpTokens: required)"),
    ("aws-rds-instance-hardened", "aws:rds/instance:Instance", set_path("skipFinalSnapshot", value=True), None,
     "a final snapshot must be taken on delete (skipFinalSnapshot: false)"),
    ("aws-rds-instance-hardened", "aws:rds/instance:Instance", set_path("publiclyAccessible", value=True), None,
     "the database must not be publicly accessible"),
    ("aws-msk-cluster-hardened", "aws:msk/cluster:Cluster",
     set_path("encryptionInfo", "encryptionInTransit", "clientBroker", value="TLS_PLAINTEXT"), None,
     "Kafka traffic must be TLS between clients and brokers and inside the cluster"),
    ("aws-msk-cluster-hardened", "aws:msk/cluster:Cluster",
     set_path("clientAuthentication", value={"unauthenticated": True}), None,
     "clients must authenticate (IAM or mTLS); unauthenticated access is not allowed"),
    ("kubernetes-pods-hardened", "kubernetes:apps/v1:Deployment",
     set_path("spec", "template", "spec", "containers", 0, "image", value="example.com/inference:latest"),
     "fraud-detector-deployment",
     "container server: image 'example.com/inference:latest' must be pinned to a tag or digest, never latest"),
    ("kubernetes-pods-hardened", "kubernetes:batch/v1:CronJob",
     set_path("spec", "jobTemplate", "spec", "template", "spec", "securityContext", value={}), None,
     "pods must run as non-root (securityContext.runAsNonRoot: true)"),
    ("kubernetes-helm-release-pinned", "kubernetes:helm.sh/v3:Release", set_path("version", value="1.x"),
     "nvidia-device-plugin",
     "chart 'nvidia-device-plugin' must be pinned to an exact version, got '1.x'"),
]


@pytest.mark.parametrize("rule, type_, mutate, name, message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_one_changed_field_gives_the_exact_violation(rule, type_, mutate, name, message):
    plan, urn = mutated(type_, mutate, name)
    assert [(v.urn, v.message) for v in check(plan, [RULES[rule]])] == [(urn, message)]


def test_bucket_without_versioning_is_caught_by_the_stack_rule():
    plan = copy.deepcopy(stack_plan("prod"))
    plan.resources = [r for r in plan.resources
                      if not (r["type"] == "aws:s3/bucketVersioning:BucketVersioning" and r["name"] == "data-lake-raw")]
    bucket = plan.one("aws:s3/bucket:Bucket", "data-lake-raw")
    assert [(v.urn, v.message) for v in check(plan, [RULES["aws-s3-bucket-guarded"]])] == [
        (bucket["urn"], "bucket data-lake-raw has no versioning")]


@pytest.mark.parametrize("drop, policy", [
    (True, None),  # no lifecycle policy at all
    (False, {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                                         "countNumber": 500}, "action": {"type": "expire"}}]}),
], ids=["missing", "no-untagged-rule"])
def test_repository_without_an_untagged_expiry_is_caught_by_the_stack_rule(drop, policy):
    plan = copy.deepcopy(stack_plan("prod"))
    lifecycle = plan.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "images-drift")
    if drop:
        plan.resources.remove(lifecycle)
    else:
        lifecycle["inputs"]["policy"] = json.dumps(policy)
    repository = plan.one("aws:ecr/repository:Repository", "images-drift")
    assert [(v.urn, v.message) for v in check(plan, [RULES["aws-ecr-repository-hardened"]])] == [
        (repository["urn"], "repository images-drift: no lifecycle policy expires its untagged images")]


def test_rules_get_props_as_the_engine_hands_them_over(plan):
    # CrossGuard wraps props in Mapping/Sequence proxies (pulumi_policy/proxy.py), not dicts and lists: the offline
    # check must too, or a rule testing isinstance(x, dict) passes here and misfires under `pulumi preview`.
    from collections.abc import Mapping

    from pulumi_policy import ResourceValidationPolicy

    seen = []
    probe = ResourceValidationPolicy(name="probe", description="records the props type",
                                     validate=lambda args, report: seen.append(type(args.props)))
    check(plan, [probe])
    assert seen and all(issubclass(t, Mapping) and not issubclass(t, dict) for t in seen)


def test_kubernetes_resource_on_the_default_provider_is_caught():
    plan = copy.deepcopy(stack_plan("dev"))
    storage = plan.one("kubernetes:storage.k8s.io/v1:StorageClass", "addons-gp3")
    default = {"urn": "urn:pulumi:dev::ml-platform::pulumi:providers:kubernetes::default_4_34_2", "id": "d",
               "type": "pulumi:providers:kubernetes", "name": "default_4_34_2", "inputs": {}}
    plan.resources.append({**storage, **default, "custom": True, "parent": None, "provider": None, "protect": False,
                           "retainOnDelete": False, "dependsOn": [], "ignoreChanges": []})
    plan.by_urn[default["urn"]] = plan.resources[-1]
    storage["provider"] = default["urn"]
    assert [(v.urn, v.message) for v in check(plan, [RULES["kubernetes-explicit-provider"]])] == [
        (storage["urn"], "kubernetes:storage.k8s.io/v1:StorageClass addons-gp3 uses the default Kubernetes "
                         "provider; pass the cluster's provider explicitly")]
