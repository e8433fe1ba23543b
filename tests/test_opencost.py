"""Cost inside the cluster: OpenCost in every stack, its role, its network fence, the cost rules and dashboard, and the
teams' monthly budgets. Each referee here is also run against the defect it guards against."""

from __future__ import annotations

import copy
import json
import re

from pathlib import Path

import pytest

from components import opencost
from components.observability import alert_rules, dashboards
from components.observability.metric_catalog import KSM_LABEL_ALLOWLIST, known_metrics, ksm_label
from offline import iam_eval, netpol
from offline.harness import STACKS, Plan, stack_config
from platform_config import ConfigError, load_config
from platform_config.versions import (OPENCOST_CHART_VERSION, OPENCOST_IMAGE_REGISTRY, OPENCOST_IMAGE_REPOSITORY,
                                      OPENCOST_IMAGE_TAG, OPENCOST_REPO)
from tests.conftest import stack_plan
from tests.test_helm_values import release_findings
from tests.test_observability import (RULE_TEST_TEAMS, all_rules, metric_names, needs_promtool, promtool,
                                      run_rule_tests, with_expr, write_rules)
from upstream import catalog

RELEASE = "kubernetes:helm.sh/v3:Release"
COST_TESTS = Path(__file__).parent / "promtool" / "cost_test.yaml"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def values(plan: Plan) -> dict:
    return plan.one(RELEASE, "opencost")["inputs"]["values"]


def chart_defaults() -> dict:
    return catalog.chart_values("opencost", OPENCOST_CHART_VERSION)


# --- OpenCost in each stack --------------------------------------------------------------------------------------

def test_opencost_is_the_pinned_chart_with_the_pinned_image_and_only_keys_the_chart_knows(plan):
    release = plan.one(RELEASE, "opencost")
    inputs = release["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"], inputs["namespace"]) == (
        "opencost", OPENCOST_CHART_VERSION, OPENCOST_REPO, "opencost")
    assert release_findings(release) == []
    image = values(plan)["opencost"]["exporter"]["image"]
    assert (image["registry"], image["repository"], image["tag"]) == (
        OPENCOST_IMAGE_REGISTRY, OPENCOST_IMAGE_REPOSITORY, OPENCOST_IMAGE_TAG)


def test_the_pinned_image_is_the_one_the_chart_release_names_by_digest():
    default = chart_defaults()["opencost"]["exporter"]["image"]
    assert (default["registry"], default["repository"], default["tag"]) == (
        OPENCOST_IMAGE_REGISTRY, OPENCOST_IMAGE_REPOSITORY, OPENCOST_IMAGE_TAG)
    assert re.fullmatch(r"\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", OPENCOST_IMAGE_TAG)
    assert catalog.chart_metadata("opencost", OPENCOST_CHART_VERSION)["appVersion"] == OPENCOST_IMAGE_TAG.split("@")[0]


def test_a_misspelt_opencost_value_is_reported_against_the_vendored_chart():
    release = copy.deepcopy(stack_plan("dev").one(RELEASE, "opencost"))
    release["inputs"]["values"]["opencost"]["metrics"]["kubeStateMetrics"]["emitKsmV1Metric"] = False
    release["inputs"]["values"]["opencost"]["exporter"]["image"] = "ghcr.io/opencost/opencost:1.120.1"
    assert release_findings(release) == [
        "opencost 2.5.17: opencost.exporter.image is a mapping in the chart, the program sets a scalar",
        "opencost 2.5.17: unknown key opencost.metrics.kubeStateMetrics.emitKsmV1Metric (closest existing key: "
        "opencost.metrics.kubeStateMetrics.emitKsmV1Metrics)",
    ]


def test_opencost_reads_the_clusters_prometheus_not_its_own(plan):
    prometheus = values(plan)["opencost"]["prometheus"]
    assert prometheus == {"internal": {"enabled": False}, "external": {"enabled": True,
                                                                      "url": plan.outputs["prometheusUrl"]}}
    # The chart has no Prometheus of its own to turn off: internal mode points at someone else's server too.
    assert "prometheus" not in {d["name"] for d in catalog.chart_metadata("opencost", OPENCOST_CHART_VERSION).get(
        "dependencies") or []}
    with pytest.raises(ValueError, match="not kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"):
        opencost.check_prometheus("http://prometheus-server.prometheus-system.svc.cluster.local:80", "monitoring")


def test_opencost_runs_hardened_without_a_public_endpoint(plan):
    v, defaults = values(plan), chart_defaults()
    exporter = v["opencost"]["exporter"]
    assert exporter["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                           "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert v["podSecurityContext"]["runAsNonRoot"] and v["podSecurityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    # The exporter writes its pricing configuration under /var/configs: an emptyDir, since the root is read-only.
    mounts = {m["mountPath"]: m["name"] for m in exporter["extraVolumeMounts"]}
    assert set(mounts) == {"/var/configs", "/tmp"}
    assert {vol["name"] for vol in v["extraVolumes"] if "emptyDir" in vol} == set(mounts.values())
    assert set(exporter["resources"]) == {"requests", "limits"}
    assert all(set(exporter["resources"][k]) == {"cpu", "memory"} for k in ("requests", "limits"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert exporter[probe]["enabled"] and defaults["opencost"]["exporter"][probe]["path"] == "/healthz"
    assert v["service"]["type"] == "ClusterIP"
    # Everything the chart could publish stays off: its defaults say so and the program does not turn any on.
    published = [("opencost", "exporter", "apiIngress"), ("opencost", "exporter", "apiHttpRoute"),
                 ("opencost", "ui", "ingress"), ("opencost", "ui", "route"), ("opencost", "ui", "httpRoute"),
                 ("opencost", "mcp", "ingress"), ("opencost", "mcp", "httpRoute")]
    for path in published:
        default, mine = defaults, v
        for key in path:
            default, mine = default[key], (mine or {}).get(key)
        assert default["enabled"] is False and not (mine or {}).get("enabled"), path
    assert v["opencost"]["ui"] == {"enabled": False} and v["opencost"]["mcp"] == {"enabled": False}
    assert exporter["replicas"] == 1 and v["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0


def test_prometheus_scrapes_opencost_and_opencost_does_not_copy_kube_state_metrics(plan):
    metrics = values(plan)["opencost"]["metrics"]
    assert metrics["serviceMonitor"] == {"enabled": True}
    assert metrics["kubeStateMetrics"] == {"emitKsmV1Metrics": False, "emitKsmV1MetricsOnly": False}
    release = plan.one(RELEASE, "opencost")
    assert plan.one(RELEASE, "monitoring-stack")["urn"] in release["dependsOn"]  # the ServiceMonitor CRD


def test_opencost_namespace_is_restricted_and_declared_first(plan):
    ns = next(r for r in plan.of_type("kubernetes:core/v1:Namespace") if r["inputs"]["metadata"]["name"] == "opencost")
    assert ns["inputs"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["urn"] in plan.one(RELEASE, "opencost")["dependsOn"]
    assert ns["urn"] in plan.one(netpol.NETWORK_POLICY, "opencost-network")["dependsOn"]


# --- the role ----------------------------------------------------------------------------------------------------

# What a cost exporter on AWS could plausibly ask for; OpenCost here needs the first only.
CANDIDATES = [("ec2:DescribeSpotPriceHistory", "*"), ("pricing:GetProducts", "*"), ("ec2:DescribeInstances", "*"),
              ("ec2:DescribeVolumes", "*"), ("ec2:DescribeAddresses", "*"),
              ("ec2:DescribeSpotDatafeedSubscription", "*"),
              ("ec2:RunInstances", "arn:aws:ec2:us-west-2:123456789012:instance/*"),
              ("s3:GetObject", "arn:aws:s3:::any-bucket/spot/feed.gz"), ("s3:ListBucket", "arn:aws:s3:::any-bucket"),
              ("s3:ListAllMyBuckets", "*"), ("athena:StartQueryExecution", "*"), ("ce:GetCostAndUsage", "*"),
              ("iam:PassRole", "arn:aws:iam::123456789012:role/x"), ("sts:AssumeRole", "*")]


def allowed(policy: dict) -> set[str]:
    statements = policy["Statement"]
    return {action for action, resource in CANDIDATES
            if any(st["Effect"] == "Allow" and iam_eval.statement_applies(st, action, resource, {})
                   for st in statements)}


def opencost_policy(plan: Plan) -> dict:
    return json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", "opencost")["inputs"]["policy"])


def test_opencost_role_allows_only_the_spot_price_history(plan):
    assert allowed(opencost_policy(plan)) == {"ec2:DescribeSpotPriceHistory"}
    association = plan.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "opencost")["inputs"]
    assert (association["namespace"], association["serviceAccount"]) == ("opencost", values(plan)["serviceAccount"][
        "name"])


def test_a_broadened_opencost_policy_is_caught():
    policy = opencost_policy(stack_plan("dev"))
    broad = copy.deepcopy(policy)
    broad["Statement"][0]["Action"] = ["ec2:Describe*"]
    assert allowed(broad) - allowed(policy) == {"ec2:DescribeInstances", "ec2:DescribeVolumes",
                                                "ec2:DescribeAddresses", "ec2:DescribeSpotDatafeedSubscription"}
    broad["Statement"].append({"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::*/*"})
    assert "s3:GetObject" in allowed(broad)


# --- the network fence -------------------------------------------------------------------------------------------

def _edited(stack: str, change) -> Plan:
    base = stack_plan(stack)
    resources = copy.deepcopy(base.resources)
    change(next(r for r in resources if r["name"] == "opencost-network")["inputs"]["spec"])
    return Plan(stack=base.stack, project=base.project, resources=resources, outputs=base.outputs)


def test_the_referee_checks_opencosts_connections():
    found = {(str(f.source).split(" (")[0], str(f.destination).split(" (")[0], f.port, f.must)
             for f, verdict in netpol.judge(stack_plan("dev")) if "OpenCost" in str(f) and verdict.allowed == f.must}
    assert {("OpenCost opencost", "Prometheus monitoring", 9090, True),
            ("Prometheus monitoring", "OpenCost opencost", 9003, True),
            ("OpenCost opencost", "AWS APIs", 443, True),
            ("OpenCost opencost", "EKS Pod Identity agent", 80, True),
            ("Deployment team-fraud/fraud-detector", "OpenCost opencost", 9003, False)} <= found


def test_opencosts_policy_without_its_prometheus_rules_is_reported():
    def drop_prometheus(spec):
        spec["ingress"] = []
        spec["egress"] = [rule for rule in spec["egress"] if "prometheus" not in str(rule)]
    found = [p for p in netpol.problems(_edited("dev", drop_prometheus)) if "OpenCost" in p]
    assert any("(scrape for the opencost chart's ServiceMonitor): ingress closed: no rule of NetworkPolicy "
               "opencost/opencost" in p for p in found)
    assert any("(OpenCost's Prometheus queries): egress closed" in p for p in found)


# --- budgets in the team config ----------------------------------------------------------------------------------

def team_config(**team) -> dict[str, str]:
    config, _ = stack_config("dev")
    teams = json.loads(config["ml-platform:teams"])
    teams[0] = {k: v for k, v in {**teams[0], **team}.items() if v is not None}
    config["ml-platform:teams"] = json.dumps(teams)
    return config


@pytest.mark.parametrize("budget, message", [
    ("lots", 'ml-platform:teams[0].monthlyBudgetUsd: expected a number from 1 to 10000000, got "lots"'),
    (0, "ml-platform:teams[0].monthlyBudgetUsd: 0 is out of range; use a value from 1 to 10000000"),
    (20_000_000, "ml-platform:teams[0].monthlyBudgetUsd: 20000000 is out of range; use a value from 1 to 10000000"),
])
def test_a_bad_budget_is_refused_naming_the_key(budget, message):
    with pytest.raises(ConfigError) as err:
        load_config(team_config(monthlyBudgetUsd=budget), "ml-platform", "dev")
    assert message in err.value.problems


def test_a_misspelt_budget_key_is_refused_with_the_right_name():
    config = team_config(monthlyBudgetUsd=None)
    teams = json.loads(config["ml-platform:teams"])
    teams[0]["monthlyBudgetUSD"] = 100
    config["ml-platform:teams"] = json.dumps(teams)
    with pytest.raises(ConfigError) as err:
        load_config(config, "ml-platform", "dev")
    assert err.value.problems == ["ml-platform:teams[0].monthlyBudgetUSD: unknown key; did you mean "
                                  "'monthlyBudgetUsd'?"]


def test_a_budget_is_optional():
    assert load_config(team_config(monthlyBudgetUsd=None), "ml-platform", "dev").teams[0].monthly_budget_usd is None
    assert load_config(team_config(monthlyBudgetUsd=250.5), "ml-platform", "dev").teams[0].monthly_budget_usd == 250.5


@pytest.mark.parametrize("stack", STACKS)
def test_each_team_with_a_budget_and_only_those_get_a_budget_series(stack):
    config, _ = stack_config(stack)
    teams = load_config(config, "ml-platform", stack).teams
    (rule,) = [r for r in stack_plan(stack).of_type(PROMETHEUS_RULE) if r["name"] == "opencost-rules"]
    assert rule["inputs"]["metadata"] == {"name": "ml-platform-cost", "namespace": "monitoring"}
    (group,) = rule["inputs"]["spec"]["groups"]
    budgets = {r["labels"]["team"]: r["expr"] for r in group["rules"] if r.get("record") == alert_rules.TEAM_BUDGET}
    assert {team: float(expr.removeprefix("vector(").removesuffix(")")) for team, expr in budgets.items()} == {
        t.name: t.monthly_budget_usd for t in teams if t.monthly_budget_usd is not None}
    assert alert_rules.cost_recording_rules([type(teams[0])(name="x", monthly_budget_usd=1234567.5)])[-1][
        "expr"] == "vector(1234567.5)"
    assert {r.get("alert") for r in group["rules"]} >= {"TeamBudgetForecast"}
    if stack == "staging":
        assert set(budgets) == {"fraud"} and {t.name for t in teams} == {"fraud", "payments"}


# --- the labels the cost queries group by -------------------------------------------------------------------------

def ksm_labels_used(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\blabel_[a-z0-9_]+", e) if m != "label_replace"}


def cost_exprs() -> list[str]:
    board = dashboards.cost()
    return [t["expr"] for p in board["panels"] for t in p["targets"]] + [
        r["expr"] for r in alert_rules.cost_rule_group([])["rules"]]


def exported_labels(allowlist: list[str]) -> set[str]:
    out = set()
    for entry in allowlist:
        _, keys = re.fullmatch(r"(\w+)=\[(.*)\]", entry).groups()
        out |= {ksm_label(k) for k in keys.split(",")}
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_kube_state_metrics_exports_every_label_the_cost_queries_read(stack):
    allowlist = stack_plan(stack).one(RELEASE, "monitoring-stack")["inputs"]["values"]["kube-state-metrics"][
        "metricLabelsAllowlist"]
    used = ksm_labels_used(cost_exprs())
    assert used == {"label_app_kubernetes_io_name", "label_app_kubernetes_io_component",
                    "label_karpenter_sh_nodepool", "label_mlplatform_io_pool"}
    assert used <= exported_labels(allowlist)
    # The defect: without Karpenter's label, every GPU pool's nodes fall out of the per-pool cost.
    shorter = [e.replace("karpenter.sh/nodepool,", "") for e in allowlist]
    assert used - exported_labels(shorter) == {"label_karpenter_sh_nodepool"}


def pod_labels(plan: Plan) -> list[dict[str, str]]:
    """The pod template labels of every workload in a team namespace."""
    found = []
    for r in plan.resources:
        kind = r["type"].rsplit(":", 1)[-1]
        spec = (r["inputs"].get("spec") or {}) if kind in ("Deployment", "CronJob") else {}
        template = (spec.get("jobTemplate", {}).get("spec", {}) if kind == "CronJob" else spec).get("template")
        if template and (r["inputs"]["metadata"].get("namespace") or "").startswith("team-"):
            found.append(template["metadata"]["labels"])
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_cost_rules_find_each_models_pods_by_the_labels_the_platform_sets(stack):
    config, _ = stack_config(stack)
    models = {m.name for m in load_config(config, "ml-platform", stack).models}
    found: dict[str, set[str]] = {}
    for labels in pod_labels(stack_plan(stack)):
        assert set(KSM_LABEL_ALLOWLIST["pods"]) <= set(labels)
        component, name = labels["app.kubernetes.io/component"], labels["app.kubernetes.io/name"]
        if component in alert_rules.MODEL_WORKLOADS:
            model = re.fullmatch(alert_rules.MODEL_WORKLOADS[component], name).group(1)
            found.setdefault(model, set()).add(component)
    assert found == {m: set(alert_rules.MODEL_WORKLOADS) for m in models}


def test_the_pool_labels_are_the_ones_the_platform_sets():
    from components.general_pool import NAME as GENERAL_POOL, POOL_LABEL as GENERAL_POOL_LABEL
    from components.system_nodes import SYSTEM_POOL_LABEL
    # Karpenter labels its nodes karpenter.sh/nodepool=<NodePool>; the system node group is no NodePool and says
    # which pool it is itself, as the general pool does.
    assert KSM_LABEL_ALLOWLIST["nodes"] == ("karpenter.sh/nodepool", *SYSTEM_POOL_LABEL)
    assert GENERAL_POOL_LABEL == {"mlplatform.io/pool": GENERAL_POOL}
    pools = {r["inputs"]["metadata"]["name"] for r in stack_plan("staging").resources
             if r["type"] == "kubernetes:karpenter.sh/v1:NodePool"}
    assert pools == {GENERAL_POOL, *(p["name"] for p in json.loads(stack_config("staging")[0][
        "ml-platform:gpuPools"]))}


# --- the dashboard -----------------------------------------------------------------------------------------------

def unknown_names(board: dict) -> set[str]:
    recorded = {r["record"] for r in all_rules() if "record" in r}
    return {n for p in board["panels"] for t in p["targets"] for n in metric_names(t["expr"])
            if n not in known_metrics() and n not in recorded}


def test_the_cost_dashboard_reads_only_catalogued_or_recorded_series_per_team_model_and_pool():
    board = dashboards.cost()
    assert board["uid"] == "ml-cost" and unknown_names(board) == set()
    titles = " | ".join(p["title"] for p in board["panels"])
    for what in ("per team", "per model", "per pool", "Idle GPU", "GPU-hours per team", "GPU-hours per model",
                 "GPU-hours per pool", "budget"):
        assert what in titles, what
    # A metric OpenCost does not export (Kubecost's name for a cluster fee) is caught.
    broken = json.loads(json.dumps(board).replace("node_total_hourly_cost", "kubecost_cluster_management_cost"))
    assert unknown_names(broken) == {"kubecost_cluster_management_cost"}


# --- the rules ----------------------------------------------------------------------------------------------------

def cost_groups(teams=RULE_TEST_TEAMS) -> list[dict]:
    return [alert_rules.cost_rule_group(list(teams))]


def run_cost_tests(directory: Path, rule_groups_: list[dict]):
    return run_rule_tests(directory, rule_groups_, COST_TESTS.read_text())


@needs_promtool
@pytest.mark.parametrize("stack", STACKS)
def test_each_stacks_cost_rules_pass_promtool_check(stack, tmp_path):
    (rule,) = [r for r in stack_plan(stack).of_type(PROMETHEUS_RULE) if r["name"] == "opencost-rules"]
    result = promtool("check", "rules", str(write_rules(tmp_path, rule["inputs"]["spec"]["groups"])))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_cost_rules_behave_as_specified_in_promtool_unit_tests(tmp_path):
    result = run_cost_tests(tmp_path, cost_groups())
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_without_the_budget_there_is_no_budget_alert(tmp_path):
    # The same tests against fraud without a budget: the warning and the page they expect never come.
    result = run_cost_tests(tmp_path, cost_groups([type(t)(name=t.name) for t in RULE_TEST_TEAMS]))
    assert result.returncode != 0 and "got:[]" in result.stderr.replace(" ", "").replace("\n", "")


@needs_promtool
def test_the_forecast_on_the_current_cost_fails_the_burst_test(tmp_path):
    # The current hourly cost instead of the day's average: the burst test finds no warning once the burst is over.
    defect = with_expr(cost_groups(), alert_rules.TEAM_FORECAST,
                       lambda e: e.replace(alert_rules.TEAM_COST_DAY, alert_rules.TEAM_COST))
    result = run_cost_tests(tmp_path, defect)
    assert result.returncode != 0 and "TeamBudgetForecast" in result.stderr and "got: nil" in result.stderr


@needs_promtool
def test_one_threshold_for_both_severities_fails_the_budget_tests(tmp_path):
    rules = json.loads(json.dumps(cost_groups()))
    for rule in (r for g in rules for r in g["rules"] if r.get("alert") == "TeamBudgetForecast"):
        rule["expr"] = re.sub(r"> [0-9.]+$", "> 0.8", rule["expr"])
    result = run_cost_tests(tmp_path, rules)
    assert result.returncode != 0 and "severity=\"critical\"" in result.stdout + result.stderr


@needs_promtool
def test_a_budget_alert_without_its_wait_fails_the_budget_tests(tmp_path):
    rules = json.loads(json.dumps(cost_groups()))
    for rule in (r for g in rules for r in g["rules"] if r.get("alert") == "TeamBudgetForecast"):
        rule["for"] = "0m"
    result = run_cost_tests(tmp_path, rules)
    assert result.returncode != 0 and "time: 20m" in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("record, change, evidence", [
    # Memory priced per GB instead of per GiB.
    (alert_rules.POD_COST, lambda e: e.replace(str(alert_rules.GIB), "1000000000"), 'resource="memory"'),
    # A GPU node no container runs on at all drops out of the idle cost.
    (alert_rules.NODE_IDLE_GPU_COST, lambda e: re.sub(r" or .*\* 0\)", ")", e), 'pool="gpu-whole"'),
    # The team's lake ingestion counted as a model's.
    (alert_rules.MODEL_COST, lambda e: e.replace('"monitoring"', '"ingestion"'), 'model="fraud-detector"'),
])
def test_the_cost_recording_tests_catch_wrong_arithmetic(record, change, evidence, tmp_path):
    result = run_cost_tests(tmp_path, with_expr(cost_groups(), record, change))
    assert result.returncode != 0 and evidence in result.stdout + result.stderr
