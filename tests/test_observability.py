"""Dashboards and alert rules: parsed and unit-tested by the real promtool, and limited to metrics that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.observability import dashboards
from components.observability.alert_rules import rule_groups
from components.observability.metric_catalog import RECORDED_PREFIXES, known_metrics
from platform_config.services_model import MonitoringConfig
from tests.conftest import stack_plan

PROMTOOL = shutil.which("promtool")
RULE_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
# CI installs promtool (.ci/run); a developer machine without it skips these tests instead of failing them.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                    reason="promtool not installed (apt-get install prometheus)")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "le", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is required in CI: apt-get install -y prometheus"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def write_rules(directory: Path, groups: list[dict]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, strings and function calls."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def panel_exprs() -> list[tuple[str, str]]:
    return [(f"{name}/{panel['title']}", target["expr"])
            for name, build in dashboards.DASHBOARDS.items() for panel in build()["panels"]
            for target in panel["targets"]]


@needs_promtool
@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stacks_rules_pass_promtool_check(stack, tmp_path):
    (rule,) = stack_plan(stack).of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    path = write_rules(tmp_path, rule["inputs"]["spec"]["groups"])
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_alert_rules_behave_as_specified_in_promtool_unit_tests(tmp_path):
    write_rules(tmp_path, rule_groups(MonitoringConfig()))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yaml")
    result = promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_catches_a_broken_expectation(tmp_path):
    """The rule tests can fail: a wrong expected summary is reported by promtool."""
    write_rules(tmp_path, rule_groups(MonitoringConfig()))
    broken = RULE_TESTS.read_text().replace("burning the error budget 14.4x too fast", "burning slowly", 1)
    (tmp_path / "alerts_test.yaml").write_text(broken)
    result = promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert result.returncode != 0 and "burning slowly" in result.stdout + result.stderr


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool has no "check expression"; recording rules run each query through the same parser.
    rules = [{"record": f"dashboard:query_{i}:check", "expr": expr} for i, (_, expr) in enumerate(panel_exprs())]
    path = write_rules(tmp_path, [{"name": "dashboards", "rules": rules}])
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_invalid_promql(tmp_path):
    path = write_rules(tmp_path, [{"name": "bad", "rules": [{"record": "x:y:z", "expr": "sum(rate(foo[5m])"}]}])
    assert promtool("check", "rules", str(path)).returncode != 0


def test_dashboards_and_rules_only_use_metrics_that_are_exposed():
    known = known_metrics()
    recorded = {r["record"] for g in rule_groups(MonitoringConfig()) for r in g["rules"] if "record" in r}
    exprs = panel_exprs() + [(r.get("alert") or r["record"], r["expr"])
                             for g in rule_groups(MonitoringConfig()) for r in g["rules"]]
    for where, expr in exprs:
        for name in metric_names(expr):
            assert name in known or name in recorded, f"{where}: {name} is neither exposed nor recorded"
            if name in recorded:
                assert name.startswith(RECORDED_PREFIXES)


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{le="0.25"}[5m])))') == {"a_bucket"}
    assert metric_names("sum(x{a=\"b\"}) / on (pod) group_left y unless z") == {"x", "y", "z"}


def test_dashboards_cover_what_the_issue_asks_for():
    titles = {name: {p["title"] for p in build()["panels"]} for name, build in dashboards.DASHBOARDS.items()}
    assert {"Requests per second", "Latency p50 / p95 / p99", "Error rate (5xx share)",
            "Prediction score distribution", "Micro-batch size"} <= titles["serving"]
    assert {"GPU utilisation (training pods)", "GPU memory used", "Throughput (samples/s)", "Loss"} <= titles["training"]
    assert "Ingestion consumer lag (records)" in titles["kafka"]
    for build in dashboards.DASHBOARDS.values():
        board = build()
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        assert all(p["datasource"] == dashboards.DATASOURCE for p in board["panels"])


def test_every_alert_the_issue_names_exists_with_severity_and_summary():
    alerts = [r for g in rule_groups(MonitoringConfig()) for r in g["rules"] if "alert" in r]
    assert {r["alert"] for r in alerts} == {"InferenceLatencySLOBurn", "InferenceErrorBudgetBurn", "GpuIdle",
                                            "DataDriftDetected", "IngestionConsumerLag", "TrainingJobFailed"}
    assert all(r["labels"]["severity"] in ("critical", "warning") and r["annotations"]["summary"] for r in alerts)


def test_rules_follow_the_stack_config():
    prod = stack_plan("prod").of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")[0]["inputs"]["spec"]
    recorded = {r["record"]: r["expr"] for g in prod["groups"] for r in g["rules"] if "record" in r}
    assert 'le="0.1"' in recorded["slo:inference_latency_bad_ratio:rate5m"]  # prod: latencySloSeconds 0.1
    burn = [r for g in prod["groups"] for r in g["rules"] if r.get("alert") == "InferenceLatencySLOBurn"]
    assert "> 0.072" in burn[0]["expr"]  # 14.4 x (1 - 0.995)


def test_dashboards_ship_as_sidecar_configmaps(plan):
    maps = [m for m in plan.of_type("kubernetes:core/v1:ConfigMap")
            if m["inputs"]["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert sorted(m["inputs"]["metadata"]["name"] for m in maps) == ["ml-cluster", "ml-kafka", "ml-serving",
                                                                      "ml-training"]


AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(AMTOOL is None and not os.environ.get("CI"),
                                  reason="amtool not installed (apt-get install prometheus-alertmanager)")


@needs_amtool
@pytest.mark.parametrize("webhook", [False, True])
def test_alertmanager_config_passes_amtool(webhook, tmp_path):
    from components.monitoring import alertmanager_config
    assert AMTOOL, "amtool is required in CI: apt-get install -y prometheus-alertmanager"
    config = alertmanager_config(webhook)
    if webhook:
        # Debian's amtool (0.25) predates webhook url_file; the chart's Alertmanager has it. Check the rest with a
        # plain URL in its place.
        hook = config["receivers"][1]["webhook_configs"][0]
        assert hook.pop("url_file").startswith("/etc/alertmanager/secrets/")
        hook["url"] = "https://hooks.example.com/alert"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 inhibit rules" in result.stdout and "2 receivers" in result.stdout


def test_msk_open_monitoring_is_scraped_without_holding_up_prometheus():
    # C5 and its review follow-up: the targets are ScrapeConfig resources created once MSK exists; neither the chart
    # nor the Prometheus it runs waits for MSK (a missing additional-scrape-configs Secret would block Prometheus).
    plan = stack_plan("prod")
    spec = plan.one("kubernetes:helm.sh/v3:Release", "monitoring-stack")["inputs"]["values"]["prometheus"][
        "prometheusSpec"]
    assert spec["scrapeConfigSelectorNilUsesHelmValues"] is False and "additionalScrapeConfigsSecret" not in spec
    release = plan.one("kubernetes:helm.sh/v3:Release", "monitoring-stack")
    msk = plan.one("aws:msk/cluster:Cluster", "kafka-cluster")["urn"]
    assert msk not in release["dependsOn"]
    configs = {r["inputs"]["metadata"]["name"]: r for r in plan.of_type(
        "kubernetes:monitoring.coreos.com/v1alpha1:ScrapeConfig")}
    assert set(configs) == {"msk-jmx", "msk-node"}
    hosts = sorted(b.rsplit(":", 1)[0] for b in plan.outputs["kafkaBootstrapServers"].split(","))
    for job, port in (("msk-jmx", 11001), ("msk-node", 11002)):
        assert configs[job]["inputs"]["spec"]["staticConfigs"] == [{"targets": [f"{h}:{port}" for h in hosts]}]
        assert msk in configs[job]["dependsOn"] and release["urn"] in configs[job]["dependsOn"]
    rules = [r["inputs"] for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r["name"] == "kafka-metrics-from-cluster"]
    assert [(r["fromPort"], r["toPort"]) for r in rules] == [(11001, 11002)]
    assert not stack_plan("dev").of_type("kubernetes:monitoring.coreos.com/v1alpha1:ScrapeConfig")
