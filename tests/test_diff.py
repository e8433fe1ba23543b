"""`make diff`: the offline plan of a change compared with its base, and the table that says what a replacement costs.

Known changes are planned in-process with modified config (or, for a code change, a stack transformation) and must
report exactly the expected adds, changes and flagged replacements. One end-to-end test runs the CLI against a
temporary clone of this repository, never against the checkout's own git.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from offline import diff
from offline.harness import ROOT, SECRET, run_program, stack_config
from tests.conftest import stack_plan

RULES = diff.load_rules()
DATA_LAKE = "mlplatform:storage:DataLake"


def plan_with(stack: str, **overrides: object) -> dict:
    """The stack's plan with some config keys (short names, values as Python objects) replaced."""
    config, secret_keys = stack_config(stack)
    for key, value in overrides.items():
        config[f"ml-platform:{key}"] = json.dumps(value)
    return run_program(stack, config, secret_keys).as_json()


def config_value(stack: str, key: str):
    return json.loads(stack_config(stack)[0][f"ml-platform:{key}"])


def names(items: list[dict]) -> set[tuple[str, str]]:
    return {(item["type"], item["name"]) for item in items}


def section(old: dict, new: dict) -> dict:
    found = diff.diff_plans(old, new, RULES)
    found.pop("_unjudged")
    return found


def report_of(stack_section: dict, stack: str = "dev") -> dict:
    return {"base": "main", "base_commit": "0" * 40, "head_commit": "working tree", "stacks": {stack: stack_section}}


# --- determinism ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_a_tree_diffed_against_itself_is_empty(stack):
    # Two runs of the same program: mock IDs, generated names and secrets must come out the same, or every PR diff
    # would be noise.
    found = section(stack_plan(stack).as_json(), run_program(stack).as_json())
    assert found["counts"] == {"add": 0, "change": 0, "delete": 0, "replace": 0}
    assert (found["added"], found["removed"], found["changed"], found["replacements"]) == ([], [], [], [])


# --- known changes --------------------------------------------------------------------------------------------------

def test_adding_a_gpu_pool_adds_its_node_pool_and_touches_only_queue_and_dashboard():
    pools = config_value("dev", "gpuPools")
    pools.append({"name": "gpu-large", "instanceTypes": ["g6e.12xlarge"], "capacityType": "on-demand", "maxNodes": 1})
    found = section(stack_plan("dev").as_json(), plan_with("dev", gpuPools=pools))

    assert names(found["added"]) == {
        ("mlplatform:cluster:GpuPool", "gpu-pool-gpu-large"),
        ("kubernetes:karpenter.sh/v1:NodePool", "gpu-pool-gpu-large-nodepool"),
        ("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "gpu-pool-gpu-large-nodeclass"),
        ("kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor", "kueue-flavor-gpu-large"),
    }
    assert found["removed"] == []
    by_name = {c["name"]: c for c in found["changed"]}
    assert set(by_name) == {"kueue-cluster-queue-fraud", "monitoring-dashboard-ml-queues"}
    # The team's queue lists the new flavor, in place; the queues dashboard's ConfigMap data changes, which
    # pulumi-kubernetes replaces (ConfigMaps are immutable unless the provider says otherwise). Nothing stateful.
    assert not by_name["kueue-cluster-queue-fraud"]["replace"]
    assert [r["name"] for r in found["replacements"]] == ["monitoring-dashboard-ml-queues"]
    assert found["replacements"][0]["properties"] == ["data"] and not found["replacements"][0]["stateful"]
    assert found["counts"] == {"add": 4, "change": 1, "delete": 0, "replace": 1}


def test_changing_the_rds_instance_class_is_an_in_place_change():
    database = config_value("staging", "mlflow")
    assert database["database"]["instanceClass"] == "db.t4g.medium"
    database["database"]["instanceClass"] = "db.t4g.large"
    found = section(stack_plan("staging").as_json(), plan_with("staging", mlflow=database))

    urn = "urn:pulumi:staging::ml-platform::mlplatform:mlflow:Database$aws:rds/instance:Instance::mlflow-db-postgres"
    assert found["changed"] == [{
        "urn": urn, "type": "aws:rds/instance:Instance", "name": "mlflow-db-postgres", "replace": False,
        "changes": [{"path": "instanceClass", "old": "db.t4g.medium", "new": "db.t4g.large"}]}]
    assert found["counts"] == {"add": 0, "change": 1, "delete": 0, "replace": 0}
    assert found["replacements"] == found["added"] == found["removed"] == []


def _rename_raw_bucket():
    """The program with one code change: the raw bucket's prefix (what forces a bucket replacement here, since the
    lake's buckets are named by bucketPrefix)."""
    def transform(args):
        if args.type_ == "aws:s3/bucket:Bucket" and args.name == "data-lake-raw":
            return pulumi.ResourceTransformationResult({**args.props, "bucket_prefix": "ml-platform-dev-landing-"},
                                                       args.opts)
        return None
    pulumi.runtime.register_stack_transformation(transform)
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def test_renaming_a_bucket_is_flagged_as_a_replacement_that_loses_data():
    before = stack_plan("dev").as_json()
    found = section(before, run_program("dev", program=_rename_raw_bucket).as_json())

    raw = next(r for r in before["resources"] if r["name"] == "data-lake-raw" and r["type"] == "aws:s3/bucket:Bucket")
    assert found["replacements"] == [{
        "urn": raw["urn"], "type": "aws:s3/bucket:Bucket", "name": "data-lake-raw", "properties": ["bucketPrefix"],
        "stateful": True, "source": RULES.rule("aws:s3/bucket:Bucket").source, "protect": False,
        "retainOnDelete": False}]
    assert found["added"] == found["removed"] == []
    # Everything else that changed, changed only because the bucket's name did.
    old_name = next(r for r in before["resources"] if r["urn"] == raw["urn"])["id"]
    new_name = old_name.replace("-raw-", "-landing-")
    for item in found["changed"]:
        for change in item["changes"]:
            if change["path"] == "bucketPrefix":
                continue
            assert old_name in json.dumps(change["old"]) and new_name in json.dumps(change["new"]), (item, change)
    text = diff.render_text(report_of(found), rules=RULES)
    assert "!! REPLACES aws:s3/bucket:Bucket data-lake-raw (bucketPrefix forces a new one)" in text


def test_renaming_a_stateful_resource_in_code_is_flagged_as_its_deletion_with_protect_and_retain():
    # A new Pulumi name is a new URN: remove + add. In prod the database is protected and retained.
    before = stack_plan("prod").as_json()
    after = copy.deepcopy(before)
    rds = next(r for r in after["resources"] if r["type"] == "aws:rds/instance:Instance")
    old_urn = rds["urn"]
    rds["urn"], rds["name"] = old_urn.replace("::mlflow-db-postgres", "::mlflow-database"), "mlflow-database"
    found = section(before, after)

    assert found["removed"] == [{"urn": old_urn, "type": "aws:rds/instance:Instance", "name": "mlflow-db-postgres",
                                 "stateful": True, "protect": True, "retainOnDelete": True}]
    assert names(found["added"]) == {("aws:rds/instance:Instance", "mlflow-database")}
    text = diff.render_text(report_of(found, "prod"), rules=RULES)
    assert ("!! DELETES aws:rds/instance:Instance mlflow-db-postgres; it holds the MLflow database" in text
            and "protected: pulumi up refuses" in text and "retainOnDelete" in text)


def test_statefulset_volume_templates_and_configmap_mutability_follow_pulumi_kubernetes():
    before = stack_plan("dev").as_json()
    after = copy.deepcopy(before)
    for r in after["resources"]:
        if r["type"] == "kubernetes:apps/v1:StatefulSet":
            r["inputs"]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "40Gi"
        if r["name"] == "kafka-metrics":
            r["inputs"]["data"]["kafka-metrics-config.yml"] += "\n# changed"
    found = section(before, after)
    assert {(r["name"], tuple(r["properties"]), r["stateful"]) for r in found["replacements"]} == {
        ("mlflow-db-statefulset", ("spec.volumeClaimTemplates",), True), ("kafka-metrics", ("data",), False)}

    # With the provider's enableConfigMapMutable, the ConfigMap updates in place.
    for r in after["resources"]:
        if r["type"] == "pulumi:providers:kubernetes":
            r["inputs"]["enableConfigMapMutable"] = "true"
    found = section(before, after)
    assert [r["name"] for r in found["replacements"]] == ["mlflow-db-statefulset"]


# --- secrets --------------------------------------------------------------------------------------------------------

def _secret_resource(plan: dict, name: str) -> dict:
    return next(r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:Secret" and r["name"] == name)


def test_values_the_engine_treats_as_secret_are_masked_even_when_a_plan_has_them_in_plain():
    # An older harness (or a bug) could record a Secret's data in plain; the engine always treats it as secret.
    before, after = copy.deepcopy(stack_plan("dev").as_json()), copy.deepcopy(stack_plan("dev").as_json())
    _secret_resource(before, "monitoring-grafana-admin")["inputs"]["stringData"] = {"admin-password": "hunter2-old"}
    _secret_resource(after, "monitoring-grafana-admin")["inputs"]["stringData"] = {"admin-password": "hunter2-new"}
    found = section(before, after)

    (item,) = found["changed"]
    assert item["changes"] == [{"path": 'stringData["admin-password"]', "old": SECRET, "new": SECRET}]
    out = json.dumps(found) + diff.render_text(report_of(found), rules=RULES)
    assert "hunter2" not in out


def test_a_value_that_stops_being_secret_is_not_revealed():
    # The kubeconfig is secret because the cluster's outputs are, not because the SDK says so: only the plan's own
    # marking on the old side can hide the new plain value.
    before = stack_plan("staging").as_json()
    after = copy.deepcopy(before)
    provider = next(r for r in after["resources"] if r["type"] == "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == SECRET and "kubeconfig" not in diff.secret_inputs(provider["type"])
    provider["inputs"]["kubeconfig"] = "apiVersion: v1 # token: hunter2"
    found = section(before, after)
    assert found["changed"][0]["changes"] == [{"path": "kubeconfig", "old": SECRET, "new": SECRET}]
    assert "hunter2" not in json.dumps(found)


# --- the replacement table ------------------------------------------------------------------------------------------

def test_every_resource_type_a_stack_declares_has_a_row(plans):
    declared = {r["type"] for plan in plans.values() for r in plan.resources
                if r["custom"] and not r["type"].startswith("pulumi:providers:")}
    assert sorted(declared - set(RULES.types)) == []


@pytest.mark.parametrize("type_", ["aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:rds/instance:Instance",
                                   "aws:msk/cluster:Cluster", "aws:eks/cluster:Cluster",
                                   "kubernetes:apps/v1:StatefulSet"])
def test_the_types_that_hold_data_or_identity_are_stateful_with_replacement_rules(type_):
    rule = RULES.rule(type_)
    assert rule is not None and rule.stateful and rule.replace_on and rule.source.startswith("https://")


def test_every_row_that_flags_or_replaces_names_its_source():
    for type_, rule in RULES.types.items():
        if rule.stateful or rule.judges_replacement:
            assert (rule.source or "").startswith("https://"), type_
        assert rule.reason, type_


def _args_class(type_: str):
    cls = diff.sdk_class(type_)
    if cls is None:  # a custom resource (Strimzi, Karpenter, Kueue, ...): only the generic metadata rule applies
        return None
    module = importlib.import_module(cls.__module__)
    return getattr(module, f"{cls.__name__}Args", None) or getattr(sys.modules[module.__package__],
                                                                     f"{cls.__name__}Args")


def _inputs(args_class) -> dict[str, property]:
    return {getattr(p.fget, "_pulumi_name", n): p for n, p in vars(args_class).items() if isinstance(p, property)}


def _nested_args(args_class, prop: property):
    """The Args class of a nested object input (`ClusterVpcConfigArgs`, `_meta.v1.ObjectMetaArgs`), or None."""
    refs = re.findall(r"ForwardRef\('([\w.]+Args)'\)", str(prop.fget.__annotations__.get("return")))
    if not refs:
        return None
    found = sys.modules[args_class.__module__]
    for part in refs[0].split("."):
        found = getattr(found, part)
    return found


def _check_path(type_: str, path: str) -> str | None:
    args_class = _args_class(type_)
    parts = [p for p in diff.parse_path(path) if p != "*"]
    if args_class is None:
        meta = importlib.import_module("pulumi_kubernetes.meta.v1").ObjectMetaArgs
        if parts[0] != "metadata" or len(parts) != 2 or parts[1] not in _inputs(meta):
            return f"{type_} has no SDK class; only metadata.* can be checked, not {path}"
        return None
    for i, part in enumerate(parts):
        inputs = _inputs(args_class)
        if part not in inputs:
            return f"{type_}: {path}: no input {part!r} on {args_class.__name__} (has {sorted(inputs)})"
        if i < len(parts) - 1:
            args_class = _nested_args(args_class, inputs[part])
            if args_class is None:
                return f"{type_}: {path}: {part!r} is not an object input"
    return None


def test_every_path_in_the_table_is_a_real_input_of_its_type():
    problems = []
    for type_, rule in RULES.types.items():
        paths = [*rule.replace_on, *rule.replace_when_removed, *(rule.unless_mutable[0] if rule.unless_mutable else ())]
        paths += [rule.stateful_if] if rule.stateful_if else []
        paths += RULES.kubernetes_objects if diff.is_kubernetes_object(type_) else ()
        problems += [p for p in (_check_path(type_, path) for path in paths) if p]
    assert problems == []


def test_the_path_checker_rejects_names_that_are_not_inputs():
    # The referee above must be able to fail: Terraform spellings and made-up nesting are caught.
    assert _check_path("aws:s3/bucket:Bucket", "bucket_prefix")
    assert _check_path("aws:msk/cluster:Cluster", "brokerNodeGroupInfo.subnets")
    assert _check_path("kubernetes:apps/v1:StatefulSet", "spec.volumeClaimTemplate")
    assert _check_path("aws:msk/cluster:Cluster", "brokerNodeGroupInfo.clientSubnets") is None


# --- the CLI end to end ---------------------------------------------------------------------------------------------

FAKE_COST = '''"""Stand-in for offline/cost.py in a throwaway clone: cost grows with the stack's GPU pools."""
import argparse, json, pathlib, yaml
parser = argparse.ArgumentParser()
parser.add_argument("--stack"); parser.add_argument("--format")
args = parser.parse_args()
config = yaml.safe_load(pathlib.Path(f"stacks/Pulumi.{args.stack}.yaml").read_text())["config"]
pools = len(config.get("ml-platform:gpuPools") or [])
print(json.dumps({"total": {"idle_floor": 100.0, "maximum": 1000.0 * pools}}))
'''


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _clone_of_this_tree(dest: Path) -> Path:
    """A clone of this repository whose HEAD is this working tree (what is under test), committed."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source, target = ROOT / rel, dest / rel
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():  # deleted in the working tree
            target.unlink()
    (dest / "offline" / "cost.py").write_text(FAKE_COST)
    _git(dest, "add", "-A")
    _git(dest, "commit", "--quiet", "--allow-empty", "-m", "base: the working tree under test")
    return dest


def _git_dir_listing(repo: Path) -> set[str]:
    return {str(p.relative_to(repo / ".git")) for p in (repo / ".git").rglob("*")
            if p.name not in ("index", "ORIG_HEAD", "FETCH_HEAD") and "logs" not in p.parts}


def _add_dev_pool(repo: Path, max_nodes: int) -> None:
    stack_file = repo / "stacks" / "Pulumi.dev.yaml"
    text = stack_file.read_text().replace("    - name: gpu-large\n      instanceTypes: [g6e.12xlarge]\n"
                                          "      capacityType: on-demand\n      maxNodes: 0\n", "")
    marker = "  ml-platform:gpuPools:\n"
    assert marker in text
    stack_file.write_text(text.replace(marker, marker + "    - name: gpu-large\n      instanceTypes: [g6e.12xlarge]\n"
                                       f"      capacityType: on-demand\n      maxNodes: {max_nodes}\n"))


def test_cli_diffs_a_committed_change_against_its_base_in_a_clone(tmp_path):
    repo = _clone_of_this_tree(tmp_path / "repo")
    _add_dev_pool(repo, max_nodes=0)  # a revision whose dev config is invalid, so its plan fails
    _git(repo, "commit", "--quiet", "-am", "dev: a GPU pool with no nodes (invalid)")
    _add_dev_pool(repo, max_nodes=1)
    _git(repo, "commit", "--quiet", "-am", "dev: a second GPU pool")
    base, head = _git(repo, "rev-parse", "HEAD~2"), _git(repo, "rev-parse", "HEAD")
    git_before = _git_dir_listing(repo)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))} | {"TMPDIR": str(scratch)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "offline.diff", *args], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=600)

    run = cli("--base", "HEAD~2", "--stacks", "dev", "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["base"] == "HEAD~2" and report["base_commit"] == base and report["head_commit"] == head
    assert list(report) == ["base", "base_commit", "head_commit", "stacks"] and list(report["stacks"]) == ["dev"]
    dev = report["stacks"]["dev"]
    assert list(dev) == ["error", "counts", "replacements", "added", "removed", "changed", "cost"]
    assert dev["error"] is None
    assert dev["counts"] == {"add": 4, "change": 1, "delete": 0, "replace": 1}
    assert ("kubernetes:karpenter.sh/v1:NodePool", "gpu-pool-gpu-large-nodepool") in names(dev["added"])
    assert dev["cost"] == {"before": {"idle_floor": 100.0, "maximum": 1000.0, "lower_bound": False},
                           "after": {"idle_floor": 100.0, "maximum": 2000.0, "lower_bound": False}}

    # A base whose plan fails: that stack's error says so, the exit status is 1, the other fields keep their shape.
    failed = cli("--base", "HEAD~1", "--stacks", "dev", "--format", "json")
    assert failed.returncode == 1, failed.stderr
    dev = json.loads(failed.stdout)["stacks"]["dev"]
    assert dev["error"].startswith("the plan at the base failed: ") and "maxNodes" in dev["error"]
    assert dev["counts"] == {"add": 0, "change": 0, "delete": 0, "replace": 0}

    bad = cli("--base", "no-such-rev", "--stacks", "dev")
    assert bad.returncode == 2 and "cannot resolve BASE 'no-such-rev'" in bad.stderr

    # No trace: no worktree, no new refs or objects in the clone's git, no exported tree left in the temp folder.
    assert _git_dir_listing(repo) == git_before
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    assert list(scratch.iterdir()) == []
