"""Query criteria: the names users know, strict validation, and the post-query safety net."""

from __future__ import annotations

import datetime as dt

import pytest

from weasis_link.criteria import (
    PatientIdentifier,
    QueryCriteria,
    SearchKey,
    fold_text,
    wildcard_match,
)
from weasis_link.errors import InvalidRequest
from weasis_link.http.requests import criteria_from_query_string, parse_query_string
from weasis_link.study_tree import PatientKey, StudyTreeBuilder


def problems_of(query: str) -> list[str]:
    with pytest.raises(InvalidRequest) as err:
        criteria_from_query_string(query)
    return [f"{p.field}: {p.message}" for p in err.value.problems]


def test_repeated_keys_are_kept_and_a_patient_id_with_a_comma_stays_whole() -> None:
    # API Gateway would present patientID=12,34&patientID=56 as "12,34,56": we parse the raw query string.
    c = criteria_from_query_string("patientID=12%2C34&patientID=56&studyUID=1.2,1.3&studyUID=1.4")
    assert c.patients == (PatientIdentifier("12,34"), PatientIdentifier("56"))
    assert c.study_uids == ("1.2", "1.3", "1.4")


def test_patient_id_with_issuer_in_hl7_cx_form() -> None:
    assert PatientIdentifier.parse("WLS-1^^^HOSP-A") == PatientIdentifier("WLS-1", "HOSP-A")
    assert PatientIdentifier.parse("WLS-1^^^&1.2.3&ISO") == PatientIdentifier("WLS-1", "1.2.3")
    assert PatientIdentifier.parse("WLS-1^^^NS&1.2.3&ISO^MR") == PatientIdentifier("WLS-1", "NS")
    assert PatientIdentifier.parse("WLS-1") == PatientIdentifier("WLS-1", None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "query: at least one of patientID"),
        ("modalitiesInStudy=CT", "query: at least one of patientID"),
        ("studyUID=1.2.a", "studyUID[0]: is not a DICOM UID"),
        ("studyUID=" + "1." * 32 + "1", "studyUID[0]: is not a DICOM UID"),
        ("seriesUID=1..2", "seriesUID[0]: is not a DICOM UID"),
        ("objectUID=", "objectUID[0]: is empty"),
        ("patientID=", "patientID[0]: is empty"),
        ("patientID=" + "x" * 65, "patientID[0]: must be at most 64"),
        ("patientID=*", "patientID[0]: is only wildcards"),
        ("accessionNumber=" + "A" * 17, "accessionNumber[0]: must be at most 16"),
        ("patientID=A%0AB", "patientID[0]: must be at most 64"),
        ("patientID=A^^^bad%5Cissuer", "patientID[0]: has an issuer"),
        ("patientID=A&lowerDateTime=yesterday", "lowerDateTime: must be an ISO 8601"),
        ("patientID=A&mostRecentResults=0", "mostRecentResults: must be an integer"),
        ("patientID=A&mostRecentResults=1&mostRecentResults=2", "mostRecentResults: must be given once"),
        ("patientID=A&modalitiesInStudy=C%2FT", "modalitiesInStudy: holds a value"),
    ],
)
def test_invalid_criteria_are_refused_with_the_field_named(query: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(query)), problems_of(query)


def test_every_problem_is_reported_at_once() -> None:
    assert len(problems_of("studyUID=x&seriesUID=y&mostRecentResults=-1")) == 3


def test_non_utf8_query_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        parse_query_string("patientID=%ff")


def test_filters_are_parsed() -> None:
    c = criteria_from_query_string(
        "patientID=P&modalitiesInStudy=ct,MR&containsInDescription=Crâne,thorax"
        "&lowerDateTime=2024-01-31&upperDateTime=2020-01-01T08:00:00Z&mostRecentResults=3"
    )
    assert c.modalities == {"CT", "MR"}
    assert c.description_terms == ("crane", "thorax")
    assert c.lower_date_time == dt.datetime(2024, 1, 31, 23, 59, 59, 999999)  # a date covers its whole day
    assert c.upper_date_time == dt.datetime(2020, 1, 1, 8, 0)  # the zone is dropped: PACS times are local
    assert c.most_recent_results == 3
    assert c.search_keys == {SearchKey.PATIENT_ID}


def test_dicom_wildcards() -> None:
    assert wildcard_match("WLK-000*", "WLK-0001")
    assert wildcard_match("WLK-000?", "WLK-0002")
    assert not wildcard_match("WLK-000?", "WLK-00021")
    assert not wildcard_match("wlk*", "WLK-1")  # case-sensitive, as DICOM LO matching
    assert wildcard_match("A.B", "A.B") and not wildcard_match("A.B", "AxB")


def test_fold_text_ignores_case_and_accents() -> None:
    assert fold_text("IRM Crâne") == "irm crane"


def _studies():
    b = StudyTreeBuilder()
    for sop, study, pid, issuer, date, time, desc, modality, accession in [
        ("1.1.1.1", "1.1", "P1", "A", "20240301", "101500", "CT Thorax", "CT", "ACC1"),
        ("1.2.1.1", "1.2", "P1", "A", "20210602", "083000", "IRM Crâne", "MR", "ACC2"),
        ("1.3.1.1", "1.3", "P1", "B", "20230101", None, "Echo", "US", "ACC1"),
        ("1.4.1.1", "1.4", "P2", None, None, None, None, "CR", None),
    ]:
        b.add_instance(
            {
                "PatientID": pid,
                "IssuerOfPatientID": issuer,
                "StudyInstanceUID": study,
                "SeriesInstanceUID": study + ".1",
                "SOPInstanceUID": sop,
                "StudyDate": date,
                "StudyTime": time,
                "StudyDescription": desc,
                "Modality": modality,
                "AccessionNumber": accession,
            }
        )
    return b.studies()


def uids(c: QueryCriteria) -> list[str]:
    return sorted(s.study_instance_uid for s in c.restrict(_studies()))


def test_restrict_matches_issuer_exactly_and_never_merges_patients() -> None:
    assert uids(criteria_from_query_string("patientID=P1^^^A")) == ["1.1", "1.2"]
    assert uids(criteria_from_query_string("patientID=P1^^^B")) == ["1.3"]
    assert uids(criteria_from_query_string("patientID=P1")) == ["1.1", "1.2", "1.3"]
    assert uids(criteria_from_query_string("patientID=P*")) == ["1.1", "1.2", "1.3", "1.4"]


def test_keys_are_anded_so_another_patients_accession_is_never_shown() -> None:
    assert uids(criteria_from_query_string("accessionNumber=ACC1")) == ["1.1", "1.3"]
    assert uids(criteria_from_query_string("patientID=P1^^^A&accessionNumber=ACC1")) == ["1.1"]
    assert uids(criteria_from_query_string("patientID=P2&studyUID=1.1")) == []


def test_filters_restrict_the_studies() -> None:
    assert uids(criteria_from_query_string("patientID=P1&modalitiesInStudy=MR,US")) == ["1.2", "1.3"]
    assert uids(criteria_from_query_string("patientID=P1&containsInDescription=crane")) == ["1.2"]


def test_date_bounds_use_weasis_pacs_connector_semantics() -> None:
    # lowerDateTime keeps studies at or BEFORE it; upperDateTime keeps studies at or AFTER it.
    assert uids(criteria_from_query_string("patientID=P*&lowerDateTime=2023-01-01")) == ["1.2", "1.3"]
    assert uids(criteria_from_query_string("patientID=P*&upperDateTime=2023-01-01T00:00:00")) == ["1.1", "1.3"]
    both = "patientID=P*&upperDateTime=2021-06-02T08:30:00&lowerDateTime=2023-12-31"
    assert uids(criteria_from_query_string(both)) == ["1.2", "1.3"]  # undated 1.4 cannot be shown in range


def test_most_recent_results_is_per_patient() -> None:
    assert uids(criteria_from_query_string("patientID=P*&mostRecentResults=1")) == ["1.1", "1.3", "1.4"]


def test_series_and_object_uids_prune_inside_the_study() -> None:
    [study] = criteria_from_query_string("objectUID=1.2.1.1").restrict(_studies())
    assert study.study_instance_uid == "1.2" and study.instance_count == 1
    assert criteria_from_query_string("seriesUID=9.9").restrict(_studies()) == []


def test_patient_identifier_matching() -> None:
    assert PatientIdentifier("P1", "A").matches(PatientKey("P1", "A"))
    assert not PatientIdentifier("P1", "A").matches(PatientKey("P1", None))
    assert PatientIdentifier("P1").matches(PatientKey("P1", "B"))
