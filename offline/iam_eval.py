"""Decide whether a policy statement applies to a request, the way AWS evaluates it at request time.

Offline there is no AWS to ask, and the local S3 server (moto) ignores policy conditions, so a Deny whose condition
is wrong (the lake's old `StringNotEqualsIfExists` on the KMS key header, which denied every upload without the
header) passes every property check. This evaluates the documented semantics instead
(IAM User Guide, "IAM JSON policy elements: Condition operators" and "Conditions with multiple context keys or
values"):
- operators in a Condition block, and keys under one operator, are ANDed; several values for one key are ORed, and
  NORed under a negated operator (`StringNotEquals`, `ArnNotLike`, ...);
- a key absent from the request context makes a condition false, except that a negated operator is then true,
  `...IfExists` is true, and `Null` tests exactly that absence;
- action names and condition key names are case-insensitive, values are not;
- the ARN operators compare each of an ARN's six colon-separated parts separately, wildcards within a part.
Only what the platform's policies use is implemented; anything else raises, so an unsupported operator can never
silently evaluate to "does not apply".
"""

from __future__ import annotations

import re
from typing import Any, Mapping

Context = Mapping[str, Any]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, text: str, ignore_case: bool = False) -> bool:
    # IAM wildcards: `*` any run of characters, `?` one character; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _arn_match(want: str, have: str) -> bool:
    # "Each of the six colon-delimited components of the ARN is checked separately": `*` never spans a colon, and
    # the resource part (everything after the fifth colon) is one component.
    wants, haves = want.split(":", 5), have.split(":", 5)
    return len(wants) == len(haves) == 6 and all(_glob(w, h) for w, h in zip(wants, haves))


def _string_match(base: str, want: str, have: str) -> bool:
    if base == "StringEquals":
        return want == have
    if base == "StringEqualsIgnoreCase":
        return want.lower() == have.lower()
    if base == "StringLike":
        return _glob(want, have)
    if base in ("ArnEquals", "ArnLike"):
        return _arn_match(want, have)
    if base == "Bool":
        return want.lower() == str(have).lower()
    raise NotImplementedError(f"condition operator {base!r} is not implemented")


NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
           "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}
POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool"}


def _lookup(context: Context, key: str) -> tuple[bool, Any]:
    """Condition key names match the request context whatever their case (aws:SourceArn is aws:sourcearn)."""
    for name, value in context.items():
        if name.lower() == key.lower():
            return True, value
    return False, None


def _operator_holds(operator: str, key: str, values: list[Any], context: Context) -> bool:
    if operator.startswith(("ForAllValues:", "ForAnyValue:")):
        raise NotImplementedError(f"set operator {operator!r} is not implemented")
    present, value = _lookup(context, key)
    if operator == "Null":
        (want,) = values
        return (not present) == (str(want).lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if not present:
        return if_exists or base in NEGATED
    have = [str(v) for v in _as_list(value)]
    if base in NEGATED:
        return not any(_string_match(NEGATED[base], str(w), h) for w in values for h in have)
    if base in POSITIVE:
        return any(_string_match(base, str(w), h) for w in values for h in have)
    raise NotImplementedError(f"condition operator {operator!r} is not implemented")


def condition_holds(condition: Mapping[str, Mapping[str, Any]] | None, context: Context) -> bool:
    return all(_operator_holds(op, key, _as_list(values), context)
               for op, keys in (condition or {}).items() for key, values in keys.items())


def _matches_any(patterns: Any, value: str, ignore_case: bool = False) -> bool:
    return any(_glob(p, value, ignore_case) for p in _as_list(patterns))


def statement_applies(statement: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    """Action, resource and condition all match (the principal is taken to match: bucket-policy denies name `*`)."""
    if "NotAction" in statement or "NotResource" in statement:
        raise NotImplementedError("NotAction / NotResource are not implemented")
    # Action names are case-insensitive (s3:putobject is s3:PutObject); resource ARNs are not.
    return (_matches_any(statement.get("Action", []), action, ignore_case=True) and _matches_any(statement.get("Resource", []), resource)
            and condition_holds(statement.get("Condition"), context))


def denying_statements(policy: Mapping[str, Any], action: str, resource: str, context: Context) -> list[str]:
    """The Sids (or indexes) of the Deny statements that apply to the request: an explicit deny wins over any
    allow, so a non-empty result means the request fails with AccessDenied."""
    return [str(st.get("Sid", i)) for i, st in enumerate(_as_list(policy.get("Statement", [])))
            if st.get("Effect") == "Deny" and statement_applies(st, action, resource, context)]

