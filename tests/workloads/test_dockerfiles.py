"""Static checks of every workloads/*/Dockerfile (there is no Docker engine here to build them).

Pinned base image, numeric non-root user, dependency layer before code, exact pins that match
requirements-workloads.txt, and every third-party module the package imports is in its requirements.txt.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "workloads"
DOCKERFILES = sorted(WORKLOADS.glob("*/Dockerfile"))
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {
    "confluent_kafka": "confluent-kafka",
    "prometheus_client": "prometheus-client",
    "aws_msk_iam_sasl_signer": "aws-msk-iam-sasl-signer-python",
    "botocore": "boto3",
    "psycopg2": "psycopg2-binary",
    "sklearn": "scikit-learn",
}
# Provided by a pinned distribution's own dependencies (mlflow pulls these in).
TRANSITIVE = {"mlflow": {"sklearn", "scipy", "requests", "yaml", "pydantic", "fastapi", "httpx"}}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)", line)
        assert match, f"{path.relative_to(REPO)}:{number}: {line!r} is not pinned as name==version"
        pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_there_are_dockerfiles_for_the_workloads():
    names = {p.parent.name for p in DOCKERFILES}
    assert {"ingestion", "drift"} <= names


@pytest.fixture(params=DOCKERFILES, ids=lambda p: p.parent.name)
def dockerfile(request) -> Path:
    return request.param


def test_base_image_is_pinned(dockerfile):
    froms = [rest for kw, rest in _instructions(dockerfile) if kw == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        image = image.split()[0]
        has_tag = ":" in image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or has_tag, f"FROM {image}: pin a tag or digest"
        assert not image.endswith(":latest"), f"FROM {image}: latest is not a pin"


def test_runs_as_numeric_non_root_user(dockerfile):
    users = [rest for kw, rest in _instructions(dockerfile) if kw == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-zero uid (10001)"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {users[-1]}: numeric non-zero gid"
    assert uid == "10001", "CONTRACT.md: uid 10001"


def test_dependencies_install_before_code_is_copied(dockerfile):
    name = dockerfile.parent.name
    steps = _instructions(dockerfile)
    copies = [(i, rest) for i, (kw, rest) in enumerate(steps) if kw == "COPY"]
    req = [i for i, rest in copies if f"{name}/requirements.txt" in rest]
    assert req, f"COPY {name}/requirements.txt missing"
    pip = [i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "pip install" in rest and "requirements" in rest]
    assert pip and pip[0] > req[0], "RUN pip install -r requirements.txt must follow its COPY"
    code = [i for i, rest in copies if "requirements.txt" not in rest]
    if not (WORKLOADS / name / "__main__.py").is_file():
        # A third-party server's image carries at most helper scripts from its own directory (mlflow-server's
        # auth_sync.py), layered after its dependencies like any code.
        foreign = [rest for i, rest in copies if i in code and f" {name}/" not in f" {rest}"]
        assert not foreign, f"{name} runs a third-party server; it copies only its own scripts, not {foreign}"
        assert not code or min(code) > pip[0], "code is copied before dependencies are installed"
        return
    assert code and min(code) > pip[0], "code is copied before dependencies are installed: breaks layer caching"


def test_entrypoint_runs_the_package_with_pythonpath_app(dockerfile):
    name = dockerfile.parent.name
    steps = dict((kw, rest) for kw, rest in _instructions(dockerfile) if kw in ("ENTRYPOINT", "CMD"))
    command = json.loads(steps.get("ENTRYPOINT") or steps["CMD"])
    if not (WORKLOADS / name / "__main__.py").is_file():
        # A packaged server (mlflow-server): its entry point is the distribution's own console script.
        assert command[0] in _pins(dockerfile.parent / "requirements.txt"), command
        return
    assert command[:3] == ["python", "-m", name], command
    env_text = " ".join(rest for kw, rest in _instructions(dockerfile) if kw == "ENV")
    assert re.search(r"PYTHONPATH=/app\b", env_text)
    assert (WORKLOADS / name / "__main__.py").is_file()


def test_requirements_are_pinned_like_requirements_workloads(dockerfile):
    root = _pins(REPO / "requirements-workloads.txt")
    requirements = dockerfile.parent / "requirements.txt"
    assert requirements.is_file(), f"{requirements.relative_to(REPO)} missing"
    for name, version in _pins(requirements).items():
        assert name in root, f"{requirements.relative_to(REPO)}: {name} is not in requirements-workloads.txt"
        assert version == root[name], f"{requirements.relative_to(REPO)}: {name}=={version}, root pins {root[name]}"


def test_every_image_the_platform_deploys_is_checked_here():
    # The images the stacks run and the images workflow builds (PLATFORM_IMAGES), the MLflow server's included, are
    # exactly the Dockerfiles these checks cover.
    from platform_config.services_model import PLATFORM_IMAGES
    assert [p.parent.name for p in DOCKERFILES] == list(PLATFORM_IMAGES)


def test_pip_installs_only_what_requirements_pin(dockerfile):
    # A version written into a RUN line would bypass requirements.txt, and with it the check above.
    root = _pins(REPO / "requirements-workloads.txt")
    installs = [rest for kw, rest in _instructions(dockerfile) if kw == "RUN" and "pip install" in rest]
    assert installs, "no pip install"
    for run in installs:
        for command in re.split(r"&&|;", run):
            if "pip install" in command:
                assert "requirements.txt" in command, f"RUN {command.strip()!r}: install from requirements.txt"
        for name, version in re.findall(r"([A-Za-z0-9][A-Za-z0-9_.\-\[\]]*)==([A-Za-z0-9][A-Za-z0-9_.+\-]*)", run):
            assert root.get(_normalise(name)) == version, \
                f"RUN pins {name}=={version}; requirements-workloads.txt pins {root.get(_normalise(name))}"


def _local_module(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (WORKLOADS.joinpath(*parts).with_suffix(".py"), WORKLOADS.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _third_party_imports(package: str) -> set[str]:
    """Top-level third-party modules imported anywhere in the package and the local modules it reaches."""
    seen: set[Path] = set()
    todo = list((WORKLOADS / package).rglob("*.py"))
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        module = ".".join(path.relative_to(WORKLOADS).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    # module ends in "__init__" for packages, so dropping `level` parts works for both.
                    base = module.split(".")[: -node.level]
                    full = ".".join(base + ([node.module] if node.module else []))
                    names = [full] + [f"{full}.{a.name}" for a in node.names]
                else:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                local = _local_module(name)
                if local is not None:
                    todo.append(local)
                elif not (WORKLOADS / name.split(".")[0]).is_dir():
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "__future__":
                        found.add(top)
    return found


def test_every_imported_distribution_is_in_the_image_requirements(dockerfile):
    package = dockerfile.parent.name
    pins = _pins(dockerfile.parent / "requirements.txt")
    provided = {m for dist, mods in TRANSITIVE.items() if dist in pins for m in mods}
    missing = sorted(
        top for top in _third_party_imports(package)
        if _normalise(DISTRIBUTIONS.get(top, top)) not in pins and top not in provided
    )
    assert not missing, f"{package}/requirements.txt lacks the distributions for: {', '.join(missing)}"


def test_local_packages_the_image_needs_are_copied(dockerfile):
    package = dockerfile.parent.name
    copied = " ".join(rest for kw, rest in _instructions(dockerfile) if kw == "COPY")
    needed = {p.relative_to(WORKLOADS).parts[0] for p in WORKLOADS.glob("*/__init__.py")}
    # Local packages reached by imports must be in the image.
    reached = set()
    for path in (WORKLOADS / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                reached.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                reached.update(a.name.split(".")[0] for a in node.names)
    for local in sorted(reached & needed):
        assert f"{local}/" in copied, f"{package} imports {local} but the Dockerfile does not COPY {local}/"
