"""The DB connector on a real PostgreSQL (private cluster, our own small test schema with DATE/TIME columns, pg8000)
and on SQLite (the same schema with DICOM strings): the whole query matrix on both, SQL injection in every parameter,
the SQL text sent to the database, DATE/TIME to DA/TM in the manifest, statement timeouts, unreachable databases.
dcm4chee-arc-light's real schema and the shipped profile: test_dcm4chee_arc_light_db.py.

Run: .venv/bin/pytest tests/integration/test_database_connector_postgres.py -q
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from weasis_link import config as cfg
from weasis_link import manifest as mf
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.database import DatabaseConnector
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, InvalidRequest
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import Study, StudyTreeBuilder
from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.pacs_database import (
    DB_QUERY,
    ISSUER_OF_PATIENT_ID_COLUMN,
    STANDARD_SELECT,
    load_records,
)
from weasis_link_dev.pytest_postgres import PacsDatabase
from weasis_link_dev.query_matrix import check, instance_patients, standard_cases
from weasis_link_dev.synthetic_studies import standard_dataset
from weasis_link_dev.weasis_client import read_manifest, validate

pytestmark = pytest.mark.integration

STANDARD = standard_dataset()
CASES = standard_cases(STANDARD)
TRUTH = dict(instance_patients(STANDARD))
Answer = dict[str, tuple[str, str | None]]

# The connector model as weasis-pacs-connector configurations write it (table-qualified key columns), and with the
# select's output columns: both must behave the same.
QUALIFIED_QUERY: dict[str, str] = {**DB_QUERY, "issuer-of-patient-id-column": ISSUER_OF_PATIENT_ID_COLUMN}
ALIAS_QUERY: dict[str, str] = {"select": STANDARD_SELECT}  # the *-column defaults name the output columns


def connector(url: str, query: dict[str, str] | None = None, **settings: Any) -> DatabaseConnector:
    db = cfg.DbConnectorConfig.model_validate({"uri": url, "query": query or QUALIFIED_QUERY, **settings})
    return DatabaseConnector("pacs-db", db)


def find(conn: DatabaseConnector, query: str, seconds: float = 20) -> tuple[Answer, list[Study]]:
    criteria = criteria_from_query_string(query)
    builder = StudyTreeBuilder()
    conn.find(criteria, QueryContext(None, time.monotonic() + seconds), builder)
    assert not builder.skipped, builder.skipped
    studies = criteria.restrict(builder.studies())
    answered = {
        i.sop_instance_uid: (s.patient.key.patient_id, s.patient.key.issuer)
        for s in studies
        for series in s.series.values()
        for i in series.instances
    }
    return answered, studies


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The standard dataset in a SQLite file, DICOM strings for dates and times (as the embedded sample archive stores them)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'pacs.db'}"
    engine = sa.create_engine(url)
    try:
        load_records(engine, STANDARD)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    pacs: PacsDatabase = request.getfixturevalue("postgres_pacs")
    return pacs.sqlalchemy_url


@pytest.fixture(scope="module")
def pg(postgres_pacs: PacsDatabase) -> DatabaseConnector:
    return connector(postgres_pacs.sqlalchemy_url)


# ------------------------------------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("query", [QUALIFIED_QUERY, ALIAS_QUERY], ids=["qualified-columns", "output-columns"])
def test_query_matrix(database_url: str, query: dict[str, str]) -> None:
    conn = connector(database_url, query)
    failures = {}
    for case in CASES:
        answered, _ = find(conn, case.query)
        result = check(answered, case.expected(STANDARD), TRUTH)
        if not result.ok:
            failures[case.name] = (len(result.missing), len(result.extra), len(result.wrong_patient))
        if case.must_match_something:
            assert case.expected(STANDARD), case.name
    assert failures == {}


def test_key_columns_resolve_to_the_selects_output_columns(pg: DatabaseConnector) -> None:
    _, columns = pg._prepare()
    q = pg.settings.query
    resolved = [
        columns.find(c)
        for c in (
            q.patient_id_column,
            q.issuer_of_patient_id_column,
            q.study_instance_uid_column,
            q.accession_number_column,
            q.serie_instance_uid_column,
            q.sop_instance_uid_column,
        )
    ]
    assert resolved == [
        "patientId",
        "issuerOfPatientId",
        "studyInstanceUid",
        "accessionNumber",
        "seriesInstanceUid",
        "sopInstanceUid",
    ]


def test_a_key_column_the_select_does_not_have_is_refused(postgres_pacs: PacsDatabase) -> None:
    conn = connector(postgres_pacs.sqlalchemy_url, {**QUALIFIED_QUERY, "patient-id-column": "p.pat_name_x"})
    with pytest.raises(ArchiveError, match=r"has no column 'p\.pat_name_x'"):
        find(conn, "patientID=WLK-0001")


# ------------------------------------------------------------------------------------------ SQL injection
INJECTIONS = [
    "' OR '1'='1",
    "x'; DROP TABLE patient; --",
    "1 OR 1=1",
    "WLK-0001' --",
    "%' OR '%'='",
    'WLK-0001" OR "1"="1',
    "'); SELECT pg_sleep(60); --",  # had it run, query-timeout-seconds (15) would end it: ArchiveTimeout
    "$$ OR 1=1 $$",
    "WLK-0001'||'",
    "x' UNION SELECT * FROM patient --",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_identifier_parameters_is_inert(pg: DatabaseConnector, value: str) -> None:
    """patientID (and its issuer) and accessionNumber reach the database, as bound parameters only."""
    for query in (
        f"patientID={quote(value, safe='')}",
        f"patientID={quote('WLK-0002^^^' + value, safe='')}",
        f"accessionNumber={quote(value[:16], safe='')}",
        f"patientID=WLK-0001&accessionNumber={quote(value[:16], safe='')}",
    ):
        try:
            answered, _ = find(pg, query)
        except InvalidRequest:
            continue  # refused as a DICOM value (too long, backslash...): never reaches SQL either
        assert answered == {}, query  # an answer, not a timeout: no pg_sleep ran
    answered, _ = find(pg, "patientID=WLK-0001")  # the tables are still there, and whole
    assert len(answered) == sum(1 for r in STANDARD if r.patient_id == "WLK-0001")


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "parameter",
    ["studyUID", "seriesUID", "objectUID", "modalitiesInStudy", "lowerDateTime", "upperDateTime", "mostRecentResults"],
)
def test_injection_in_other_parameters_is_refused_before_any_query(parameter: str, value: str) -> None:
    """UIDs, modalities, dates and counts are validated: an injection attempt is a 400, never a query."""
    with pytest.raises(InvalidRequest):
        criteria_from_query_string(f"patientID=WLK-0001&{parameter}={quote(value, safe='')}")


def test_injection_in_description_terms_never_reaches_sql(pg: DatabaseConnector) -> None:
    """containsInDescription is applied to the answers, not in SQL: an injection attempt only finds nothing."""
    answered, _ = find(pg, f"patientID=WLK-0001&containsInDescription={quote(INJECTIONS[0], safe='')}")
    assert answered == {}


def test_sql_text_sent_to_the_database_never_contains_a_value(pg: DatabaseConnector) -> None:
    engine, _ = pg._prepare()
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent.append((statement, parameters))

    martin = next(r for r in STANDARD if r.issuer_of_patient_id == "HOSP-B")
    values = {
        "WLK-0002",
        "HOSP-B",
        "WLK-00*",
        "ACC-2021-0007",
        "ACC-2019*",
        martin.study_instance_uid,
        martin.series_instance_uid,
        martin.sop_instance_uid,
        INJECTIONS[1],
    }
    queries = [
        "patientID=WLK-0002%5E%5E%5EHOSP-B&accessionNumber=ACC-2021-0007",
        "patientID=WLK-00*&accessionNumber=ACC-2019*",
        f"studyUID={martin.study_instance_uid}&seriesUID={martin.series_instance_uid}"
        f"&objectUID={martin.sop_instance_uid}",
        f"patientID={quote(INJECTIONS[1], safe='')}",
    ]
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        for query in queries:
            find(pg, query)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    statements = [s for s, _ in sent]
    assert any("weasis_q" in s for s in statements)
    for statement in statements:
        for value in values:
            assert value not in statement
            assert value.replace("*", "%") not in statement  # nor as the LIKE pattern it becomes
    bound = {str(v) for _, parameters in sent for v in _flatten(parameters)}
    assert {"WLK-0002", "HOSP-B", "WLK-00%", martin.sop_instance_uid, INJECTIONS[1]} <= bound


def _flatten(parameters: Any) -> Iterator[Any]:
    if isinstance(parameters, dict):
        parameters = parameters.values()
    for value in parameters or ():
        if isinstance(value, list | tuple):
            yield from value
        else:
            yield value


# ---------------------------------------------------------------------------------------------- DATE and TIME
def _dated(**changes: Any) -> InstanceRecord:
    base = next(r for r in STANDARD if r.patient_id == "WLK-0001")
    return dataclasses.replace(base, **changes)


def test_sql_dates_and_times_become_dicom_da_tm_in_the_manifest(postgres_database_factory: Any, tmp_path: Path) -> None:
    """PostgreSQL DATE/TIME columns (date and time objects from pg8000), fractions of seconds included, give the
    same DA/TM as SQLite's DICOM strings; the manifest is valid against the Weasis XSD."""
    uid = "1.2.826.0.1.3680043.8.498.4242"
    record = _dated(
        study_instance_uid=uid,
        series_instance_uid=f"{uid}.1",
        sop_instance_uid=f"{uid}.1.1",
        study_date="20240229",
        study_time="235959.123456",
        series_date="20240301",
        series_time="000001",
        patient_birth_date="19000101",
        accession_number="ACC-LEAP",
    )
    pacs = postgres_database_factory([record])
    sqlite_url = f"sqlite:///{tmp_path / 'dates.db'}"
    engine = sa.create_engine(sqlite_url)
    load_records(engine, [record])
    engine.dispose()
    xml_by_backend = {}
    for name, url in (("postgresql", pacs.sqlalchemy_url), ("sqlite", sqlite_url)):
        _, studies = find(connector(url), f"studyUID={uid}")
        archive = mf.ArchiveQuery(arc_id="db", base_url="https://pacs.example/wado", studies=studies)
        xml = mf.manifest_xml([archive], "m")
        assert validate(xml) == []
        [view] = read_manifest(xml)
        xml_by_backend[name] = (view.patients, view.studies, view.series)
    patients, studies, series = xml_by_backend["postgresql"]
    assert patients[0]["PatientBirthDate"] == "19000101"
    assert (studies[0]["StudyDate"], studies[0]["StudyTime"]) == ("20240229", "235959.123456")
    assert (series[0]["SeriesDate"], series[0]["SeriesTime"]) == ("20240301", "000001")
    assert xml_by_backend["postgresql"] == xml_by_backend["sqlite"]


def test_timestamp_and_text_date_columns(postgres_pacs: PacsDatabase) -> None:
    """A select that gives StudyDate as a TIMESTAMP and StudyTime as text 'HH:MM:SS' still yields DA/TM."""
    select = STANDARD_SELECT.replace(
        'st.study_date AS "studyDate", st.study_time AS "studyTime"',
        'CAST(st.study_date + st.study_time AS timestamp) AS "studyDate", CAST(st.study_time AS text) AS "studyTime"',
    )
    assert select != STANDARD_SELECT
    conn = connector(postgres_pacs.sqlalchemy_url, {**QUALIFIED_QUERY, "select": select})
    dupont_ct = next(r for r in STANDARD if r.patient_id == "WLK-0001" and r.modality == "CT")
    _, [study] = find(conn, f"studyUID={dupont_ct.study_instance_uid}")
    assert (study.study_date, study.study_time) == (dupont_ct.study_date, dupont_ct.study_time)


# ----------------------------------------------------------------------------------------------- failures
def test_statement_timeout_on_postgresql(postgres_pacs: PacsDatabase) -> None:
    """query-timeout-seconds becomes the transaction's statement_timeout: a slow select is cancelled by the server
    (504), and the pooled connection serves the next query without that timeout lingering."""
    slow = STANDARD_SELECT.replace("FROM patient p", "FROM patient p CROSS JOIN (SELECT pg_sleep(3)) AS slow")
    conn = connector(
        postgres_pacs.sqlalchemy_url, {**QUALIFIED_QUERY, "select": slow}, **{"query-timeout-seconds": 0.6}
    )
    conn._prepare()  # column discovery runs the select with WHERE false: PostgreSQL plans the sleep away
    # 0.6 s < the 3 s sleep < the 15 s default: only the configured timeout (not the default, not the 20 s
    # deadline) can end this select with a timeout; without it, the select would answer.
    with pytest.raises(ArchiveTimeout, match="timed out"):
        find(conn, "patientID=WLK-0001")
    fast = connector(postgres_pacs.sqlalchemy_url, **{"query-timeout-seconds": 0.6})
    engine, _ = fast._prepare()
    find(fast, "patientID=WLK-0001")
    with engine.connect() as c:
        assert c.execute(sa.text("SHOW statement_timeout")).scalar_one() == "0"  # it was local to a transaction


def test_the_deadline_bounds_the_statement_timeout(postgres_pacs: PacsDatabase) -> None:
    slow = STANDARD_SELECT.replace("FROM patient p", "FROM patient p CROSS JOIN (SELECT pg_sleep(3)) AS slow")
    conn = connector(postgres_pacs.sqlalchemy_url, {**QUALIFIED_QUERY, "select": slow})  # 15 s configured
    conn._prepare()
    with pytest.raises(ArchiveTimeout):  # the 3 s sleep would end well within 15 s: only the deadline cuts it
        find(conn, "patientID=WLK-0001", seconds=0.8)


def test_unreachable_database_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = connector(f"postgresql://weasis:secret-pw@127.0.0.1:{port}/pacs", **{"connect-timeout-seconds": 1})
    with pytest.raises(ArchiveUnavailable) as raised:
        find(conn, "patientID=WLK-0001")
    assert "secret-pw" not in raised.value.detail


def test_wrong_password_is_an_archive_error_without_the_password(postgres_pacs: PacsDatabase) -> None:
    url = sa.engine.make_url(postgres_pacs.sqlalchemy_url).set(password="not-the-password-42")
    conn = connector(url.render_as_string(hide_password=False))
    with pytest.raises(ArchiveError) as raised:
        find(conn, "patientID=WLK-0001")
    assert "not-the-password-42" not in raised.value.detail
    assert "WLK-0001" not in raised.value.detail


def test_database_errors_name_neither_sql_nor_values(postgres_pacs: PacsDatabase) -> None:
    broken = STANDARD_SELECT.replace("FROM patient p", "FROM patient p JOIN no_such_table x ON true")
    with pytest.raises(ArchiveError) as raised:
        find(connector(postgres_pacs.sqlalchemy_url, {**QUALIFIED_QUERY, "select": broken}), "patientID=WLK-0001")
    assert raised.value.kind == "bad-response"
    assert "SELECT" not in raised.value.detail and "no_such_table" not in raised.value.detail


def test_jdbc_configuration_works_on_postgresql(postgres_pacs: PacsDatabase) -> None:
    """A weasis-pacs-connector style block: jdbc: URL, driver class, user and password keys."""
    url = sa.engine.make_url(postgres_pacs.sqlalchemy_url)
    conn = connector(
        f"jdbc:postgresql://{url.host}:{url.port}/{url.database}?ssl=false",
        driver="org.postgresql.Driver",
        user=url.username,
        password=url.password,
    )
    answered, _ = find(conn, "patientID=WLK-0003")
    assert len(answered) == sum(1 for r in STANDARD if r.patient_id == "WLK-0003")


def test_sample_archive_path_is_unchanged(tmp_path: Path) -> None:
    """SQLite files: relative dates/times as DICOM strings pass through untouched."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    engine = sa.create_engine(url)
    load_records(engine, [_dated()])
    engine.dispose()
    _, [study] = find(connector(url), "patientID=WLK-0001")
    record = _dated()
    assert (study.study_date, study.study_time) == (record.study_date, record.study_time)
