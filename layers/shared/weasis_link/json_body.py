"""Strict JSON for request bodies: bounded nesting, no duplicate keys.

`json.loads` recurses once per nesting level (a body nested a few thousand deep raises RecursionError, a 500) and
keeps the last of duplicate keys silently (`{"patientID": "A", "patientID": "B"}` would ask for B while a proxy or a
log reader sees A). Both are refused here with a 400 that says what to fix.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from weasis_link.errors import InvalidRequest

# The upload's documented shapes nest two levels deep (an object of lists of strings); this leaves room to spare.
MAX_JSON_DEPTH: Final = 16
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m[0] in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidRequest(f"The JSON object has the key {key!r} twice; give each key once (a list for several).")
        seen[key] = value
    return seen


def loads(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body as JSON: 400 when it is not UTF-8 JSON, nests deeper than `max_depth` or repeats a key."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The upload is not valid JSON (not UTF-8).") from None
    if nesting_depth(text) > max_depth:
        raise InvalidRequest(f"The JSON upload nests deeper than {max_depth} levels.")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise InvalidRequest("The upload is not valid JSON.") from None
