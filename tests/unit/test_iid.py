"""IHE Invoke Image Display: requestType and its parameters -> search criteria, refusals as 400."""

from __future__ import annotations

import pytest

from weasis_link.criteria import criteria_from_pairs
from weasis_link.errors import InvalidRequest, RequestTypeNotSupported
from weasis_link.http.iid import iid_criteria_pairs

BOTH = ("STUDY", "PATIENT")


def test_study_request_by_uid_list_and_accession_list() -> None:
    pairs = iid_criteria_pairs(
        [("requestType", "STUDY"), ("studyUID", "1.2,1.3"), ("accessionNumber", "A1,A2"), ("viewerType", "IHE_BIR")],
        BOTH,
    )
    assert pairs == [("studyUID", "1.2,1.3"), ("accessionNumber", "A1"), ("accessionNumber", "A2")]
    criteria = criteria_from_pairs(pairs)
    assert criteria.study_uids == ("1.2", "1.3") and criteria.accession_numbers == ("A1", "A2")


def test_patient_request_keeps_its_filters_and_drops_study_keys() -> None:
    pairs = iid_criteria_pairs(
        [
            ("requestType", "patient"),
            ("patientID", "P1^^^&1.2.3&ISO"),
            ("mostRecentResults", "3"),
            ("modalitiesInStudy", "CT,MR"),
            ("studyUID", "1.2"),  # not a PATIENT parameter: the profile shows all the patient's studies
            ("keyImagesOnly", "false"),
            ("diagnosticQuality", "TRUE"),
        ],
        BOTH,
    )
    assert pairs == [("patientID", "P1^^^&1.2.3&ISO"), ("mostRecentResults", "3"), ("modalitiesInStudy", "CT,MR")]
    criteria = criteria_from_pairs(pairs)
    assert criteria.patients[0].issuer == "1.2.3" and criteria.most_recent_results == 3


@pytest.mark.parametrize(
    ("pairs", "error", "field"),
    [
        ([("studyUID", "1.2")], InvalidRequest, "requestType"),
        ([("requestType", "STUDY"), ("requestType", "PATIENT"), ("studyUID", "1.2")], InvalidRequest, "requestType"),
        ([("requestType", "SERIES"), ("studyUID", "1.2")], RequestTypeNotSupported, "requestType"),
        ([("requestType", "STUDY"), ("patientID", "P1")], InvalidRequest, "studyUID"),
        ([("requestType", "PATIENT")], InvalidRequest, "patientID"),
        ([("requestType", "PATIENT"), ("patientID", "P1"), ("patientID", "P2")], InvalidRequest, "patientID"),
        ([("requestType", "STUDY"), ("studyUID", "1.2"), ("keyImagesOnly", "yes")], InvalidRequest, "keyImagesOnly"),
    ],
)
def test_malformed_requests_are_400(pairs: list[tuple[str, str]], error: type[Exception], field: str) -> None:
    with pytest.raises(error) as raised:
        iid_criteria_pairs(pairs, BOTH)
    assert isinstance(raised.value, InvalidRequest)
    assert field in [p.field for p in raised.value.problems]


def test_request_types_can_be_disabled() -> None:
    with pytest.raises(RequestTypeNotSupported, match="serves STUDY"):
        iid_criteria_pairs([("requestType", "PATIENT"), ("patientID", "P1")], ("STUDY",))
    assert iid_criteria_pairs([("requestType", "STUDY"), ("studyUID", "1.2")], ("STUDY",)) == [("studyUID", "1.2")]
