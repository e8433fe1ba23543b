"""`make diff BASE=<git rev> [FORMAT=json]`: what a change does to each stack, from two offline plans.

Each stack is planned with `offline.plan --format json` at BASE (exported with `git archive` into a temporary folder
and planned with that revision's own code, so nothing is written into the repository's .git) and at the working tree.
The two plans are compared by URN: added, removed, changed (property paths, old -> new, secrets masked). Replacements
and removals of resources that hold data or identity come first; which input changes force a replacement, and which
types hold data, is `offline/replacement_rules.yaml`. Where a tree has `offline/cost.py`, each stack's monthly cost
before -> after comes from it.

Exit status: 0 when every stack's diff was computed; 1 when a stack's could not be (its `error` says why); 2 when BASE
cannot be resolved or the repository cannot be read.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = Path(__file__).with_name("replacement_rules.yaml")
SECRET = "[secret]"  # what offline/harness.py records in place of a secret value
STACKS = ("dev", "staging", "prod")
ROOT_TYPE = "pulumi:pulumi:Stack"
OPTION_FIELDS = ("protect", "retainOnDelete", "provider")  # resource options a reviewer sees change, besides inputs
PLAN_TIMEOUT_S = 600
SDK_PACKAGES = ("pulumi_aws", "pulumi_kubernetes", "pulumi_random", "pulumi_tls")
_MISSING = object()
JSON_STRING = object()  # a path step into a string that holds a JSON document


class DiffError(Exception):
    """The diff cannot be computed at all (bad revision, not a git checkout)."""


class PlanError(Exception):
    """One tree's plan of one stack failed."""


# --- the replacement table ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One row of offline/replacement_rules.yaml."""

    type: str
    stateful: bool
    reason: str  # what it holds (stateful) or why it holds nothing
    replace_on: tuple[str, ...] = ()
    replace_when_removed: tuple[str, ...] = ()
    unless_mutable: tuple[tuple[str, ...], str] | None = None  # (paths, provider flag that makes them updatable)
    stateful_if: str | None = None  # stateful only where this input is set (a StatefulSet with volume templates)
    source: str | None = None

    @property
    def judges_replacement(self) -> bool:
        return bool(self.replace_on or self.replace_when_removed or self.unless_mutable)


@dataclass(frozen=True)
class Rules:
    types: dict[str, Rule]
    kubernetes_objects: tuple[str, ...]
    kubernetes_source: str

    def rule(self, type_: str) -> Rule | None:
        return self.types.get(type_)

    def replace_paths(self, type_: str) -> tuple[str, ...]:
        """Paths whose change replaces a resource of this type (conditional ones excluded)."""
        rule = self.rule(type_)
        own = rule.replace_on if rule else ()
        return (*self.kubernetes_objects, *own) if is_kubernetes_object(type_) else own


def is_kubernetes_object(type_: str) -> bool:
    """Objects with metadata (built-in kinds and custom resources); Helm releases are not Kubernetes objects."""
    return type_.startswith("kubernetes:") and not type_.startswith("kubernetes:helm.sh/")


def load_rules(path: Path = RULES_FILE) -> Rules:
    raw = yaml.safe_load(path.read_text())
    types = {}
    for type_, row in (raw.get("types") or {}).items():
        mutable = row.get("replace_on_unless_mutable")
        types[type_] = Rule(
            type=type_, stateful=bool(row["stateful"]), reason=row.get("holds") or row.get("why_not") or "",
            replace_on=tuple(row.get("replace_on") or ()),
            replace_when_removed=tuple(row.get("replace_when_removed") or ()),
            unless_mutable=(tuple(mutable["paths"]), mutable["provider_flag"]) if mutable else None,
            stateful_if=row.get("stateful_if"), source=row.get("source"))
    objects = raw.get("kubernetes_objects") or {}
    return Rules(types=types, kubernetes_objects=tuple(objects.get("replace_on") or ()),
                 kubernetes_source=objects.get("source") or "")


# --- property paths -------------------------------------------------------------------------------------------------

def parse_path(path: str) -> list[str]:
    """`spec.containers[*].image` -> ["spec", "containers", "*", "image"] (the table's notation)."""
    return [part for part in re.split(r"\.|\[|\]", path) if part]


def values_at(value: Any, parts: list[str]) -> list[Any]:
    """Every value at a parsed path; `*` (or an index) walks into lists. Missing keys give nothing."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, list):
        if head == "*":
            return [v for item in value for v in values_at(item, rest)]
        if head.isdigit() and int(head) < len(value):
            return values_at(value[int(head)], rest)
        return []
    if isinstance(value, dict) and head in value:
        return values_at(value[head], rest)
    return []


_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def format_path(parts: tuple) -> str:
    """Pulumi's property-path notation, `a.b[0]["app.kubernetes.io/name"]`; `(json)` steps into a JSON string."""
    text = ""
    for part in parts:
        if part is JSON_STRING:
            text += "(json)"
        elif isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def changes(old: Any, new: Any, path: tuple = ()) -> list[tuple[tuple, Any, Any]]:
    """Leaf-level differences between two JSON values; lists are compared element by element, and strings that both
    hold JSON documents are compared as documents."""
    if old == new and type(old) is type(new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += changes(old.get(key, _MISSING), new.get(key, _MISSING), (*path, key))
        return found
    if isinstance(old, list) and isinstance(new, list):
        found = []
        for i in range(max(len(old), len(new))):  # by index, as the engine compares lists; a longer tail is added
            found += changes(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING, (*path, i))
        return found
    decoded = _json_document(old), _json_document(new)
    if None not in decoded:  # an IAM policy or a Helm values string: show which part of the document changed
        return changes(*decoded, (*path, JSON_STRING))
    return [(path, old, new)]


def _json_document(value: Any) -> dict | list | None:
    if not isinstance(value, str) or not value.lstrip().startswith(("{", "[")):
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, (dict, list)) else None


# --- secrets --------------------------------------------------------------------------------------------------------

def holds_secret(value: Any) -> bool:
    if isinstance(value, str):
        return SECRET in value
    if isinstance(value, dict):
        return any(holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_secret(v) for v in value)
    return False


@functools.cache
def _sdk_classes() -> dict[str, tuple[str, str]]:
    """Type token -> (module, class) for every resource the installed Pulumi SDKs declare, read from each package's
    registration table without importing the package."""
    found = {}
    for package in SDK_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        text = Path(spec.origin).read_text()
        for name in ("resource_modules", "resource_packages"):
            match = re.search(name + r'="""(.*?)"""', text, re.S)
            for entry in json.loads(match.group(1)) if match else []:
                if "classes" in entry:
                    found.update({token: (entry["fqn"], cls) for token, cls in entry["classes"].items()})
                elif "token" in entry:
                    found[entry["token"]] = (entry["fqn"], entry.get("class", "Provider"))
    return found


@functools.cache
def sdk_class(type_: str) -> type | None:
    where = _sdk_classes().get(type_)
    if where is None:
        return None
    try:
        return getattr(importlib.import_module(where[0]), where[1], None)
    except ImportError:
        return None


@functools.cache
def secret_inputs(type_: str) -> frozenset[str]:
    """Top-level properties the SDK itself marks secret for this type (its `additional_secret_outputs`): the engine
    shows them as secret whatever the program passed, so the diff masks them even where a plan has them in plain."""
    cls = sdk_class(type_)
    if cls is None:
        return frozenset()
    import inspect  # only needed here; keeps module import light for the common path
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return frozenset()
    names = set()
    for listed in re.findall(r"additional_secret_outputs=\[([^\]]*)\]", source):
        names.update(re.findall(r'"([^"]+)"', listed))
    return frozenset(names)


def mask(type_: str, parts: tuple, old: Any, new: Any) -> tuple[Any, Any]:
    """Both sides of one change, with secrets hidden. When either side is secret both are shown as secret, so a value
    that stopped being secret is not revealed next to its masked past."""
    secret_path = bool(parts) and isinstance(parts[0], str) and parts[0] in secret_inputs(type_)
    if secret_path or holds_secret(old) or holds_secret(new):
        return (None if old is _MISSING else SECRET), (None if new is _MISSING else SECRET)
    return (None if old is _MISSING else old), (None if new is _MISSING else new)


# --- comparing two plans --------------------------------------------------------------------------------------------

def _provider_flag(plan: dict, resource: dict, flag: str) -> bool:
    provider = next((r for r in plan["resources"] if r["urn"] == resource.get("provider")), None)
    value = (provider or {}).get("inputs", {}).get(flag)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def replacing_properties(rules: Rules, old: dict, new: dict, new_plan: dict) -> list[str]:
    """The table's paths whose value differs between the two records of one resource."""
    type_ = new["type"]
    before, after = old.get("inputs") or {}, new.get("inputs") or {}
    paths = list(rules.replace_paths(type_))
    rule = rules.rule(type_)
    if rule and rule.unless_mutable:
        mutable_paths, flag = rule.unless_mutable
        immutable = after.get("immutable") is True
        if immutable or not _provider_flag(new_plan, new, flag):
            paths += mutable_paths
    hits = [p for p in paths if values_at(before, parse_path(p)) != values_at(after, parse_path(p))]
    if rule:
        hits += [p for p in rule.replace_when_removed
                 if values_at(before, parse_path(p)) and not values_at(after, parse_path(p))]
    return sorted(set(hits))


def is_stateful(rules: Rules, resource: dict, *others: dict) -> bool:
    rule = rules.rule(resource["type"])
    if rule is None or not rule.stateful:
        return False
    if not rule.stateful_if:
        return True
    return any(values_at(r.get("inputs") or {}, parse_path(rule.stateful_if)) not in ([], [None], [[]], [{}])
               for r in (resource, *others))


def _judged(rules: Rules, resource: dict) -> bool:
    """Whether the table can tell a replacement of this resource from an in-place change."""
    rule = rules.rule(resource["type"])
    return (not resource.get("custom", True) or is_kubernetes_object(resource["type"])
            or bool(rule and rule.judges_replacement))


def _source(rules: Rules, type_: str, properties: list[str]) -> str:
    """The row's source, unless only the generic Kubernetes metadata rule fired."""
    rule = rules.rule(type_)
    if is_kubernetes_object(type_) and set(properties) <= set(rules.kubernetes_objects):
        return rules.kubernetes_source
    return (rule.source if rule else None) or rules.kubernetes_source


def _entry(resource: dict) -> dict:
    return {"urn": resource["urn"], "type": resource["type"], "name": resource["name"]}


def diff_plans(old_plan: dict | None, new_plan: dict | None, rules: Rules | None = None) -> dict[str, Any]:
    """One stack's section of the report (without cost): either plan may be None (the stack is new or gone)."""
    rules = rules or load_rules()
    empty = {"resources": []}
    old_plan, new_plan = old_plan or empty, new_plan or empty
    before = {r["urn"]: r for r in old_plan["resources"] if r["type"] != ROOT_TYPE}
    after = {r["urn"]: r for r in new_plan["resources"] if r["type"] != ROOT_TYPE}

    added = [_entry(after[u]) for u in sorted(after.keys() - before.keys())]
    removed = []
    for urn in sorted(before.keys() - after.keys()):
        r = before[urn]
        removed.append({**_entry(r), "stateful": is_stateful(rules, r), "protect": bool(r.get("protect")),
                        "retainOnDelete": bool(r.get("retainOnDelete"))})
    removed.sort(key=lambda e: (not e["stateful"], e["urn"]))

    changed, replacements, unjudged = [], [], 0
    for urn in sorted(before.keys() & after.keys()):
        old, new = before[urn], after[urn]
        found = changes(old.get("inputs") or {}, new.get("inputs") or {})
        found += [((f"options.{field}",), old.get(field), new.get(field))
                  for field in OPTION_FIELDS if old.get(field) != new.get(field)]
        if not found:
            continue
        shown = []
        for parts, a, b in found:
            a, b = mask(new["type"], parts, a, b)
            shown.append({"path": parts[0] if parts and parts[0].startswith("options.") else format_path(parts),
                          "old": a, "new": b})
        properties = replacing_properties(rules, old, new, new_plan)
        changed.append({**_entry(new), "replace": bool(properties), "changes": shown})
        if properties:
            replacements.append({**_entry(new), "properties": properties, "stateful": is_stateful(rules, old, new),
                                 "source": _source(rules, new["type"], properties), "protect": bool(old.get("protect")),
                                 "retainOnDelete": bool(old.get("retainOnDelete"))})
        elif not _judged(rules, new):
            unjudged += 1
    replacements.sort(key=lambda e: (not e["stateful"], e["urn"]))

    counts = {"add": len(added), "change": sum(1 for c in changed if not c["replace"]), "delete": len(removed),
              "replace": len(replacements)}
    return {"error": None, "counts": counts, "replacements": replacements, "added": added, "removed": removed,
            "changed": changed, "cost": {"before": None, "after": None}, "_unjudged": unjudged}


# --- running the two trees ------------------------------------------------------------------------------------------

def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise DiffError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result


def default_base(repo: Path) -> str:
    found = _git(repo, "rev-parse", "--verify", "--quiet", "origin/main^{commit}", check=False)
    return "origin/main" if found.returncode == 0 else "main"


def resolve(repo: Path, rev: str) -> str:
    result = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if result.returncode != 0:
        raise DiffError(f"cannot resolve BASE {rev!r} to a commit in {repo}")
    return result.stdout.strip()


def head_state(repo: Path) -> str:
    """HEAD's commit when the working tree is clean, else 'working tree' (what is planned is not a commit)."""
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=normal").stdout.strip()
    return "working tree" if dirty else _git(repo, "rev-parse", "HEAD").stdout.strip()


def export(repo: Path, commit: str, dest: Path) -> None:
    """The commit's files into dest, through `git archive`: no worktree, nothing written under .git."""
    dest.mkdir(parents=True)
    proc = subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", commit], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            archive.extractall(dest, filter="data")
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0:
            raise DiffError(f"git archive {commit}: {stderr.strip() or 'failed'}")


def _env() -> dict[str, str]:
    # A plan never needs credentials, and a PYTHONPATH or PULUMI_CONFIG from the caller must not leak into either tree.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "PULUMI_")) and k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(tree: Path, module: str, stack: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--stack", stack, "--format", "json"], cwd=tree, env=_env(),
                          capture_output=True, text=True, timeout=PLAN_TIMEOUT_S)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


def plan_tree(tree: Path, stack: str) -> dict | None:
    """The tree's plan of the stack, or None where the tree has no such stack."""
    if not (tree / "stacks" / f"Pulumi.{stack}.yaml").exists():
        return None
    result = _run(tree, "offline.plan", stack)
    if result.returncode != 0:
        raise PlanError(_tail(result.stderr) or f"exit status {result.returncode}")
    return json.loads(result.stdout)


def cost_tree(tree: Path, stack: str) -> tuple[dict | None, str | None]:
    """(totals, why not) from the tree's own `offline.cost`, where it has one."""
    if not (tree / "offline" / "cost.py").exists():
        return None, "no offline/cost.py"
    if not (tree / "stacks" / f"Pulumi.{stack}.yaml").exists():
        return None, "no such stack"
    result = _run(tree, "offline.cost", stack)
    if result.returncode != 0:
        return None, f"offline.cost failed: {_tail(result.stderr, 2) or f'exit status {result.returncode}'}"
    try:
        total = json.loads(result.stdout)["total"]
        return {"idle_floor": float(total["idle_floor"]), "maximum": float(total["maximum"]),
                "lower_bound": bool(total.get("lower_bound"))}, None
    except (ValueError, KeyError, TypeError):
        return None, f"offline.cost failed: {_tail(result.stderr) or 'no total in its output'}"


def compute(base: str, stacks: list[str], repo: Path = ROOT, jobs: int | None = None) -> tuple[dict, dict]:
    """The report (the documented JSON) and, per stack, notes for the text output."""
    if not (repo / ".git").exists():
        _git(repo, "rev-parse", "--git-dir")  # raises DiffError with git's own words
    base_commit = resolve(repo, base)
    head_commit = head_state(repo)
    rules = load_rules()
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    report = {"base": base, "base_commit": base_commit, "head_commit": head_commit, "stacks": {}}
    notes: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        base_tree = Path(tmp) / "base"
        export(repo, base_commit, base_tree)
        trees = {"before": base_tree, "after": repo}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            plans = {(side, s): pool.submit(plan_tree, tree, s) for s in stacks for side, tree in trees.items()}
            costs = {(side, s): pool.submit(cost_tree, tree, s) for s in stacks for side, tree in trees.items()}
            for stack in stacks:
                notes[stack] = []
                section = _stack_section(stack, plans, rules)
                for side in trees:
                    total, why = costs[(side, stack)].result()
                    section["cost"][side] = total
                    if why and why != "no such stack":
                        notes[stack].append(f"cost {side}: not computed ({why})")
                unjudged = section.pop("_unjudged", 0)
                if unjudged:
                    notes[stack].append(f"{unjudged} changed resource{'s' if unjudged != 1 else ''} of types without "
                                        "replacement rules (offline/replacement_rules.yaml): shown as in-place changes")
                report["stacks"][stack] = section
    return report, notes


def _stack_section(stack: str, plans: dict, rules: Rules) -> dict:
    found = {}
    for side, where in (("before", "base"), ("after", "working tree")):
        try:
            found[side] = plans[(side, stack)].result()
        except PlanError as exc:
            return _error_section(f"the plan at the {where} failed: {exc}")
        except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as exc:
            return _error_section(f"the plan at the {where} could not be read: {type(exc).__name__}: {exc}")
    if found["before"] is None and found["after"] is None:
        return _error_section(f"no stacks/Pulumi.{stack}.yaml at the base or in the working tree")
    return diff_plans(found["before"], found["after"], rules)


def _error_section(message: str) -> dict:
    return {"error": message, "counts": {"add": 0, "change": 0, "delete": 0, "replace": 0}, "replacements": [],
            "added": [], "removed": [], "changed": [], "cost": {"before": None, "after": None}}


# --- text output ----------------------------------------------------------------------------------------------------

def _value(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _cost_line(cost: dict) -> str:
    before, after = cost.get("before") or {}, cost.get("after") or {}
    if not before and not after:
        return "cost per month: not available"
    parts = []
    for key, label in (("idle_floor", "idle floor"), ("maximum", "maximum")):
        a, b = before.get(key), after.get(key)
        delta = f" ({'+' if b - a >= 0 else '-'}{_money(abs(b - a))})" if a is not None and b is not None else ""
        at_least = [">=" if side.get("lower_bound") else "" for side in (before, after)]
        parts.append(f"{label} {at_least[0]}{_money(a)} -> {at_least[1]}{_money(b)}{delta}")
    bound = " (>= a lower bound: an unsourced price counts as $0)" if before.get("lower_bound") or after.get(
        "lower_bound") else ""
    return "cost per month: " + "; ".join(parts) + bound


def keep_flags(item: dict, command: str = "pulumi up") -> list[str]:
    """What the engine does instead of a plain replacement or deletion of `item` (also the PR comment's words)."""
    flags = []
    if item.get("protect"):
        flags.append(f"protected: {command} refuses until it is unprotected")
    if item.get("retainOnDelete"):
        flags.append("retainOnDelete: the old one stays in the account, outside the stack")
    return flags


def _keep_note(item: dict) -> str:
    flags = keep_flags(item)
    return f"  [{'; '.join(flags)}]" if flags else ""


def render_text(report: dict, notes: dict | None = None, rules: Rules | None = None) -> str:
    rules = rules or load_rules()
    notes = notes or {}
    head = report["head_commit"] if report["head_commit"] == "working tree" else report["head_commit"][:12]
    lines = [f"offline diff: base {report['base']} ({report['base_commit'][:12]}) -> {head}"]
    for stack, section in report["stacks"].items():
        lines.append("")
        if section["error"]:
            lines.append(f"{stack}: diff not computed: {section['error']}")
            continue
        c = section["counts"]
        lines.append(f"{stack}: {c['add']} to add, {c['change']} to change, {c['delete']} to delete, "
                     f"{c['replace']} to replace")
        lines.append(f"  {_cost_line(section['cost'])}")
        for item in section["replacements"]:
            if item["stateful"]:
                rule = rules.rule(item["type"])
                lines.append(f"  !! REPLACES {item['type']} {item['name']} ({', '.join(item['properties'])} forces "
                             f"a new one); it holds {rule.reason if rule else 'data'}{_keep_note(item)}")
        for item in section["removed"]:
            if item.get("stateful"):
                rule = rules.rule(item["type"])
                lines.append(f"  !! DELETES {item['type']} {item['name']}; it holds "
                             f"{rule.reason if rule else 'data'}{_keep_note(item)}")
        for item in section["added"]:
            lines.append(f"  + {item['type']} {item['name']}")
        for item in section["changed"]:
            mark = "+-" if item["replace"] else "~"
            lines.append(f"  {mark} {item['type']} {item['name']}{'  (replace)' if item['replace'] else ''}")
            for change in item["changes"]:
                lines.append(f"        {change['path']}: {_value(change['old'])} -> {_value(change['new'])}")
        for item in section["removed"]:
            lines.append(f"  - {item['type']} {item['name']}")
        if not (section["added"] or section["changed"] or section["removed"]):
            lines.append("  no changes")
        lines.extend(f"  note: {note}" for note in notes.get(stack, []))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="git revision to compare with (default: origin/main if it exists, else main)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stacks (default: all)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    bad = [s for s in stacks if not re.fullmatch(r"[A-Za-z0-9_-]+", s)]
    if bad or not stacks:
        print(f"error: bad --stacks {args.stacks!r}: give names like dev,staging,prod", file=sys.stderr)
        return 2
    try:
        report, notes = compute(args.base or default_base(ROOT), stacks)
    except DiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2) if args.format == "json" else render_text(report, notes)
    try:
        print(text)
    except BrokenPipeError:  # `make diff | head` is a normal way to read it
        sys.stderr.close()
    return 1 if any(section["error"] for section in report["stacks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
