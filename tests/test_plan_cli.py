"""`make plan` as a user runs it: a separate process, no credentials, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plan_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    return subprocess.run([sys.executable, "-m", "offline.plan", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_json_plan_has_the_documented_shape():
    result = plan_cli("--stack", "prod", "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert list(plan) == ["stack", "project", "resources", "outputs"]
    assert (plan["stack"], plan["project"]) == ("prod", "ml-platform")
    fields = ["urn", "id", "type", "name", "parent", "provider", "custom", "inputs", "protect", "retainOnDelete",
              "dependsOn"]
    assert all(set(fields) <= set(r) for r in plan["resources"])
    assert [r["urn"] for r in plan["resources"]] == sorted(r["urn"] for r in plan["resources"])
    by_id = {r["id"]: r for r in plan["resources"] if r["id"]}
    subnet = next(r for r in plan["resources"] if r["type"] == "aws:ec2/subnet:Subnet")
    assert by_id[subnet["inputs"]["vpcId"]]["type"] == "aws:ec2/vpc:Vpc"  # references can be followed by id
    assert plan["outputs"]["kubeconfig"] == "[secret]"


def test_tree_plan_shows_key_settings_and_counts():
    result = plan_cli("--stack", "dev")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("stack dev (project ml-platform): ")
    assert 'aws:eks/cluster:Cluster  eks  name="ml-platform-dev" version="1.35"' in out
    assert "resources by type:" in out and "     4  aws:s3/bucket:Bucket" in out


def test_bad_stack_and_bad_config_exit_2_with_the_reason():
    result = plan_cli("--stack", "qa")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no stack file stacks/Pulumi.qa.yaml; stacks are: dev, staging, prod"


def test_policy_cli_reports_a_bad_stack_like_plan_does():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    result = subprocess.run([sys.executable, "-m", "offline.policy_check", "--stack", "qa"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no stack file stacks/Pulumi.qa.yaml; stacks are: dev, staging, prod"
