"""Strict JSON request bodies (weasis_link/json_body.py): bounded nesting, no duplicate keys, never a 500."""

from __future__ import annotations

import pytest

from weasis_link import json_body
from weasis_link.errors import InvalidRequest
from weasis_link.upload import uid_list_pairs


@pytest.mark.parametrize("depth", [17, 2000, 100_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(depth: int) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(InvalidRequest, match="deeper than 16"):
            json_body.loads(body)


def test_nesting_up_to_the_limit_is_parsed_and_brackets_in_strings_do_not_count() -> None:
    assert json_body.loads(b"[" * 16 + b"]" * 16) is not None
    assert json_body.nesting_depth('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"]]]"}') == 1
    assert json_body.loads(b'{"patientID": "[[[[[[[[[[[[[[[[[[[[[[["}') == {"patientID": "[" * 23}


def test_duplicate_keys_are_refused_at_any_level() -> None:
    for body in (b'{"patientID": "A", "patientID": "B"}', b'{"x": [{"k": 1, "k": 2}]}'):
        with pytest.raises(InvalidRequest, match="twice"):
            json_body.loads(body)


def test_invalid_json_and_encodings_are_400s() -> None:
    for body in (b"{", b"\xff\xfe", b"[1,]", b"NaN-"):
        with pytest.raises(InvalidRequest):
            json_body.loads(body)


def test_the_upload_uses_the_strict_parser() -> None:
    with pytest.raises(InvalidRequest, match="twice"):
        uid_list_pairs(b'{"studyUID": "1.2", "studyUID": "1.3"}')
    with pytest.raises(InvalidRequest, match="deeper"):
        uid_list_pairs(b"[" * 2000 + b"]" * 2000)
    assert uid_list_pairs(b'{"studyUID": ["1.2", "1.3"]}') == [("studyUID", "1.2"), ("studyUID", "1.3")]
