"""The DB connector on the embedded sample archive (SQLite in memory): criteria only as bound parameters."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from weasis_link.config import DbConnectorConfig, load_config
from weasis_link.connectors import database_connector
from weasis_link.connectors.base import QueryContext
from weasis_link.connectors.database import DatabaseConnector, sqlalchemy_url
from weasis_link.connectors.sqlite import SqliteConnector, sqlite_database
from weasis_link.errors import ArchiveError, ArchiveTimeout, ArchiveUnavailable, InvalidRequest
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.study_tree import StudyTreeBuilder

BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"
SAMPLE_SQL = Path(__file__).resolve().parents[2] / "layers/shared/weasis_link/sample_archive/sample_archive.sql"


def sample_settings() -> DbConnectorConfig:
    config = load_config(BUNDLED, environ={}, resolve_secret=lambda r: r)
    db = config.connector.config["sample"].db_connector
    assert db is not None
    return db


# The same select building (connectors/database_select.py) rendered by both connectors: SQLAlchemy Core (the SQL
# connector, also on PostgreSQL and MariaDB in the integration tests) and sqlite3 (the embedded archive).
@pytest.fixture(scope="module", params=["sqlalchemy", "sqlite3"])
def connector(request: pytest.FixtureRequest) -> DatabaseConnector | SqliteConnector:
    if request.param == "sqlalchemy":
        return DatabaseConnector("sample", sample_settings())
    return SqliteConnector("sample", sample_settings())


@pytest.fixture(scope="module")
def sqlalchemy_connector() -> DatabaseConnector:
    return DatabaseConnector("sample", sample_settings())


@pytest.fixture(scope="module")
def sqlite_connector() -> SqliteConnector:
    return SqliteConnector("sample", sample_settings())


def test_the_embedded_archive_is_asked_through_sqlite3() -> None:
    assert isinstance(database_connector("sample", sample_settings()), SqliteConnector)


@pytest.fixture(scope="module")
def truth() -> sqlite3.Connection:
    """The sample archive's own answer, asked directly in SQL."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SAMPLE_SQL.read_text())
    return conn


def found(connector: DatabaseConnector | SqliteConnector, query: str) -> set[str]:
    criteria = criteria_from_query_string(query)
    builder = StudyTreeBuilder()
    connector.find(criteria, QueryContext(None, time.monotonic() + 10), builder)
    return {
        i.sop_instance_uid
        for s in criteria.restrict(builder.studies())
        for se in s.series.values()
        for i in se.instances
    }


def expected(truth: sqlite3.Connection, where: str, *params: object) -> set[str]:
    sql = (
        "SELECT i.sop_iuid FROM patient p JOIN study st ON st.patient_fk = p.pk JOIN series se ON se.study_fk = st.pk"
        f" JOIN instance i ON i.series_fk = se.pk WHERE {where}"
    )
    return {r[0] for r in truth.execute(sql, params)}


def test_by_patient_with_and_without_issuer(
    connector: DatabaseConnector | SqliteConnector, truth: sqlite3.Connection
) -> None:
    assert found(connector, "patientID=WLS-1003^^^CLINIC-B") == expected(
        truth, "p.pat_id = ? AND p.pat_id_issuer = ?", "WLS-1003", "CLINIC-B"
    )
    both = found(connector, "patientID=WLS-1003")
    assert both == expected(truth, "p.pat_id = ?", "WLS-1003")
    assert len(both) > len(found(connector, "patientID=WLS-1003^^^CLINIC-B")) > 0


def test_by_study_accession_series_object(
    connector: DatabaseConnector | SqliteConnector, truth: sqlite3.Connection
) -> None:
    study = truth.execute("SELECT study_iuid FROM study WHERE accession_no = 'ACC-2024-0001'").fetchone()[0]
    assert found(connector, f"studyUID={study}") == expected(truth, "st.study_iuid = ?", study)
    assert found(connector, "accessionNumber=ACC-2024-0001") == expected(truth, "st.accession_no = ?", "ACC-2024-0001")
    assert found(connector, "accessionNumber=ACC-2024-*") == expected(truth, "st.accession_no LIKE 'ACC-2024-%'")
    series, sop = truth.execute(
        "SELECT se.series_iuid, i.sop_iuid FROM series se JOIN instance i ON i.series_fk = se.pk "
        "WHERE se.modality = 'MR' LIMIT 1"
    ).fetchone()
    assert found(connector, f"seriesUID={series}") == expected(truth, "se.series_iuid = ?", series)
    assert found(connector, f"objectUID={sop}") == {sop}


def test_wildcards_are_literal_for_sql_metacharacters(connector: DatabaseConnector | SqliteConnector) -> None:
    assert found(connector, "patientID=WLS-100%") == set()  # % is not a DICOM wildcard
    assert found(connector, "patientID=WLS_1001") == set()  # nor is _
    assert found(connector, "patientID=WLS-100?") != set()


@pytest.mark.parametrize(
    "value",
    ["' OR '1'='1", "x'; DROP TABLE patient; --", "1 OR 1=1", "WLS-1001' --", "%' OR '%'='"],
)
def test_sql_injection_is_inert_and_never_reaches_the_sql_text(
    sqlalchemy_connector: DatabaseConnector, sqlite_connector: SqliteConnector, value: str
) -> None:
    encoded = quote(value, safe="")
    criteria = criteria_from_query_string(f"patientID={encoded}&accessionNumber={quote(value[:16], safe='')}")
    for connector in (sqlalchemy_connector, sqlite_connector):
        assert found(connector, f"patientID={encoded}") == set()
        assert found(connector, "patientID=WLS-1001") != set()  # the tables are still there
    engine, columns = sqlalchemy_connector._prepare()
    compiled = sqlalchemy_connector.statement(criteria, columns).compile(engine)
    assert value not in str(compiled) and value[:16] not in str(compiled)
    assert [value] in compiled.params.values()  # it travels as a bound (expanding IN) parameter
    sql, params = sqlite_connector.statement(criteria, columns)
    assert value not in sql and value[:16] not in sql
    assert value in params and value[:16] in params  # `?` parameters


def test_backslash_escapes_are_refused_before_any_query() -> None:
    with pytest.raises(InvalidRequest):
        criteria_from_query_string("patientID=" + quote("\\' OR 1=1 --", safe=""))


def test_sql_sent_to_the_database_never_contains_a_value(
    sqlalchemy_connector: DatabaseConnector, sqlite_connector: SqliteConnector
) -> None:
    connector = sqlalchemy_connector
    statements: list[str] = []
    engine, columns = connector._prepare()

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        found(connector, "patientID=WLS-1003^^^CLINIC-B&accessionNumber=ACC-2024-0500&studyUID=2.25.1,2.25.2")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    query = "patientID=WLS-1003^^^CLINIC-B&accessionNumber=ACC-2024-0500&studyUID=2.25.1,2.25.2"
    sql, params = sqlite_connector.statement(criteria_from_query_string(query), columns)
    statements.append(sql)
    assert params == ["WLS-1003", "CLINIC-B", "2.25.1", "2.25.2", "ACC-2024-0500"]
    for stmt in statements:
        for value in ("WLS-1003", "CLINIC-B", "ACC-2024-0500", "2.25.1", "2.25.2"):
            assert value not in stmt


@pytest.mark.parametrize(
    ("uri", "driver", "expected"),
    [
        (
            "jdbc:postgresql://db.example:5432/pacsdb?ssl=true",
            "org.postgresql.Driver",
            "postgresql+pg8000://u:***@db.example:5432/pacsdb",
        ),
        ("postgresql://db.example/pacsdb", None, "postgresql+pg8000://u:***@db.example/pacsdb"),
        (
            "jdbc:mysql://db.example:3306/pacsdb",
            "com.mysql.cj.jdbc.Driver",
            "mysql+pymysql://u:***@db.example:3306/pacsdb",
        ),
        ("jdbc:mariadb://db.example/pacsdb", "org.mariadb.jdbc.Driver", "mysql+pymysql://u:***@db.example/pacsdb"),
        ("jdbc:sqlite:/data/pacs.db", None, "sqlite://u:***@//data/pacs.db"),
    ],
)
def test_jdbc_urls_and_driver_classes_translate(uri: str, driver: str | None, expected: str) -> None:
    db = DbConnectorConfig.model_validate(
        {"uri": uri, "driver": driver, "user": "u", "password": "p@ss/word", "query": {"select": "SELECT 1 AS x"}}
    )
    url = sqlalchemy_url(db)
    assert url.render_as_string(hide_password=True) == expected
    assert url.password == "p@ss/word"


@pytest.mark.parametrize(
    ("uri", "database"),
    [
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///pacs.db", "pacs.db"),
        ("sqlite:////data/pacs.db", "/data/pacs.db"),
        ("jdbc:sqlite:/data/pacs.db", "/data/pacs.db"),
        ("jdbc:sqlite::memory:", ":memory:"),
        ("sqlite:///pacs.db?mode=ro", None),  # options: SQLAlchemy's job
        ("postgresql://db.example/pacsdb", None),
    ],
)
def test_sqlite_urls_go_to_sqlite3(uri: str, database: str | None) -> None:
    db = sample_settings().model_copy(update={"uri": uri, "init_script": None})
    assert sqlite_database(db) == database


def test_sqlite_errors_say_what_failed_without_the_schema(tmp_path: Path) -> None:
    settings = sample_settings()
    wrong = settings.model_copy(
        update={"query": settings.query.model_copy(update={"select": "SELECT p.no_such_column FROM patient p"})}
    )
    with pytest.raises(ArchiveError, match=r"^the configured select failed \(OperationalError\)$"):
        found(SqliteConnector("sample", wrong), "patientID=WLS-1001")
    missing = settings.model_copy(update={"uri": f"sqlite:///{tmp_path}/absent/pacs.db", "init_script": None})
    with pytest.raises(ArchiveUnavailable, match="cannot be reached"):
        found(SqliteConnector("sample", missing), "patientID=WLS-1001")


def test_a_sqlite_query_past_its_deadline_is_interrupted() -> None:
    settings = sample_settings()
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
        f" SELECT s.* FROM n, ({settings.query.select}) AS s"
    )
    slow = SqliteConnector(
        "sample", settings.model_copy(update={"query": settings.query.model_copy(update={"select": endless})})
    )
    criteria = criteria_from_query_string("patientID=WLS-1001")
    started = time.monotonic()
    with pytest.raises(ArchiveTimeout):  # the shortest bound: half a second
        slow.find(criteria, QueryContext(None, time.monotonic()), StudyTreeBuilder())
    assert time.monotonic() - started < 5
