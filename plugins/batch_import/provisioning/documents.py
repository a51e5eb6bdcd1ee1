"""Normalising JSON documents (IAM policies, Batch content) so that equal meaning compares equal."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

# IAM elements whose value may be a single string or a list of strings with the same meaning.
_STRING_OR_LIST_KEYS = frozenset(
    {"Action", "NotAction", "Resource", "NotResource", "Service", "AWS", "Federated", "CanonicalUser"}
)


def parse_policy(document: str | dict[str, Any]) -> dict[str, Any]:
    """A policy document as IAM returns it (a dict, or URL-encoded JSON text) -> dict."""
    if isinstance(document, dict):
        return document
    text = document.strip()
    if not text.startswith("{"):
        text = urllib.parse.unquote(text)
    return json.loads(text)


def normalise_policy(document: str | dict[str, Any]) -> Any:
    """Canonical form of an IAM policy: single strings as sorted lists, statements sorted, keys sorted."""
    return _normalise(parse_policy(document), key="", in_condition=False)


def _normalise(value: Any, *, key: str, in_condition: bool) -> Any:
    if key == "Statement":
        statements = value if isinstance(value, list) else [value]
        normalised = [_normalise(s, key="", in_condition=False) for s in statements]
        return sorted(normalised, key=lambda s: json.dumps(s, sort_keys=True))
    if isinstance(value, dict):
        inside = in_condition or key == "Condition"
        return {k: _normalise(v, key=k, in_condition=inside) for k, v in sorted(value.items())}
    if key in _STRING_OR_LIST_KEYS or in_condition:
        items = value if isinstance(value, list) else [value]
        if all(isinstance(item, str) for item in items):
            return sorted(set(items))
    if isinstance(value, list):
        return [_normalise(item, key="", in_condition=in_condition) for item in value]
    return value


def policy_json(document: dict[str, Any]) -> str:
    """Compact JSON text for IAM calls (stable key order)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
