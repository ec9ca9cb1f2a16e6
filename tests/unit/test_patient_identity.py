"""One patient or a clear answer (weasis_link/archives/patient_identity.py): issuers, default issuer, bounded wildcards."""

from __future__ import annotations

from typing import Any

import pytest

from weasis_link.archives.patient_identity import (
    archives_for_wildcards,
    check_identities,
    needs_result_check,
    wildcard_warnings,
    with_default_issuer,
)
from weasis_link.config import AppConfig
from weasis_link.errors import AmbiguousPatient, TooManyPatients, WildcardNotAllowed
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import Instance, Patient, PatientKey, Series, Study


def config(mode: str = "refuse", **archives: dict[str, Any]) -> AppConfig:
    connectors = {
        cid: {"type": "DICOM", "dicom-connector": {"calling-aet": "W", "aet": "A", "host": "h", "port": 104}, **extra}
        for cid, extra in (archives or {"a": {}}).items()
    }
    return AppConfig.model_validate(
        {"wado": {"url": "https://pacs.example/wado"}, "connector": {"ambiguous-patient": mode, "config": connectors}}
    )


def study(uid: str, pid: str, issuer: str | None, accession: str | None = None) -> Study:
    patient = Patient(PatientKey(pid, issuer), name="Secret^Name")
    series = Series(f"{uid}.1", instances=[Instance(f"{uid}.1.1")])
    return Study(uid, patient, accession_number=accession, series={series.series_instance_uid: series})


TWO_ISSUERS = [study("1.1", "P1", "HOSP-A"), study("1.2", "P1", "HOSP-B"), study("1.3", "P1", None)]


def test_a_bare_patient_id_with_several_issuers_is_refused_with_the_issuers_only() -> None:
    with pytest.raises(AmbiguousPatient) as raised:
        check_identities(criteria_from_query_string("patientID=P1"), [("a", TWO_ISSUERS)], config())
    assert raised.value.issuers == ["HOSP-A", "HOSP-B", None]
    assert raised.value.patients == 3
    assert "Secret" not in raised.value.detail and "^^^" in raised.value.detail


def test_ambiguity_spans_archives() -> None:
    answers = [("a", [TWO_ISSUERS[0]]), ("b", [TWO_ISSUERS[1]])]
    with pytest.raises(AmbiguousPatient):
        check_identities(criteria_from_query_string("patientID=P1"), answers, config(a={}, b={}))


@pytest.mark.parametrize(
    "query",
    [
        "patientID=P1%5E%5E%5EHOSP-A",  # an issuer says which patient
        "patientID=P2",  # no study of P1 is asked for
        "patientID=P1&patientID=P9",  # two different IDs asked for: each is one patient
    ],
)
def test_unambiguous_requests_pass(query: str) -> None:
    one = [study("1.1", "P1", "HOSP-A"), study("1.9", "P9", "HOSP-A")]
    assert check_identities(criteria_from_query_string(query), [("a", one)], config()) == []


def test_warn_mode_keeps_them_and_says_so() -> None:
    warnings = check_identities(criteria_from_query_string("patientID=P1"), [("a", TWO_ISSUERS)], config("warn"))
    [warning] = warnings
    assert "HOSP-A" in warning and "HOSP-B" in warning and "(no issuer)" in warning and "Secret" not in warning


def test_an_accession_of_several_patients_is_ambiguous_unless_a_patient_id_narrows_it() -> None:
    shared = [study("1.1", "P1", "HOSP-A", "ACC1"), study("1.2", "P2", "HOSP-A", "ACC1")]
    with pytest.raises(AmbiguousPatient):
        check_identities(criteria_from_query_string("accessionNumber=ACC1"), [("a", shared)], config())
    narrowed = criteria_from_query_string("accessionNumber=ACC1&patientID=P1%5E%5E%5EHOSP-A")
    assert check_identities(narrowed, [("a", shared[:1])], config()) == []


def test_a_wildcard_matches_at_most_the_smallest_bound() -> None:
    search = {"search-criteria": {"wildcards": ["PATIENT_ID"], "wildcard-max-patients": 2}}
    cfg = config(a=search, b={"search-criteria": {"wildcards": ["PATIENT_ID"]}})
    criteria = criteria_from_query_string("patientID=P1*")
    with pytest.raises(TooManyPatients) as raised:
        check_identities(
            criteria, [("a", TWO_ISSUERS[:2])], config(a={"search-criteria": {"wildcards": ["PATIENT_ID"]}})
        )
    assert (raised.value.patients, raised.value.max_patients) == (2, 1)
    assert check_identities(criteria, [("a", TWO_ISSUERS[:2])], config(a=search)) == []
    with pytest.raises(TooManyPatients):  # two archives: the smaller bound (1) holds
        check_identities(criteria, [("a", TWO_ISSUERS[:1]), ("b", TWO_ISSUERS[1:2])], cfg)


@pytest.mark.parametrize("query", ["patientID=W*", "patientID=*1", "patientID=%3FLS*", "accessionNumber=AB*"])
def test_a_wildcard_needs_three_literal_characters(query: str) -> None:
    cfg = config(a={"search-criteria": {"wildcards": ["PATIENT_ID", "STUDY_ACCESSION_NUMBER"]}})
    with pytest.raises(WildcardNotAllowed, match="literal prefix"):
        archives_for_wildcards(criteria_from_query_string(query), ["a"], cfg)


def test_wildcards_are_opt_in_per_archive_and_key() -> None:
    cfg = config(a={}, b={"search-criteria": {"wildcards": ["PATIENT_ID"]}})
    criteria = criteria_from_query_string("patientID=WLS*")
    assert archives_for_wildcards(criteria, ["a", "b"], cfg) == ["b"]
    assert wildcard_warnings(criteria, ["a", "b"], cfg) == [
        "The archive a was not searched: wildcards in patientID are not enabled there."
    ]
    with pytest.raises(WildcardNotAllowed) as raised:
        archives_for_wildcards(criteria, ["a"], cfg)
    assert [p.field for p in raised.value.problems] == ["patientID"]
    with pytest.raises(WildcardNotAllowed):  # opted in for patientID only
        archives_for_wildcards(criteria_from_query_string("accessionNumber=ACC*"), ["b"], cfg)
    exact = criteria_from_query_string("patientID=WLS-1")
    assert archives_for_wildcards(exact, ["a", "b"], cfg) == ["a", "b"]


def test_default_issuer_applies_to_bare_ids_only() -> None:
    criteria = criteria_from_query_string("patientID=P1&patientID=P2%5E%5E%5EOTHER")
    applied = with_default_issuer(criteria, "HOSP")
    assert [(p.patient_id, p.issuer) for p in applied.patients] == [("P1", "HOSP"), ("P2", "OTHER")]
    assert with_default_issuer(criteria, None) is criteria


def test_launches_query_first_only_when_a_rule_needs_the_answers() -> None:
    cfg = config(a={}, b={"default-issuer": "HOSP"})
    q = criteria_from_query_string
    assert needs_result_check(q("patientID=P1"), ["a", "b"], cfg)
    assert not needs_result_check(q("patientID=P1"), ["b"], cfg)  # the default issuer decides
    assert not needs_result_check(q("patientID=P1%5E%5E%5EX"), ["a"], cfg)
    assert not needs_result_check(q("studyUID=1.2"), ["a"], cfg)
    assert needs_result_check(q("accessionNumber=A1"), ["b"], cfg)
    assert not needs_result_check(q("accessionNumber=A1&patientID=P%5E%5E%5EX"), ["a"], cfg)
    assert needs_result_check(q("patientID=P1*%5E%5E%5EX"), ["a"], cfg)  # wildcards are always bounded
    assert not needs_result_check(q("patientID=P1"), ["a"], config("warn"))
