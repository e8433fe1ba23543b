"""GPU sharing per pool: the device plugin's per-node configs, the pools' labels that select them, the MIG boot step,
and the capacity referee counting what a node advertises rather than what it physically has."""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess

import pulumi_kubernetes as k8s
import pytest
import yaml

from components.gpu_pool import (DEVICE_PLUGIN_CONFIG_LABEL, GpuPool, GpuPoolArgs, device_plugin_config_name,
                                 mig_user_data)
from components.nvidia_device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs, device_plugin_values
from offline.capacity import referee
from offline.harness import Plan
from platform_config import GpuPoolConfig
from platform_config.model import GpuSharing
from tests import crd_validation
from tests.helpers import run_component
from tests.test_capacity import deployment, resource
from tests.test_helm_values import release_findings
from upstream import catalog

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

SLICED = GpuPoolConfig(name="notebooks", instance_types=["g5.xlarge", "g5.2xlarge"], max_gpus_per_node=1,
                       max_nodes=2, sharing=GpuSharing(time_slicing_replicas=4, units_per_gpu=4))
MIG = GpuPoolConfig(name="slices", instance_types=["p4d.24xlarge"], max_gpus_per_node=8, max_nodes=1,
                    sharing=GpuSharing(mig_profile="1g.5gb", units_per_gpu=7))
WHOLE = GpuPoolConfig(name="training", instance_types=["g5.12xlarge"], max_gpus_per_node=4, max_nodes=1)
POOLS = (SLICED, MIG, WHOLE)


def declare(pools=POOLS, plugin_pools=None):
    provider = k8s.Provider("k8s", kubeconfig="{}")
    for pool in pools:
        GpuPool(f"gpu-pool-{pool.name}", GpuPoolArgs(
            config=pool, cluster_name="c1", node_role_name="node-role", cluster_security_group_id="sg-1",
            k8s_provider=provider))
    NvidiaDevicePlugin("nvidia-device-plugin", NvidiaDevicePluginArgs(
        k8s_provider=provider, gpu_pools=pools if plugin_pools is None else plugin_pools))


@pytest.fixture(scope="module")
def plan() -> Plan:
    return run_component(declare)


def plugin_values(plan: Plan) -> dict:
    return plan.one(RELEASE, "nvidia-device-plugin")["inputs"]["values"]


def plugin_configs(plan: Plan) -> dict[str, dict]:
    return {name: yaml.safe_load(text) for name, text in plugin_values(plan)["config"]["map"].items()}


def pool_labels(plan: Plan, pool: str) -> dict:
    return plan.one(NODE_POOL, f"gpu-pool-{pool}-nodepool")["inputs"]["spec"]["template"]["metadata"]["labels"]


def node_class(plan: Plan, pool: str) -> dict:
    return plan.one(NODE_CLASS, f"gpu-pool-{pool}-nodeclass")["inputs"]


# --- the device plugin's configs and the labels that pick them ------------------------------------------------

def test_a_time_sliced_pool_gets_its_own_config_and_its_nodes_select_it(plan):
    configs = plugin_configs(plan)
    assert configs["notebooks"] == {
        "version": "v1", "flags": {"migStrategy": "none"},
        "sharing": {"timeSlicing": {"renameByDefault": False, "failRequestsGreaterThanOne": True,
                                    "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}}
    assert pool_labels(plan, "notebooks")[DEVICE_PLUGIN_CONFIG_LABEL] == "notebooks"
    assert "userData" not in node_class(plan, "notebooks")["spec"]


def test_the_default_config_stays_unshared_and_unshared_pools_select_it(plan):
    values = plugin_values(plan)
    assert values["config"]["default"] == "default"
    assert plugin_configs(plan)["default"] == {"version": "v1", "flags": {"migStrategy": "none"}}
    assert pool_labels(plan, "training")[DEVICE_PLUGIN_CONFIG_LABEL] == "default"
    assert "userData" not in node_class(plan, "training")["spec"]


def test_every_pool_label_names_a_config_the_plugin_has(plan):
    configs = plugin_configs(plan)
    assert {pool_labels(plan, p.name)[DEVICE_PLUGIN_CONFIG_LABEL] for p in POOLS} <= set(configs)
    assert set(configs) == {"default", "notebooks", "slices"}


def test_a_mig_pool_gets_single_strategy_and_a_boot_step_that_only_it_has(plan):
    assert plugin_configs(plan)["slices"] == {"version": "v1", "flags": {"migStrategy": "single"}}
    assert pool_labels(plan, "slices")[DEVICE_PLUGIN_CONFIG_LABEL] == "slices"
    user_data = node_class(plan, "slices")["spec"]["userData"]
    assert user_data.startswith("#!/bin/bash\n")
    assert "\nMIG_PROFILE=1g.5gb\n" in user_data and "\nINSTANCES_PER_GPU=7\n" in user_data
    assert "Before=nodeadm-run.service" in user_data and "RequiredBy=nodeadm-run.service" in user_data
    others = [r for r in plan.of_type(NODE_CLASS) if r["name"] != "gpu-pool-slices-nodeclass"]
    assert len(others) == 2 and not [r for r in others if "userData" in r["inputs"]["spec"]]


def test_without_a_sharing_pool_the_chart_gets_no_config_map():
    # No config-manager sidecar and no SYS_ADMIN for the plugin where nothing is shared.
    assert "config" not in device_plugin_values([WHOLE])
    assert "config" not in device_plugin_values()


def test_the_chart_values_are_keys_of_the_vendored_chart(plan):
    release = plan.one(RELEASE, "nvidia-device-plugin")
    assert release_findings(release) == []
    defaults = catalog.chart_values("nvidia-device-plugin", release["inputs"]["version"])
    assert defaults["config"]["map"] == {} and defaults["config"]["default"] == ""
    assert defaults["gfd"]["enabled"] is False
    release["inputs"]["values"]["config"]["defualt"] = "default"
    assert release_findings(release) == [
        "nvidia-device-plugin 0.19.3: unknown key config.defualt (closest existing key: config.default)"]


def test_node_pools_and_node_classes_validate_against_the_vendored_karpenter_crds(plan):
    found = plan.of_type(NODE_POOL) + plan.of_type(NODE_CLASS)
    assert len(found) == 6
    errors = {r["name"]: crd_validation.validate(r["inputs"]) for r in found}
    assert errors == {r["name"]: [] for r in found}


def test_the_nodepool_gpu_limit_stays_physical(plan):
    limits = plan.one(NODE_POOL, "gpu-pool-slices-nodepool")["inputs"]["spec"]["limits"]
    assert limits == {"nodes": "1", "nvidia.com/gpu": "8"}
    assert (MIG.max_gpus, MIG.max_units, MIG.max_units_per_node) == (8, 56, 56)


@pytest.mark.parametrize("sharing, message", [
    (GpuSharing(time_slicing_replicas=4, mig_profile="1g.5gb", units_per_gpu=4), "not both"),
    (GpuSharing(time_slicing_replicas=1, units_per_gpu=1), "at least 2"),
])
def test_sharing_the_plugin_would_reject_is_refused(sharing, message):
    with pytest.raises(ValueError, match=message):
        device_plugin_values([GpuPoolConfig(name="p", instance_types=["g5.xlarge"], max_gpus_per_node=1,
                                            sharing=sharing)])


def test_a_sharing_pool_cannot_take_the_default_configs_name():
    pool = GpuPoolConfig(name="default", instance_types=["g5.xlarge"], max_gpus_per_node=1,
                         sharing=GpuSharing(time_slicing_replicas=2, units_per_gpu=2))
    with pytest.raises(ValueError, match="default config"):
        device_plugin_config_name(pool)


# --- the MIG boot script, run against a stand-in nvidia-smi ------------------------------------------------------

FAKE_NVIDIA_SMI = r"""#!/bin/bash
# Enough of nvidia-smi for the partition script: GPUs whose MIG mode may stay pending until a reset.
state=$FAKE_STATE
echo "$*" >> "$state/calls"
gpus=$(cat "$state/gpus")
case "$*" in
  "--query-gpu=mig.mode.current --format=csv,noheader") for i in $(seq "$gpus"); do cat "$state/mode"; done ;;
  "--query-gpu=pci.bus_id --format=csv,noheader") for i in $(seq 0 $((gpus - 1))); do echo "0000:1$i:00.0"; done ;;
  "--query-gpu=index --format=csv,noheader") seq 0 $((gpus - 1)) ;;
  "-mig 1") if [ -e "$state/pending" ]; then echo Disabled > "$state/mode"; else echo Enabled > "$state/mode"; fi ;;
  "-r -i "*) [ -e "$state/reset-fails" ] || echo Enabled > "$state/mode" ;;
  "mig -i "*" -cgi "*" -C")
    set -- $*; n=$(echo "$5" | tr ',' '\n' | wc -l)
    [ -e "$state/short" ] && n=1
    for j in $(seq "$n"); do
      echo "  MIG $(echo "$5" | cut -d, -f1)  Device $j: (UUID: MIG-$3-$j)" >> "$state/migs"
    done ;;
  "-L") for i in $(seq 0 $((gpus - 1))); do echo "GPU $i: NVIDIA A100-SXM4-40GB (UUID: GPU-$i)"; done
        cat "$state/migs" 2>/dev/null ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""


def partition_script(pool: GpuPoolConfig, state_dir: str) -> str:
    user_data = mig_user_data(pool)
    script = re.search(r"<<'SCRIPT'\n(.*?)\nSCRIPT\n", user_data, re.S).group(1)
    # The same script, with its reboot marker kept in the test's directory instead of /var/lib.
    return script.replace("/var/lib/mlplatform", f"{state_dir}/var")


def run_partition(tmp_path, gpus: int = 8, *flags: str) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (state / "gpus").write_text(str(gpus))
    (state / "mode").write_text("Disabled\n")
    for flag in flags:
        (state / flag).write_text("")
    fakes = {"nvidia-smi": FAKE_NVIDIA_SMI,
             "systemctl": '#!/bin/bash\necho "$*" >> "$FAKE_STATE/systemctl"\n',
             # `sleep infinity` after a reboot request: the reboot would end it; here it ends the script.
             "sleep": "#!/bin/bash\nexit 99\n"}
    for name, body in fakes.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "mig-partition.sh"
    script.write_text(partition_script(MIG, str(state)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    return done, (state / "calls").read_text() if (state / "calls").exists() else ""


def test_the_boot_scripts_are_valid_bash():
    user_data = mig_user_data(MIG)
    for text in (user_data, partition_script(MIG, "/tmp/x")):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_the_partition_step_enables_mig_and_creates_the_profile_on_every_gpu(tmp_path):
    done, calls = run_partition(tmp_path)
    assert done.returncode == 0, done.stderr
    created = [line for line in calls.splitlines() if " -cgi " in line]
    assert created == [f"mig -i {i} -cgi {','.join(['1g.5gb'] * 7)} -C" for i in range(8)]
    assert "-mig 1" in calls and "-r -i" not in calls


def test_a_pending_mig_mode_is_applied_by_resetting_every_gpu_at_once(tmp_path):
    done, calls = run_partition(tmp_path, 2, "pending")
    assert done.returncode == 0, done.stderr
    assert "-r -i 0000:10:00.0,0000:11:00.0" in calls


def test_when_a_reset_cannot_apply_mig_mode_the_node_reboots_once(tmp_path):
    done, calls = run_partition(tmp_path, 2, "pending", "reset-fails")
    assert done.returncode == 99 and (tmp_path / "state" / "systemctl").read_text() == "reboot\n"
    assert (tmp_path / "state" / "var" / "mig-rebooted").exists() and " -cgi " not in calls
    # After that reboot, still pending: fail (the unit's OnFailure powers the node off) instead of a reboot loop.
    done = subprocess.run(["bash", str(tmp_path / "mig-partition.sh")], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                               "FAKE_STATE": str(tmp_path / "state")})
    assert done.returncode == 1 and "still not enabled after a reboot" in done.stderr
    assert (tmp_path / "state" / "systemctl").read_text() == "reboot\n"


def test_fewer_mig_devices_than_planned_fail_the_step(tmp_path):
    done, _ = run_partition(tmp_path, 2, "short")
    assert done.returncode == 1 and "created 2 1g.5gb MIG devices, expected 14" in done.stderr


# --- the capacity referee counts units ---------------------------------------------------------------------------

def gpu_pod(name: str, pool: str, units: int, replicas: int = 1, kind: str = "Deployment") -> dict:
    containers = [{"name": "app", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                "limits": {"nvidia.com/gpu": str(units)}}}]
    template = {"spec": {"containers": containers, "nodeSelector": {"mlplatform.io/gpu-pool": pool},
                         "tolerations": GPU_TOLERATION}}
    if kind == "Job":
        return resource("kubernetes:batch/v1:Job", name, {"kind": "Job", "metadata": {"name": name, "namespace": "t"},
                                                          "spec": {"parallelism": replicas, "template": template}})
    return resource("kubernetes:apps/v1:Deployment", name, {
        "kind": "Deployment", "metadata": {"name": name, "namespace": "t"},
        "spec": {"replicas": replicas, "template": template}})


def with_pods(plan: Plan, *pods: dict, edit=lambda r: None) -> Plan:
    resources = copy.deepcopy(plan.resources)
    for r in resources:
        edit(r)
    return Plan(plan.stack, plan.project, resources + list(pods), plan.outputs)


def source(report, pool: str):
    return next(s for s in report.sources if s.name == f"NodePool {pool}")


def oversize(report, name: str) -> list[str]:
    return [o for o in report.oversize if o.startswith(f"Deployment t/{name} ")]


def test_the_referee_reads_what_each_pool_advertises(plan):
    report = referee(plan)
    assert [(source(report, p).gpu.units_per_gpu, source(report, p).gpu.per_container)
            for p in ("notebooks", "slices", "training")] == [(4, 1), (7, None), (1, None)]


def test_what_the_nodes_advertise_at_the_pool_limits_is_what_the_config_promises(plan):
    # Quotas are set in the config's units (GpuPoolConfig.max_units); the nodes must offer exactly that many.
    units = {g.source: g.units for g in referee(plan).gpu_pools}
    assert units == {f"NodePool {p.name}": p.max_units for p in POOLS} == {
        "NodePool notebooks": 8, "NodePool slices": 56, "NodePool training": 4}


def test_shared_units_fit_where_whole_gpus_would_not(plan):
    report = referee(with_pods(plan, gpu_pod("notebook", "notebooks", 1, replicas=8),
                               gpu_pod("inference", "slices", 8, replicas=7)))
    assert report.fits, report.oversize + [g for g in report.gpu_pools if not g.fits]
    assert {g.source: (g.requests, g.units) for g in report.gpu_pools} == {
        "NodePool notebooks": (8, 8), "NodePool slices": (56, 56), "NodePool training": (0, 4)}


def test_more_time_sliced_units_than_one_per_container_are_oversize(plan):
    report = referee(with_pods(plan, gpu_pod("greedy", "notebooks", 2)))
    [found] = oversize(report, "greedy")
    assert "at most 1 time-sliced unit (failRequestsGreaterThanOne)" in found and not report.fits


def test_a_pod_asking_for_more_units_than_a_node_advertises_is_oversize(plan):
    report = referee(with_pods(plan, gpu_pod("huge", "slices", 57)))
    [found] = oversize(report, "huge")
    assert "p4d.24xlarge advertises 56 nvidia.com/gpu (7 MIG 1g.5gb per GPU)" in found


def test_a_pod_asking_for_more_units_than_physical_gpus_gets_no_node_from_karpenter(plan):
    report = referee(with_pods(plan, gpu_pod("wide", "slices", 9)))
    [found] = oversize(report, "wide")
    assert "Karpenter sizes a new node by its 8 physical GPUs" in found


def test_long_running_pods_must_fit_the_pools_units_and_jobs_may_queue(plan):
    report = referee(with_pods(plan, gpu_pod("notebook", "notebooks", 1, replicas=9),
                               gpu_pod("batch", "training", 1, replicas=6, kind="Job")))
    assert not report.fits and not report.oversize
    assert [(g.source, g.requests, g.units) for g in report.gpu_pools if not g.fits] == [("NodePool notebooks", 9, 8)]


def test_a_pool_label_the_plugin_has_no_config_for_advertises_nothing():
    # The defect: sharing pools declared, the device plugin not given them (the lead's wiring forgot gpu_pools).
    plan = run_component(lambda: declare(plugin_pools=[WHOLE, MIG]))
    assert [(g.source, g.units) for g in referee(plan).gpu_pools if not g.fits] == [("NodePool notebooks", 0)]
    report = referee(with_pods(plan, gpu_pod("notebook", "notebooks", 1)))
    assert source(report, "notebooks").gpu.units_per_gpu == 0
    [found] = oversize(report, "notebook")
    assert "config notebooks is not in its config.map" in found


def test_a_mig_pool_without_its_boot_step_counts_whole_gpus(plan):
    def strip_user_data(r):
        if r["type"] == NODE_CLASS:
            r["inputs"]["spec"].pop("userData", None)
    report = referee(with_pods(plan, gpu_pod("inference", "slices", 1, replicas=9), edit=strip_user_data))
    assert source(report, "slices").gpu.how.startswith("migStrategy single, but the node class creates no MIG")
    assert [(g.requests, g.units) for g in report.gpu_pools if g.source == "NodePool slices"] == [(9, 8)]
    assert not report.fits


def test_the_plugin_allowance_counts_config_managers_containers(plan):
    [ds] = [p for p in referee(plan).pods if p.owner == "helm nvidia-device-plugin: device-plugin"]
    assert ds.basis == ["nvidia-device-plugin-ctr: values", "nvidia-device-plugin-init: none",
                        "nvidia-device-plugin-sidecar: none"]
