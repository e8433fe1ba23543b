"""Every Kubernetes object in every stack is valid for the cluster's Kubernetes version, in strict mode."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from offline.harness import SECRET
from tests.conftest import stack_plan
from tests.karpenter_schema import SCHEMAS as KARPENTER
from tests.operator_schemas import SCHEMAS as OPERATORS

SCHEMAS = {**KARPENTER, **OPERATORS}

# Helm releases are not Kubernetes objects: their charts render server-side, and chart pins are checked elsewhere.
NOT_OBJECTS = {"kubernetes:helm.sh/v3:Release"}


def objects(plan):
    return [r for r in plan.resources if r["type"].startswith("kubernetes:") and r["type"] not in NOT_OBJECTS]


def validate(manifest: dict, version: str) -> list[str]:
    if manifest.get("kind") == "Secret" and manifest.get("stringData") == SECRET:
        # Secret data is masked in the plan as a whole; its shape (string -> string) is fixed by the SDK's types.
        manifest = {**manifest, "stringData": {"masked": "value"}}
    key = (manifest["apiVersion"], manifest["kind"])
    if key in SCHEMAS:
        validator = jsonschema.Draft202012Validator(SCHEMAS[key])
        return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def test_every_object_is_valid_for_the_cluster_version(plan):
    version = plan.one("aws:eks/cluster:Cluster", "eks")["inputs"]["version"]
    found = objects(plan)
    kinds = {r["inputs"]["kind"] for r in found}
    assert {"StorageClass", "NodePool", "EC2NodeClass"} <= kinds
    for r in found:
        assert validate(r["inputs"], version) == [], r["urn"]


@pytest.mark.parametrize("kind, mutate, expected", [
    ("StorageClass", lambda m: m.update(volumeBindingMode=None, provisoner="x"),
     ": Additional properties are not allowed ('provisoner' was unexpected)"),
    ("NodePool", lambda m: m["spec"]["template"]["spec"].update(taint=[]),
     "spec.template.spec: Additional properties are not allowed ('taint' was unexpected)"),
    ("NodePool", lambda m: m["spec"]["disruption"].update(consolidationPolicy="Always"),
     "spec.disruption.consolidationPolicy: 'Always' is not one of ['WhenEmpty', 'WhenEmptyOrUnderutilized']"),
    ("EC2NodeClass", lambda m: m["spec"]["metadataOptions"].update(httpTokens="require"),
     "spec.metadataOptions.httpTokens: 'require' is not one of ['required', 'optional']"),
])
def test_validation_is_strict(kind, mutate, expected):
    plan = stack_plan("dev")
    manifest = copy.deepcopy(next(r["inputs"] for r in objects(plan) if r["inputs"]["kind"] == kind))
    mutate(manifest)
    assert validate(manifest, "1.35") == [expected]
