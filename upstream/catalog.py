"""Read the vendored upstream data: CRD schemas, CRD documents and Helm chart defaults.

Everything is parsed once per process; the files are large (the Strimzi and prometheus-operator CRDs run to
hundreds of kilobytes each), so the C YAML loader is used when PyYAML has it.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotVendored(LookupError):
    pass


@functools.cache
def sources() -> dict[str, Any]:
    return json.loads((HERE / "SOURCES.json").read_text())


@functools.cache
def _documents(vendored: str) -> tuple[dict, ...]:
    with open(HERE / vendored, "rb") as f:
        return tuple(doc for doc in yaml.load_all(f, Loader=LOADER) if doc)


def crd(group: str, kind: str) -> dict:
    """The whole CustomResourceDefinition for group/kind."""
    entry = sources()["crds"].get(f"{group}/{kind}")
    if entry is None:
        raise NotVendored(f"no CRD vendored for {kind}.{group}; add its source to upstream/sources.py "
                          "and run `python -m upstream.regenerate`")
    for doc in _documents(entry["file"]):
        if doc["spec"]["group"] == group and doc["spec"]["names"]["kind"] == kind:
            return doc
    raise NotVendored(f"{entry['file']} no longer defines {kind}.{group}; rerun `python -m upstream.regenerate`")


def crd_version(api_version: str, kind: str) -> dict:
    """The CRD's entry in spec.versions for a manifest's apiVersion (e.g. `karpenter.sh/v1`), if it is served."""
    group, _, version = api_version.rpartition("/")
    definition = crd(group, kind)
    for entry in definition["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served"):
                raise NotVendored(f"{kind}.{group} {version} is defined but not served")
            return entry
    served = [v["name"] for v in definition["spec"]["versions"] if v.get("served")]
    raise NotVendored(f"{kind}.{group} has no version {version!r}; served: {served}")


def crd_schema(api_version: str, kind: str) -> dict:
    """The served version's openAPIV3Schema; an ordinary structural schema, not yet JSON Schema."""
    return crd_version(api_version, kind)["schema"]["openAPIV3Schema"]


def crd_documents(prefix: str) -> list[dict]:
    """Every vendored CRD document whose vendored file lies under crds/<prefix>, in file order (shared: do not
    mutate)."""
    files = sorted(f for f in sources()["files"] if f.startswith(f"crds/{prefix}"))
    return [doc for f in files for doc in _documents(f)]


def strimzi_crd_documents() -> list[dict]:
    """All the CRDs of the Strimzi operator chart at the pinned version, for the program to deploy itself."""
    from platform_config.versions import STRIMZI_VERSION

    found = crd_documents(f"strimzi-kafka-operator-{STRIMZI_VERSION}/")
    if not found:
        raise NotVendored(f"no Strimzi {STRIMZI_VERSION} CRDs vendored; run `python -m upstream.regenerate`")
    # Copies: the parsed documents are cached and shared with the tests.
    return copy.deepcopy(found)


def _chart_dir(chart: str, version: str) -> str:
    directory = sources()["charts"].get(f"{chart}@{version}")
    if directory is None:
        known = sorted(sources()["charts"])
        raise NotVendored(f"chart {chart} {version} is not vendored (have {', '.join(known)}); "
                          "vendor it with upstream/regenerate.py")
    return directory


def chart_values(chart: str, version: str) -> dict:
    """The chart's own default values.yaml (without its subcharts' defaults); shared, so do not mutate it."""
    documents = _documents(f"{_chart_dir(chart, version)}/values.yaml")
    return documents[0] if documents else {}


def chart_metadata(chart: str, version: str) -> dict:
    """The chart's Chart.yaml (its dependencies and their `condition:` switches)."""
    return _documents(f"{_chart_dir(chart, version)}/Chart.yaml")[0]


def is_vendored(chart: str, version: str) -> bool:
    return f"{chart}@{version}" in sources()["charts"]
