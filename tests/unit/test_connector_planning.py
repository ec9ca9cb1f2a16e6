"""What the connectors share: the study-level query plan, the speculative start, the study filter, the most
recent N; and one surface for the three connector classes."""

from __future__ import annotations

import pytest

from weasis_link import config as cfg
from weasis_link.connectors import create_connector
from weasis_link.connectors.dicom import study_plans
from weasis_link.connectors.planning import instances_at_once, most_recent, plan_study_queries, worth_fetching
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import Study, StudyTreeBuilder


def test_single_values_go_into_every_query_and_the_smallest_multiple_key_is_split() -> None:
    assert plan_study_queries([]) == [[]]
    assert plan_study_queries([["p"], ["a"]]) == [["p", "a"]]
    assert plan_study_queries([["p1", "p2", "p3"], ["a1", "a2"], ["u"]]) == [["u", "a1"], ["u", "a2"]]


def test_the_dicom_plan_merges_the_matching_keys_of_each_query() -> None:
    criteria = criteria_from_query_string("patientID=P1^^^A&patientID=P2&accessionNumber=X&studyUID=1.2,1.3")
    assert study_plans(criteria) == [
        {"AccessionNumber": "X", "StudyInstanceUID": ["1.2", "1.3"], "PatientID": "P1", "IssuerOfPatientID": "A"},
        {"AccessionNumber": "X", "StudyInstanceUID": ["1.2", "1.3"], "PatientID": "P2"},
    ]


@pytest.mark.parametrize(
    ("query", "at_once"),
    [
        ("studyUID=1.2", True),
        ("studyUID=1.2&seriesUID=1.2.3", True),
        ("studyUID=1.2&patientID=P", False),
        ("studyUID=1.2&accessionNumber=A", False),
        ("studyUID=1.2&modalitiesInStudy=CT", False),
        ("patientID=P", False),
    ],
)
def test_only_a_study_uid_request_starts_its_instance_queries_at_once(query: str, at_once: bool) -> None:
    assert instances_at_once(criteria_from_query_string(query)) is at_once


def studies(*rows: dict[str, object]) -> dict[str, Study]:
    builder = StudyTreeBuilder()
    found = [builder.add_study({"PatientID": "P", **row}) for row in rows]
    return {s.study_instance_uid: s for s in found if s is not None}


def test_a_study_answer_without_modalities_leaves_the_study_a_chance() -> None:
    criteria = criteria_from_query_string("patientID=P&modalitiesInStudy=CT")
    known = studies(
        {"StudyInstanceUID": "1.1", "ModalitiesInStudy": ["MR"]},
        {"StudyInstanceUID": "1.2"},
        {"StudyInstanceUID": "1.3", "ModalitiesInStudy": ["CT"]},
    )
    assert [uid for uid, s in known.items() if worth_fetching(s, criteria)] == ["1.2", "1.3"]
    assert not worth_fetching(known["1.3"], criteria_from_query_string("patientID=Q"))


def test_most_recent_keeps_every_study_when_series_or_objects_are_asked_for() -> None:
    known = studies(
        {"StudyInstanceUID": "1.1", "StudyDate": "20200101"}, {"StudyInstanceUID": "1.2", "StudyDate": "20240101"}
    )
    assert list(most_recent(known, criteria_from_query_string("patientID=P&mostRecentResults=1"))) == ["1.2"]
    with_series = criteria_from_query_string("patientID=P&mostRecentResults=1&seriesUID=1.2.3")
    assert list(most_recent(known, with_series)) == ["1.1", "1.2"]


def test_the_connector_classes_show_the_same_surface() -> None:
    select = {"select": "SELECT 1 AS patientId"}
    configs = {
        "DB": {"type": "DB", "db-connector": {"uri": "sqlite://", "query": select}},
        "DB_SQL": {"type": "DB", "db-connector": {"uri": "postgresql://db.example/pacs", "query": select}},
        "DICOM": {"type": "DICOM", "dicom-connector": {"calling-aet": "A", "aet": "B", "host": "h", "port": 104}},
        "DICOM_WEB": {"type": "DICOM_WEB", "dicom-web-connector": {"url": "https://pacs.example/dicom-web"}},
    }
    surfaces = set()
    for kind, raw in configs.items():
        config = cfg.ConnectorConfig.model_validate({**raw, "wado": {"url": "https://pacs.example/wado"}})
        connector = create_connector(kind.lower(), config)
        block = config.db_connector or config.dicom_connector or config.dicom_web_connector
        assert connector.settings is block and connector.last_request_count == 0
        surfaces.add(frozenset(n for n in vars(connector) if not n.startswith("_")))
    assert surfaces == {frozenset({"connector_id", "settings", "last_request_count"})}
