"""What .github/workflows/images.yml builds and where it pushes it, printed as GitHub step outputs.

images:  every `workloads/<name>` with a Dockerfile (the matrix), which must be the platform's PLATFORM_IMAGES, the
         names `images.digests` accepts.
home:    the stack whose repositories the images are built into (the first, by stack name).
copies:  every other stack's repositories, which get the same manifests copied by digest, so one digest per image
         holds in every stack.

Each target is `{"stack", "region", "repositories": {image: repository name}}`. A stack whose `images.registry`
points elsewhere has no repositories of its own and is no target. Needs PyYAML and this repository only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from platform_config.services_model import PLATFORM_IMAGES, ecr_repository_name  # noqa: E402


def images(root: Path = ROOT) -> list[str]:
    return sorted(p.parent.name for p in (root / "workloads").glob("*/Dockerfile"))


def targets(root: Path = ROOT, stacks: list[str] | None = None) -> list[dict]:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())["name"]
    found = []
    for path in sorted((root / "stacks").glob("Pulumi.*.yaml")):
        stack = path.name.split(".")[1]
        if stacks and stack not in stacks:
            continue
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        if (config.get(f"{project}:images") or {}).get("registry"):
            continue
        found.append({"stack": stack, "region": config["aws:region"],
                      "repositories": {i: ecr_repository_name(f"{project}-{stack}", i) for i in images(root)}})
    return found


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", default="", help="only these stacks (space-separated); default: every stack")
    args = parser.parse_args(argv)
    built = images(root)
    if tuple(built) != PLATFORM_IMAGES:
        print(f"::error::workloads/*/Dockerfile builds {built}, but the platform deploys {list(PLATFORM_IMAGES)}: "
              "keep PLATFORM_IMAGES (platform_config/services_model.py) equal to the directories", file=sys.stderr)
        return 1
    wanted = args.stacks.split()
    found = targets(root, wanted)
    missing = sorted(set(wanted) - {t["stack"] for t in found})
    if missing or not found:
        print(f"::error::no stack with its own image repositories among {missing or 'stacks/'}", file=sys.stderr)
        return 1
    print(f"images={json.dumps(built)}")
    print(f"home={json.dumps(found[0])}")
    print(f"copies={json.dumps(found[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
