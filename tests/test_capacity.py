"""The capacity referee: every pod that cannot run on GPU nodes fits the nodes that can exist for it."""

from __future__ import annotations

import copy

import pytest

from offline.capacity import Res, allowance_table, referee, render
from offline.harness import STACKS, Plan
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.instance_catalog import INSTANCE_TYPES, allocatable
from tests.conftest import stack_plan

SYSTEM = {"mlplatform.io/pool": "system"}


def with_resources(plan: Plan, keep=lambda r: True, add=()) -> Plan:
    kept = [copy.deepcopy(r) for r in plan.resources if keep(r)]
    return Plan(plan.stack, plan.project, kept + list(add), plan.outputs)


def is_general_pool(r: dict) -> bool:
    return (r["type"] == "kubernetes:karpenter.sh/v1:NodePool"
            and not ((r["inputs"]["spec"].get("template") or {}).get("spec") or {}).get("taints"))


def resource(type_: str, name: str, inputs: dict) -> dict:
    return {"type": type_, "name": name, "urn": f"urn:pulumi:test::test::{type_}::{name}", "parent": None,
            "inputs": inputs, "dependsOn": [], "custom": True, "protect": False, "retainOnDelete": False}


def deployment(name: str, cpu: str, memory: str, replicas: int | None = 1, **pod: object) -> dict:
    spec = {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"requests": {"cpu": cpu, "memory": memory}}}], **pod}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return resource("kubernetes:apps/v1:Deployment", name,
                    {"kind": "Deployment", "metadata": {"name": name, "namespace": "test"}, "spec": spec})


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_off_gpu_nodes_fits_the_capacity_that_can_exist(stack):
    report = referee(stack_plan(stack))
    assert report.fits, "\n".join(render(report))


@pytest.mark.parametrize("stack", STACKS)
def test_without_a_general_pool_the_referee_reports_the_shortfall(stack):
    plan = stack_plan(stack)
    report = referee(with_resources(plan, keep=lambda r: not is_general_pool(r)))
    assert not report.fits
    assert [s.kind for s in report.shared] == ["group"]
    assert not report.total.fits and report.not_fitting
    # What is left over is at least the shortfall, in the resource that is short.
    short = report.total.requests - report.total.capacity
    left = sum((p.requests * n for p in report.pods for owner, n in report.not_fitting if owner == p.owner), Res())
    assert any(s > 0 and l >= s for s, l in zip(short, left))


@pytest.mark.parametrize("stack", STACKS)
def test_a_pod_as_big_as_its_largest_node_is_reported_oversize(stack):
    plan = stack_plan(stack)
    group = next(r for r in plan.resources if r["type"] == "aws:eks/nodeGroup:NodeGroup")
    vcpus = max(INSTANCE_TYPES[t].vcpus for t in group["inputs"]["instanceTypes"])
    big = deployment("too-big", str(vcpus), "1Gi", nodeSelector=SYSTEM)
    report = referee(with_resources(plan, add=[big]))
    assert not report.fits
    assert [o for o in report.oversize if o.startswith("Deployment test/too-big")], report.oversize


@pytest.mark.parametrize("stack", STACKS)
def test_every_chart_add_on_and_instance_type_is_modelled_at_the_pinned_version(stack):
    report = referee(stack_plan(stack))
    assert not [n for n in report.notes if "unmodelled" in n or "pinned at" in n or "not in the instance" in n]


def test_allocatable_reproduces_what_karpenter_publishes_for_every_type():
    assert {n: allocatable(n) for n in INSTANCE_TYPES} == {
        n: (t.published_cpu_m, t.published_memory_mib) for n, t in INSTANCE_TYPES.items()}
    assert set(GPU_INSTANCE_TYPES) <= set(INSTANCE_TYPES)
    # 2000 − 60 − 10; 8192 − 615 (VM overhead) − (11 × 29 + 255) − 100
    assert allocatable("m6i.large") == (1930, 6903)


def test_every_allowance_names_its_source():
    rows = allowance_table()
    assert rows and all(row["source"] for row in rows)


# --- the model on small, hand-made plans -----------------------------------------------------------------------

def node_group(types: list[str], size: int) -> dict:
    return resource("aws:eks/nodeGroup:NodeGroup", "sys", {
        "instanceTypes": types, "labels": SYSTEM, "scalingConfig": {"minSize": size, "desiredSize": size,
                                                                    "maxSize": size + 1}})


def node_pool(name: str, types: list[str], limits: dict, taints: list | None = None,
              labels: dict | None = None) -> dict:
    spec = {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types}]}
    if taints:
        spec["taints"] = taints
    return resource("kubernetes:karpenter.sh/v1:NodePool", name, {"metadata": {"name": name}, "spec": {
        "limits": limits, "template": {"metadata": {"labels": labels or {}}, "spec": spec}}})


def tiny(*resources: dict) -> Plan:
    return Plan("test", "test", list(resources), {})


def test_a_general_pool_gives_its_limits_less_each_nodes_reserve():
    report = referee(tiny(node_group(["m6i.large"], 1), node_pool("general", ["m6i.large"],
                                                                  {"cpu": "8", "memory": "32Gi"})))
    pool = next(s for s in report.sources if s.kind == "general")
    # 4 nodes: 8000m / 2000m, and 32768Mi / 7577Mi capacity each; each keeps 70m and 674Mi back.
    assert pool.nodes == 4
    assert (pool.capacity.cpu, pool.capacity.memory, pool.capacity.pods) == (8000 - 4 * 70, 32768 - 4 * 674, 4 * 29)


def test_system_pods_must_fit_the_group_alone_and_gpu_pods_are_left_out():
    gpu_taint = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    gpu = {"mlplatform.io/gpu-pool": "small"}
    plan = tiny(
        node_group(["m6i.large"], 1),
        node_pool("general", ["m6i.xlarge"], {"cpu": "40", "memory": "160Gi"}),
        node_pool("small", ["g5.xlarge"], {"nodes": "1"}, taints=gpu_taint, labels=gpu),
        deployment("pinned", "1500m", "1Gi", nodeSelector=SYSTEM),
        deployment("pinned-too", "1500m", "1Gi", nodeSelector=SYSTEM),
        deployment("anywhere", "3", "4Gi"),
        deployment("trainer", "3", "12Gi", nodeSelector=gpu,
                   tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    )
    report = referee(plan)
    group_only = next(c for c in report.checks if c.sources == ["node group sys"])
    assert not group_only.fits and group_only.requests.cpu == 3000
    assert report.total.requests.cpu == 6000  # the trainer runs only on the GPU pool
    assert [owner for owner, _ in report.not_fitting] == ["Deployment test/pinned-too"]
    assert not report.oversize


def test_an_hpa_minimum_must_fit_and_its_maximum_is_headroom():
    hpa = resource("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "hpa", {"metadata": {"namespace": "test"},
        "spec": {"minReplicas": 2, "maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}})
    report = referee(tiny(node_group(["m6i.xlarge"], 2), deployment("web", "1", "1Gi", replicas=None), hpa))
    assert (report.total.requests.cpu, report.total.requests_at_max.cpu) == (2000, 5000)


def test_empty_requests_take_the_limit_range_default_and_limits_stand_in_for_requests():
    limit_range = resource("kubernetes:core/v1:LimitRange", "lr", {"metadata": {"namespace": "test"}, "spec": {
        "limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"},
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}})
    bare = deployment("bare", "1", "1Gi")
    bare["inputs"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    capped = deployment("capped", "1", "1Gi")
    capped["inputs"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "300m"}}
    report = referee(tiny(node_group(["m6i.xlarge"], 1), limit_range, bare, capped))
    by_owner = {p.owner: p.requests for p in report.pods}
    assert by_owner["Deployment test/bare"] == Res(100, 128, 1)
    assert by_owner["Deployment test/capped"] == Res(300, 128, 1)


def _leaves(value, path=()):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    else:
        yield path, value


def test_chart_defaults_the_model_restates_agree_with_the_vendored_values():
    # The allowance table restates the chart defaults it reads; the vendored values.yaml is the source of truth.
    from offline.capacity import ALLOWANCES
    from upstream.catalog import chart_values, is_vendored
    checked = 0
    for allowance in ALLOWANCES:
        if allowance.kind != "helm" or not is_vendored(allowance.name, allowance.version):
            continue
        chart = chart_values(allowance.name, allowance.version)
        for path, value in _leaves(allowance.defaults):
            if not path:
                continue  # no defaults restated
            node, found = chart, True
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    found = False  # a subchart's default (not vendored): nothing to compare against
                    break
                node = node[key]
            if found:
                assert node == value or (node in (None, {}) and value in (None, {})), (allowance.name, path)
                checked += 1
    assert checked >= 10
