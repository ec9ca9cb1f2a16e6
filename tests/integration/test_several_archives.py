"""Several archives in one manifest, with real connectors: SQL on PostgreSQL, C-FIND on Orthanc's DICOM port and
QIDO-RS on Orthanc's DICOMweb API, all holding the standard dataset. One arcQuery per archive, queried concurrently;
`connector.default` and `archive=` choose them; a failing archive gets a WARN <Message> while the others are served;
`search-criteria.deactivated` is enforced per archive; two patients sharing a PatientID under two issuers are never
one <Patient>; the three archives hold the same instances, and each is listed once (in the first archive of the
configured order). The matrix runs with wildcards opted in and `ambiguous-patient: warn` (it proves the connectors,
not the refusals); the last tests drive the real API over HTTP (local stack), also with the defaults (409).

Run: .venv/bin/pytest tests/integration/test_several_archives.py -q
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from weasis_link.auth import Caller
from weasis_link.config import AppConfig, load_config
from weasis_link.connectors import Connector, QueryContext, create_connector
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import AllArchivesFailed, CriterionDeactivated, UnknownArchive
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.loopback_http import unused_port
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pacs_database import DB_QUERY, ISSUER_OF_PATIENT_ID_COLUMN
from weasis_link_dev.pytest_postgres import PacsDatabase
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.query_matrix import check, instance_patients, standard_cases
from weasis_link_dev.synthetic_studies import SHARED_ACCESSION_TWO_PATIENTS, standard_dataset
from weasis_link_dev.weasis_client import ArchiveView, fetch_manifest, read_manifest, validate

pytestmark = pytest.mark.integration

STANDARD = standard_dataset()
TRUTH = dict(instance_patients(STANDARD))
CASES = {c.name: c for c in standard_cases(STANDARD)}
TOKEN = "header.payload.signature"
ARCHIVES = ("sql", "dimse", "web")


def config_yaml(orthanc: OrthancServer, pacs: PacsDatabase, down_port: int, *, defaults: bool = False) -> str:
    """defaults=False: wildcards opted in and ambiguous patients listed with a warning (the matrix needs both)."""
    db = {**DB_QUERY, "issuer-of-patient-id-column": ISSUER_OF_PATIENT_ID_COLUMN}
    dicom = {"calling-aet": "WEASIS-LINK", "aet": orthanc.aet, "host": orthanc.dicom_host}
    search = {} if defaults else {"wildcards": ["PATIENT_ID", "STUDY_ACCESSION_NUMBER"], "wildcard-max-patients": 100}
    config = {
        "wado": {"authentication": {"oauth2": {"url": orthanc.wado_url}}},
        "connector": {
            "default": list(ARCHIVES),
            "ambiguous-patient": "refuse" if defaults else "warn",
            "config": {
                "sql": {
                    "type": "DB",
                    "search-criteria": search,
                    "db-connector": {"uri": pacs.sqlalchemy_url, "query": db},
                },
                "dimse": {
                    "type": "DICOM",
                    "search-criteria": search,
                    "dicom-connector": {**dicom, "port": orthanc.dicom_port},
                },
                "web": {
                    "type": "DICOM_WEB",
                    "search-criteria": search,
                    "dicom-web-connector": {"url": orthanc.dicomweb_url},
                },
                # An archive that is down: nothing listens on its port.
                "down": {"type": "DICOM", "dicom-connector": {**dicom, "port": down_port}},
                # The same PACS, but searching it by patient is not allowed.
                "no-patient-search": {
                    "type": "DICOM",
                    "search-criteria": {"deactivated": ["PATIENT_ID"]},
                    "dicom-connector": {**dicom, "port": orthanc.dicom_port},
                },
            },
        },
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@pytest.fixture(scope="module")
def config_file(orthanc: OrthancServer, postgres_pacs: PacsDatabase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("several") / "weasis-link.yaml"
    path.write_text(config_yaml(orthanc, postgres_pacs, unused_port()))
    return path


@dataclass
class Rendezvous:
    """Where the archives' queries meet before they start, when a test sets `barrier`: a service that queried the
    archives one after the other would never gather them all (the barrier then breaks)."""

    barrier: threading.Barrier | None = None


@dataclass
class Gathered:
    """A real connector that first waits at the rendezvous (when one is set)."""

    inner: Connector
    rendezvous: Rendezvous
    connector_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.connector_id = self.inner.connector_id

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        barrier = self.rendezvous.barrier
        if barrier is not None:
            barrier.wait(timeout=10)  # well within the archive deadline
        self.inner.find(criteria, context, builder)


@dataclass
class Service:
    service: ManifestService
    config: AppConfig
    rendezvous: Rendezvous

    def build(self, query: str) -> list[ArchiveView]:
        built = self.service.build(criteria_from_query_string(query), caller())
        xml = gzip.decompress(built.body_gzip)
        assert validate(xml) == []
        return read_manifest(xml)


def caller() -> Caller:
    return Caller(TOKEN, "doctor", frozenset({"weasis"}), int(time.time()) + 3600, {})


@pytest.fixture(scope="module")
def service(config_file: Path) -> Service:
    config = load_config(config_file, environ={}, resolve_secret=lambda ref: ref)
    settings = ServiceSettings(
        manifest_bucket="weasis-link-test",
        oauth_issuer="https://idp.test",
        oauth_audiences=["weasis-link"],
        oauth_jwks_url="https://idp.test/jwks",
    )
    rendezvous = Rendezvous()
    lock = threading.Lock()
    made: dict[str, Connector] = {}

    def factory(cid: str) -> Connector:
        with lock:
            if cid not in made:
                made[cid] = Gathered(create_connector(cid, config.connector.config[cid]), rendezvous)
            return made[cid]

    store = ManifestStore(s3_client("eu-central-1"), "weasis-link-test")  # build() never stores
    return Service(ManifestService(settings, config, store, connector_factory=factory), config, rendezvous)


def answered(view: ArchiveView) -> dict[str, tuple[str, str | None]]:
    return {i.sop_uid: (i.patient_id, i.issuer) for i in view.instances}


# ---------------------------------------------------------------------------------------- the service itself
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_archive_answers_the_matrix_in_its_own_arc_query(service: Service, case: str) -> None:
    matrix_case = CASES[case]
    # One archive at a time: together, the archives' identical instances are listed once (by the first).
    views = [view for cid in ARCHIVES for view in service.build(f"{matrix_case.query}&archive={cid}")]
    assert [v.arc_id for v in views] == list(ARCHIVES)
    expected = matrix_case.expected(STANDARD)
    for view in views:
        result = check(answered(view), expected, TRUTH)
        assert result.ok, (view.arc_id, len(result.missing), len(result.extra), len(result.wrong_patient))
        assert len(view.instances) == len(answered(view))  # no instance twice in an arcQuery
        if not expected:
            assert view.message is not None and view.message["title"] == "No images found"


def test_same_patient_id_under_two_issuers_is_two_patients(service: Service) -> None:
    views = [view for cid in ARCHIVES for view in service.build(f"patientID=WLK-0002&archive={cid}")]
    assert len(views) == len(ARCHIVES)
    for view in views:
        assert view.message is not None and "HOSP-A, HOSP-B" in view.message["description"]  # warn mode
        patients = [(p["PatientID"], p.get("IssuerOfPatientID"), p["PatientName"]) for p in view.patients]
        assert sorted(patients) == [
            ("WLK-0002", "HOSP-A", "Müller^Jürgen"),
            ("WLK-0002", "HOSP-B", "Martin^Claire"),
        ], view.arc_id
        for instance in view.instances:
            assert TRUTH[instance.sop_uid] == (instance.patient_id, instance.issuer)
            assert instance.patient_name == ("Müller^Jürgen" if instance.issuer == "HOSP-A" else "Martin^Claire")


def test_archives_are_queried_concurrently(service: Service) -> None:
    barrier = service.rendezvous.barrier = threading.Barrier(len(ARCHIVES))
    try:
        views = service.build("patientID=WLK-000*")
    finally:
        service.rendezvous.barrier = None
    assert not barrier.broken  # all three queries were under way at one moment (fewer would break it)
    assert views  # and the build completed


def test_archive_parameter_chooses_the_archives(service: Service) -> None:
    assert [v.arc_id for v in service.build("patientID=WLK-0001&archive=dimse")] == ["dimse"]
    # web's instances are all in sql, first in the configured order: listed once, there.
    assert [v.arc_id for v in service.build("patientID=WLK-0001&archive=web&archive=sql")] == ["sql"]
    with pytest.raises(UnknownArchive):
        service.build("patientID=WLK-0001&archive=nowhere")


def test_a_failing_archive_gets_a_warning_while_the_others_are_served(service: Service) -> None:
    views = service.build("patientID=WLK-0003&archive=sql&archive=down&archive=dimse")
    by_id = {v.arc_id: v for v in views}
    assert list(by_id) == ["sql", "down"]  # dimse's instances are all in sql: listed once, there
    down = by_id["down"]
    assert down.instances == [] and down.message is not None
    assert down.message["severity"] == "WARN"
    assert "down" in down.message["description"] and "cannot be reached" in down.message["description"]
    expected = CASES["patient without issuer"].expected(STANDARD)
    assert set(answered(by_id["sql"])) == expected
    assert by_id["sql"].message is None


def test_when_every_archive_fails_nothing_is_built(service: Service) -> None:
    with pytest.raises(AllArchivesFailed) as raised:
        service.build("patientID=WLK-0003&archive=down")
    assert [(f.archive_id, f.kind) for f in raised.value.failures] == [("down", "unavailable")]


def test_deactivated_criteria_are_enforced_per_archive(service: Service) -> None:
    # Searching by patient: the archive that forbids it is left out, the others answer.
    views = service.build("patientID=WLK-0001&archive=no-patient-search&archive=dimse")
    assert [v.arc_id for v in views] == ["dimse"]
    with pytest.raises(CriterionDeactivated):
        service.build("patientID=WLK-0001&archive=no-patient-search")
    # By study UID it answers.
    dupont = next(r for r in STANDARD if r.patient_id == "WLK-0001")
    [view] = service.build(f"studyUID={dupont.study_instance_uid}&archive=no-patient-search")
    assert view.arc_id == "no-patient-search" and answered(view) != {}
    [view] = service.build(f"studyUID={dupont.study_instance_uid}&archive=no-patient-search&archive=sql")
    assert view.arc_id == "sql" and answered(view) != {}  # the same instances, listed once


def test_each_arc_query_carries_the_token_and_its_wado_url(service: Service, orthanc: OrthancServer) -> None:
    for view in service.build("patientID=WLK-0001"):
        assert view.base_url == orthanc.wado_url
        assert view.http_tags == {"Authorization": f"Bearer {TOKEN}"}


# ------------------------------------------------------------------------------------------ the API over HTTP
@pytest.fixture(scope="module")
def stack(local_stack_factory: StackFactory, config_file: Path) -> StackHandle:
    return local_stack_factory(config=config_file)


def get_manifest(stack: StackHandle, query: str) -> tuple[int, dict[str, Any], list[ArchiveView]]:
    status, _, body = stack.get(f"/manifests?{query}", stack.token())
    answer = json.loads(body)
    if status != 200:
        return status, answer, []
    return status, answer, read_manifest(fetch_manifest(str(answer["manifestUrl"])).xml)


def test_api_serves_several_archives_in_one_manifest(stack: StackHandle) -> None:
    status, answer, views = get_manifest(stack, "patientID=WLK-0002&archive=sql&archive=dimse&archive=web&archive=down")
    assert status == 200, answer
    # The three archives hold the same instances: each is listed once, by sql (first in connector.default).
    assert [v.arc_id for v in views] == ["sql", "down"]
    expected = CASES["one PatientID, two issuers"].expected(STANDARD)
    assert check(answered(views[0]), expected, TRUTH).ok
    assert len(views[0].patients) == 2
    assert views[1].message is not None and views[1].message["severity"] == "WARN"
    assert answer["instances"] == len(expected)  # distinct, not 3 x
    assert answer["patients"] == 2
    assert any("sql and dimse, web" in w for w in answer["warnings"]), answer["warnings"]
    assert any("HOSP-A, HOSP-B" in w for w in answer["warnings"]), answer["warnings"]  # ambiguous-patient: warn
    assert [(f["archive"], f["kind"]) for f in answer.get("failedArchives", [])] == [("down", "unavailable")]


@pytest.fixture(scope="module")
def default_stack(
    local_stack_factory: StackFactory, orthanc: OrthancServer, postgres_pacs: PacsDatabase, config_file: Path
) -> StackHandle:
    path = config_file.parent / "defaults.yaml"
    path.write_text(config_yaml(orthanc, postgres_pacs, unused_port(), defaults=True))
    return local_stack_factory(config=path)


def test_api_with_the_defaults_refuses_two_patients_and_wildcards(default_stack: StackHandle) -> None:
    """The same PatientID under two issuers, found by three real connectors: 409 with the issuers, nothing stored."""
    before = default_stack.object_keys()
    status, answer, _ = get_manifest(default_stack, "patientID=WLK-0002")
    assert status == 409, answer
    assert answer["issuers"] == ["HOSP-A", "HOSP-B"] and answer["patients"] == 2
    assert "Müller" not in json.dumps(answer) and "Martin" not in json.dumps(answer)
    status, answer, _ = get_manifest(default_stack, "patientID=WLK-000*")
    assert status == 400 and answer["type"].endswith("wildcard-not-allowed"), answer
    assert default_stack.object_keys() == before
    status, answer, views = get_manifest(default_stack, "patientID=WLK-0002%5E%5E%5EHOSP-B")
    assert status == 200 and answer["patients"] == 1, answer
    assert [v.arc_id for v in views] == ["sql"]
    # An accession number two patients share: the same answer, unless a patientID says whose.
    before = default_stack.object_keys()
    status, answer, _ = get_manifest(default_stack, f"accessionNumber={SHARED_ACCESSION_TWO_PATIENTS}")
    assert status == 409 and answer["patients"] == 2, answer
    assert default_stack.object_keys() == before
    narrowed = f"accessionNumber={SHARED_ACCESSION_TWO_PATIENTS}&patientID=WLK-0003"
    status, answer, _ = get_manifest(default_stack, narrowed)
    assert status == 200 and answer["patients"] == 1, answer


def test_api_answers_503_and_stores_nothing_when_every_archive_fails(stack: StackHandle) -> None:
    before = stack.object_keys()
    status, answer, _ = get_manifest(stack, "patientID=WLK-0002&archive=down")
    assert status == 503, answer
    assert answer["status"] == 503
    assert stack.object_keys() == before


def test_api_enforces_deactivated_criteria(stack: StackHandle) -> None:
    status, answer, _ = get_manifest(stack, "patientID=WLK-0002&archive=no-patient-search")
    assert status == 403, answer
    log = stack.log()
    assert "Müller" not in log and "WLK-0002" not in log  # no patient data in the function's log
