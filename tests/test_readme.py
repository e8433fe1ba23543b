"""The README tells the truth about config keys and make targets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from offline.harness import stack_config
from platform_config import load_config
from platform_config.reader import Section

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
MAKEFILE = (Path(__file__).resolve().parent.parent / "Makefile").read_text()


def keys_the_loader_reads(monkeypatch) -> set[str]:
    seen: set[str] = set()
    original = Section._get

    def spy(self, name):
        prefix = self.prefix.split(":", 1)[1] if ":" in self.prefix else ""
        prefix = re.sub(r"\[\d+\]", "[]", prefix)
        seen.add(f"{prefix}.{name}" if prefix else name)
        return original(self, name)

    monkeypatch.setattr(Section, "_get", spy)
    config, _ = stack_config("staging")  # has two GPU pools, so pool keys are read too
    load_config(config, "ml-platform", "staging")
    return seen


def documented_keys() -> set[str]:
    documented = set()
    # A row may name siblings after its first key: "| `systemNodes.minSize` / `desiredSize` / `maxSize` |".
    for first, rest in re.findall(r"^\| `([^`]+)`((?: / `[^`]+`)*)", README, flags=re.M):
        parent = first.rsplit(".", 1)[0]
        documented |= {first} | {f"{parent}.{sibling}" for sibling in re.findall(r"`([^`]+)`", rest)}
    pools = [p["name"] for p in json.loads(stack_config("staging")[0]["ml-platform:gpuPools"])]
    for placeholder, values in (("<role>", ("transactions", "predictions", "deadLetter")), ("<pool>", pools)):
        documented |= {row.replace(placeholder, v) for row in documented if placeholder in row for v in values}
    return documented


def test_every_config_key_is_documented(monkeypatch):
    documented = documented_keys()
    keys = keys_the_loader_reads(monkeypatch)
    assert len(keys) > 70
    pools = {k for k in keys if re.fullmatch(r"teams\[\]\.quotas\.gpus\.[a-z0-9-]+", k)}
    sections = {"dataLake", "systemNodes", "flowLogs", "images", "mlflow", "mlflow.database", "kafka", "kafka.topics",
                "kafka.topics.transactions", "kafka.topics.predictions", "kafka.topics.deadLetter", "monitoring",
                "ingestion", "transitGateway", "generalPool", "gpuPools[].sharing", "gpuPools[].sharing.timeSlicing",
                "teams[].quotas", "teams[].quotas.cpu", "teams[].quotas.memoryGiB", "teams[].quotas.gpus",
                "models[].images", "models[].serving", "models[].training", "models[].drift", *pools}
    assert pools and keys - sections <= documented
    assert not {"serving.minReplicas", "training.gpuPool"} & documented  # retired: they are per model now


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z]+):", MAKEFILE, flags=re.M))
    used = set(re.findall(r"make ([a-z]+)", README))
    assert used and used <= targets
