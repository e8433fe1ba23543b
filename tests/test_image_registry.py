"""Where the workload images come from: each stack's ECR repositories, how they are guarded, how pods reference
them (tag, or digest when pinned), the config that pins them, and the workflow that fills them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from offline.harness import run_program, stack_config
from offline.mocks import ACCOUNT_ID
from platform_config import ConfigError, load_config
from platform_config.services_model import PLATFORM_IMAGES
from platform_config.versions import POSTGRES_IMAGE
from tests.conftest import stack_plan

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY, LIFECYCLE = "aws:ecr/repository:Repository", "aws:ecr/lifecyclePolicy:LifecyclePolicy"
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:CronJob",
             "kubernetes:batch/v1:Job")
DIGESTS = {name: f"sha256:{n:064x}" for n, name in enumerate(PLATFORM_IMAGES, 1)}


def _script():
    spec = importlib.util.spec_from_file_location("image_targets", ROOT / ".github" / "scripts" / "image_targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images_config(stack: str, **images) -> dict[str, str]:
    config, _ = stack_config(stack)
    config["ml-platform:images"] = json.dumps({**json.loads(config["ml-platform:images"]), **images})
    return config


def container_images(plan) -> list[tuple[str, str]]:
    """(workload name, image) for every container and init container the plan runs."""
    found = []
    for r in plan.resources:
        if r["type"] not in WORKLOADS:
            continue
        spec = r["inputs"]["spec"]
        pod = (spec["jobTemplate"]["spec"] if "jobTemplate" in spec else spec)["template"]["spec"]
        found += [(r["name"], c["image"]) for c in pod.get("initContainers", []) + pod["containers"]]
    return found


def platform_images(plan) -> set[str]:
    return {image for _, image in container_images(plan) if image != POSTGRES_IMAGE}


def host(plan) -> str:
    return f"{ACCOUNT_ID}.dkr.ecr.{plan.outputs['region']}.amazonaws.com"


# --- the repositories -----------------------------------------------------------------------------------------------

def test_the_platform_images_are_the_workload_directories_with_a_dockerfile():
    built = sorted(p.parent.name for p in (ROOT / "workloads").glob("*/Dockerfile"))
    assert list(PLATFORM_IMAGES) == built == _script().images()


def test_every_stack_has_a_hardened_repository_per_image(plan):
    registry = plan.one("mlplatform:images:ImageRegistry", "images")
    key = plan.one("aws:kms/key:Key", "images-key")
    assert key["inputs"]["enableKeyRotation"] is True and key["parent"] == registry["urn"]
    repositories = {r["inputs"]["name"]: r for r in plan.of_type(REPOSITORY)}
    assert set(repositories) == {f"ml-platform-{plan.stack}/{image}" for image in PLATFORM_IMAGES}
    prod = plan.stack == "prod"
    for name, repo in repositories.items():
        inputs = repo["inputs"]
        assert inputs["imageTagMutability"] == "IMMUTABLE", name
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}, name
        (encryption,) = inputs["encryptionConfigurations"]
        assert encryption["encryptionType"] == "KMS" and encryption["kmsKey"].startswith("arn:aws:kms:"), name
        assert encryption["kmsKey"] in key["identity"] and key["urn"] in repo["dependsOn"], name
        assert repo["parent"] == registry["urn"] and repo["provider"].endswith("::pulumi:providers:aws::aws")
        # Emptied by a destroy except where the stack's data is protected (prod), where they stay with their key.
        assert (inputs["forceDelete"], repo["protect"], repo["retainOnDelete"]) == (not prod, prod, prod), name
        assert (key["protect"], key["retainOnDelete"]) == (prod, prod)
    for policy in plan.of_type(LIFECYCLE):
        assert policy["parent"] == registry["urn"]
    cleaned = {policy["inputs"]["repository"]: json.loads(policy["inputs"]["policy"])
               for policy in plan.of_type(LIFECYCLE)}
    assert set(cleaned) == set(repositories)
    for name, policy in cleaned.items():
        (rule,) = policy["rules"]
        assert rule["selection"]["tagStatus"] == "untagged" and rule["action"] == {"type": "expire"}, name
        assert rule["selection"]["countType"] == "sinceImagePushed" and rule["selection"]["countNumber"] > 0
    # Pulls from the same account need only the nodes' identity policy: no repository policy to widen.
    assert not plan.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    assert set(plan.outputs["imageRepositories"]) == set(PLATFORM_IMAGES)


def test_every_node_role_may_pull_from_ecr(plan):
    # System nodes and Karpenter's nodes (the general and GPU pools) pull the workload images.
    pulls = {r["name"] for r in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
             if r["inputs"]["policyArn"] == "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"}
    assert pulls == {"system-nodes-node-AmazonEC2ContainerRegistryPullOnly",
                     "karpenter-node-AmazonEC2ContainerRegistryPullOnly"}


# --- the references pods pull -----------------------------------------------------------------------------------------

def test_workloads_pull_the_stacks_own_repositories_by_tag(plan):
    expected = {f"{host(plan)}/ml-platform-{plan.stack}/{image}:0.1.0" for image in PLATFORM_IMAGES}
    assert platform_images(plan) == expected
    assert plan.outputs["imageRepositories"]["inference"] == f"{host(plan)}/ml-platform-{plan.stack}/inference"


def test_prod_pulls_from_its_own_region():
    assert {i.split("/")[0] for i in platform_images(stack_plan("prod"))} == {f"{ACCOUNT_ID}.dkr.ecr.us-east-1."
                                                                             "amazonaws.com"}


def test_a_digest_pins_its_image_and_leaves_the_others_on_the_tag():
    pinned = {name: DIGESTS[name] for name in ("inference", "mlflow-server")}
    plan = run_program("staging", images_config("staging", digests=pinned))
    repo = f"{host(plan)}/ml-platform-staging"
    assert platform_images(plan) == {f"{repo}/inference@{DIGESTS['inference']}",
                                     f"{repo}/mlflow-server@{DIGESTS['mlflow-server']}",
                                     f"{repo}/ingestion:0.1.0", f"{repo}/training:0.1.0", f"{repo}/drift:0.1.0"}
    by_workload = dict(container_images(plan))
    # Both teams' servers, and the MLflow server's migrations and user sync, run the pinned manifests.
    assert by_workload["fraud-detector-deployment"] == by_workload["chargeback-risk-deployment"] == \
        f"{repo}/inference@{DIGESTS['inference']}"
    assert {i for w, i in container_images(plan) if w.startswith("mlflow-") and "db" not in w} == {
        f"{repo}/mlflow-server@{DIGESTS['mlflow-server']}"}


def test_what_the_images_workflow_reports_is_what_the_stacks_accept_and_pull():
    # The workflow's digests object, keyed by the images it built, set as the deploy sets it; a model's own image
    # still wins over the platform's.
    built = {name: DIGESTS[name] for name in _script().images()}
    config = images_config("dev", digests=built)
    models = json.loads(config["ml-platform:models"])
    own = "registry.example.com/fraud/server@sha256:" + "e" * 64
    models[0]["images"] = {"serving": own}
    config["ml-platform:models"] = json.dumps(models)
    plan = run_program("dev", config)
    repo = f"{host(plan)}/ml-platform-dev"
    # dev's one model serves its own image, so the platform's inference image runs nowhere there.
    assert platform_images(plan) == {f"{repo}/{name}@{digest}" for name, digest in DIGESTS.items()
                                     if name != "inference"} | {own}
    by_workload = dict(container_images(plan))
    assert by_workload["fraud-detector-deployment"] == own
    assert by_workload["fraud-detector-drift-deployment"] == f"{repo}/drift@{DIGESTS['drift']}"


def test_an_external_registry_gets_no_repositories_and_keeps_its_layout():
    registry = "registry.example.com/ml"
    plan = run_program("dev", images_config("dev", registry=registry, digests={"drift": DIGESTS["drift"]}))
    assert not [r for r in plan.resources if r["type"].startswith("aws:ecr/")]
    assert not [r for r in plan.of_type("aws:kms/key:Key") if r["name"] == "images-key"]
    assert platform_images(plan) == {f"{registry}/ml-platform-{name}:0.1.0" for name in PLATFORM_IMAGES
                                     if name != "drift"} | {f"{registry}/ml-platform-drift@{DIGESTS['drift']}"}
    assert plan.outputs["imageRepositories"] == {}


# --- config ---------------------------------------------------------------------------------------------------------

def problems(stack: str, **images) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(images_config(stack, **images), "ml-platform", stack)
    return err.value.problems


@pytest.mark.parametrize("digests, problem", [
    ({"inference": "sha256:abc"},
     "ml-platform:images.digests.inference: 'sha256:abc' is not an image digest; use sha256:<64 lower-case hex "
     "digits>, as the images workflow records it"),
    ({"inference": "SHA256:" + "A" * 64},
     f"ml-platform:images.digests.inference: {'SHA256:' + 'A' * 64!r} is not an image digest; use sha256:<64 "
     "lower-case hex digits>, as the images workflow records it"),
    ({"inferense": DIGESTS["inference"]},
     "ml-platform:images.digests.inferense: 'inferense' is not an image of the platform; use one of: drift, "
     "inference, ingestion, mlflow-server, training"),
    ({"inference": 7}, 'ml-platform:images.digests: expected an object of string values, got {"inference": 7}'),
    (["sha256:" + "a" * 64], 'ml-platform:images.digests: expected an object of string values, got ["sha256:'
                             + "a" * 64 + '"]'),
])
def test_a_bad_digest_names_the_key_and_the_fix(digests, problem):
    assert problems("dev", digests=digests) == [problem]


def test_every_images_problem_is_reported_at_once():
    found = problems("prod", tag="latest", registry="Not A Registry",
                     digests={"mlflow": DIGESTS["mlflow-server"], "drift": "sha256:123"})
    assert found == [
        "ml-platform:images.registry: 'Not A Registry' is not valid (e.g. registry.example.com/ml; leave it out to use "
        "this stack's own ECR repositories)",
        "ml-platform:images.tag: 'latest' is not allowed: it makes rollouts unrepeatable; use a version tag or a "
        "digest",
        "ml-platform:images.digests.drift: 'sha256:123' is not an image digest; use sha256:<64 lower-case hex "
        "digits>, as the images workflow records it",
        "ml-platform:images.digests.mlflow: 'mlflow' is not an image of the platform; use one of: drift, inference, "
        "ingestion, mlflow-server, training",
    ]


def test_the_shipped_stacks_name_no_registry_placeholder():
    for stack in ("dev", "staging", "prod"):
        images = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]["ml-platform:images"]
        assert set(images) == {"tag"}, stack


# --- the workflow ---------------------------------------------------------------------------------------------------

def test_the_workflow_pushes_to_the_repositories_each_stack_declares(plans):
    script = _script()
    targets = {t["stack"]: t for t in script.targets()}
    assert set(targets) == set(plans)
    for stack, plan in plans.items():
        assert targets[stack]["region"] == plan.outputs["region"]
        urls = {image: f"{host(plan)}/{name}" for image, name in targets[stack]["repositories"].items()}
        assert urls == plan.outputs["imageRepositories"], stack


def test_the_workflow_refuses_images_the_platform_would_not_deploy(tmp_path, capsys):
    script = _script()
    (tmp_path / "workloads" / "reranker").mkdir(parents=True)
    (tmp_path / "workloads" / "reranker" / "Dockerfile").write_text("FROM scratch\n")
    for name in PLATFORM_IMAGES:
        (tmp_path / "workloads" / name).mkdir()
        (tmp_path / "workloads" / name / "Dockerfile").write_text("FROM scratch\n")
    assert script.main([], root=tmp_path) == 1
    assert "::error::workloads/*/Dockerfile builds" in capsys.readouterr().err
    assert script.main([]) == 0
    outputs = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert json.loads(outputs["images"]) == list(PLATFORM_IMAGES)
    assert [json.loads(outputs["home"])["stack"], *(t["stack"] for t in json.loads(outputs["copies"]))] == [
        "dev", "prod", "staging"]


def test_the_workflow_builds_once_per_commit_with_a_layer_cache_and_reports_digests():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text().replace("\non:", "\n'on':"))
    assert set(wf["on"]) == {"workflow_call", "workflow_dispatch"}
    assert wf["on"]["workflow_call"]["outputs"]["digests"]["value"] == "${{ jobs.digests.outputs.digests }}"
    plan_steps = "\n".join(str(s.get("run", "")) for s in wf["jobs"]["plan"]["steps"])
    assert "python .github/scripts/image_targets.py" in plan_steps
    build = wf["jobs"]["build"]
    assert build["strategy"]["matrix"]["image"] == "${{ fromJSON(needs.plan.outputs.images) }}"
    push = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@"))
    assert push["if"] == "steps.existing.outputs.digest == ''"  # a re-run for the same commit does not push
    w = push["with"]
    assert (w["context"], w["file"], w["push"]) == ("workloads", "workloads/${{ matrix.image }}/Dockerfile", True)
    assert w["tags"].endswith(":${{ env.SHA }}") and build["env"]["SHA"] == "${{ needs.plan.outputs.sha }}"
    assert w["cache-from"].startswith("type=gha") and w["cache-to"].startswith("type=gha,mode=max")
    assert (w["provenance"], w["sbom"]) == (False, False)  # one manifest: no untagged children to expire
    record = next(s for s in build["steps"] if s.get("name") == "Record the digest")
    assert record["env"] == {"PUSHED": "${{ steps.build.outputs.digest }}",
                             "EXISTING": "${{ steps.existing.outputs.digest }}"}
    uses = [str(s.get("uses", "")) for job in wf["jobs"].values() for s in job.get("steps", [])]
    assert any(u.startswith("aws-actions/amazon-ecr-login@") for u in uses)
    assert not re.search(r"aws-access-key-id|AWS_SECRET_ACCESS_KEY", json.dumps(wf))
    assert "--prefer-index=false" in json.dumps(wf["jobs"]["copy"])  # a copy keeps the digest
