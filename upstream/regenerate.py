"""Re-vendor every file listed in upstream/sources.py from upstream git repositories, and rewrite SOURCES.json.

    python -m upstream.regenerate --mirror-root /work/.mirror          # <root>/<owner>+<name>[/repo]
    python -m upstream.regenerate --repo aws/karpenter-provider-aws=~/src/karpenter ...
    python -m upstream.regenerate --mirror-root /work/.mirror --check  # exit 1 if the vendored files differ

Any clone works, bare or not, as long as it has the tags: files are read with `git show <tag>:<path>`, never from a
work tree, so what is vendored is exactly what the tag holds.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import posixpath
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from upstream.sources import SOURCES, Source, Subchart

HERE = Path(__file__).resolve().parent
VENDORED_DIRS = ("crds", "charts", "schemas")
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING")


class Repo:
    def __init__(self, name: str, git_dir: Path):
        self.name, self.git_dir = name, git_dir

    def git(self, *args: str) -> bytes:
        result = subprocess.run(["git", "-C", str(self.git_dir), *args], capture_output=True)
        if result.returncode:
            raise SystemExit(f"{self.name}: git {' '.join(args)}: {result.stderr.decode().strip()}")
        return result.stdout

    def resolve_tag(self, pattern: str) -> str:
        if "*" not in pattern:
            return pattern
        tags = self.git("tag", "--list", pattern).decode().split()
        if len(tags) != 1:
            raise SystemExit(f"{self.name}: tag pattern {pattern!r} matches {tags or 'nothing'}; expected one tag")
        return tags[0]

    def files(self, tag: str, pattern: str) -> list[str]:
        listing = self.git("ls-tree", "-r", tag, "--", posixpath.dirname(pattern) or ".").decode().splitlines()
        found = []
        for line in listing:
            mode, _, rest = line.partition(" ")
            path = rest.split("\t", 1)[1]
            if fnmatch.fnmatchcase(path, pattern):
                if mode == "120000":
                    # A symlink's blob is its target's name, not the data; point the table at the real file.
                    raise SystemExit(f"{self.name}@{tag}: {path} is a symlink")
                found.append(path)
        if not found:
            raise SystemExit(f"{self.name}@{tag}: nothing matches {pattern}")
        return sorted(found)

    def show(self, tag: str, path: str) -> bytes:
        return self.git("show", f"{tag}:{path}")


def find_repo(name: str, mirror_root: Path | None, overrides: dict[str, Path]) -> Repo:
    if name in overrides:
        return Repo(name, overrides[name])
    if mirror_root is None:
        raise SystemExit(f"no checkout of {name}: pass --mirror-root or --repo {name}=PATH")
    for candidate in (mirror_root / name.replace("/", "+") / "repo", mirror_root / name.replace("/", "+")):
        if candidate.is_dir():
            return Repo(name, candidate)
    raise SystemExit(f"no checkout of {name} under {mirror_root}")


def spdx_license(text: str) -> str:
    head = " ".join(text.split()[:200])
    if "Apache License" in head and "Version 2.0" in head:
        return "Apache-2.0"
    if "Permission is hereby granted, free of charge" in head:
        return "MIT"
    if "Mozilla Public License Version 2.0" in head:
        return "MPL-2.0"
    raise SystemExit(f"unrecognised licence text starting {head[:80]!r}; add it to spdx_license() after reading it")


def license_of(repo: Repo, tag: str) -> tuple[str, str]:
    top = {line.split("\t", 1)[1] for line in repo.git("ls-tree", tag).decode().splitlines()}
    for name in LICENSE_FILES:
        if name in top:
            return name, spdx_license(repo.show(tag, name).decode())
    raise SystemExit(f"{repo.name}@{tag}: no licence file at the top of the repository")


def crd_kinds(content: bytes) -> dict[str, list[str]]:
    """`group/Kind` -> served versions, for each CRD document in a file."""
    kinds = {}
    for doc in yaml.load_all(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            spec = doc["spec"]
            kinds[f"{spec['group']}/{spec['names']['kind']}"] = [v["name"] for v in spec["versions"] if v.get("served")]
    if not kinds:
        raise SystemExit("a file listed under crds holds no CustomResourceDefinition")
    return kinds


def dependency_version(chart_yaml: bytes, dependency: str) -> str:
    for dep in yaml.safe_load(chart_yaml).get("dependencies") or []:
        if dep["name"] == dependency:
            return dep["version"]
    raise SystemExit(f"the parent chart has no dependency {dependency!r}")


def vendor(sources: tuple[Source, ...], find: Callable[[str], Repo], out: Path) -> dict:
    # "schemas" is kept apart from "files", which lists exactly what is under crds/ and charts/.
    record: dict = {"files": {}, "crds": {}, "charts": {}, "schemas": {}, "notes": []}
    chart_yamls: dict[str, bytes] = {}
    for source in sources:
        repo = find(source.repo)
        version = source.version
        if isinstance(version, Subchart):
            version = dependency_version(chart_yamls[version.parent], version.dependency)
        tag = repo.resolve_tag(source.tag.format(version=version))
        commit = repo.git("rev-parse", f"{tag}^{{commit}}").decode().strip()
        license_file, license_id = license_of(repo, tag)
        origin = {"repository": f"https://github.com/{source.repo}", "tag": tag, "commit": commit,
                  "license": license_id, "license_file": license_file}

        def put(vendored: str, path: str, table: str = "files") -> bytes:
            content = repo.show(tag, path)
            (out / vendored).parent.mkdir(parents=True, exist_ok=True)
            (out / vendored).write_bytes(content)
            record[table][vendored] = {**origin, "path": path, "sha256": hashlib.sha256(content).hexdigest()}
            return content

        for pattern in source.crds:
            for path in repo.files(tag, pattern):
                vendored = f"crds/{source.name}-{version}/{posixpath.basename(path)}"
                for kind, served in crd_kinds(put(vendored, path)).items():
                    if kind in record["crds"]:
                        raise SystemExit(f"{kind} is vendored twice: {record['crds'][kind]['file']} and {vendored}")
                    record["crds"][kind] = {"file": vendored, "served": served}
        if source.chart:
            directory = f"charts/{source.name}-{version}"
            put(f"{directory}/values.yaml", f"{source.chart}/values.yaml")
            chart_yamls[source.name] = put(f"{directory}/Chart.yaml", f"{source.chart}/Chart.yaml")
            declared = yaml.safe_load(chart_yamls[source.name]).get("version")
            if str(declared) != version:
                # Some projects stamp the chart version only when publishing; the tag is what pins the content.
                record["notes"].append(f"{source.name} {version}: Chart.yaml at {tag} says version {declared}; the tag "
                                       "pins the content, the release process sets the published chart version")
            record["charts"][f"{source.name}@{version}"] = directory
        for path in source.files:
            put(f"schemas/{source.name}/{posixpath.basename(path)}", path, table="schemas")
    record["files"] = dict(sorted(record["files"].items()))
    record["schemas"] = dict(sorted(record["schemas"].items()))
    record["crds"] = dict(sorted(record["crds"].items()))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m upstream.regenerate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror-root", type=Path, help="directory of <owner>+<name>[/repo] git repositories")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH",
                        help="a git checkout for one repository (overrides --mirror-root)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the vendored files differ")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.repo:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--repo wants OWNER/NAME=PATH, got {item!r}")
        overrides[name] = Path(path).expanduser()

    repos: dict[str, Repo] = {}

    def find(name: str) -> Repo:
        if name not in repos:
            repos[name] = find_repo(name, args.mirror_root, overrides)
        return repos[name]

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        record = vendor(SOURCES, find, staged)
        note = "Written by `python -m upstream.regenerate` from the tags below; do not edit by hand."
        sources_json = json.dumps({"note": note, **record}, indent=2) + "\n"
        (staged / "SOURCES.json").write_text(sources_json)
        if args.check:
            return report_differences(staged)
        for name in VENDORED_DIRS:
            # Replaced whole, so a file dropped from the table (or an old version's directory) disappears too.
            shutil.rmtree(HERE / name, ignore_errors=True)
            shutil.copytree(staged / name, HERE / name)
        (HERE / "SOURCES.json").write_text(sources_json)
    print(f"vendored {len(record['files'])} files into {HERE}")
    return 0


def report_differences(staged: Path) -> int:
    def listing(root: Path) -> dict[str, bytes]:
        paths = [p for name in VENDORED_DIRS for p in (root / name).rglob("*") if p.is_file()]
        paths.append(root / "SOURCES.json")
        return {str(p.relative_to(root)): p.read_bytes() for p in paths if p.exists()}

    want, have = listing(staged), listing(HERE)
    differ = sorted(p for p in want.keys() | have.keys() if want.get(p) != have.get(p))
    for path in differ:
        state = "missing" if path not in have else "not upstream" if path not in want else "differs"
        print(f"{state}: upstream/{path}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
