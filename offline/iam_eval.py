"""Decide whether a policy statement applies to a request, the way AWS evaluates it at request time.

Offline there is no AWS to ask, and the local S3 server (moto) ignores policy conditions, so a Deny whose condition
is wrong (the lake's old `StringNotEqualsIfExists` on the KMS key header, which denied every upload without the
header) passes every property check. This evaluates the documented semantics instead
(IAM User Guide, "IAM JSON policy elements: Condition operators" and "Conditions with multiple context keys or
values"):
- operators in a Condition block, and keys under one operator, are ANDed; several values for one key are ORed, and
  NORed under a negated operator (`StringNotEquals`, `ArnNotLike`, ...);
- a key absent from the request context makes a condition false, except that a negated operator is then true,
  `...IfExists` is true, and `Null` tests exactly that absence.
Only what the platform's policies use is implemented; anything else raises, so an unsupported operator can never
silently evaluate to "does not apply".
"""

from __future__ import annotations

import re
from typing import Any, Mapping

Context = Mapping[str, Any]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, text: str) -> bool:
    # IAM wildcards: `*` any run of characters, `?` one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def _string_match(base: str, want: str, have: str) -> bool:
    if base in ("StringEquals", "ArnEquals"):
        return want == have
    if base == "StringEqualsIgnoreCase":
        return want.lower() == have.lower()
    if base in ("StringLike", "ArnLike"):
        return _glob(want, have)
    if base == "Bool":
        return want.lower() == str(have).lower()
    raise NotImplementedError(f"condition operator {base!r} is not implemented")


NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
           "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}
POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool"}


def _operator_holds(operator: str, key: str, values: list[Any], context: Context) -> bool:
    if operator.startswith(("ForAllValues:", "ForAnyValue:")):
        raise NotImplementedError(f"set operator {operator!r} is not implemented")
    if operator == "Null":
        (want,) = values
        return (key not in context) == (str(want).lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if key not in context:
        return if_exists or base in NEGATED
    have = [str(v) for v in _as_list(context[key])]
    if base in NEGATED:
        return not any(_string_match(NEGATED[base], str(w), h) for w in values for h in have)
    if base in POSITIVE:
        return any(_string_match(base, str(w), h) for w in values for h in have)
    raise NotImplementedError(f"condition operator {operator!r} is not implemented")


def condition_holds(condition: Mapping[str, Mapping[str, Any]] | None, context: Context) -> bool:
    return all(_operator_holds(op, key, _as_list(values), context)
               for op, keys in (condition or {}).items() for key, values in keys.items())


def _matches_any(patterns: Any, value: str) -> bool:
    return any(_glob(p, value) for p in _as_list(patterns))


def statement_applies(statement: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    """Action, resource and condition all match (the principal is taken to match: bucket-policy denies name `*`)."""
    if "NotAction" in statement or "NotResource" in statement:
        raise NotImplementedError("NotAction / NotResource are not implemented")
    return (_matches_any(statement.get("Action", []), action) and _matches_any(statement.get("Resource", []), resource)
            and condition_holds(statement.get("Condition"), context))


def denying_statements(policy: Mapping[str, Any], action: str, resource: str, context: Context) -> list[str]:
    """The Sids (or indexes) of the Deny statements that apply to the request: an explicit deny wins over any
    allow, so a non-empty result means the request fails with AccessDenied."""
    return [str(st.get("Sid", i)) for i, st in enumerate(_as_list(policy.get("Statement", [])))
            if st.get("Effect") == "Deny" and statement_applies(st, action, resource, context)]

