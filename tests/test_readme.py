"""The README tells the truth about config keys and make targets."""

from __future__ import annotations

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


def test_every_config_key_is_documented(monkeypatch):
    documented = set(re.findall(r"^\| `([^`]+)`", README, flags=re.M))
    documented |= {f"systemNodes.{k}" for k in ("desiredSize", "maxSize")}  # share a row with minSize
    documented |= {"generalPool.maxMemoryGiB"}
    documented |= {"serving.maxReplicas", "serving.memory", "serving.maxBatchDelayMs"}
    documented |= {row.replace("<role>", role) for row in documented if "<role>" in row
                   for role in ("transactions", "predictions", "deadLetter")}
    keys = keys_the_loader_reads(monkeypatch)
    assert len(keys) > 70
    sections = {"dataLake", "systemNodes", "flowLogs", "images", "mlflow", "mlflow.database", "kafka", "kafka.topics",
                "kafka.topics.transactions", "kafka.topics.predictions", "kafka.topics.deadLetter", "monitoring",
                "serving", "training", "ingestion", "transitGateway", "generalPool"}
    assert keys - sections <= documented


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z]+):", MAKEFILE, flags=re.M))
    used = set(re.findall(r"make ([a-z]+)", README))
    assert used and used <= targets
