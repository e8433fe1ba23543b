"""The pull-request comment: what a change does to each stack, from the offline diff, cost and policy check.

    python -m offline.pr_comment --diff diff.json --policy dev=policy-dev.json ... [--cost dev=cost-dev.json ...]
        [--tests success|failure|passed|failed|cancelled|skipped] [--run-url URL] [--out comment.md]

It answers a platform lead's first two questions first: what will be replaced or deleted that holds data or
identity, and what it costs. Then, per stack, the counts, the cost before -> after, the policy verdict, and the full
change list folded away. The body starts with MARKER, by which .github/workflows/pr-comment.yml finds and updates
the same comment on every push. Inputs are read leniently: a missing or broken file becomes a line in the comment,
because a pull request whose diff cannot be computed needs the comment most.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from offline.diff import keep_flags

MARKER = "<!-- ml-platform:pr-summary -->"
# GitHub refuses a comment body over 65,536 characters. Counting UTF-8 bytes is never below GitHub's count, however
# it counts characters (a character is at least one byte, and at most two UTF-16 units for four bytes).
MAX_COMMENT_BYTES = 65_536
STACK_ORDER = ("dev", "staging", "prod")
FLAGGED_SHOWN = 40
VIOLATIONS_SHOWN = 10
PROPERTIES_SHOWN = 20
VALUE_CHARS = 160
MESSAGE_CHARS = 400
ARTIFACT = "pr-summary"
TESTS = {"success": "✅ passed", "passed": "✅ passed", "failure": "❌ failed", "failed": "❌ failed",
         "cancelled": "⚪ cancelled", "skipped": "⚪ not run"}
# Escaped: GitHub renders text between two dollar signs on a line as math.
SYMBOLS = {"USD": "\\$", "EUR": "€", "GBP": "£"}


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"


def code(value: Any, limit: int = VALUE_CHARS) -> str:
    """A Markdown code span that survives any content: the fence is one backtick longer than any run inside."""
    shown = clip(" ".join(str(value).split()), limit)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") or not shown.strip() else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def plain(value: Any, limit: int = MESSAGE_CHARS) -> str:
    """Text from a tool (a policy message, an error) shown as text: no accidental links, HTML, tables or emphasis."""
    shown = clip(" ".join(str(value).split()), limit)
    return re.sub(r"([\\`*_\[\]<>|~#!])", r"\\\1", shown)


def link(url: Any) -> str:
    """A URL safe inside `[text](url)`, or "" for anything that is not a plain https URL."""
    if not isinstance(url, str) or not re.fullmatch(r"https://[^\s<>]+", url):
        return ""
    return url.replace("(", "%28").replace(")", "%29")


def value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def ordered(stacks: Iterable[str]) -> list[str]:
    known = [s for s in STACK_ORDER if s in stacks]
    return known + sorted(s for s in stacks if s not in STACK_ORDER)


# --- cost -----------------------------------------------------------------------------------------------------------

def money(amount: float, currency: str) -> str:
    symbol = SYMBOLS.get(currency)
    number = f"{abs(amount):,.2f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def cost_cell(cost: dict | None, key: str, currency: str) -> str:
    """`before → after (change)` for one figure: `idle_floor` or `maximum`; `≥` marks a lower bound (a price the
    table has no source for counts as zero)."""
    sides = [(cost or {}).get(side) or {} for side in ("before", "after")]
    before, after = (side.get(key) for side in sides)
    at_least = ["≥" if side.get("lower_bound") else "" for side in sides]
    if after is None:
        return "n/a"
    if before is None:
        return f"{at_least[1]}{money(after, currency)} (no estimate for the base)"
    change = after - before
    if round(change, 2) == 0:
        return f"{at_least[1]}{money(after, currency)} (no change)"
    sign = "+" if change > 0 else "-"
    percent = f", {sign}{abs(change) / before:.1%}" if before else ""
    return (f"{at_least[0]}{money(before, currency)} → {at_least[1]}{money(after, currency)} "
            f"({sign}{money(abs(change), currency)}{percent})")


# --- sections -------------------------------------------------------------------------------------------------------

def resource(item: dict) -> str:
    return f"{code(item.get('type', '?'))} {code(item.get('name', '?'))}"


def keep_note(item: dict) -> str:
    notes = keep_flags(item, command="`pulumi up`")
    return f" ({'; '.join(notes)})" if notes else ""


def flagged(stacks: dict[str, dict]) -> list[str]:
    """Replacements and deletions of resources that hold data or identity: the lines a reviewer must not miss."""
    lines = []
    for name in ordered(stacks):
        stack = stacks[name]
        for item in stack.get("replacements") or []:
            if item.get("stateful"):
                because = ", ".join(code(p) for p in item.get("properties") or []) or "a property"
                why = f" ([why]({link(item['source'])}))" if link(item.get("source")) else ""
                lines.append(f"**{name}** replaces {resource(item)}: {because} forces a new resource{why}"
                             f"{keep_note(item)}")
        for item in stack.get("removed") or []:
            if item.get("stateful"):
                lines.append(f"**{name}** deletes {resource(item)}{keep_note(item)}")
    return lines


def policy_cell(policy: dict | None) -> str:
    if policy is None:
        return "⚪ not run"
    if policy.get("error"):
        return "⚠️ could not run"
    violations = policy.get("violations") or []
    if not violations:
        return f"✅ {policy.get('policies', '?')} policies pass"
    return f"❌ {len(violations)} violation{'s' if len(violations) != 1 else ''}"


def policy_lines(name: str, policy: dict | None) -> list[str]:
    if policy is None or not (policy.get("error") or policy.get("violations")):
        return []
    if policy.get("error"):
        return [f"- **{name}**: the policy check could not run: {plain(policy['error'])}"]
    violations = policy["violations"]
    lines = [f"- **{name}**:"]
    for v in violations[:VIOLATIONS_SHOWN]:
        where = f" {code(v['urn'])}" if v.get("urn") else ""
        lines.append(f"  - {code(v.get('policy', '?'))}{where}: {plain(v.get('message', ''))}")
    if len(violations) > VIOLATIONS_SHOWN:
        lines.append(f"  - … and {len(violations) - VIOLATIONS_SHOWN} more")
    return lines


def count(stack: dict, key: str) -> str:
    return "—" if stack.get("error") else str((stack.get("counts") or {}).get(key, 0))


def detail_blocks(stack: dict) -> list[str]:
    """One block per resource, most consequential first; each block is kept or dropped whole when space runs out."""
    blocks = []
    changed = stack.get("changed") or []
    for item in stack.get("removed") or []:
        held = " (holds data or identity)" if item.get("stateful") else ""
        blocks.append(f"- deleted {resource(item)}{held}\n")
    for item in sorted(changed, key=lambda c: not c.get("replace")):
        verb = "**replaced**" if item.get("replace") else "changed"
        lines = [f"- {verb} {resource(item)}"]
        changes = item.get("changes") or []
        for change in changes[:PROPERTIES_SHOWN]:
            lines.append(f"  - {code(change.get('path', '?'))}: {code(value_text(change.get('old')))} → "
                         f"{code(value_text(change.get('new')))}")
        if len(changes) > PROPERTIES_SHOWN:
            lines.append(f"  - … and {len(changes) - PROPERTIES_SHOWN} more properties")
        blocks.append("\n".join(lines) + "\n")
    for item in stack.get("added") or []:
        blocks.append(f"- added {resource(item)}\n")
    return blocks


def details(name: str, blocks: list[str], omitted: int) -> str:
    if not blocks and not omitted:
        return ""
    total = len(blocks) + omitted
    body = "".join(blocks)
    if omitted:
        body += (f"- … and {omitted} more not shown here: `diff.json` in the run's `{ARTIFACT}` artifact has "
                 "them all\n")
    return (f"<details><summary>{name}: all {total} resource change{'s' if total != 1 else ''}</summary>\n\n"
            f"{body}\n</details>\n")


def fit(blocks: dict[str, list[str]], budget: int) -> dict[str, list[str]]:
    """Share `budget` bytes among the stacks' blocks: each gets an equal part of what is left, and a stack that
    needs less than its part leaves the rest to the others; within a stack, blocks are kept in order."""
    need = {s: sum(size(b) for b in bl) for s, bl in blocks.items()}
    share, left = {}, max(budget, 0)
    pending = sorted(blocks, key=lambda s: need[s])
    while pending:
        stack = pending.pop(0)
        share[stack] = min(need[stack], left // (len(pending) + 1))
        left -= share[stack]
    kept = {}
    for stack, bl in blocks.items():
        used, kept[stack] = 0, []
        for block in bl:
            if used + size(block) > share[stack]:
                break
            kept[stack].append(block)
            used += size(block)
    return kept


# --- the comment ----------------------------------------------------------------------------------------------------

def render(diff: dict | None, policies: dict[str, dict | None], tests: str | None = None,
           costs: dict[str, dict] | None = None, diff_error: str | None = None, run_url: str | None = None) -> str:
    """The whole comment, at most MAX_COMMENT_BYTES long."""
    costs = costs or {}
    stacks: dict[str, dict] = (diff or {}).get("stacks") or {}
    names = ordered(set(stacks) | set(policies))
    currency = next((c["currency"] for c in costs.values() if c and c.get("currency")), "USD")

    head = [MARKER, "### What this pull request does to each stack (offline plan)", ""]
    facts = []
    if diff:
        facts.append(f"{code(diff.get('base', '?'))} ({code(str(diff.get('base_commit', '?'))[:12])}) → "
                     f"{code(str(diff.get('head_commit', '?'))[:12])}")
    facts.append(f"offline test suite: {TESTS.get(tests or 'skipped', plain(tests))}")
    if run_url:
        facts.append(f"[run]({run_url})")
    head += [" · ".join(facts), ""]

    if diff is None:
        head += ["> [!WARNING]", f"> The diff could not be computed: {plain(diff_error or 'no diff')}", ""]
    broken = [n for n in names if stacks.get(n, {}).get("error")]
    if broken:
        head += ["> [!WARNING]"]
        head += [f"> - **{n}**: the diff could not be computed: {plain(stacks[n]['error'])}" for n in broken]
        head += [""]

    risky = flagged(stacks)
    if risky:
        head += ["> [!CAUTION]",
                 f"> **{len(risky)} change{'s' if len(risky) != 1 else ''} replace or delete a resource that holds "
                 "data or identity**"]
        head += [f"> - {line}" for line in risky[:FLAGGED_SHOWN]]
        if len(risky) > FLAGGED_SHOWN:
            head += [f"> - … and {len(risky) - FLAGGED_SHOWN} more"]
        head += [""]

    head += ["| stack | add | change | delete | replace | idle floor / month | maximum / month | policy pack |",
             "|---|--:|--:|--:|--:|---|---|---|"]
    for n in names:
        stack = stacks.get(n, {"error": "not in the diff"})
        cost = None if stack.get("error") else stack.get("cost")
        head.append(f"| {n} | {count(stack, 'add')} | {count(stack, 'change')} | {count(stack, 'delete')} | "
                    f"{count(stack, 'replace')} | {cost_cell(cost, 'idle_floor', currency)} | "
                    f"{cost_cell(cost, 'maximum', currency)} | {policy_cell(policies.get(n))} |")
    head.append("")
    unpriced = [n for n in names if n in stacks and not stacks[n].get("error")
                and ((stacks[n].get("cost") or {}).get("after") or {}).get("maximum") is None]
    head += [f"- **{n}**: no cost estimate; `make cost STACK={n}` says why" for n in unpriced]
    bounded = [n for n in names if n in stacks and not stacks[n].get("error")
               and ((stacks[n].get("cost") or {}).get("after") or {}).get("lower_bound")]
    head += [f"- **{n}**: ≥ is a lower bound: a price the table has no source for counts as zero "
             f"(`make cost STACK={n}` names it; `make prices` fills it)" for n in bounded]
    head += [""] if unpriced or bounded else []
    dated = sorted({c["prices_date"] for c in costs.values() if c and c.get("prices_date")})
    head.append("Monthly estimates from the offline plan" + (f" and the price table of {', '.join(dated)}"
                                                              if dated else "")
                + ": the idle floor with no work running, the maximum with every node pool at its limit. "
                "`make cost STACK=<stack>` lists the lines and assumptions.")
    head.append("")

    violations = [line for n in names for line in policy_lines(n, policies.get(n))]
    if violations:
        head += ["**Policy pack**", *violations, ""]

    footer = ("<sub>Updated on every push by `.github/workflows/pr-comment.yml`; `make summary BASE=<rev>` renders "
              "it locally.</sub>\n")
    head_text = "\n".join(head) + "\n"
    blocks = {n: detail_blocks(stacks[n]) for n in names if n in stacks and not stacks[n].get("error")}
    # Each stack's wrapper, with room for the longest "… and N more" line it could need.
    wrappers = sum(size(details(n, [], len(bl))) for n, bl in blocks.items())
    kept = fit(blocks, MAX_COMMENT_BYTES - size(head_text) - size(footer) - wrappers)
    body = head_text + "".join(details(n, kept[n], len(blocks[n]) - len(kept[n])) for n in blocks) + footer
    if size(body) > MAX_COMMENT_BYTES:
        raise AssertionError(f"comment is {size(body)} bytes, over GitHub's {MAX_COMMENT_BYTES}")
    return body


# --- command line ---------------------------------------------------------------------------------------------------

def _load(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: {exc}"


def _per_stack(items: list[str], what: str, required: str) -> dict[str, dict | None]:
    """`--policy dev=policy-dev.json`: a file that cannot be read becomes that stack's error, not a crash."""
    found: dict[str, dict | None] = {}
    for item in items:
        stack, sep, path = item.partition("=")
        if not sep or not stack or not path:
            raise SystemExit(f"error: --{what} wants STACK=PATH, got {item!r}")
        data, error = _load(Path(path))
        if error is None and not (isinstance(data, dict) and (data.get("error") or required in data)):
            error = f"{Path(path).name}: no {required!r} in it"
        found[stack] = {"error": error} if error else data
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.pr_comment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--diff", type=Path, required=True, help="`make diff FORMAT=json` output")
    parser.add_argument("--policy", action="append", default=[], metavar="STACK=PATH",
                        help="`python -m offline.policy_check --stack S --format json` output, per stack")
    parser.add_argument("--cost", action="append", default=[], metavar="STACK=PATH",
                        help="`make cost STACK=S FORMAT=json` output, per stack (for the price table's date)")
    parser.add_argument("--tests", choices=sorted(TESTS), help="outcome of the offline test suite")
    parser.add_argument("--run-url", help="link to the workflow run")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    diff, error = _load(args.diff)
    if diff is not None and not isinstance(diff.get("stacks") if isinstance(diff, dict) else None, dict):
        diff, error = None, f"{args.diff.name}: no \"stacks\" object"
    costs = {s: c for s, c in _per_stack(args.cost, "cost", "total").items() if c and not c.get("error")}
    body = render(diff, _per_stack(args.policy, "policy", "violations"), args.tests, costs, error, args.run_url)
    if args.out:
        args.out.write_text(body, encoding="utf-8")
    else:
        sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
