"""The ordering referee: no resource may name another resource by a plain value unless it waits for it.

The engine orders creation only by dependencies: an input that holds an Output of resource S (or `depends_on=[S]`)
makes the engine create S first. An input holding S's name, ARN or id as a plain string carries no such edge, so on
a fresh stack the engine may call the API before S exists (Karpenter's access entry against a cluster still being
created: `ResourceNotFoundException` on the first `pulumi up`). Under mocks every Output is resolved, so such a
value looks exactly like a proper reference; what tells them apart is the dependency graph the SDK recorded.

What counts as naming S: an input value, anywhere in the inputs, equal to one of S's identities (offline/harness.py
records them: id, ARN and name outputs of AWS resources; the name of a Kubernetes Namespace, matched only against the
`namespace` a resource is placed in). Tags, labels, annotations and descriptions are free text, not references, and
are skipped; so are JSON documents held as strings (an IAM policy may name a resource that does not exist yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from offline.harness import Plan

# Input keys whose subtrees are free text: a cluster's name in a subnet tag is a label, not a call to the cluster;
# a random value's `keepers` copy values on purpose, to be regenerated when they change.
FREE_TEXT_KEYS = frozenset({"tags", "tagsAll", "defaultTags", "labels", "annotations", "description", "keepers"})


@dataclass(frozen=True)
class PlainReference:
    urn: str
    path: str
    value: str
    targets: tuple[str, ...]
    """Every resource with that identity (names are unique per type, not across types): the input waits for none."""

    def __str__(self) -> str:
        named = " or ".join(self.targets)
        return (f"{self.urn}\n    input {self.path} = {self.value!r} names {named} as a plain value, but does not "
                "depend on it: pass the resource's Output (or add depends_on) so the engine creates it first")


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in FREE_TEXT_KEYS:
                yield from _leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def ancestors(plan: Plan) -> dict[str, set[str]]:
    """Every resource the engine must finish before each resource: dependencies and the provider, transitively."""
    direct = {r["urn"]: {*r["dependsOn"], *([r["provider"]] if r["provider"] else [])} for r in plan.resources}
    done: dict[str, set[str]] = {}

    def visit(urn: str) -> set[str]:
        if urn not in done:
            done[urn] = set()  # a cycle cannot reach the engine; guard against infinite recursion only
            found: set[str] = set()
            for dep in direct.get(urn, ()):
                found |= {dep} | visit(dep)
            done[urn] = found
        return done[urn]

    for urn in direct:
        visit(urn)
    return done


def _namespace_of(resource: dict[str, Any]) -> tuple[str, Any] | None:
    inputs = resource["inputs"]
    if resource["type"] == "kubernetes:helm.sh/v3:Release":
        return "namespace", inputs.get("namespace")
    metadata = inputs.get("metadata")
    if resource["type"].startswith("kubernetes:") and isinstance(metadata, dict):
        return "metadata.namespace", metadata.get("namespace")
    return None


def _service(type_: str) -> str:
    return type_.split("/")[0]  # aws:eks/accessEntry:AccessEntry -> aws:eks


def _likely_targets(resource: dict[str, Any], targets: list[str]) -> list[str]:
    """A name two resources share (an EKS and an MSK cluster both called <project>-<stack>): an input of an EKS
    resource names the EKS one. Where no candidate is of the referring resource's own service, any may be meant,
    and waiting for one of them is accepted."""
    same = [t for t in targets if _service(t.split("::")[2].split("$")[-1]) == _service(resource["type"])]
    return same or targets


def plain_references(plan: Plan) -> list[PlainReference]:
    before = ancestors(plan)
    named_by: dict[str, list[str]] = {}
    namespaces: dict[str, str] = {}
    for r in plan.resources:
        if r["type"] == "kubernetes:core/v1:Namespace":
            namespaces.update({name: r["urn"] for name in r.get("identity", [])})
        else:
            for value in r.get("identity", []):
                named_by.setdefault(value, []).append(r["urn"])
    found = []
    for r in plan.resources:
        if not r["custom"]:
            continue
        waits_for = before[r["urn"]] | {r["urn"]}
        for path, value in _leaves(r["inputs"]):
            targets = _likely_targets(r, named_by.get(value, []) if isinstance(value, str) else [])
            if targets and not waits_for.intersection(targets):
                found.append(PlainReference(r["urn"], path, value, tuple(targets)))
        placed = _namespace_of(r)
        if placed and placed[1] in namespaces and namespaces[placed[1]] not in waits_for:
            found.append(PlainReference(r["urn"], placed[0], placed[1], (namespaces[placed[1]],)))
    return found
