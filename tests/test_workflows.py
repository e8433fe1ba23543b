"""Every GitHub workflow is valid against the published workflow schema (SchemaStore's, vendored under
upstream/schemas/), and keeps the promises a schema cannot check: jobs named in `needs` exist, reusable workflows
exist and get their inputs, third-party actions are pinned to commits, secrets never meet a fork's code, and the
deploy goes dev -> staging -> prod, one run per stack, through OIDC. Each check is shown failing on a broken copy."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

from offline import pr_comment

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SCHEMA = ROOT / "upstream" / "schemas" / "github-workflow" / "github-workflow.json"
FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"
STACKS = ("dev", "staging", "prod")


class WorkflowLoader(yaml.SafeLoader):
    """YAML as GitHub reads it: only true/false are booleans, so `on:` stays a key (YAML 1.1 makes it True)."""


WorkflowLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
WorkflowLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                     list("tTfF"))


class Workflow:
    def __init__(self, name: str, text: str):
        self.name, self.text = name, text
        self.data: dict = yaml.load(text, Loader=WorkflowLoader)

    @property
    def jobs(self) -> dict[str, dict]:
        return self.data.get("jobs") or {}

    @property
    def triggers(self) -> dict[str, Any]:
        on = self.data.get("on")
        if isinstance(on, str):
            return {on: None}
        if isinstance(on, list):
            return dict.fromkeys(on)
        return on or {}

    def copy(self) -> Workflow:
        """A deep copy with YAML aliases undone, so a mutation touches one job only."""
        clone = Workflow.__new__(Workflow)
        clone.name, clone.text, clone.data = self.name, self.text, json.loads(json.dumps(self.data))
        return clone


def load_all() -> dict[str, Workflow]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    return {f.name: Workflow(f.name, f.read_text()) for f in files}


def steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def text_of(value: Any) -> str:
    return json.dumps(value)


def needs(job: dict) -> list[str]:
    value = job.get("needs") or []
    return [value] if isinstance(value, str) else list(value)


def ancestors(wf: Workflow, job: str) -> set[str]:
    seen, todo = set(), list(needs(wf.jobs.get(job, {})))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(needs(wf.jobs.get(name, {})))
    return seen


def environment(job: dict) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


# --- the checks: each returns the problems it finds ----------------------------------------------------------------

def schema_problems(wf: Workflow) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{wf.name}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in sorted(validator.iter_errors(wf.data), key=lambda e: list(map(str, e.absolute_path)))]


def needs_problems(wf: Workflow) -> list[str]:
    problems = [f"{wf.name}: job {name} needs {dep}, which is not a job here"
                for name, job in wf.jobs.items() for dep in needs(job) if dep not in wf.jobs]
    # `needs.<job>.outputs.<name>` must name a job this one needs, and an output that job declares.
    for name, job in wf.jobs.items():
        for dep, output in re.findall(r"needs\.([\w-]+)\.outputs\.([\w-]+)", text_of(job)):
            if dep not in needs(job):
                problems.append(f"{wf.name}: job {name} reads needs.{dep}.outputs.{output} but does not need {dep}")
            elif dep in wf.jobs and output not in declared_outputs(wf.jobs[dep]):
                problems.append(f"{wf.name}: job {name} reads needs.{dep}.outputs.{output}, which {dep} does not "
                                "declare")
    return problems


def called(job: dict) -> Workflow | None:
    uses = job.get("uses") or ""
    path = ROOT / uses[2:] if uses.startswith("./") else None
    return Workflow(path.name, path.read_text()) if path and path.is_file() else None


def declared_outputs(job: dict) -> set[str]:
    if "uses" in job:
        target = called(job)
        call = (target.triggers.get("workflow_call") or {}) if target else {}
        return set(call.get("outputs") or {})
    return set(job.get("outputs") or {})


LEVELS = {"none": 0, "read": 1, "write": 2}


def granted(permissions: Any, scope: str) -> int:
    if permissions is None:
        return LEVELS["write"]  # nothing set: the repository's default token, which the caller does not narrow
    if isinstance(permissions, str):
        return {"read-all": 1, "write-all": 2}.get(permissions, 0)
    return LEVELS.get(permissions.get(scope, "none"), 0)


def reusable_problems(wf: Workflow) -> list[str]:
    problems = []
    for name, job in wf.jobs.items():
        uses = job.get("uses")
        if not uses or not uses.startswith("./"):
            continue
        target = called(job)
        if target is None:
            problems.append(f"{wf.name}: job {name} calls {uses}, which does not exist")
            continue
        call = target.triggers.get("workflow_call")
        if "workflow_call" not in target.triggers:
            problems.append(f"{wf.name}: job {name} calls {uses}, which is not `on: workflow_call`")
            continue
        call = call or {}
        inputs, given = call.get("inputs") or {}, job.get("with") or {}
        problems += [f"{wf.name}: job {name} does not pass {uses}'s required input {key}"
                     for key, spec in inputs.items()
                     if (spec or {}).get("required") and "default" not in (spec or {}) and key not in given]
        problems += [f"{wf.name}: job {name} passes {key}, which {uses} does not declare" for key in given
                     if key not in inputs]
        secrets = job.get("secrets")
        problems += [f"{wf.name}: job {name} does not pass {uses}'s required secret {key}"
                     for key, spec in (call.get("secrets") or {}).items()
                     if (spec or {}).get("required") and secrets != "inherit" and key not in (secrets or {})]
        # A called job cannot get more than the calling job grants: GitHub refuses to start the run.
        caller = job.get("permissions", wf.data.get("permissions"))
        for callee_name, callee in target.jobs.items():
            wanted = callee.get("permissions", target.data.get("permissions"))
            if wanted is None:
                continue
            scopes = LEVELS if isinstance(wanted, str) else wanted
            for scope in scopes:
                if granted(wanted, scope) > granted(caller, scope):
                    problems.append(f"{wf.name}: job {name} grants {scope} less than {uses} job {callee_name} needs")
    return problems


USES_LINE = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<comment>\s+#.*)?$")


def pin_problems(wf: Workflow) -> list[str]:
    problems = []
    for number, line in enumerate(wf.text.splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or match["ref"].startswith("./"):
            continue
        ref = match["ref"].strip("'\"")
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                problems.append(f"{wf.name}:{number}: {ref} is not pinned to a digest")
        elif not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref):
            problems.append(f"{wf.name}:{number}: {ref} is not pinned to a full commit SHA")
        elif not re.search(r"#\s*v\d+(\.\d+)*\b", match["comment"] or ""):
            problems.append(f"{wf.name}:{number}: {ref} has no `# vX.Y.Z` comment saying which release it is")
    return problems


def fork_problems(wf: Workflow) -> list[str]:
    """Jobs that touch secrets must never run for a fork's pull request; privileged triggers never run its code."""
    problems = []
    if "pull_request_target" in wf.triggers:
        problems.append(f"{wf.name}: pull_request_target runs with secrets next to a fork's code; use "
                        "pull_request plus a workflow_run poster")
    if "pull_request" in wf.triggers:
        for name, job in wf.jobs.items():
            uses_secrets = re.search(r"secrets\.(?!GITHUB_TOKEN\b)", text_of(job)) or job.get("secrets") == "inherit"
            if uses_secrets and FORK_GUARD not in str(job.get("if", "")):
                problems.append(f"{wf.name}: job {name} uses secrets but runs for pull requests from forks "
                                f"(add `if: {FORK_GUARD}`)")
    if "workflow_run" in wf.triggers or "pull_request_target" in wf.triggers:
        for name, job in wf.jobs.items():
            for step in steps(job):
                if "run" in step or str(step.get("uses", "")).startswith("actions/checkout"):
                    problems.append(f"{wf.name}: job {name} runs with a write token and must not check out or run "
                                    f"code: {step.get('name') or step.get('uses') or step.get('run')!r}")
    # An expression expanded inside a script is code injection when its value comes from the event (a branch name,
    # a title): such values go through `env:`.
    for name, job in wf.jobs.items():
        for step in steps(job):
            script = str(step.get("run", "")) + str((step.get("with") or {}).get("script", ""))
            if re.search(r"\$\{\{[^}]*\b(github\.event\.|github\.head_ref)", script):
                problems.append(f"{wf.name}: job {name} expands event data inside a script; pass it through env")
    return problems


def oidc_problems(wf: Workflow) -> list[str]:
    problems = []
    if re.search(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)|aws-(access-key-id|secret-access-key)", wf.text):
        problems.append(f"{wf.name}: static AWS keys; use GitHub OIDC (role-to-assume)")
    for name, job in wf.jobs.items():
        for step in steps(job):
            if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials"):
                if not (step.get("with") or {}).get("role-to-assume"):
                    problems.append(f"{wf.name}: job {name} configures AWS credentials without role-to-assume")
                if granted(job.get("permissions", wf.data.get("permissions")), "id-token") < LEVELS["write"]:
                    problems.append(f"{wf.name}: job {name} assumes a role through OIDC without id-token: write")
    return problems


def deploy_problems(wf: Workflow) -> list[str]:
    """dev, then staging after dev, then prod after staging on the `prod` environment; the images built first and
    their digests pinned before `pulumi up`; one run per stack; staging and prod on the private runner."""
    problems = []
    by_stack: dict[str, str] = {}
    for name, job in wf.jobs.items():
        if environment(job) in STACKS:
            if environment(job) in by_stack:
                problems.append(f"{wf.name}: two jobs deploy {environment(job)}")
            by_stack[environment(job)] = name
    missing = [s for s in STACKS if s not in by_stack]
    if missing:
        return problems + [f"{wf.name}: no job on the {s} environment" for s in missing]
    if "pull_request" in wf.triggers or "pull_request_target" in wf.triggers:
        problems.append(f"{wf.name}: a deploy must not run for pull requests")
    if ((wf.triggers.get("push") or {}).get("branches") or []) != ["main"]:
        problems.append(f"{wf.name}: deploys run on push to main only")
    images = [n for n, j in wf.jobs.items() if j.get("uses") == "./.github/workflows/images.yml"]
    if not images:
        problems.append(f"{wf.name}: no job calls ./.github/workflows/images.yml")
    elif "workflow_dispatch" in wf.triggers and "github.ref == 'refs/heads/main'" not in str(
            wf.jobs[images[0]].get("if", "")):
        problems.append(f"{wf.name}: a dispatch from another branch would deploy it: guard {images[0]} with "
                        "`if: github.ref == 'refs/heads/main'`")
    order = [(by_stack["staging"], by_stack["dev"]), (by_stack["prod"], by_stack["staging"])]
    problems += [f"{wf.name}: {later} does not wait for {earlier}" for later, earlier in order
                 if earlier not in ancestors(wf, later)]
    problems += [f"{wf.name}: {by_stack['dev']} waits for {by_stack[s]}" for s in ("staging", "prod")
                 if by_stack[s] in ancestors(wf, by_stack["dev"])]
    groups = {}
    for stack, name in by_stack.items():
        job = wf.jobs[name]
        if images and images[0] not in needs(job):
            problems.append(f"{wf.name}: {name} does not need {images[0]}, so it cannot read the image digests")
        concurrency = job.get("concurrency")
        group = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
        if not group or stack not in str(group) or "${{" in str(group):
            problems.append(f"{wf.name}: {name} has no concurrency group of its own stack (one run per stack)")
        elif not isinstance(concurrency, dict) or concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{wf.name}: {name} must set cancel-in-progress: false (never stop a pulumi up)")
        groups.setdefault(group, []).append(name)
        if (job.get("env") or {}).get("STACK") != stack:
            problems.append(f"{wf.name}: {name} deploys the {stack} environment but its STACK is not {stack}")
        scripts = [str(s.get("run", "")) for s in steps(job)]
        up = next((i for i, s in enumerate(scripts) if re.search(r"^\s*pulumi up\b", s, re.M)), None)
        pin = next((i for i, s in enumerate(scripts) if "pulumi config set --path" in s and "images.digests" in s),
                   None)
        if up is None or not all(f in scripts[up] for f in ("--yes", "--policy-pack policies", '--stack "$STACK"')):
            problems.append(f"{wf.name}: {name} has no `pulumi up --stack \"$STACK\" --yes --policy-pack policies`")
        elif pin is None or (pin, scripts[pin].index("images.digests")) > (up, scripts[up].index("pulumi up")):
            problems.append(f"{wf.name}: {name} does not pin the image digests before pulumi up")
        if stack != "dev":
            if "vars.PRIVATE_RUNNER_LABEL" not in str(job.get("runs-on")):
                problems.append(f"{wf.name}: {name} does not run on vars.PRIVATE_RUNNER_LABEL")
            guards = [s for s in steps(job) if "PRIVATE_RUNNER_LABEL == ''" in str(s.get("if", ""))
                      and f"env.STACK != '{stack}'" not in str(s.get("if")) and "::error::" in str(s.get("run"))]
            if not guards:
                problems.append(f"{wf.name}: {name} does not fail with ::error:: when PRIVATE_RUNNER_LABEL is unset")
    problems += [f"{wf.name}: {' and '.join(names)} share the concurrency group {group}"
                 for group, names in groups.items() if len(names) > 1]
    return problems


CHECKS: dict[str, Callable[[Workflow], list[str]]] = {
    "schema": schema_problems, "needs": needs_problems, "reusable": reusable_problems, "pins": pin_problems,
    "forks": fork_problems, "oidc": oidc_problems}


# --- the shipped workflows pass ------------------------------------------------------------------------------------

@pytest.mark.parametrize("check", CHECKS)
def test_every_workflow_passes(check):
    workflows = load_all()
    assert {"preview.yml", "pr-comment.yml", "deploy.yml"} <= set(workflows)
    assert [p for wf in workflows.values() for p in CHECKS[check](wf)] == []


def test_deploy_goes_dev_then_staging_then_prod_one_run_per_stack():
    assert deploy_problems(load_all()["deploy.yml"]) == []


def test_the_vendored_schema_is_upstreams_file_verbatim():
    record = json.loads((ROOT / "upstream" / "SOURCES.json").read_text())["schemas"]
    entry = record["schemas/github-workflow/github-workflow.json"]
    assert (entry["repository"], entry["path"], entry["license"]) == (
        "https://github.com/SchemaStore/schemastore", "src/schemas/json/github-workflow.json", "Apache-2.0")
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == entry["sha256"]
    assert "schemas/github-workflow/NOTICE" in record


def test_pulumi_cli_matches_the_sdk_pinned_in_requirements():
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)[1]
    for wf in load_all().values():
        uses_pulumi = "pulumi/actions@" in wf.text
        assert not uses_pulumi or (wf.data.get("env") or {}).get("PULUMI_VERSION") == sdk, wf.name
        for job in wf.jobs.values():
            for step in steps(job):
                if str(step.get("uses", "")).startswith("pulumi/actions@"):
                    assert step["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}", wf.name


def test_offline_job_needs_no_secret_and_hands_its_comment_to_the_poster():
    workflows = load_all()
    preview, poster = workflows["preview.yml"], workflows["pr-comment.yml"]
    offline = preview.jobs["offline"]
    assert "secrets." not in text_of(offline) and "if" not in offline
    assert offline["permissions"] == {"contents": "read"}
    assert preview.data["permissions"] == {"contents": "read"}
    checkout = next(s for s in steps(offline) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    scripts = "\n".join(str(s.get("run", "")) for s in steps(offline))
    assert "bash .ci/run" in scripts and 'make summary BASE="$BASE_SHA"' in scripts
    # `make summary` is what runs the diff, the cost and the policy check, as it does locally.
    recipe = (ROOT / "Makefile").read_text().split("\nsummary:", 1)[1].split("\n\n", 1)[0]
    for command in ("$(MAKE) -s diff $(if $(BASE),BASE=$(BASE)) FORMAT=json", "$(MAKE) -s cost STACK=",
                    "-m offline.policy_check --stack", "-m offline.pr_comment --diff"):
        assert command in recipe
    upload = next(s for s in steps(offline) if s.get("uses", "").startswith("actions/upload-artifact@"))
    download = next(s for s in steps(poster.jobs["comment"]) if s.get("uses", "").startswith("actions/download-"))
    assert upload["with"]["name"] == download["with"]["name"] == pr_comment.ARTIFACT
    assert poster.triggers["workflow_run"]["workflows"] == [preview.data["name"]]
    post = next(s for s in steps(poster.jobs["comment"]) if s.get("uses", "").startswith("actions/github-script@"))
    assert post["env"]["MARKER"] == pr_comment.MARKER
    assert int(post["env"]["MAX_BYTES"]) == pr_comment.MAX_COMMENT_BYTES
    assert "head.sha === HEAD_SHA" in post["with"]["script"]  # the pull request comes from the event, not the file


# --- each check fails on a broken copy -----------------------------------------------------------------------------

def broken(name: str, mutate: Callable[[dict], None]) -> Workflow:
    wf = load_all()[name].copy()
    mutate(wf.data)
    return wf


def retext(name: str, old: str, new: str) -> Workflow:
    original = load_all()[name]
    assert original.text.count(old) >= 1, old
    return Workflow(name, original.text.replace(old, new))


def test_schema_check_catches_what_github_would_refuse():
    wf = broken("deploy.yml", lambda d: d["jobs"]["dev"].update({"runs_on": "ubuntu-24.04"}))
    assert any("jobs/dev" in p for p in schema_problems(wf))
    wf = broken("preview.yml", lambda d: d["jobs"]["offline"]["permissions"].update({"contents": "admin"}))
    assert any("jobs/offline" in p for p in schema_problems(wf))
    wf = broken("pr-comment.yml", lambda d: d.pop("jobs"))
    assert schema_problems(wf) == ["pr-comment.yml: (top): 'jobs' is a required property"]


def test_needs_check_catches_a_missing_job_and_an_undeclared_output():
    wf = broken("deploy.yml", lambda d: d["jobs"]["prod"].update({"needs": ["images", "stagign"]}))
    assert needs_problems(wf) == ["deploy.yml: job prod needs stagign, which is not a job here"]
    wf = broken("deploy.yml", lambda d: d["jobs"]["staging"].update({"needs": ["dev"]}))
    assert needs_problems(wf) == [
        "deploy.yml: job staging reads needs.images.outputs.digests but does not need images"]
    wf = retext("deploy.yml", "needs.images.outputs.digests", "needs.images.outputs.digest")
    assert set(needs_problems(wf)) == {f"deploy.yml: job {s} reads needs.images.outputs.digest, which images does "
                                       "not declare" for s in STACKS}


def test_reusable_check_catches_a_missing_file_a_missing_input_and_too_few_permissions(tmp_path, monkeypatch):
    wf = broken("deploy.yml", lambda d: d["jobs"]["images"].update({"uses": "./.github/workflows/imagez.yml"}))
    assert reusable_problems(wf) == ["deploy.yml: job images calls ./.github/workflows/imagez.yml, which does "
                                     "not exist"]
    wf = broken("deploy.yml", lambda d: d["jobs"]["images"].update({"with": {"unknown-input": "x"}}))
    assert "deploy.yml: job images passes unknown-input, which ./.github/workflows/images.yml does not declare" \
        in reusable_problems(wf)
    # A called workflow of our own with a required input and an OIDC job, called without either.
    callee = tmp_path / ".github" / "workflows" / "callee.yml"
    callee.parent.mkdir(parents=True)
    callee.write_text("on:\n  workflow_call:\n    inputs:\n      sha:\n        type: string\n        required: true\n"
                      "jobs:\n  build:\n    runs-on: ubuntu-24.04\n    permissions:\n      id-token: write\n"
                      "    steps:\n      - run: 'true'\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    caller = Workflow("caller.yml", "on: push\njobs:\n  call:\n    uses: ./.github/workflows/callee.yml\n"
                                    "    permissions:\n      contents: read\n")
    assert reusable_problems(caller) == [
        "caller.yml: job call does not pass ./.github/workflows/callee.yml's required input sha",
        "caller.yml: job call grants id-token less than ./.github/workflows/callee.yml job build needs"]


def lines_with(name: str, needle: str) -> list[int]:
    return [n for n, line in enumerate(load_all()[name].text.splitlines(), 1) if needle in line]


def test_pin_check_catches_a_tag_a_short_sha_and_a_missing_version_comment():
    setup_python = "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97"
    assert len(lines_with("preview.yml", setup_python)) == 2
    assert pin_problems(retext("preview.yml", setup_python, "actions/setup-python@v7")) == [
        f"preview.yml:{n}: actions/setup-python@v7 is not pinned to a full commit SHA"
        for n in lines_with("preview.yml", setup_python)]
    [script] = lines_with("pr-comment.yml", "actions/github-script@")
    assert pin_problems(retext("pr-comment.yml", "@ed597411d8f924073f98dfc5c65a23a2325f34cd", "@ed597411")) == [
        f"pr-comment.yml:{script}: actions/github-script@ed597411 is not pinned to a full commit SHA"]
    assert pin_problems(retext("pr-comment.yml", "  # v8.0.0\n", "\n")) == [
        f"pr-comment.yml:{script}: actions/github-script@ed597411d8f924073f98dfc5c65a23a2325f34cd has no "
        "`# vX.Y.Z` comment saying which release it is"]


def test_fork_check_catches_secrets_on_forks_and_code_in_the_privileged_workflow():
    wf = broken("preview.yml", lambda d: d["jobs"]["preview"].pop("if"))
    assert fork_problems(wf) == [f"preview.yml: job preview uses secrets but runs for pull requests from forks "
                                 f"(add `if: {FORK_GUARD}`)"]
    wf = broken("preview.yml", lambda d: d["jobs"]["offline"]["steps"][2].update(
        {"env": {"TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}}))
    assert fork_problems(wf) == [f"preview.yml: job offline uses secrets but runs for pull requests from forks "
                                 f"(add `if: {FORK_GUARD}`)"]
    wf = broken("pr-comment.yml", lambda d: d["jobs"]["comment"]["steps"].insert(
        0, {"uses": "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"}))
    assert fork_problems(wf) == ["pr-comment.yml: job comment runs with a write token and must not check out or "
                                 "run code: 'actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1'"]
    wf = broken("pr-comment.yml", lambda d: d["on"].update({"pull_request_target": {}}))
    assert fork_problems(wf)[0].startswith("pr-comment.yml: pull_request_target runs with secrets")
    wf = retext("pr-comment.yml", "const { MARKER,", "const branch = '${{ github.event.workflow_run.head_branch }}';"
                                                     "\n            const { MARKER,")
    assert fork_problems(wf) == ["pr-comment.yml: job comment expands event data inside a script; pass it through env"]


def test_oidc_check_catches_static_keys_and_a_missing_id_token():
    wf = retext("deploy.yml", "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
                "aws-access-key-id: ${{ secrets.AWS_ACCESS_KEY_ID }}")
    assert oidc_problems(wf)[0] == "deploy.yml: static AWS keys; use GitHub OIDC (role-to-assume)"
    wf = broken("deploy.yml", lambda d: d["jobs"]["prod"].update({"permissions": {"contents": "read"}}))
    assert oidc_problems(wf) == ["deploy.yml: job prod assumes a role through OIDC without id-token: write"]


@pytest.mark.parametrize("mutate, problem", [
    pytest.param(lambda d: d["jobs"]["prod"].update({"needs": ["images", "dev"]}),
                 "deploy.yml: prod does not wait for staging", id="prod-skips-staging"),
    pytest.param(lambda d: d["jobs"]["staging"].update({"needs": ["images"]}),
                 "deploy.yml: staging does not wait for dev", id="staging-skips-dev"),
    pytest.param(lambda d: d["jobs"]["prod"].update({"environment": "production"}),
                 "deploy.yml: no job on the prod environment", id="prod-without-its-environment"),
    pytest.param(lambda d: d["jobs"]["staging"].update({"concurrency": {"group": "deploy",
                                                                        "cancel-in-progress": False}}),
                 "deploy.yml: staging has no concurrency group of its own stack (one run per stack)",
                 id="shared-concurrency"),
    pytest.param(lambda d: d["jobs"]["dev"]["concurrency"].update({"cancel-in-progress": True}),
                 "deploy.yml: dev must set cancel-in-progress: false (never stop a pulumi up)", id="cancel-up"),
    pytest.param(lambda d: d["jobs"]["prod"].pop("concurrency"),
                 "deploy.yml: prod has no concurrency group of its own stack (one run per stack)",
                 id="no-concurrency"),
    pytest.param(lambda d: d["jobs"]["staging"].update({"runs-on": "ubuntu-24.04"}),
                 "deploy.yml: staging does not run on vars.PRIVATE_RUNNER_LABEL", id="staging-public-runner"),
    pytest.param(lambda d: d["jobs"]["prod"].update({"steps": d["jobs"]["prod"]["steps"][1:]}),
                 "deploy.yml: prod does not fail with ::error:: when PRIVATE_RUNNER_LABEL is unset",
                 id="no-runner-guard"),
    pytest.param(lambda d: d["jobs"]["staging"]["steps"][-1].update(
        {"run": d["jobs"]["staging"]["steps"][-1]["run"].replace(" --policy-pack policies", "")}),
                 "deploy.yml: staging has no `pulumi up --stack \"$STACK\" --yes --policy-pack policies`",
                 id="up-without-policies"),
    pytest.param(lambda d: d["jobs"]["dev"]["steps"][-1].update(
        {"run": "\n".join(line for line in d["jobs"]["dev"]["steps"][-1]["run"].splitlines()
                          if "pulumi config set" not in line)}),
                 "deploy.yml: dev does not pin the image digests before pulumi up", id="no-digests"),
    pytest.param(lambda d: d["jobs"]["prod"]["env"].update({"STACK": "staging"}),
                 "deploy.yml: prod deploys the prod environment but its STACK is not prod", id="wrong-stack"),
    pytest.param(lambda d: d["jobs"]["images"].pop("if"),
                 "deploy.yml: a dispatch from another branch would deploy it: guard images with "
                 "`if: github.ref == 'refs/heads/main'`", id="dispatch-from-a-branch"),
    pytest.param(lambda d: d["on"].update({"push": {"branches": ["main", "release/*"]}}),
                 "deploy.yml: deploys run on push to main only", id="push-from-other-branches"),
])
def test_deploy_check_catches_each_broken_promise(mutate, problem):
    assert deploy_problems(broken("deploy.yml", mutate)) == [problem]
