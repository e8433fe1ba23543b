"""Every Helm value the program sets is a key its chart knows, checked against the chart's vendored values.yaml.

Helm ignores values a chart never reads, so a misspelt key (`retension`) or one from another chart version deploys
without complaint and does nothing. The chart's default values.yaml is the list of what it reads:

- each key the program sets must exist in the defaults at that level; recursion continues while the default is a
  non-empty mapping;
- below a default of `{}`, a list or null, a Kubernetes object passed through as a whole (resources, affinity, ...)
  or a documented free-form subtree, anything goes: the chart hands it on without reading its keys;
- keys under a subchart's name are checked against that subchart's defaults merged with the parent's overrides;
- a dependency's `condition:` switch from Chart.yaml (`nfd.enabled`) counts as a key;
- a mapping where the default is a non-null scalar, or a scalar where it is a non-empty mapping, is a type error.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

import pytest

from offline.harness import SECRET, STACKS, UNKNOWN
from tests.conftest import stack_plan
from upstream import catalog

RELEASE = "kubernetes:helm.sh/v3:Release"

# Kubernetes API objects charts pass through with toYaml: a non-empty default is an example, not a list of keys.
KUBERNETES_OBJECTS = {"resources", "nodeSelector", "affinity", "tolerations", "securityContext", "podSecurityContext",
                      "containerSecurityContext", "annotations", "labels", "podAnnotations", "podLabels"}
# Subtrees a chart renders verbatim into another program's configuration, per chart.
FREE_FORM = {
    # Alertmanager's own configuration file; amtool judges it (tests/test_observability.py).
    "kube-prometheus-stack": {("alertmanager", "config")},
}


@dataclass(frozen=True)
class Defaults:
    """A chart's defaults, with subcharts and condition switches folded in."""

    values: dict
    unvendored_subcharts: dict[str, str]  # key -> "name version" of a subchart whose own defaults are not vendored


def deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: deep_merge(base.get(k), v) if k in base else v for k, v in override.items()}}
    return override


def chart_defaults(chart: str, version: str) -> Defaults:
    values = copy.deepcopy(catalog.chart_values(chart, version))
    unvendored = {}
    for dep in catalog.chart_metadata(chart, version).get("dependencies") or []:
        key = dep.get("alias") or dep["name"]
        if catalog.is_vendored(dep["name"], str(dep["version"])):
            # The parent's values under the subchart's key override the subchart's own defaults.
            values[key] = deep_merge(catalog.chart_values(dep["name"], str(dep["version"])), values.get(key) or {})
        else:
            unvendored[key] = f"{dep['name']} {dep['version']}"
        switches = [c.strip() for c in (dep.get("condition") or "").split(",") if c.strip()]
        switches += [f"tags.{tag}" for tag in dep.get("tags") or []]
        for switch in switches:
            add_switch(values, switch)
    return Defaults(values, unvendored)


def add_switch(values: dict, dotted: str) -> None:
    """Make a dependency's condition path exist, as Helm reads it even where values.yaml does not mention it."""
    *parents, leaf = dotted.split(".")
    node = values
    for part in parents:
        if part not in node:
            node[part] = {}
        if not isinstance(node[part], dict):
            return  # null accepts any subtree already; under a scalar the walk reports a mapping as a type error
        node = node[part]
    node.setdefault(leaf, False)


def kind_of(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def unknown_keys(chart: str, version: str, values: dict | None) -> list[str]:
    """Every key path in `values` the chart does not know, each with the closest key it does."""
    defaults = chart_defaults(chart, version)
    free_form = FREE_FORM.get(chart, set())
    findings: list[str] = []

    def walk(set_here: dict, default_here: dict, path: tuple[str, ...]) -> None:
        for key, value in set_here.items():
            at = (*path, key)
            dotted = ".".join(at)
            if key not in default_here:
                close = difflib.get_close_matches(key, [str(k) for k in default_here], n=1)
                hint = f"closest existing key: {'.'.join((*path, close[0]))}" if close else "no similar key here"
                if path and path[0] in defaults.unvendored_subcharts:
                    hint += (f"; subchart {defaults.unvendored_subcharts[path[0]]} is not vendored, "
                             "vendor it with upstream/regenerate.py")
                findings.append(f"{chart} {version}: unknown key {dotted} ({hint})")
                continue
            default = default_here[key]
            if value in (SECRET, UNKNOWN) or default is None or at in free_form or key in KUBERNETES_OBJECTS:
                continue
            if isinstance(default, dict) and default:
                if isinstance(value, dict):
                    walk(value, default, at)
                else:
                    findings.append(f"{chart} {version}: {dotted} is a mapping in the chart, the program sets a "
                                    f"{kind_of(value)}")
            elif not isinstance(default, (dict, list)) and isinstance(value, dict):
                findings.append(f"{chart} {version}: {dotted} is a scalar in the chart, the program sets a mapping")

    if isinstance(values, dict):
        walk(values, defaults.values, ())
    return sorted(findings)


def chart_name(release_inputs: dict) -> str:
    # `oci://public.ecr.aws/karpenter/karpenter` and `karpenter` (with a repository) both name the chart last.
    return release_inputs["chart"].rstrip("/").rsplit("/", 1)[-1]


def release_findings(release: dict) -> list[str]:
    inputs = release["inputs"]
    chart, version = chart_name(inputs), str(inputs.get("version", ""))
    if not catalog.is_vendored(chart, version):
        return [f"chart {chart} {version or '(no version pinned)'} is not vendored; "
                "vendor it with upstream/regenerate.py"]
    return unknown_keys(chart, version, inputs.get("values"))


@pytest.mark.parametrize("stack", STACKS)
def test_every_helm_value_is_a_key_of_its_chart(stack):
    releases = stack_plan(stack).of_type(RELEASE)
    assert releases, "the plan has no Helm releases; the referee would check nothing"
    findings = [f"{stack}: release {r['name']}: {f}" for r in releases for f in release_findings(r)]
    if findings:
        pytest.fail("\n".join(findings), pytrace=False)


def dev_release(name: str) -> dict:
    return copy.deepcopy(stack_plan("dev").one(RELEASE, name))


def test_misspelt_and_invented_keys_are_reported_with_the_closest_real_key():
    release = dev_release("monitoring-stack")
    values = release["inputs"]["values"]
    values["prometheus"]["prometheusSpec"]["retension"] = values["prometheus"]["prometheusSpec"].pop("retention")
    values["alertmanager"]["alertmanagerSpec"]["replicaCount"] = 2
    values["grafana"]["sidecar"]["dashboard"] = values["grafana"]["sidecar"].pop("dashboards")
    assert release_findings(release) == [
        "kube-prometheus-stack 88.5.3: unknown key alertmanager.alertmanagerSpec.replicaCount "
        "(closest existing key: alertmanager.alertmanagerSpec.replicas)",
        "kube-prometheus-stack 88.5.3: unknown key grafana.sidecar.dashboard "
        "(closest existing key: grafana.sidecar.dashboards)",
        "kube-prometheus-stack 88.5.3: unknown key prometheus.prometheusSpec.retension "
        "(closest existing key: prometheus.prometheusSpec.retention)",
    ]


def test_a_mapping_where_the_chart_has_a_scalar_and_the_reverse_are_reported():
    release = dev_release("monitoring-dcgm-exporter")
    values = release["inputs"]["values"]
    values["serviceMonitor"]["interval"] = {"seconds": 15}
    values["serviceMonitor"] = {**values["serviceMonitor"], "relabelings": []}
    values["image"] = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04"
    assert release_findings(release) == [
        "dcgm-exporter 4.8.2: image is a mapping in the chart, the program sets a scalar",
        "dcgm-exporter 4.8.2: serviceMonitor.interval is a scalar in the chart, the program sets a mapping",
    ]


def test_condition_switches_count_and_keys_below_them_do_not_escape():
    release = dev_release("nvidia-device-plugin")
    values = release["inputs"]["values"]
    assert values["nfd"] == {"enabled": False}, "the fixture expects the program to switch NFD off"
    assert release_findings(release) == []
    values["nfd"]["enabeld"] = False
    assert release_findings(release) == [
        "nvidia-device-plugin 0.19.3: unknown key nfd.enabeld (closest existing key: nfd.enabled; subchart "
        "node-feature-discovery 0.17.3 is not vendored, vendor it with upstream/regenerate.py)",
    ]


def test_an_unvendored_subchart_is_named_in_the_finding():
    release = dev_release("monitoring-stack")
    release["inputs"]["values"]["prometheus-node-exporter"] = {"hostNetwork": False}
    [finding] = release_findings(release)
    assert finding.startswith("kube-prometheus-stack 88.5.3: unknown key prometheus-node-exporter.hostNetwork")
    assert finding.endswith("subchart prometheus-node-exporter 4.56.1 is not vendored, vendor it with "
                            "upstream/regenerate.py)")


def test_a_vendored_subchart_is_checked_against_its_own_defaults():
    release = dev_release("monitoring-stack")
    ksm = release["inputs"]["values"]["kube-state-metrics"]
    assert ksm["metricLabelsAllowlist"] and release_findings(release) == []
    ksm["metricLabelAllowlist"] = ksm.pop("metricLabelsAllowlist")
    assert release_findings(release) == [
        "kube-prometheus-stack 88.5.3: unknown key kube-state-metrics.metricLabelAllowlist (closest existing key: "
        "kube-state-metrics.metricLabelsAllowlist)"]


def test_secret_and_unknown_values_are_leaves_and_free_form_subtrees_are_not_walked():
    release = dev_release("monitoring-stack")
    values = release["inputs"]["values"]
    values["grafana"]["admin"] = SECRET
    values["prometheus"]["prometheusSpec"]["retention"] = UNKNOWN
    values["alertmanager"]["config"]["any_key_alertmanager_reads"] = {"x": 1}
    assert release_findings(release) == []


@pytest.mark.parametrize("version", ["88.5.4", ""])
def test_a_chart_version_that_is_not_vendored_fails(version):
    release = dev_release("monitoring-stack")
    release["inputs"]["version"] = version
    shown = version or "(no version pinned)"
    assert release_findings(release) == [
        f"chart kube-prometheus-stack {shown} is not vendored; vendor it with upstream/regenerate.py"]
