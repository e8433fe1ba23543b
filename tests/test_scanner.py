"""A scanner referee: checkov's Kubernetes checks on every object each stack renders.

Every Kubernetes object of every stack (Helm releases excepted: their charts cannot be rendered offline) is written
to YAML, one folder per stack, and scanned by checkov's Kubernetes runner. Every failed check must either be fixed
in the program or be waived, with a reason, in tests/scanner_waivers.yaml; a waiver that no longer matches a
failure fails too, so a fixed finding cannot leave a waiver behind to hide its regression. Checks suppressed inside
a manifest (checkov.io/skip annotations) count as failures: the waiver file is the one place a finding is accepted.

checkov lives in its own virtualenv (.venv-checkov, made by `make setup`: its exact pins on boto3, packaging and
networkx conflict with the project's). It is imported once per session by a small driver run with that venv's
Python, which scans each stack's folder separately (checkov's graph checks, such as CKV2_K8S_6, would otherwise
connect a NetworkPolicy of one stack to the pods of another), plus the committed defect fixture. Nothing phones home:
the environment is cleared and BC_SKIP_MAPPING / CKV_SKIP_PACKAGE_UPDATE_CHECK switch off the guideline download
and the update check, and the runner API never reaches the platform integration.

Resource keys are `<kind>.<namespace>.<name>` (`-` as the namespace of cluster-scoped objects), and failures are
reported as `<stack> <kind>/<namespace>/<name> <check id>: <check name>`.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

from offline.harness import SECRET, STACKS, UNKNOWN
from tests.conftest import stack_plan

ROOT = Path(__file__).resolve().parent.parent
WAIVERS = Path(__file__).with_name("scanner_waivers.yaml")
DEFECTS = Path(__file__).parent / "fixtures" / "scanner_defects.yaml"
FIXTURE = "fixture"
"""The scan label of the defect fixture; never a stack name."""

# Resource types that are not Kubernetes objects: Helm releases, and the SDK's YAML / Kustomize components (their
# objects are registered as resources of their own).
NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize")
# The plan masks a secret value as a whole; where the field is a map, a string would not be a valid manifest.
MAP_DATA_FIELDS = ("data", "stringData", "binaryData")
# Kinds checkov has checks for: each such object must have been evaluated, or the render did not reach checkov.
CHECKED_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Secret",
                 "Service", "ServiceAccount", "ConfigMap"}

# Only these reach checkov: no API keys, no proxies, no user config; HOME is the scan's own folder.
OFFLINE_ENV = {
    "BC_SKIP_MAPPING": "TRUE",  # no download of the guideline / check-id mapping from the platform
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",  # no PyPI look-up for a newer checkov
    "LOG_LEVEL": "WARNING",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# Runs under checkov's own interpreter: scans each labelled folder with the Kubernetes runner, writes one JSON file.
DRIVER = r"""
import json, os, sys
from checkov.kubernetes.runner import Runner
from checkov.runner_filter import RunnerFilter
from checkov.version import version

jobs, out = json.loads(sys.argv[1]), sys.argv[2]
result = {"version": version, "scans": {}}
for label, folder in jobs.items():
    reports = Runner().run(root_folder=folder, runner_filter=RunnerFilter(framework=["kubernetes"]))
    reports = reports if isinstance(reports, list) else [reports]
    records, errors = [], []
    for report in reports:
        errors += list(report.parsing_errors)
        for outcome, recs in (("FAILED", report.failed_checks), ("SKIPPED", report.skipped_checks),
                              ("PASSED", report.passed_checks)):
            records += [{"check_id": r.check_id, "check_name": r.check_name, "outcome": outcome,
                         "file": os.path.basename(r.file_path), "resource": r.resource} for r in recs]
    result["scans"][label] = {"records": records, "parsing_errors": errors}
with open(out, "w") as f:
    json.dump(result, f)
"""


@dataclass(frozen=True)
class K8sObject:
    kind: str
    namespace: str
    name: str
    manifest: dict[str, Any] = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        """What a waiver's `resource` glob matches."""
        return f"{self.kind}.{self.namespace}.{self.name}"

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Finding:
    stack: str
    obj: K8sObject
    check_id: str
    check_name: str
    suppressed: bool = False
    """Skipped by a checkov.io/skip annotation in the manifest rather than failed."""

    def __str__(self) -> str:
        note = " (suppressed in the manifest; waive it in tests/scanner_waivers.yaml instead)" if self.suppressed else ""
        return f"{self.stack} {self.obj.path} {self.check_id}: {self.check_name}{note}"


@dataclass
class Scan:
    version: str
    findings: list[Finding]
    evaluated: dict[K8sObject, int]
    """Checks evaluated (passed, failed or skipped) per object."""
    parsing_errors: list[str]


@dataclass(frozen=True)
class Waiver:
    check: str
    resource: str
    stacks: tuple[str, ...] | None
    reason: str
    line: str

    def matches(self, finding: Finding) -> bool:
        return (finding.check_id == self.check and fnmatch.fnmatchcase(finding.obj.key, self.resource)
                and (self.stacks is None or finding.stack in self.stacks))

    def __str__(self) -> str:
        stacks = f" stacks={list(self.stacks)}" if self.stacks else ""
        return f"{self.check} {self.resource}{stacks} ({self.line})"


# -- rendering ----------------------------------------------------------------------------------------------------

def mask_safe(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy that parses as the object it stands for: masked map-typed data becomes a one-entry map."""
    manifest = copy.deepcopy(manifest)
    for key in MAP_DATA_FIELDS:
        if manifest.get(key) in (SECRET, UNKNOWN):
            manifest[key] = {"masked": manifest[key]}
    return manifest


def kubernetes_objects(resources: Iterable[dict[str, Any]]) -> list[K8sObject]:
    objects = []
    for r in resources:
        if not r["type"].startswith("kubernetes:") or r["type"].startswith(NOT_OBJECTS):
            continue
        manifest = r["inputs"]
        if not isinstance(manifest, dict) or not manifest.get("kind") or not isinstance(manifest.get("metadata"), dict):
            raise ValueError(f"{r['type']} {r['name']}: inputs are not a manifest: {manifest!r:.200}")
        meta = manifest["metadata"]
        objects.append(K8sObject(manifest["kind"], meta.get("namespace") or "-", meta.get("name") or r["name"],
                                 mask_safe(manifest)))
    return objects


def render(objects: list[K8sObject], folder: Path) -> dict[str, K8sObject]:
    """One YAML file per object; returns file name -> object."""
    folder.mkdir(parents=True)
    files = {}
    for i, obj in enumerate(objects):
        name = f"{i:03d}-{obj.kind}-{obj.namespace}-{obj.name}.yaml".lower()
        (folder / name).write_text(yaml.safe_dump(obj.manifest, sort_keys=False))
        files[name] = obj
    return files


def fixture_resources(path: Path = DEFECTS) -> list[dict[str, Any]]:
    """The fixture's manifests, shaped like plan resources so they take the stacks' path through the renderer."""
    resources = []
    for doc in yaml.safe_load_all(path.read_text()):
        group, _, version = doc["apiVersion"].rpartition("/")
        resources.append({"type": f"kubernetes:{group or 'core'}/{version}:{doc['kind']}",
                          "name": doc["metadata"]["name"], "inputs": doc})
    return resources


# -- scanning -----------------------------------------------------------------------------------------------------

def checkov_python() -> str:
    if os.environ.get("CHECKOV_PYTHON"):
        return os.environ["CHECKOV_PYTHON"]
    venv = ROOT / ".venv-checkov" / "bin" / "python"
    if venv.exists():
        return str(venv)
    if importlib.util.find_spec("checkov") is not None:
        return sys.executable
    pytest.fail("checkov is not installed: `make setup` creates .venv-checkov (or set CHECKOV_PYTHON)")


def check_order(check_id: str) -> tuple[bool, str, int]:
    """CKV_K8S_9 before CKV_K8S_15; CKV2 (graph) checks after the others."""
    prefix, _, number = check_id.rpartition("_")
    return (prefix.startswith("CKV2"), prefix, int(number) if number.isdigit() else 0)


def scan(targets: dict[str, list[K8sObject]], workdir: Path) -> dict[str, Scan]:
    """Scan each label's objects in a folder of its own, all in one checkov process."""
    files: dict[str, dict[str, K8sObject]] = {}
    jobs = {}
    for label, objects in targets.items():
        files[label] = render(objects, workdir / label)
        jobs[label] = str(workdir / label)
    home = workdir / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **OFFLINE_ENV}
    out = workdir / "checkov.json"
    proc = subprocess.run([checkov_python(), "-c", DRIVER, json.dumps(jobs), str(out)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"checkov failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    raw = json.loads(out.read_text())
    scans = {}
    for label, result in raw["scans"].items():
        findings, evaluated = [], {obj: 0 for obj in files[label].values()}
        for rec in result["records"]:
            obj = files[label].get(rec["file"])
            if obj is None:
                pytest.fail(f"checkov reported a file it was not given: {label}/{rec['file']}")
            evaluated[obj] += 1
            if rec["outcome"] != "PASSED":
                findings.append(Finding(label, obj, rec["check_id"], rec["check_name"],
                                        suppressed=rec["outcome"] == "SKIPPED"))
        findings = sorted(set(findings), key=lambda f: (check_order(f.check_id), f.obj.key))
        scans[label] = Scan(raw["version"], findings, evaluated, result["parsing_errors"])
    return scans


# -- waivers ------------------------------------------------------------------------------------------------------

def load_waivers(path: Path = WAIVERS) -> list[Waiver]:
    entries = yaml.safe_load(path.read_text()) if path.exists() else None
    entries = entries or []
    problems, waivers = [], []
    if not isinstance(entries, list):
        raise ValueError(f"{path.name}: expected a list of waivers")
    for i, e in enumerate(entries):
        where = f"{path.name} entry {i + 1}"
        if not isinstance(e, dict):
            problems.append(f"{where}: not a mapping")
            continue
        unknown = set(e) - {"check", "resource", "stacks", "reason"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        check, resource, reason, stacks = e.get("check"), e.get("resource"), e.get("reason"), e.get("stacks")
        if not isinstance(check, str) or not re.fullmatch(r"CKV2?_K8S_\d+", check):
            problems.append(f"{where}: `check` must be a checkov Kubernetes check id such as CKV_K8S_43")
        if not isinstance(resource, str) or resource.count(".") < 2 and "*" not in resource:
            problems.append(f"{where}: `resource` must be <kind>.<namespace>.<name> or a glob")
        if not isinstance(reason, str) or len(reason.split()) < 5:
            problems.append(f"{where}: `reason` must say why, in a sentence")
        if stacks is not None and (not isinstance(stacks, list) or not stacks or set(stacks) - set(STACKS)):
            problems.append(f"{where}: `stacks` must be a non-empty list of {', '.join(STACKS)}")
        waivers.append(Waiver(str(check), str(resource), tuple(stacks) if isinstance(stacks, list) else None,
                              str(reason), f"{where}"))
    if problems:
        raise ValueError("\n".join(problems))
    return waivers


def unwaived(findings: Iterable[Finding], waivers: list[Waiver]) -> list[Finding]:
    # A check suppressed in the manifest is reported even when waived: the annotation must go.
    return [f for f in findings if f.suppressed or not any(w.matches(f) for w in waivers)]


def stale(waivers: list[Waiver], findings: list[Finding]) -> list[str]:
    """Waivers that match no failure; one that names stacks must match a failure in each of them."""
    out = []
    for w in waivers:
        for stack in w.stacks or (None,):
            if not any(w.matches(f) and (stack is None or f.stack == stack) for f in findings):
                out.append(f"{w}{f' matches nothing in {stack}' if stack else ' matches nothing'}")
    return out


# -- tests --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Scan]:
    targets = {stack: kubernetes_objects(stack_plan(stack).resources) for stack in STACKS}
    targets[FIXTURE] = kubernetes_objects(fixture_resources())
    return scan(targets, tmp_path_factory.mktemp("checkov"))


def test_waiver_file_is_well_formed():
    assert WAIVERS.exists(), f"{WAIVERS.name} is missing (an empty list waives nothing)"
    load_waivers()


def test_masked_secret_data_renders_as_a_map():
    [deployment, secret] = kubernetes_objects(fixture_resources())
    assert secret.kind == "Secret" and secret.manifest["stringData"] == {"masked": SECRET}
    assert yaml.safe_load(yaml.safe_dump(secret.manifest))["stringData"] == {"masked": SECRET}
    assert deployment.key == "Deployment.scanner-fixture.defective"


def test_scanner_evaluated_every_object(scans):
    problems = []
    for label, result in scans.items():
        problems += [f"{label}: cannot parse {e}" for e in result.parsing_errors]
        problems += [f"{label} {obj.path}: no check evaluated" for obj, n in result.evaluated.items()
                     if obj.kind in CHECKED_KINDS and n == 0]
    assert not problems, "\n".join(problems)
    for stack in STACKS:
        assert any(o.kind == "Deployment" for o in scans[stack].evaluated), f"{stack}: no Deployment rendered"


@pytest.mark.parametrize("stack", STACKS)
def test_every_failed_check_is_fixed_or_waived(scans, stack):
    left = unwaived(scans[stack].findings, load_waivers())
    if left:
        pytest.fail(f"checkov {scans[stack].version}: {len(left)} failed check(s) in {stack}, neither fixed nor "
                    f"waived in tests/{WAIVERS.name}:\n" + "\n".join(map(str, left)), pytrace=False)


def test_no_waiver_is_stale(scans):
    findings = [f for stack in STACKS for f in scans[stack].findings]
    left = stale(load_waivers(), findings)
    if left:
        pytest.fail("waivers that no longer match a failed check (remove them, or narrow their stacks):\n"
                    + "\n".join(left), pytrace=False)


def test_referee_reports_a_defective_deployment(scans):
    """The committed defect fixture goes through the same render, scan and waiver path as the stacks."""
    result = scans[FIXTURE]
    reported = {f.check_id for f in result.findings if f.obj.key == "Deployment.scanner-fixture.defective"}
    expected = {"CKV_K8S_38",  # service-account token mounted
                "CKV_K8S_8", "CKV_K8S_9",  # no liveness / readiness probe
                "CKV_K8S_14", "CKV_K8S_43", "CKV_K8S_15",  # :latest, no digest, IfNotPresent
                "CKV_K8S_16",  # privileged
                "CKV_K8S_35",  # secret in an environment variable
                "CKV2_K8S_6"}  # no NetworkPolicy
    assert expected <= reported, f"checkov {result.version} missed {sorted(expected - reported)}"
    lines = {str(f) for f in unwaived(result.findings, [])}
    assert "fixture Deployment/scanner-fixture/defective CKV_K8S_16: Container should not be privileged" in lines
    # The real waiver file must not excuse the worst of it: a privileged container and a `latest` image.
    still = {f.check_id for f in unwaived(result.findings, load_waivers())}
    assert {"CKV_K8S_16", "CKV_K8S_14"} <= still
    # A suppression annotation in the manifest does not hide a finding, waived or not.
    [hidden] = [f for f in result.findings if f.check_id == "CKV_K8S_20"]
    assert hidden.suppressed
    assert hidden in unwaived(result.findings, [Waiver("CKV_K8S_20", "*", None, "fixture", "test")])
    # A waiver that matches works, and once its finding is gone it is stale.
    waiver = Waiver("CKV_K8S_16", "Deployment.scanner-fixture.*", None, "fixture", "test")
    assert "CKV_K8S_16" not in {f.check_id for f in unwaived(result.findings, [waiver])}
    assert stale([waiver], [f for f in result.findings if f.check_id != "CKV_K8S_16"])
