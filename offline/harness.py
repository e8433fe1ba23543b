"""Run the real `__main__.py` under Pulumi's mocks and record every resource registration.

The Python SDK never reads stack files, so this reads `stacks/Pulumi.<stack>.yaml` itself and feeds the values in the
form the CLI would (strings; objects and lists as JSON). Each run happens in a fresh `contextvars.Context` so several
stacks can be planned in one process without leaking config or the root stack between them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from google.protobuf import json_format

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import DEFAULT_CALLER, PlatformMocks

ROOT = Path(__file__).resolve().parent.parent
SECRET = "[secret]"
UNKNOWN = "[unknown]"
STACKS = ("dev", "staging", "prod")


@dataclass
class Plan:
    """Everything one stack declares: resources in registration-independent order, and the stack outputs."""

    stack: str
    project: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    by_urn: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self):
        self.by_urn = {r["urn"]: r for r in self.resources}

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str, name: str) -> dict[str, Any]:
        found = [r for r in self.resources if r["type"] == type_ and r["name"] == name]
        if len(found) != 1:
            raise KeyError(f"expected one {type_} named {name!r}, found {len(found)}")
        return found[0]

    def children(self, urn: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["parent"] == urn]

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "project": self.project, "resources": self.resources, "outputs": self.outputs}


def project_name() -> str:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]


def stack_config(stack: str) -> tuple[dict[str, str], list[str]]:
    """Read a stack file into the flat `namespace:key -> string` map the language host hands to programs."""
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.relative_to(ROOT)}; stacks are: {', '.join(STACKS)}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    return flatten_config(raw, project_name())


def flatten_config(raw: dict[str, Any], project: str) -> tuple[dict[str, str], list[str]]:
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Encrypted values cannot be decrypted offline; the program sees a placeholder, marked secret.
            config[full_key] = SECRET
            secret_keys.append(full_key)
        elif isinstance(value, str):
            config[full_key] = value
        else:
            config[full_key] = json.dumps(value)
    return config, secret_keys


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, plus a record of each registration as the engine would receive it."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[dict[str, Any]] = []

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine does not qualify children of the root stack with the stack's type; match it.
        if parent and parent.split("::")[2] == "pulumi:pulumi:Stack":
            parent = ""
        return super().make_urn(parent, type_, name)

    def GetDeploymentInfo(self, request):
        # Advertising resource references makes the stock monitor flaky (pulumi/pulumi#6561); without the feature
        # the SDK sends URNs and IDs, which is also what makes references followable in the plan.
        info = super().GetDeploymentInfo(request)
        features = [f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)

    def SupportsFeature(self, request):
        if request.id == "resourceReferences":
            return type("SupportsFeatureResponse", (object,), {"hasSupport": False})
        return super().SupportsFeature(request)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self._mark_secret_outputs(response, request.additionalSecretOutputs)
        inputs = _plain(json_format.MessageToDict(request.object)) if request.object else {}
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
        self.records.append({
            "urn": response.urn,
            "id": response.id or None,
            "type": request.type,
            "name": request.name,
            "parent": request.parent or None,
            "provider": request.provider.rsplit("::", 1)[0] if request.provider else None,
            "custom": bool(request.custom),
            "inputs": inputs,
            "protect": bool(request.protect),
            "retainOnDelete": bool(request.retainOnDelete),
            "dependsOn": sorted(set(request.dependencies)),
            "ignoreChanges": sorted(request.ignoreChanges),
            "identity": _identity(request.type, inputs, response),
        })
        return response


    @staticmethod
    def _mark_secret_outputs(response, names) -> None:
        # The engine wraps outputs a provider declares secret (a generated password's `result`); the stock mock
        # monitor does not, which would let secrets leak into the plan as plain text.
        state = json_format.MessageToDict(response.object) if response.object else {}
        for name in names:
            if name in state:
                state[name] = {rpc._special_sig_key: rpc._special_secret_sig, "value": state[name]}
        if names:
            response.object.Clear()
            response.object.update(state)


# Outputs by which other resources name a resource (besides its id); the ordering referee looks for them.
IDENTITY_OUTPUTS = ("arn", "name", "bucket", "clusterName", "nodeGroupName", "identifier", "keyId")
# Inputs that are a resource's own name. Mocks echo every input back as an output, so an echoed input names the
# resource itself only for these keys; elsewhere (an add-on's `clusterName`, an event target's `arn`) it is a
# reference to another resource.
OWN_NAME_INPUTS = {"aws:s3/bucket:Bucket": {"bucket"}, "aws:msk/cluster:Cluster": {"clusterName"},
                   "aws:eks/nodeGroup:NodeGroup": {"nodeGroupName"}, "aws:rds/instance:Instance": {"identifier"}}


def _identity(type_: str, inputs: dict[str, Any], response) -> list[str]:
    """The values that identify a resource to the APIs that refer to it: its id, ARN and name outputs (AWS), or
    its name (a Kubernetes Namespace, which namespaced objects name)."""
    state = _plain(json_format.MessageToDict(response.object)) if response.object else {}
    if type_ == "kubernetes:core/v1:Namespace":
        name = (state.get("metadata") or {}).get("name")
        return [name] if isinstance(name, str) else []
    if not type_.startswith("aws:"):
        return []
    own = {"name", *OWN_NAME_INPUTS.get(type_, ())}
    values = [response.id, *(state.get(k) for k in IDENTITY_OUTPUTS if k not in inputs or k in own)]
    return sorted({v for v in values if isinstance(v, str) and v and v not in (SECRET, UNKNOWN)})


def _plain(value: Any) -> Any:
    """Engine wire values to plain JSON: secrets masked, whole floats as ints."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == rpc.UNKNOWN:
        return UNKNOWN
    return value


def _resolve_output(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    resolved = _sync_await(output.future())
    return SECRET if _sync_await(output.is_secret()) else _plain(json.loads(json.dumps(resolved, default=str)))


def run_program(stack: str, config: dict[str, str] | None = None, secret_keys: list[str] | None = None,
                program: Path | Callable[[], None] | None = None, caller_arn: str = DEFAULT_CALLER) -> Plan:
    """Run the program for `stack` (config from its stack file unless given) and return what it declared.

    `program` defaults to the real `__main__.py`; unit tests pass a function that declares one component.
    `caller_arn` is who runs it (what `aws sts get-caller-identity` would print).
    """
    if config is None:
        config, secret_keys = stack_config(stack)
    return contextvars.Context().run(_run, stack, config, secret_keys or [], program or ROOT / "__main__.py",
                                     caller_arn)


def _run(stack: str, config: dict[str, str], secret_keys: list[str], program: Path | Callable[[], None],
         caller_arn: str) -> Plan:
    project = project_name()
    try:
        asyncio.get_event_loop()
    except RuntimeError:  # an asyncio.run() earlier in this process leaves none, and the SDK's futures need one
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_all_config(config, secret_keys)
    region = config.get("aws:region", "us-east-1")
    mocks = PlatformMocks(region, caller_arn)
    monitor = RecordingMonitor(mocks)
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi_mocks.SETTINGS.rpc_manager.clear()
    body = program if callable(program) else lambda: runpy.run_path(str(program), run_name="__main__")
    _sync_await(run_pulumi_func(body))
    root = pulumi.runtime.get_root_resource()
    outputs = {name: _resolve_output(value) for name, value in sorted(root.outputs.items())}
    resources = sorted(monitor.records, key=lambda r: r["urn"])
    return Plan(stack=stack, project=project, resources=resources, outputs=outputs)
