"""Dashboards and alert rules: parsed and unit-tested by the real promtool, and limited to metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from components.observability import alert_rules, dashboards
from components.observability.alert_rules import rule_groups
from components.observability.metric_catalog import KUEUE_RESOURCE_METRICS, RECORDED_PREFIXES, known_metrics
from platform_config.gpu_catalog import GPU_INSTANCE_TYPES
from platform_config.model import GpuPoolConfig, GpuSharing
from platform_config.services_model import MonitoringConfig, ServingConfig, TrainingConfig
from platform_config.teams_model import DriftConfig, ModelConfig, ModelImages, TeamConfig
from tests.conftest import stack_plan
from tests.helpers import run_component

PROMTOOL = shutil.which("promtool")
RULE_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
# CI installs promtool (.ci/run); a developer machine without it skips these tests instead of failing them.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                    reason="promtool not installed (apt-get install prometheus)")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "le", "inf", "nan"}

IMAGES = ModelImages(training="r/t:1", serving="r/s:1", drift="r/d:1")
# The two models tests/promtool/alerts_test.yaml is written for: different teams, objectives and thresholds.
RULE_TEST_MODELS = [
    ModelConfig(name="fraud-detector", team="fraud", images=IMAGES, training=TrainingConfig(gpu_pool="gpu-mig"),
                serving=ServingConfig(latency_slo_seconds=0.25, slo_objective=0.99),
                drift=DriftConfig(psi_threshold=0.2)),
    ModelConfig(name="churn-predictor", team="growth", images=IMAGES, training=TrainingConfig(gpu_pool="gpu-mig"),
                serving=ServingConfig(latency_slo_seconds=0.1, slo_objective=0.999, gpu_pool="gpu-shared"),
                drift=DriftConfig(psi_threshold=0.1)),
]
# The teams tests/promtool/cost_test.yaml is written for: fraud has a monthly budget of $1000, growth none.
RULE_TEST_TEAMS = [TeamConfig(name="fraud", monthly_budget_usd=1000), TeamConfig(name="growth")]
POOLS = [
    GpuPoolConfig(name="gpu-mig", instance_types=["p4d.24xlarge"], max_gpus_per_node=8, max_nodes=1,
                  sharing=GpuSharing(mig_profile="1g.10gb", units_per_gpu=4)),
    GpuPoolConfig(name="gpu-shared", instance_types=["g5.xlarge"], max_gpus_per_node=1,
                  sharing=GpuSharing(time_slicing_replicas=4, units_per_gpu=4)),
    GpuPoolConfig(name="gpu-whole", instance_types=["g6.xlarge", "g4dn.xlarge"], max_gpus_per_node=1),
]


def groups(cfg: MonitoringConfig = MonitoringConfig(), models=RULE_TEST_MODELS, pools=POOLS) -> list[dict]:
    return rule_groups(cfg, models, pools)


def all_rules(cfg: MonitoringConfig = MonitoringConfig(), models=RULE_TEST_MODELS) -> list[dict]:
    """Every rule the platform ships: Monitoring's groups and OpenCost's cost group (tests/test_opencost.py runs its
    promtool tests)."""
    return [r for g in [*groups(cfg, models), alert_rules.cost_rule_group(RULE_TEST_TEAMS)] for r in g["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is required in CI: apt-get install -y prometheus"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def write_rules(directory: Path, rule_groups_: list[dict]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups_}, sort_keys=False))
    return path


def run_rule_tests(directory: Path, rule_groups_: list[dict], tests: str | None = None) -> subprocess.CompletedProcess:
    write_rules(directory, rule_groups_)
    (directory / "alerts_test.yaml").write_text(RULE_TESTS.read_text() if tests is None else tests)
    return promtool("test", "rules", str(directory / "alerts_test.yaml"))


def with_expr(rule_groups_: list[dict], name: str, change) -> list[dict]:
    """The rules with one alert's (or recorded series') expression rewritten: the defect a test must catch."""
    out = json.loads(json.dumps(rule_groups_))
    for rule in (r for g in out for r in g["rules"] if name in (r.get("alert"), r.get("record"))):
        rule["expr"] = change(rule["expr"])
    return out


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


def boards(models=RULE_TEST_MODELS, pools=POOLS) -> dict[str, dict]:
    return dashboards.dashboards(models, pools)


def panel_exprs(models=RULE_TEST_MODELS, pools=POOLS) -> list[tuple[str, str]]:
    return [(f"{name}/{panel['title']}", target["expr"])
            for name, board in boards(models, pools).items() for panel in board["panels"]
            for target in panel["targets"]]


@needs_promtool
@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stacks_rules_pass_promtool_check(stack, tmp_path):
    rules = stack_plan(stack).of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    path = write_rules(tmp_path, [g for rule in rules for g in rule["inputs"]["spec"]["groups"]])
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_rules_pass_promtool_check(tmp_path):
    result = promtool("check", "rules", str(write_rules(tmp_path, groups())))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_behave_as_specified_in_promtool_unit_tests(tmp_path):
    result = run_rule_tests(tmp_path, groups())
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_catches_a_broken_expectation(tmp_path):
    """The rule tests can fail: a wrong expected summary is reported by promtool."""
    broken = RULE_TESTS.read_text().replace("burning the error budget 14.4x too fast", "burning slowly", 1)
    result = run_rule_tests(tmp_path, groups(), broken)
    assert result.returncode != 0 and "burning slowly" in result.stdout + result.stderr


@needs_promtool
def test_one_objective_for_every_model_would_fail_the_rule_tests(tmp_path):
    # The defect per-model SLOs guard against: churn-predictor judged by fraud-detector's looser objective and
    # latency threshold stays silent where the tests expect its page.
    looser = replace(RULE_TEST_MODELS[1], serving=RULE_TEST_MODELS[0].serving)
    result = run_rule_tests(tmp_path, groups(models=[RULE_TEST_MODELS[0], looser]))
    assert result.returncode != 0 and 'model="churn-predictor"' in result.stdout + result.stderr


@needs_promtool
def test_gpu_idle_on_the_utilisation_counter_would_miss_mig(tmp_path):
    # DCGM_FI_DEV_GPU_UTIL (a percent) has no MIG instance series: the same alert on it never sees the idle one.
    defect = with_expr(groups(), "GpuIdle", lambda e: e.replace("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL")
                       .replace(f"< {alert_rules.GPU_IDLE_RATIO}", "< 5"))
    result = run_rule_tests(tmp_path, defect)
    assert result.returncode != 0 and "GpuIdle" in result.stdout + result.stderr


@needs_promtool
def test_drift_selected_by_namespace_alone_would_blame_the_wrong_model(tmp_path):
    # Drift series carry no model label; without the PodMonitor's job, another model's drift in the same team
    # namespace would be reported as this model's.
    defect = with_expr(groups(), "DataDriftDetected", lambda e: re.sub(r', job="[^"]+"', "", e))
    result = run_rule_tests(tmp_path, defect)
    assert result.returncode != 0 and "DataDriftDetected" in result.stdout + result.stderr


@needs_promtool
def test_counting_the_follower_replica_would_fail_the_queue_test(tmp_path):
    defect = with_expr(groups(), alert_rules.PENDING_PER_TEAM,
                       lambda e: e.replace(f"{{{alert_rules.KUEUE_LEADER}}}", ""))
    result = run_rule_tests(tmp_path, defect)
    assert result.returncode != 0 and 'cluster_queue="growth"' in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("minutes", [10, 90])
def test_queue_pending_alert_fires_after_the_configured_time_not_before(minutes, tmp_path):
    end = minutes + 5
    tests = yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": 'kueue_pending_workloads{cluster_queue="fraud", status="inadmissible", '
                                    'replica_role="leader"}', "values": f"1x{end}"}],
        "alert_rule_test": [
            {"eval_time": f"{minutes - 1}m", "alertname": "QueuedWorkloadPending", "exp_alerts": []},
            {"eval_time": f"{minutes}m", "alertname": "QueuedWorkloadPending", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "category": "capacity", "cluster_queue": "fraud",
                               "namespace": "team-fraud", "team": "fraud"},
                "exp_annotations": {
                    "summary": f"Team fraud has had workloads waiting for admission for {minutes} minutes",
                    "description": f"ClusterQueue fraud has not been free of pending workloads for {minutes} minutes "
                                   "(1 pending now): a workload needs more than the team's quota and what it can "
                                   "borrow, or no node can hold it. See `kubectl -n team-fraud get workloads`."}}]}]}]})
    cfg = MonitoringConfig(queue_pending_minutes=minutes)
    platform = [g for g in groups(cfg) if g["name"] == alert_rules.PLATFORM_GROUP]
    result = run_rule_tests(tmp_path, platform, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    # ...and the same test fails against rules that wait longer: nothing has fired yet at that time.
    longer = with_expr(platform, "QueuedWorkloadPending", lambda e: e)
    next(r for r in longer[0]["rules"] if r.get("alert") == "QueuedWorkloadPending")["for"] = f"{minutes + 20}m"
    result = run_rule_tests(tmp_path, longer, tests)
    assert result.returncode != 0 and re.search(r"got:\[\s*\]", result.stdout + result.stderr), result.stderr


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
    recorded = {r["record"] for r in all_rules() if "record" in r}
    exprs = panel_exprs() + [(r.get("alert") or r["record"], r["expr"]) for r in all_rules()]
    for where, expr in exprs:
        for name in metric_names(expr):
            assert name in known or name in recorded, f"{where}: {name} is neither exposed nor recorded"
            if name in recorded:
                assert name.startswith(RECORDED_PREFIXES)


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{le="0.25"}[5m])))') == {"a_bucket"}
    assert metric_names("sum(x{a=\"b\"}) / on (pod) group_left y unless z") == {"x", "y", "z"}
    assert metric_names('label_replace(a, "n", "$1", "h", "(.+)") * on (node) group_left () b{c="d"}') == {"a", "b"}
    assert metric_names("vector(0.25)") == set()


def kueue_resource_metrics_off(kueue_config: dict, exprs: list[str]) -> set[str]:
    """Kueue metrics the queries read that Kueue would not report with this manager Configuration."""
    used = {n for e in exprs for n in metric_names(e)} & KUEUE_RESOURCE_METRICS
    return set() if kueue_config.get("metrics", {}).get("enableClusterQueueResources") else used


def test_kueue_reports_the_quota_metrics_the_queues_dashboard_reads():
    from components.kueue import manager_config
    exprs = [e for _, e in panel_exprs()]
    assert not kueue_resource_metrics_off(manager_config(), exprs)
    off = {**manager_config(), "metrics": {"bindAddress": ":8443"}}
    assert kueue_resource_metrics_off(off, exprs) >= {"kueue_cluster_queue_resource_usage",
                                                      "kueue_cluster_queue_nominal_quota"}


def test_each_model_has_its_own_dashboard_filtered_to_it_with_its_objective():
    found = boards()
    for model in RULE_TEST_MODELS:
        board = found[f"ml-model-{model.name}"]
        assert board["uid"] == dashboards.model_uid(model.name) and model.name in board["title"]
        titles = {p["title"] for p in board["panels"]}
        assert {"Requests per second", "Latency p50 / p95 / p99", "Error rate (5xx share)",
                "Prediction score distribution", "Micro-batch size", "Training loss"} <= titles
        assert f"objective {model.serving.slo_objective:.2%}" in " ".join(titles)
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert f"vector({model.serving.latency_slo_seconds:g})" in exprs
        assert f"vector({model.drift.psi_threshold:g})" in exprs
        # Every query that reads a series is filtered to the model's namespace (and through it, to its team).
        for expr in exprs:
            if metric_names(expr):
                assert f'namespace="team-{model.team}"' in expr, expr
        other = next(m for m in RULE_TEST_MODELS if m is not model)
        assert not any(other.name in e for e in exprs)
    serving_gpu = "Serving GPU engine activity"
    assert serving_gpu in {p["title"] for p in found["ml-model-churn-predictor"]["panels"]}
    assert serving_gpu not in {p["title"] for p in found["ml-model-fraud-detector"]["panels"]}


def test_model_dashboard_uids_fit_grafana_and_stay_unique():
    long = [replace(RULE_TEST_MODELS[0], name="a" * 40 + suffix) for suffix in ("-x", "-y")]
    uids = [dashboards.model_uid(m.name) for m in long]
    assert all(len(u) <= dashboards.UID_MAX for u in uids) and len(set(uids)) == 2
    assert dashboards.model_uid("fraud-detector") == "ml-model-fraud-detector"


def test_queues_dashboard_covers_pending_admitted_quota_borrowing_and_preemption():
    board = boards()["ml-queues"]
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    names = {n for p in board["panels"] for t in p["targets"] for n in metric_names(t["expr"])}
    assert {"kueue_pending_workloads", "kueue_admitted_active_workloads", "kueue_cluster_queue_resource_usage",
            "kueue_cluster_queue_resource_reservation", "kueue_cluster_queue_nominal_quota",
            "kueue_preempted_workloads_total"} <= names
    assert names & set(known_metrics()) == names and {known_metrics()[n] for n in names if n.startswith("kueue_")} == {
        "kueue"}
    assert 'resource="nvidia.com/gpu"' in exprs  # Kueue's resource names, not kube-state-metrics' nvidia_com_gpu
    # Per GPU pool (= Kueue flavor): units in use against the pool's capacity in units; MIG pools also show their
    # instances' activity.
    pools = {pool.name: [p for p in board["panels"] if p["title"].startswith(f"GPU pool {pool.name} ")
                         or p["title"].startswith(f"GPU pool {pool.name}:")] for pool in POOLS}
    assert {name: len(found) for name, found in pools.items()} == {"gpu-mig": 2, "gpu-shared": 1, "gpu-whole": 1}
    units = {name: found[0]["targets"][-1]["expr"] for name, found in pools.items()}
    assert units == {"gpu-mig": "vector(32)", "gpu-shared": "vector(8)", "gpu-whole": "vector(2)"}
    assert all('flavor="' + name + '"' in found[0]["targets"][0]["expr"] for name, found in pools.items())
    assert 'GPU_I_PROFILE="1g.10gb"' in pools["gpu-mig"][1]["targets"][0]["expr"]
    assert "MIG 1g.10gb, 4 units per GPU" in pools["gpu-mig"][0]["title"]
    assert "time-sliced, 4 units per GPU" in pools["gpu-shared"][0]["title"]


def test_dashboards_have_unique_panel_ids_and_the_platform_datasource():
    for board in boards().values():
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        assert all(p["datasource"] == dashboards.DATASOURCE for p in board["panels"])
    assert set(boards()) == {"ml-serving", "ml-training", "ml-kafka", "ml-cluster", "ml-queues", "ml-cost",
                             "ml-model-fraud-detector", "ml-model-churn-predictor"}
    training = {p["title"] for p in boards()["ml-training"]["panels"]}
    assert {"GPU engine activity (training pods)", "GPU memory used", "Throughput (samples/s)", "Loss"} <= training
    assert "Ingestion consumer lag (records)" in {p["title"] for p in boards()["ml-kafka"]["panels"]}


def test_every_alert_the_issue_names_exists_with_severity_and_summary():
    alerts = [r for r in all_rules() if "alert" in r]
    assert {r["alert"] for r in alerts} == {"InferenceLatencySLOBurn", "InferenceErrorBudgetBurn", "GpuIdle",
                                            "DataDriftDetected", "IngestionConsumerLag", "TrainingJobFailed",
                                            "QueuedWorkloadPending", "TeamBudgetForecast"}
    assert all(r["labels"]["severity"] in ("critical", "warning") and r["annotations"]["summary"] for r in alerts)
    for model in RULE_TEST_MODELS:
        own = [r for r in alerts if r["labels"].get("model") == model.name]
        assert sorted(r["alert"] for r in own) == ["DataDriftDetected", *["InferenceErrorBudgetBurn"] * 2,
                                                   *["InferenceLatencySLOBurn"] * 2]
        assert all(r["labels"]["team"] == model.team for r in own)


def test_rules_follow_each_models_config():
    by_group = {g["name"]: g["rules"] for g in groups()}
    assert list(by_group) == ["ml-platform", "model-fraud-detector", "model-churn-predictor"]
    churn = {r.get("record") or f"{r['alert']}/{r['labels']['severity']}": r["expr"]
             for r in by_group["model-churn-predictor"]}
    assert 'le="0.1"' in churn["slo:inference_latency_bad_ratio:rate5m"]
    assert 'namespace="team-growth", model="churn-predictor"' in churn["slo:inference_latency_bad_ratio:rate5m"]
    assert "> 0.0144" in churn["InferenceLatencySLOBurn/critical"]  # 14.4 x (1 - 0.999)
    assert 'job="team-growth/churn-predictor-drift"' in churn["DataDriftDetected/warning"]
    assert churn["DataDriftDetected/warning"].endswith("> 0.1")
    fraud = {r.get("record", ""): r["expr"] for r in by_group["model-fraud-detector"]}
    assert 'le="0.25"' in fraud["slo:inference_latency_bad_ratio:rate5m"]


def test_rules_refuse_duplicate_models_and_gpus_without_profiling_metrics(monkeypatch):
    with pytest.raises(ValueError, match="unique"):
        rule_groups(MonitoringConfig(), [RULE_TEST_MODELS[0]] * 2, [])
    # Every GPU the catalog offers reports the engine-active ratio GpuIdle reads; a new one must be checked.
    assert {g.gpu for g in GPU_INSTANCE_TYPES.values()} <= alert_rules.PROFILING_GPUS
    monkeypatch.setattr(alert_rules, "PROFILING_GPUS", alert_rules.PROFILING_GPUS - {"A100"})
    with pytest.raises(ValueError, match=r"gpuPools\[gpu-mig\]: GPUs \['A100'\]"):
        rule_groups(MonitoringConfig(), RULE_TEST_MODELS, POOLS)


def inhibited(rules: list[dict], source: dict[str, str], target: dict[str, str]) -> bool:
    """Alertmanager's inhibition for equality matchers: a firing source mutes a target when some rule's source
    and target matchers match and the `equal` labels agree (a label missing on both sides agrees)."""
    def matches(matchers: list[str], labels: dict[str, str]) -> bool:
        for m in matchers:
            name, op, value = re.fullmatch(r'(\w+) (=~|=) "?([^"]*)"?', m).groups()
            have = labels.get(name, "")
            if not (re.fullmatch(value, have) if op == "=~" else have == value):
                return False
        return True
    return any(matches(r.get("source_matchers", []), source) and matches(r.get("target_matchers", []), target)
               and all(source.get(k, "") == target.get(k, "") for k in r.get("equal", [])) for r in rules)


def test_one_models_page_silences_its_own_ticket_not_another_models():
    from components.monitoring import CHART_INHIBIT_RULES, alertmanager_config
    rules = alertmanager_config(False)["inhibit_rules"]
    burn = {"alertname": "InferenceLatencySLOBurn", "namespace": "team-fraud"}
    page_a = {**burn, "severity": "critical", "model": "fraud-detector"}
    ticket_a = {**burn, "severity": "warning", "model": "fraud-detector"}
    ticket_b = {**burn, "severity": "warning", "model": "fraud-scorer"}
    assert inhibited(rules, page_a, ticket_a)
    assert not inhibited(rules, page_a, ticket_b)
    assert inhibited(CHART_INHIBIT_RULES, page_a, ticket_b)  # the defect: the chart's rule alone mutes model B
    # The chart's own alerts (no model label) are inhibited as before.
    chart = {"alertname": "KubePodCrashLooping", "namespace": "mlflow"}
    assert inhibited(rules, {**chart, "severity": "critical"}, {**chart, "severity": "warning"})


def declare_monitoring(models=RULE_TEST_MODELS, pools=POOLS):
    import pulumi_kubernetes as k8s

    from components.monitoring import Monitoring, MonitoringArgs
    return Monitoring("monitoring", MonitoringArgs(
        config=MonitoringConfig(), namespace="monitoring", k8s_provider=k8s.Provider("k8s"), storage_class="gp3",
        models=models, gpu_pools=pools))


@pytest.fixture(scope="module")
def monitoring_plan():
    return run_component(declare_monitoring)


def test_monitoring_ships_a_rule_object_and_a_dashboard_per_model(monitoring_plan):
    rules = {r["inputs"]["metadata"]["name"]: [g["name"] for g in r["inputs"]["spec"]["groups"]]
             for r in monitoring_plan.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")}
    assert rules == {"ml-platform": ["ml-platform"], "ml-platform-model-fraud-detector": ["model-fraud-detector"],
                     "ml-platform-model-churn-predictor": ["model-churn-predictor"]}
    maps = {m["inputs"]["metadata"]["name"]: m for m in monitoring_plan.of_type("kubernetes:core/v1:ConfigMap")
            if m["inputs"]["metadata"].get("labels", {}).get("grafana_dashboard") == "1"}
    assert set(maps) == set(boards())
    board = json.loads(maps["ml-model-churn-predictor"]["inputs"]["data"]["ml-model-churn-predictor.json"])
    assert board["uid"] == "ml-model-churn-predictor"


def test_dashboards_ship_as_sidecar_configmaps(plan):
    maps = {m["inputs"]["metadata"]["name"] for m in plan.of_type("kubernetes:core/v1:ConfigMap")
            if m["inputs"]["metadata"].get("labels", {}).get("grafana_dashboard") == "1"}
    assert {"ml-cluster", "ml-kafka", "ml-serving", "ml-training", "ml-queues"} <= maps
    models = {r["name"] for r in plan.resources if r["type"] == "mlplatform:workloads:ModelServing"}
    assert models and {f"ml-model-{m}" for m in models} <= maps


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
    assert "4 inhibit rules" in result.stdout and "2 receivers" in result.stdout


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
