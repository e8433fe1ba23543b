"""The pull-request comment (offline/pr_comment.py), rendered from a hand-made diff (tests/fixtures/pr_diff.json):
what is flagged and where, the counts, the cost arrows, the policy verdict, and the size limit GitHub enforces."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from offline import policy_check, pr_comment
from offline.pr_comment import MARKER, MAX_COMMENT_BYTES, render
from tests.conftest import stack_plan

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def policies() -> dict[str, dict]:
    return {s: fixture(f"pr_policy_{s}.json") for s in ("dev", "staging", "prod")}


def sample() -> str:
    return render(fixture("pr_diff.json"), policies(), "success", {"dev": fixture("pr_cost_dev.json")})


def caution_block(body: str) -> list[str]:
    lines = body.splitlines()
    start = lines.index("> [!CAUTION]")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith(">"))
    return lines[start:end]


def test_marker_opens_the_comment_so_the_workflow_finds_it_again():
    assert sample().startswith(MARKER + "\n")


def test_stateful_replacements_and_removals_are_flagged_before_anything_else():
    body = sample()
    assert caution_block(body) == [
        "> [!CAUTION]",
        "> **2 changes replace or delete a resource that holds data or identity**",
        "> - **dev** replaces `aws:s3/bucket:Bucket` `data-lake-raw`: `bucketPrefix` forces a new resource "
        "([why](https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucket/))",
        "> - **staging** deletes `aws:s3/bucket:Bucket` `data-lake-scratch`",
    ]
    assert body.index("> [!CAUTION]") < body.index("| stack |")
    # Neither the stateless replacement (a Pod Identity association) nor the stateless removal is flagged.
    assert "fraud-detector-identity" not in "\n".join(caution_block(body))
    assert "scratch-access" not in "\n".join(caution_block(body))


def test_no_caution_when_nothing_holding_data_is_replaced_or_deleted():
    diff = fixture("pr_diff.json")
    diff["stacks"]["dev"]["replacements"][0]["stateful"] = False
    diff["stacks"]["staging"]["removed"][0]["stateful"] = False
    assert "[!CAUTION]" not in render(diff, policies())


def test_protected_and_retained_resources_say_what_pulumi_up_will_do():
    diff = fixture("pr_diff.json")
    diff["stacks"]["dev"]["replacements"][0]["retainOnDelete"] = True
    diff["stacks"]["staging"]["removed"][0]["protect"] = True
    assert caution_block(render(diff, policies()))[2:] == [
        "> - **dev** replaces `aws:s3/bucket:Bucket` `data-lake-raw`: `bucketPrefix` forces a new resource "
        "([why](https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucket/)) (retainOnDelete: the old one "
        "stays in the account, outside the stack)",
        "> - **staging** deletes `aws:s3/bucket:Bucket` `data-lake-scratch` (protected: `pulumi up` refuses until it "
        "is unprotected)",
    ]


def test_counts_cost_arrows_and_policy_verdict_per_stack():
    rows = [line for line in sample().splitlines() if line.startswith("| ")]
    assert rows == [
        "| stack | add | change | delete | replace | idle floor / month | maximum / month | policy pack |",
        "| dev | 1 | 0 | 0 | 1 | \\$412.50 (no change) | \\$9,874.25 → \\$14,254.25 (+\\$4,380.00, +44.4%) | "
        "✅ 14 policies pass |",
        "| staging | 0 | 1 | 2 | 1 | \\$1,530.10 → \\$1,578.28 (+\\$48.18, +3.1%) | "
        "\\$21,044.60 → \\$21,092.78 (+\\$48.18, +0.2%) | ❌ 2 violations |",
        "| prod | 0 | 0 | 0 | 0 | \\$4,120.00 (no change) | \\$61,870.40 (no change) | ✅ 14 policies pass |",
    ]


def test_cost_cell_covers_decrease_new_stack_and_missing_figures():
    cost = {"before": {"idle_floor": 200.0}, "after": {"idle_floor": 150.0}}
    assert pr_comment.cost_cell(cost, "idle_floor", "USD") == "\\$200.00 → \\$150.00 (-\\$50.00, -25.0%)"
    assert pr_comment.cost_cell({"before": None, "after": {"maximum": 10}}, "maximum", "USD") == \
        "\\$10.00 (no estimate for the base)"
    assert pr_comment.cost_cell({"before": {"maximum": 10}, "after": None}, "maximum", "USD") == "n/a"
    assert pr_comment.cost_cell(cost, "idle_floor", "EUR") == "€200.00 → €150.00 (-€50.00, -25.0%)"
    diff = fixture("pr_diff.json")
    diff["stacks"]["prod"]["cost"]["after"] = None  # `make cost` could not price it
    body = render(diff, policies())
    assert "| prod | 0 | 0 | 0 | 0 | n/a | n/a | ✅ 14 policies pass |" in body.splitlines()
    assert [line for line in body.splitlines() if "no cost estimate" in line] == [
        "- **prod**: no cost estimate; `make cost STACK=prod` says why"]
    assert "no cost estimate" not in sample()


def test_a_lower_bound_is_marked_where_a_price_is_unsourced():
    diff = fixture("pr_diff.json")
    diff["stacks"]["prod"]["cost"]["after"]["lower_bound"] = True
    body = render(diff, policies()).splitlines()
    row = next(line for line in body if line.startswith("| prod |"))
    assert row.count("≥\\$") == 2  # both figures of prod, after the change
    assert [line for line in body if "lower bound" in line] == [
        "- **prod**: ≥ is a lower bound: a price the table has no source for counts as zero (`make cost STACK=prod` "
        "names it; `make prices` fills it)"]
    assert "≥" not in sample()


def test_tests_outcome_and_prices_date_are_stated():
    body = sample()
    assert "`origin/main` (`4f2a9c1e8b7d`) → `9e8d7c6b5a4f` · offline test suite: ✅ passed" in body
    assert "the price table of 2026-11-30" in body
    diff = fixture("pr_diff.json")
    assert "offline test suite: ❌ failed" in render(diff, policies(), "failure")
    assert "offline test suite: ⚪ not run" in render(diff, policies())


def test_policy_violations_are_listed_and_capped():
    staging = sample().split("**Policy pack**\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert staging == [
        "- **staging**:",
        "  - `aws-kms-key-rotation` `urn:pulumi:staging::ml-platform::mlplatform:storage:DataLake$aws:kms/key:Key::"
        "data-lake-key`: customer-managed KMS keys must rotate (enableKeyRotation: true)",
        "  - `aws-rds-instance-hardened` `urn:pulumi:staging::ml-platform::mlplatform:mlflow:Database$aws:rds/"
        "instance:Instance::mlflow-db-postgres`: a final snapshot must be taken on delete (skipFinalSnapshot: false)",
    ]
    many = policies()
    many["prod"]["violations"] = [{"policy": f"rule-{i}", "urn": f"urn:x{i}", "message": "m"} for i in range(13)]
    body = render(fixture("pr_diff.json"), many)
    prod = body.split("- **prod**:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(prod) == pr_comment.VIOLATIONS_SHOWN + 1
    assert prod[-2] == "  - `rule-9` `urn:x9`: m"
    assert prod[-1] == "  - … and 3 more"
    assert "| prod | 0 | 0 | 0 | 0 | \\$4,120.00 (no change) | \\$61,870.40 (no change) | ❌ 13 violations |" in body


def test_a_stack_whose_diff_or_policy_check_failed_says_so():
    diff = fixture("pr_diff.json")
    diff["stacks"]["prod"] = {"error": "config: prod: natGateways must be one of single, per-az"}
    pol = policies()
    pol["prod"] = {"error": "prod.json: no 'violations' in it"}
    body = render(diff, pol)
    assert "> - **prod**: the diff could not be computed: config: prod: natGateways must be one of single, per-az" \
        in body.splitlines()
    assert "| prod | — | — | — | — | n/a | n/a | ⚠️ could not run |" in body.splitlines()
    assert "- **prod**: the policy check could not run: prod.json: no 'violations' in it" in body.splitlines()
    assert "<summary>prod" not in body


def test_the_full_change_list_is_folded_away_with_old_and_new_values():
    body = sample()
    staging = body.split("<details><summary>staging: all 4 resource changes</summary>\n\n", 1)[1]
    assert staging.split("\n</details>", 1)[0].splitlines() == [
        "- deleted `aws:s3/bucket:Bucket` `data-lake-scratch` (holds data or identity)",
        "- deleted `aws:iam/rolePolicy:RolePolicy` `scratch-access`",
        "- **replaced** `aws:eks/podIdentityAssociation:PodIdentityAssociation` `fraud-detector-identity`",
        "  - `serviceAccount`: `\"fraud-detector\"` → `\"fraud-detector-v2\"`",
        "- changed `aws:rds/instance:Instance` `mlflow-db-postgres`",
        "  - `instanceClass`: `\"db.t4g.medium\"` → `\"db.t4g.large\"`",
        "  - `password`: `\"[secret]\"` → `\"[secret]\"`",
    ]
    assert "<summary>prod" not in body  # nothing changes there


def test_text_from_the_diff_and_the_policy_pack_cannot_break_the_markdown():
    assert pr_comment.code("a`b``c") == "```a`b``c```"
    assert pr_comment.code("`x`") == "`` `x` ``"
    assert pr_comment.plain("<img src=x> | *b* [l](u)") == "\\<img src=x\\> \\| \\*b\\* \\[l\\](u)"
    assert pr_comment.link("https://example.com/a(b)") == "https://example.com/a%28b%29"
    assert pr_comment.link("javascript:alert(1)") == ""


def huge_diff(per_stack: int) -> dict:
    diff = fixture("pr_diff.json")
    for name, stack in diff["stacks"].items():
        stack["changed"] = [
            {"urn": f"urn:{name}:{i}", "type": "aws:iam/rolePolicy:RolePolicy", "name": f"policy-{i:05d}",
             "replace": False, "changes": [{"path": "policy", "old": "x" * 400, "new": "y" * 400}]}
            for i in range(per_stack)]
        stack["counts"]["change"] = per_stack
    return diff


def test_the_comment_stays_under_githubs_limit_and_says_what_it_left_out():
    body = render(huge_diff(2000), policies(), "success")
    assert len(body.encode("utf-8")) <= MAX_COMMENT_BYTES
    assert MAX_COMMENT_BYTES - len(body.encode("utf-8")) < 2_000  # the space is used, not given away
    assert body.startswith(MARKER) and body.rstrip().endswith("</sub>")
    for name in ("dev", "staging", "prod"):
        section = body.split(f"<details><summary>{name}: all ", 1)[1].split("</details>", 1)[0]
        total = int(section.split(" ", 1)[0])
        shown = len(re.findall(r"^- ", section, re.M)) - 1
        omitted = int(re.search(r"^- … and (\d+) more not shown here", section, re.M).group(1))
        assert shown > 50 and shown + omitted == total
    # Each stack gets a fair share: none is starved by the stacks before it.
    assert body.count("- changed `aws:iam/rolePolicy:RolePolicy`") > 3 * 50


def test_the_limit_holds_at_every_size_and_nothing_is_cut_when_it_fits():
    for per_stack in (0, 1, 10, 50, 51, 52, 53, 100, 400):  # the cut starts at 52 changes per stack
        body = render(huge_diff(per_stack), policies())
        assert len(body.encode("utf-8")) <= MAX_COMMENT_BYTES, per_stack
        cut = "more not shown here" in body
        assert cut == (body.count("- changed `aws:iam") < 3 * per_stack), per_stack
    assert "more not shown here" not in render(huge_diff(51), policies())
    assert "more not shown here" in render(huge_diff(52), policies())


def test_cli_renders_the_same_comment_and_survives_a_missing_diff(tmp_path, capsys):
    args = ["--diff", str(FIXTURES / "pr_diff.json"), "--tests", "success",
            "--cost", f"dev={FIXTURES / 'pr_cost_dev.json'}"]
    for stack in ("dev", "staging", "prod"):
        args += ["--policy", f"{stack}={FIXTURES / f'pr_policy_{stack}.json'}"]
    assert pr_comment.main([*args, "--out", str(tmp_path / "comment.md")]) == 0
    assert (tmp_path / "comment.md").read_text(encoding="utf-8") == sample()

    assert pr_comment.main(["--diff", str(tmp_path / "missing.json"), "--policy", f"dev={tmp_path / 'none.json'}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(MARKER)
    assert "> The diff could not be computed: missing.json: \\[Errno 2\\] No such file or directory" in out
    assert "| dev | — | — | — | — | n/a | n/a | ⚠️ could not run |" in out
    with pytest.raises(SystemExit, match="--policy wants STACK=PATH"):
        pr_comment.main(["--diff", "d.json", "--policy", "dev"])


def test_readme_sample_is_the_fixtures_comment():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- pr-comment sample: rendered from tests/fixtures/pr_diff.json -->\n", 1)[1]
    block = block.split("````markdown\n", 1)[1].split("````\n", 1)[0]
    assert block == sample()


def test_policy_check_json_output_lists_violations_with_the_text_exit_codes(monkeypatch, capsys):
    plan = copy.deepcopy(stack_plan("dev"))
    key = next(r for r in plan.resources if r["type"] == "aws:kms/key:Key")
    key["inputs"]["enableKeyRotation"] = False
    monkeypatch.setattr(policy_check, "run_program", lambda stack: plan)
    assert policy_check.main(["--stack", "dev", "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {"stack": "dev", "error": None, "policies": len(policy_check.ALL_POLICIES), "violations": [
        {"policy": "aws-kms-key-rotation", "urn": key["urn"],
         "message": "customer-managed KMS keys must rotate (enableKeyRotation: true)"}]}
    assert policy_check.main(["--stack", "dev"]) == 1  # the text form is unchanged
    assert capsys.readouterr().out.splitlines()[-1] == f"{len(policy_check.ALL_POLICIES)} policies, 1 violation(s)"

    monkeypatch.undo()
    assert policy_check.main(["--stack", "qa", "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == "no stack file stacks/Pulumi.qa.yaml; stacks are: dev, staging, prod"
    assert captured.err.startswith("error: no stack file")
