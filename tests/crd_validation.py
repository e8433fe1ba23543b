"""Validate a custom resource against its real upstream CRD (vendored under upstream/), as strictly as possible.

The served version's `openAPIV3Schema` is turned into a JSON Schema and checked with jsonschema, after applying the
schema's defaults the way the API server does before it validates. Then the CRD's `x-kubernetes-validations` CEL
rules are evaluated with cel-python. Where the API server would be lenient, this is strict on purpose:

- Unknown fields are errors. The API server prunes them silently (or rejects them only with strict field
  validation), so a misspelt field would quietly do nothing.
- `null` is an error unless the field is `nullable`: the API server drops such nulls, which hides the same mistakes.
- `metadata` is an ObjectMeta subset (name, namespace, labels, annotations) and namespaced kinds must name their
  namespace, so nothing lands in whatever namespace the provider defaults to.

Transition rules (those using `oldSelf`) need the stored object, so they are skipped. CEL rules run only once the
whole object passes the schema: their expressions assume the declared field types.
"""

from __future__ import annotations

import copy
import datetime
import functools
import re
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from upstream import catalog

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_KEY = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# Structural-schema keywords that carry no validation (or are handled separately, like CEL rules and defaults).
IGNORED = {"description", "example", "default", "title", "externalDocs", "x-kubernetes-validations",
           "x-kubernetes-map-type", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
           "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
           "nullable", "type", "properties", "additionalProperties", "items", "allOf", "anyOf", "oneOf", "not",
           "exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum"}
COPIED = {"enum", "pattern", "format", "required", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
          "minProperties", "maxProperties", "multipleOf"}


def to_json_schema(node: dict, where: str = "", strict: bool = True) -> dict:
    """One structural-schema node as JSON Schema (draft 2020-12).

    `strict` is off inside allOf/anyOf/oneOf/not: there, properties only add constraints to fields the enclosing
    schema declares, so they must not reject the others.
    """
    unknown = set(node) - IGNORED - COPIED
    if unknown:
        # A keyword this converter does not know might carry a constraint; fail rather than skip it.
        raise ValueError(f"unsupported CRD schema keyword(s) {sorted(unknown)} at {where or '<root>'}")
    out: dict[str, Any] = {k: node[k] for k in COPIED if k in node}
    nullable = node.get("nullable", False)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if nullable else node["type"]
    if nullable and "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if bound in node:
            # OpenAPI 3.0 has boolean exclusive bounds; JSON Schema 2020-12 has numeric ones.
            out[exclusive if node.get(exclusive) else bound] = node[bound]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") == "map" and node.get("x-kubernetes-list-map-keys"):
        out["listMapKeys"] = node["x-kubernetes-list-map-keys"]
    if "items" in node:
        out["items"] = to_json_schema(node["items"], f"{where}[]", strict)
    properties = dict(node.get("properties", {}))
    if node.get("x-kubernetes-embedded-resource"):
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if properties:
        out["properties"] = {k: to_json_schema(v, f"{where}.{k}", strict) for k, v in properties.items()}
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = to_json_schema(extra, f"{where}{{}}", strict)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif strict and not node.get("x-kubernetes-preserve-unknown-fields") and (
            properties or node.get("type") == "object"):
        out["additionalProperties"] = False
    for junctor in ("allOf", "anyOf", "oneOf"):
        if junctor in node:
            out[junctor] = [to_json_schema(s, f"{where}|{junctor}", strict=False) for s in node[junctor]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"], f"{where}|not", strict=False)
    return out


def object_meta(namespaced: bool) -> dict:
    properties = {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "labels": {"type": "object", "propertyNames": {"maxLength": 317, "pattern": LABEL_KEY},
                   "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}},
        "annotations": STRING_MAP,
    }
    if namespaced:
        properties["namespace"] = {"type": "string", "maxLength": 63, "pattern": DNS_LABEL}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": ["name", "namespace"] if namespaced else ["name"]}


def _list_map_keys(validator, keys, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    seen = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(repr(item.get(k)) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate entry for list-map keys {keys}: "
                                                 f"{ {k: item.get(k) for k in keys} }")
            seen.add(key)


def _int_range(bits: int):
    def check(value) -> bool:
        return not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
    return check


def _date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value.upper()


# Only the formats the vendored CRDs use and the API server checks; an unknown format passes, as it does there.
FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("int32")(_int_range(32))
FORMATS.checks("int64")(_int_range(64))
FORMATS.checks("date-time")(_date_time)

Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"listMapKeys": _list_map_keys})


@functools.cache
def _definition(api_version: str, kind: str) -> tuple[dict, Any]:
    """The served version's structural schema, and a JSON Schema validator built from it."""
    group = api_version.rpartition("/")[0]
    structural = catalog.crd_schema(api_version, kind)
    schema = to_json_schema(structural)
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = object_meta(catalog.crd(group, kind)["spec"]["scope"] == "Namespaced")
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return structural, Validator(schema, format_checker=FORMATS)


def apply_defaults(value: Any, node: dict) -> Any:
    """Fill in schema defaults for absent fields, recursively, as the API server does before validating."""
    if isinstance(value, dict):
        properties = node.get("properties", {})
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(value[name], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value.keys() - properties.keys():
                apply_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            apply_defaults(item, node["items"])
    return value


def _cel_find(text, pattern):
    found = re.search(str(pattern), str(text))
    return celtypes.StringType(found.group(0) if found else "")


def _cel_split(text, separator):
    return celtypes.ListType([celtypes.StringType(s) for s in str(text).split(str(separator))])


# The Kubernetes CEL library functions that the vendored CRDs call and cel-python lacks. A rule calling another one
# fails to evaluate and is reported, rather than passing unchecked.
KUBERNETES_CEL = {"find": _cel_find, "split": _cel_split}
TRANSITION = re.compile(r"\boldSelf\b")


@functools.cache
def _cel_environment() -> celpy.Environment:
    return celpy.Environment()


@functools.cache
def _cel_program(expression: str):
    environment = _cel_environment()
    return environment.program(environment.compile(expression), functions=KUBERNETES_CEL)


def _evaluate(expression: str, value: Any) -> Any:
    result = _cel_program(expression).evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, celpy.CELEvalError):
        raise RuntimeError(str(result))
    return result


def cel_errors(value: Any, node: dict, path: str = "") -> list[str]:
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        if TRANSITION.search(rule["rule"]):
            continue
        where = path + rule.get("fieldPath", "")
        try:
            passed = bool(_evaluate(rule["rule"], value))
        except Exception as exc:  # a CEL evaluation error fails validation in the API server too
            errors.append(f"{where.lstrip('.')}: rule {rule['rule']!r} could not be evaluated: {exc}")
            continue
        if not passed:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            if "messageExpression" in rule:
                try:
                    message = str(_evaluate(rule["messageExpression"], value))
                except Exception:  # the API server also falls back to `message` when the expression fails
                    pass
            errors.append(f"{where.lstrip('.')}: {message}")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        for name, item in value.items():
            sub = properties.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += cel_errors(item, sub, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(item, node["items"], f"{path}.{index}")
    return errors


def has_crd(api_version: str, kind: str) -> bool:
    return f"{api_version.rpartition('/')[0]}/{kind}" in catalog.sources()["crds"]


def validate(manifest: dict) -> list[str]:
    """Every way `manifest` breaks its CRD, as "path: message" strings; [] when it is valid."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    try:
        structural, validator = _definition(api_version, kind)
    except catalog.NotVendored as exc:
        return [f": {exc}"]
    defaulted = apply_defaults(copy.deepcopy(manifest), structural)
    errors = sorted(validator.iter_errors(defaulted), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    return cel_errors(defaulted, structural)
