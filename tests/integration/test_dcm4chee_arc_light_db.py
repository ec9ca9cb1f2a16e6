"""The DB connector on dcm4chee-arc-light's real database: the archive's own DDL (../shared/reference, unmodified)
loaded into a throwaway PostgreSQL and a throwaway MariaDB, rows inserted the way the archive stores them, and the
shipped example configurations (docs/examples/dcm4chee-arc-light-{postgresql,mysql}.yaml) used verbatim, with only
PACS_DB_URI / PACS_DB_USER / PACS_DB_PASSWORD set.

The whole query matrix goes through the service: 0 missing, 0 extra, 0 cross-patient, every attribute equal to the
inserted ground truth, rejected objects absent, three-group names exact, no '*' in any manifest, every manifest
valid against the Weasis XSD. EXPLAIN shows the archive's indexes serving studyUID, accessionNumber and patientID on
50,000 instances. A select written for dcm4chee 2.x gives a log line naming the missing column and a 502 naming the
archive.

Run: .venv/bin/pytest tests/integration/test_dcm4chee_arc_light_db.py -q
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from lxml import etree

from weasis_link.auth import Caller
from weasis_link.config import AppConfig, load_config
from weasis_link.connectors import create_connector
from weasis_link.connectors.database import DatabaseConnector
from weasis_link.errors import AllArchivesFailed
from weasis_link.http.problems import problem_for
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link_dev import dcm4chee_arc as arc
from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.mariadb import MariaDBServer
from weasis_link_dev.postgres import PostgresServer
from weasis_link_dev.query_matrix import MatrixCase, Selection, _q, check, instance_patients, standard_cases
from weasis_link_dev.weasis_client import validate

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
EXAMPLE_FILE = {"postgresql": "dcm4chee-arc-light-postgresql.yaml", "mariadb": "dcm4chee-arc-light-mysql.yaml"}
ARCHIVE = "dcm4chee-db"
NS = {"w": "http://www.weasis.org/xsd/2.5"}
DATASET = arc.standard_arc_dataset()
TRUTH_RECORDS = list(DATASET.records)
TRUTH = dict(instance_patients(TRUTH_RECORDS))
REJECTED = {r.sop_instance_uid for r in DATASET.rejected}
LARGE_INSTANCES = 50_000


# ------------------------------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class ArcDatabase:
    backend: str
    url: str

    def environ(self) -> dict[str, str]:
        """What an integrator sets: the URI without credentials, the user, the password."""
        url = sa.engine.make_url(self.url)
        bare = url.set(username=None, password=None, query={}).render_as_string(hide_password=False)
        return {"PACS_DB_URI": bare, "PACS_DB_USER": str(url.username), "PACS_DB_PASSWORD": str(url.password)}

    def config(self, text: str | None = None, tmp: Path | None = None) -> AppConfig:
        path = EXAMPLES / EXAMPLE_FILE[self.backend]
        if text is not None:
            assert tmp is not None
            path = tmp / path.name
            path.write_text(text, encoding="utf-8")
        return load_config(path, environ=self.environ())


def _server(request: pytest.FixtureRequest, backend: str) -> PostgresServer | MariaDBServer:
    name = "postgres_server" if backend == "postgresql" else "mariadb_server"
    server: PostgresServer | MariaDBServer = request.getfixturevalue(name)
    return server


def _load(server: PostgresServer | MariaDBServer, backend: str, name: str, dataset: arc.ArcDataset) -> ArcDatabase:
    url = server.create_database(name)
    engine = sa.create_engine(url)
    try:
        arc.load_dataset(engine, dataset)
        with engine.begin() as conn:
            arc.analyze(conn)
    finally:
        engine.dispose()
    return ArcDatabase(backend, url)


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def arc_db(request: pytest.FixtureRequest) -> ArcDatabase:
    return _load(_server(request, request.param), request.param, "arc_standard", DATASET)


@pytest.fixture(scope="module")
def service(arc_db: ArcDatabase) -> ManifestService:
    settings = ServiceSettings(
        manifest_bucket="weasis-link-test",
        oauth_issuer="https://idp.test",
        oauth_audiences=["weasis-link"],
        oauth_jwks_url="https://idp.test/jwks",
    )
    store = ManifestStore(s3_client("eu-central-1"), "weasis-link-test")  # build() never stores
    return ManifestService(settings, matrix_config(arc_db.config()), store)


def matrix_config(config: AppConfig) -> AppConfig:
    """The matrix proves the connector, not the refusals (docs/security.md): wildcards opted in, and a PatientID held
    by several patients listed with a warning (`ambiguous-patient: warn`) instead of a 409."""
    search = {"wildcards": ["PATIENT_ID", "STUDY_ACCESSION_NUMBER"], "wildcard_max_patients": 1000}
    connectors = {
        cid: c.model_copy(update={"search_criteria": c.search_criteria.model_copy(update=search)})
        for cid, c in config.connector.config.items()
    }
    update = {"config": connectors, "ambiguous_patient": "warn"}
    return config.model_copy(update={"connector": config.connector.model_copy(update=update)})


def caller() -> Caller:
    return Caller("header.payload.signature", "doctor", frozenset({"weasis"}), int(time.time()) + 3600, {})


@dataclass
class Answer:
    xml: bytes
    instances: dict[str, dict[str, str]]  # SOPInstanceUID -> Patient + Study + Series + Instance attributes
    warnings: list[str]
    message: str | None

    @property
    def patients(self) -> dict[str, tuple[str, str | None]]:
        return {sop: (a["PatientID"], a.get("IssuerOfPatientID")) for sop, a in self.instances.items()}


def build(service: ManifestService, query: str) -> Answer:
    built = service.build(criteria_from_query_string(query), caller())
    xml = gzip.decompress(built.body_gzip)
    assert validate(xml) == [], query
    root = etree.fromstring(xml)
    instances: dict[str, dict[str, str]] = {}
    for patient in root.iterfind("w:arcQuery/w:Patient", NS):
        for study in patient.iterfind("w:Study", NS):
            for series in study.iterfind("w:Series", NS):
                for inst in series.iterfind("w:Instance", NS):
                    sop = str(inst.get("SOPInstanceUID"))
                    assert sop not in instances, f"{sop} twice in one manifest"
                    instances[sop] = {
                        str(k): str(v) for element in (patient, study, series, inst) for k, v in element.attrib.items()
                    }
    message = root.find("w:arcQuery/w:Message", NS)
    return Answer(xml, instances, list(built.warnings), None if message is None else str(message.get("title")))


def expected_attributes(r: InstanceRecord, identity: tuple[str, str | None] | None = None) -> dict[str, str]:
    """What the manifest must say about an instance: the inserted values; absent values absent (never '*')."""
    pid, issuer = identity or (r.patient_id, r.issuer_of_patient_id)
    values: dict[str, object] = {
        "PatientID": pid,
        "IssuerOfPatientID": issuer,
        "PatientName": r.patient_name,
        "PatientBirthDate": r.patient_birth_date,
        "PatientSex": r.patient_sex,
        "StudyInstanceUID": r.study_instance_uid,
        "StudyDate": r.study_date,
        "StudyTime": r.study_time,
        "AccessionNumber": r.accession_number,
        "StudyID": r.study_id,
        "StudyDescription": r.study_description,
        "ReferringPhysicianName": r.referring_physician_name,
        "SeriesInstanceUID": r.series_instance_uid,
        "Modality": r.modality,
        "SeriesDescription": r.series_description,
        "SeriesNumber": r.series_number,
        "SOPInstanceUID": r.sop_instance_uid,
        "SOPClassUID": r.sop_class_uid,
        "InstanceNumber": r.instance_number,
    }
    return {k: str(v) for k, v in values.items() if v is not None}


BY_SOP = {r.sop_instance_uid: r for r in TRUTH_RECORDS}
TWO_IDS_SOPS = {r.sop_instance_uid for r in TRUTH_RECORDS if (r.patient_id, r.issuer_of_patient_id) == arc.TWO_IDS}


def arc_cases() -> list[tuple[MatrixCase, tuple[str, str | None] | None]]:
    """The standard matrix on the archive's data, plus the archive's own traps (with the identity the patient
    with two identifiers must be shown under, when the query decides it)."""
    cases: list[tuple[MatrixCase, tuple[str, str | None] | None]] = [(c, None) for c in standard_cases(TRUTH_RECORDS)]
    two_ids_study = next(r for r in TRUTH_RECORDS if r.sop_instance_uid in TWO_IDS_SOPS).study_instance_uid
    everything_of_two_ids = Selection(study_uids=(two_ids_study,))
    odegard_mr = next(r for r in DATASET.rejected if r.patient_id == "WLK-0003").study_instance_uid
    dupont_series = next(r for r in DATASET.rejected if r.patient_id == "WLK-0001").series_instance_uid
    cases += [
        (MatrixCase("second identifier", _q(patientID="X2001^^^HOSP-C"), everything_of_two_ids), arc.SECOND_ID),
        (MatrixCase("second identifier, no issuer", _q(patientID="X2001"), everything_of_two_ids), arc.SECOND_ID),
        (MatrixCase("first identifier", _q(patientID="WLK-2001^^^HOSP-A"), everything_of_two_ids), arc.TWO_IDS),
        (MatrixCase("two identifiers, by study", _q(studyUID=two_ids_study), everything_of_two_ids), arc.TWO_IDS),
        (
            MatrixCase(
                "two identifiers, both asked",
                _q(patientID=["X2001^^^HOSP-C", "WLK-2001^^^HOSP-A"]),
                everything_of_two_ids,
            ),
            arc.TWO_IDS,
        ),
        (MatrixCase("two identifiers, by accession", _q(accessionNumber="ACC-X20011"), everything_of_two_ids), None),
        (
            MatrixCase(
                "merged patient's identifier finds nothing",
                _q(patientID="WLK-3001"),
                Selection(patients=(("WLK-3001", None),)),
                must_match_something=False,
            ),
            None,
        ),
        (
            MatrixCase("issuer stored as a UID", _q(patientID="WLK-4001"), Selection(patients=(("WLK-4001", None),))),
            None,
        ),
        (
            MatrixCase("study with a rejected series", _q(studyUID=odegard_mr), Selection(study_uids=(odegard_mr,))),
            None,
        ),
        (
            MatrixCase(
                "series with a rejected instance", _q(seriesUID=dupont_series), Selection(series_uids=(dupont_series,))
            ),
            None,
        ),
        (MatrixCase("every WLK patient", _q(patientID="WLK*"), Selection(patients=(("WLK*", None),))), None),
    ]
    return cases


CASES = arc_cases()


# ------------------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize(("case", "identity"), CASES, ids=[c.name for c, _ in CASES])
def test_query_matrix_through_the_service(
    service: ManifestService, case: MatrixCase, identity: tuple[str, str | None] | None
) -> None:
    answer = build(service, case.query)
    expected = case.expected(TRUTH_RECORDS)
    if case.must_match_something:
        assert expected, case.name
    truth = dict(TRUTH)
    if identity is not None:
        truth.update(dict.fromkeys(TWO_IDS_SOPS, identity))
    result = check(answer.patients, expected, truth)
    assert (len(result.missing), len(result.extra), len(result.wrong_patient)) == (0, 0, 0), case.name
    assert not REJECTED & set(answer.instances)
    assert b'"*"' not in answer.xml and "*" not in "".join(v for a in answer.instances.values() for v in a.values())
    assert not any("reused" in w or "skipped" in w.lower() for w in answer.warnings), answer.warnings
    for sop, attributes in answer.instances.items():
        wanted = expected_attributes(BY_SOP[sop], truth[sop])
        assert {k: attributes.get(k) for k in wanted} == wanted, sop
        assert set(attributes) <= set(wanted), sop  # nothing the archive does not hold (no '*', no stale value)
    if not expected:
        assert answer.message == "No images found"


def test_names_keep_all_three_groups_and_lose_the_padding(service: ManifestService) -> None:
    answer = build(service, "patientID=WLK-0010")
    assert {a["PatientName"] for a in answer.instances.values()} == {arc.THREE_GROUP_NAME}
    answer = build(service, "patientID=WLK-0002%5E%5E%5EHOSP-B")
    assert {a.get("ReferringPhysicianName") for a in answer.instances.values()} == {arc.TWO_GROUP_REFERRING}


def test_placeholders_are_absent_attributes(service: ManifestService) -> None:
    """The sparse study: accession, time, description, StudyID, referring physician all stored as '*'."""
    sparse = next(r for r in TRUTH_RECORDS if r.patient_id == "WLK-1004" and r.accession_number is None)
    answer = build(service, f"studyUID={sparse.study_instance_uid}")
    for attributes in answer.instances.values():
        for name in ("AccessionNumber", "StudyTime", "StudyDescription", "StudyID", "ReferringPhysicianName"):
            assert name not in attributes
    assert any("InstanceNumber" not in a for a in answer.instances.values())  # the instance without one


def test_merged_patients_studies_are_under_the_survivor(service: ManifestService, arc_db: ArcDatabase) -> None:
    """The merged record still exists (with merge_fk) and still owns its identifier, yet finds nothing; the
    surviving patient is whole."""
    engine = sa.create_engine(arc_db.url)
    try:
        with engine.connect() as conn:
            merged = conn.execute(
                sa.text(
                    "SELECT p.merge_fk FROM patient p JOIN patient_id pid ON pid.patient_fk = p.pk"
                    " WHERE pid.pat_id = :pid"
                ),
                {"pid": arc.MERGED_ID[0]},
            ).scalar_one()
    finally:
        engine.dispose()
    assert merged is not None
    assert build(service, "patientID=WLK-3001").instances == {}
    survivor = build(service, "patientID=WLK-0001")
    assert set(survivor.instances) == {r.sop_instance_uid for r in TRUTH_RECORDS if r.patient_id == "WLK-0001"}


# ------------------------------------------------------------------------------------------------- the indexes
@pytest.fixture(scope="module")
def large_arc_db(request: pytest.FixtureRequest, arc_db: ArcDatabase) -> ArcDatabase:
    dataset = arc.large_arc_dataset(LARGE_INSTANCES, studies=500)
    return _load(_server(request, arc_db.backend), arc_db.backend, "arc_large", dataset)


def _sent_statement(connector: DatabaseConnector, query: str) -> tuple[str, Any]:
    """The statement and parameters the connector sends for a request query."""
    engine, _ = connector._prepare()
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "weasis_q" in statement:
            sent.append((statement, parameters))

    from weasis_link.connectors.base import QueryContext
    from weasis_link.study_tree import StudyTreeBuilder

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        connector.find(criteria_from_query_string(query), QueryContext(None, time.monotonic() + 30), StudyTreeBuilder())
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(sent) == 1
    return sent[0]


def _postgres_scans(plan: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(node type, relation, index condition or index name) of every scan node of a JSON plan."""
    node = plan.get("Plan", plan)
    if "Relation Name" in node or "Index Name" in node:
        yield (
            node["Node Type"],
            node.get("Relation Name", ""),
            f"{node.get('Index Name', '')} {node.get('Index Cond', '')}",
        )
    for child in node.get("Plans", []):
        yield from _postgres_scans(child)


BIG_TABLES = {"patient", "patient_id", "study", "series", "instance", "person_name"}


@pytest.mark.parametrize(
    ("query", "table", "column"),
    [
        ("studyUID={study}", "study", "study_iuid"),
        ("accessionNumber={accession}", "study", "accession_no"),
        ("patientID={patient}", "patient_id", "pat_id"),
    ],
    ids=["studyUID", "accessionNumber", "patientID"],
)
def test_key_columns_are_served_by_the_archives_indexes(
    large_arc_db: ArcDatabase, query: str, table: str, column: str
) -> None:
    records = list(arc.large_arc_dataset(LARGE_INSTANCES, studies=500).records)
    target = records[len(records) // 2]
    request = query.format(
        study=target.study_instance_uid, accession=target.accession_number, patient=target.patient_id
    )
    config = large_arc_db.config()
    connector = create_connector(ARCHIVE, config.connector.config[ARCHIVE])
    assert isinstance(connector, DatabaseConnector)
    statement, parameters = _sent_statement(connector, request)
    engine, _ = connector._prepare()
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM instance")).scalar_one()
        assert count >= LARGE_INSTANCES
        if large_arc_db.backend == "postgresql":
            [[plan]] = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).all()
            scans = list(_postgres_scans((json.loads(plan) if isinstance(plan, str) else plan)[0]))
            assert not [s for s in scans if s[0] == "Seq Scan" and s[1] in BIG_TABLES], scans
            assert any(
                "Index" in kind and relation == table and column in condition for kind, relation, condition in scans
            ), scans
        else:
            rows = [dict(r._mapping) for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]
            indexes = {
                (table_name, r._mapping["Key_name"])
                for table_name in BIG_TABLES
                for r in conn.exec_driver_sql(f"SHOW INDEX FROM {table_name}")
                if r._mapping["Column_name"] == column and r._mapping["Seq_in_index"] == 1
            }
            aliases = {"study": "st", "patient_id": "pid"}
            assert not [r for r in rows if r["type"] == "ALL"], rows
            driving = next(r for r in rows if r["table"] == aliases[table])
            assert (table, driving["key"]) in indexes, rows
    engine.dispose()


# ------------------------------------------------------------------------------------------------- errors
def test_a_select_for_dcm4chee_2_names_the_missing_column_in_the_log_and_the_archive_in_the_502(
    arc_db: ArcDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """dcm4chee 2.x kept the PatientID in patient.pat_id; arc-light does not have that column."""
    text = (EXAMPLES / EXAMPLE_FILE[arc_db.backend]).read_text(encoding="utf-8")
    assert "pid.pat_id AS patientId" in text
    config = arc_db.config(text.replace("pid.pat_id AS patientId", "p.pat_id AS patientId"), tmp_path)
    store = ManifestStore(s3_client("eu-central-1"), "weasis-link-test")
    settings = ServiceSettings(
        manifest_bucket="weasis-link-test",
        oauth_issuer="https://idp.test",
        oauth_audiences=["weasis-link"],
        oauth_jwks_url="https://idp.test/jwks",
    )
    service = ManifestService(settings, config, store)
    password = arc_db.environ()["PACS_DB_PASSWORD"]
    with caplog.at_level(logging.WARNING), pytest.raises(AllArchivesFailed) as raised:
        service.build(criteria_from_query_string("patientID=WLK-0001"), caller())
    lines = [r.getMessage() for r in caplog.records if r.name == "weasis_link.connectors.database"]
    assert len(lines) == 1, lines
    [line] = lines
    assert f"'{ARCHIVE}'" in line and "pat_id" in line, line
    assert "42703" in line or "1054" in line, line  # PostgreSQL's SQLSTATE / MariaDB's error number
    assert password not in line and "WLK-0001" not in line
    response = problem_for(raised.value)
    body = json.loads(response.body or "{}")
    assert response.status_code == 502
    assert f"archive '{ARCHIVE}': the configured select failed" in body["detail"]
    assert [f["archive"] for f in body["failedArchives"]] == [ARCHIVE]
    assert "pat_id" not in json.dumps(body) and "patient" not in body["detail"]


def test_example_files_take_the_database_from_the_environment_only() -> None:
    for name in EXAMPLE_FILE.values():
        db = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))["connector"]["config"][ARCHIVE]
        block = db["db-connector"]
        assert (block["uri"], block["user"], block["password"]) == (
            "${PACS_DB_URI}",
            "${PACS_DB_USER}",
            "${PACS_DB_PASSWORD}",
        )
        assert "driver" not in block


# ------------------------------------------------------------------------------------------------- make run
def test_make_run_serves_your_own_configuration(arc_db: ArcDatabase, tmp_path: Path) -> None:
    """The README's `WEASIS_LINK_CONFIG=… make run`, on the example file and this database."""
    import os
    import signal
    import subprocess
    import urllib.request

    from weasis_link_dev.dev_keys import SigningKey, access_token_claims

    key_file, ready = tmp_path / "key.pem", tmp_path / "ready.json"
    key = SigningKey.load_or_create(key_file)
    repo = EXAMPLES.parents[1]
    env = os.environ | arc_db.environ() | {"WEASIS_LINK_CONFIG": f"docs/examples/{EXAMPLE_FILE[arc_db.backend]}"}
    run_args = f"--port 0 --quiet --ready-file {ready} --key-file {key_file}"
    process = subprocess.Popen(
        ["make", "-s", "run", f"RUN_ARGS={run_args}"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # make and the stack in their own group, stopped together below
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
            time.sleep(0.1)
        api_url = json.loads(ready.read_text())["api_url"]
        request = urllib.request.Request(
            f"{api_url}/manifests?patientID=WLK-0010",
            headers={"Authorization": f"Bearer {key.sign(access_token_claims())}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["instances"] == sum(1 for r in TRUTH_RECORDS if r.patient_id == "WLK-0010")
        assert answer["failedArchives"] == []
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_slow_select_is_cancelled_by_the_server_within_the_query_timeout(arc_db: ArcDatabase, tmp_path: Path) -> None:
    """PostgreSQL's statement_timeout, MariaDB's max_statement_time (MariaDB has no MAX_EXECUTION_TIME): 504."""
    from weasis_link.connectors.base import QueryContext
    from weasis_link.errors import ArchiveTimeout
    from weasis_link.study_tree import StudyTreeBuilder

    sleep = "pg_sleep(3)" if arc_db.backend == "postgresql" else "SLEEP(3)"
    text = (EXAMPLES / EXAMPLE_FILE[arc_db.backend]).read_text(encoding="utf-8")
    slow = text.replace("FROM study st", f"FROM (SELECT {sleep} AS z) slow CROSS JOIN study st").replace(
        "        query:\n", "        query-timeout-seconds: 0.6\n        query:\n"
    )
    config = arc_db.config(slow, tmp_path)
    connector = create_connector(ARCHIVE, config.connector.config[ARCHIVE])
    assert isinstance(connector, DatabaseConnector)
    connector._prepare()  # column discovery (WHERE false) may or may not sleep: not what is measured
    # 0.6 s < the 3 s sleep < the 15 s default and the 20 s deadline: only the configured timeout can end this select
    # with a timeout (without it, the select would answer). No wall-clock limit: timings are the benchmarks' business.
    with pytest.raises(ArchiveTimeout):
        connector.find(
            criteria_from_query_string("patientID=WLK-0001"),
            QueryContext(None, time.monotonic() + 20),
            StudyTreeBuilder(),
        )


def _session_id(connection: sa.Connection, backend: str) -> int:
    return int(
        connection.execute(
            sa.text("SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()")
        ).scalar_one()
    )


def test_a_pooled_connection_the_server_dropped_is_replaced_and_the_query_answered(arc_db: ArcDatabase) -> None:
    """No ping before each query: a pooled connection the server ended (an idle timeout, a restart, an
    administrator) fails at once, and the select is sent again on a fresh connection: the request is answered."""
    from weasis_link.connectors.base import QueryContext
    from weasis_link.study_tree import StudyTreeBuilder

    connector = create_connector(ARCHIVE, arc_db.config().connector.config[ARCHIVE])
    assert isinstance(connector, DatabaseConnector)
    criteria = criteria_from_query_string("patientID=WLK-0001")
    expected = sum(1 for r in TRUTH_RECORDS if r.patient_id == "WLK-0001")

    def answered() -> int:
        builder = StudyTreeBuilder()
        connector.find(criteria, QueryContext(None, time.monotonic() + 20), builder)
        return sum(s.instance_count for s in builder.studies())

    assert answered() == expected and connector.last_request_count == 1
    engine, _ = connector._prepare()
    with engine.connect() as pooled:  # the one connection the pool holds
        dropped = _session_id(pooled, arc_db.backend)
    admin = sa.create_engine(arc_db.url)
    try:
        with admin.connect() as conn:
            if arc_db.backend == "postgresql":
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar_one()
            else:
                conn.execute(sa.text(f"KILL {dropped}"))  # an integer the server gave: KILL takes no parameter
    finally:
        admin.dispose()
    time.sleep(0.2)  # the server closes the session
    assert answered() == expected
    assert connector.last_request_count == 2  # the dropped connection failed, the select was sent again
    with engine.connect() as pooled:
        assert _session_id(pooled, arc_db.backend) != dropped


def test_a_nearer_deadline_bounds_one_query_and_does_not_linger(arc_db: ArcDatabase) -> None:
    """The statement timeout is min(query-timeout-seconds, the time left): a request near its deadline gets the
    shorter one, and the next request on the same pooled connection the configured one again (PostgreSQL: set for
    the transaction only; MariaDB: a session variable sent only when the pooled connection holds another value)."""
    from weasis_link.connectors.base import QueryContext
    from weasis_link.study_tree import StudyTreeBuilder

    connector = create_connector(ARCHIVE, arc_db.config().connector.config[ARCHIVE])
    assert isinstance(connector, DatabaseConnector)
    criteria = criteria_from_query_string("patientID=WLK-0001")
    engine, _ = connector._prepare()

    def session_timeout() -> float:
        with engine.connect() as conn:
            if arc_db.backend == "postgresql":
                return float(
                    conn.execute(sa.text("SELECT current_setting('statement_timeout')")).scalar_one().rstrip("ms") or 0
                )
            return float(conn.execute(sa.text("SELECT @@SESSION.max_statement_time")).scalar_one())

    connector.find(criteria, QueryContext(None, time.monotonic() + 4), StudyTreeBuilder())
    if arc_db.backend == "mariadb":
        assert 3 < session_timeout() <= 4  # this pooled connection's session holds the nearer bound
    connector.find(criteria, QueryContext(None, time.monotonic() + 20), StudyTreeBuilder())
    # PostgreSQL: nothing lingers in the session (0 = none); MariaDB: the configured 15 s again.
    assert session_timeout() == (0 if arc_db.backend == "postgresql" else 15)
