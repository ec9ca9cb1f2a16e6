"""Normalisation of PACS values to the manifest's DICOM types: no PACS value may make an invalid manifest."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weasis_link import dicom_values as dv


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20240131", "20240131"),
        ("2024-01-31", "20240131"),
        ("2024.01.31", "20240131"),
        (dt.date(2024, 1, 31), "20240131"),
        (dt.datetime(2024, 1, 31, 23, 59), "20240131"),
        ("20240230", None),  # no such day
        ("2024", None),
        ("00010101", None),  # xsd:gYear refuses it
        (dt.date(999, 1, 1), None),
        ("", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_date_becomes_yyyymmdd_or_nothing(raw: object, expected: str | None) -> None:
    assert dv.date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("101502", "101502"),
        ("1015", "1015"),
        ("10", "10"),
        ("101502.123456", "101502.123456"),
        ("10:15:02", "101502"),
        ("10:15:02.5", "101502.5"),
        (dt.time(10, 15, 2, 500), "101502.000500"),
        (dt.timedelta(hours=10, minutes=15, seconds=2), "101502"),
        ("246000", None),
        ("106000", None),
        ("1015.5", None),  # a fraction needs seconds
        ("", None),
    ],
)
def test_time_becomes_dicom_tm_or_nothing(raw: object, expected: str | None) -> None:
    assert dv.time(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ct", "CT"), (" MR ", "MR"), ("CT\\PT", "CT"), ("c-t", "CT"), ("ÉCHO", "CHO"), ("", None), ("!!", None)],
)
def test_code_string_is_upper_case_and_restricted(raw: str, expected: str | None) -> None:
    assert dv.code_string(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (" +12 ", 12), ("3.0", 3), (7, 7), ("1.5", None), ("x", None), (2**31, None), (True, None)],
)
def test_integer_is_a_32_bit_int(raw: object, expected: int | None) -> None:
    assert dv.integer(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("m", "M"), ("F", "F"), ("O", "O"), ("female", "F"), ("U", None), ("", None)]
)
def test_patient_sex_is_m_f_o_or_omitted(raw: str, expected: str | None) -> None:
    assert dv.patient_sex(raw) == expected


def test_text_drops_xml_invalid_characters_and_keeps_the_first_value() -> None:
    assert dv.text("Thorax\x00\x07 ap\\lateral") == "Thorax ap"
    assert dv.text("a\tb\nc") == "a b c"
    assert dv.text("\ud800bad") == "bad"
    assert dv.text("é" * 80) == "é" * 64


def test_identifiers_are_kept_exactly_or_refused() -> None:
    assert dv.identifier("WLS-1001 ") == "WLS-1001"
    assert dv.identifier("x" * 65) is None  # truncating could merge two patients
    assert dv.identifier("A\\B") is None
    assert dv.identifier("A\nB") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.2.3", "1.2.3"), ("1.2.3\x00", "1.2.3"), ("1..2", None), ("1.2.", None), ("1.a", None), ("1." * 40, None)],
)
def test_uids_are_digits_and_dots(raw: str, expected: str | None) -> None:
    assert dv.uid(raw) == expected


@given(st.text(alphabet="0123456789.a ", max_size=70))
def test_a_uid_is_what_the_definition_says(raw: str) -> None:
    """Digits and dots, no empty component, at most 64 characters: the regex (possessive, for speed) says exactly
    that."""

    def valid(s: str) -> bool:
        return len(s) <= dv.MAX_UI and all(c.isascii() and c.isdigit() for c in s.split("."))

    assert dv.is_valid_uid(raw) is valid(raw)
    unpadded = raw.strip(" ")  # dv.uid drops the padding
    assert dv.uid(raw) == (unpadded if valid(unpadded) else None)
