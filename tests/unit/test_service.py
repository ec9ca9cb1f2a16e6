"""The use case with fake connectors: archive selection, failures, token injection, nothing stored on failure."""

from __future__ import annotations

import datetime as dt
import gzip
import threading
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from weasis_link.auth import Caller
from weasis_link.config import AppConfig
from weasis_link.connectors.base import Connector, QueryContext
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import AllArchivesFailed, ArchiveError, ArchiveTimeout, CriterionDeactivated, UnknownArchive
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore
from weasis_link.study_tree import StudyTreeBuilder
from weasis_link_dev.configs import config_from_text
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import read_manifest, validate

BUCKET, REGION = "weasis-link-test", "eu-central-1"  # the manifest_store fixture's
NOW = 1_795_342_530.0
CONFIG = """
wado:
  authentication:
    oauth2: {url: "https://pacs-a.example/wado"}
connector:
  default: [a, b]
  config:
    a:
      type: DICOM
      dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}
    b:
      type: DICOM
      search-criteria: {deactivated: [PATIENT_ID]}
      wado:
        authentication:
          force-basic: true
          oauth2: {url: "https://pacs-b.example/oauth-wado"}
          basic: {url: "https://pacs-b.example/wado", login: viewer, password: pw}
      manifest: {transfer-syntax-uid: "*", http-tags: {X-Site: hospital}}
      dicom-connector: {calling-aet: W, aet: B, host: b, port: 104}
    c:
      type: DICOM
      wado: {url: "https://pacs-c.example/wado"}
      dicom-connector: {calling-aet: W, aet: C, host: c, port: 104}
"""


class FakeConnector:
    def __init__(self, connector_id: str, behaviour: Callable[[StudyTreeBuilder], None]) -> None:
        self.connector_id = connector_id
        self.behaviour = behaviour
        self.calls: list[QueryCriteria] = []

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        self.calls.append(criteria)
        self.behaviour(builder)


def instances(
    prefix: str, pid: str = "P1", issuer: str | None = "A", count: int = 2
) -> Callable[[StudyTreeBuilder], None]:
    def feed(builder: StudyTreeBuilder) -> None:
        for i in range(count):
            builder.add_instance(
                {
                    "PatientID": pid,
                    "IssuerOfPatientID": issuer,
                    "PatientName": "Doe^J",
                    "StudyInstanceUID": prefix,
                    "SeriesInstanceUID": f"{prefix}.1",
                    "SOPInstanceUID": f"{prefix}.1.{i}",
                    "StudyDate": "20240101",
                }
            )

    return feed


def failing(error: ArchiveError) -> Callable[[StudyTreeBuilder], None]:
    def fail(builder: StudyTreeBuilder) -> None:
        raise error

    return fail


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return config_from_text(CONFIG, tmp_path)


@pytest.fixture
def s3(manifest_store: ManifestStore) -> ManifestStore:
    return manifest_store  # tests/conftest.py: moto's in-process S3, bucket BUCKET in REGION


def make_service(
    config: AppConfig,
    store: ManifestStore,
    behaviours: dict[str, Callable[[StudyTreeBuilder], None]],
    **settings: object,
) -> tuple[ManifestService, dict[str, FakeConnector]]:
    fakes = {cid: FakeConnector(cid, b) for cid, b in behaviours.items()}
    env = {
        "manifest_bucket": BUCKET,
        "oauth_issuer": "i",
        "oauth_audiences": ["a"],
        "oauth_jwks_url": "https://idp/jwks",
    } | settings
    service = ManifestService(
        ServiceSettings.model_validate(env), config, store, connector_factory=lambda cid: fakes[cid], clock=lambda: NOW
    )
    return service, fakes


CALLER = Caller(
    token="eyJhbGciOi.eyJzdWIi.c2ln", subject="alice", scopes=frozenset(), expires_at=int(NOW) + 3600, claims={}
)


def stored_objects() -> list[str]:
    answer = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in answer.get("Contents", [])]


def manifest_of(store: ManifestStore, manifest_id: str) -> bytes:
    return gzip.decompress(stored_manifest(store, manifest_id))


def test_default_archives_are_queried_and_each_gets_its_own_arcquery(config: AppConfig, s3: ManifestStore) -> None:
    service, _fakes = make_service(config, s3, {"a": instances("1.1"), "b": instances("1.2", pid="P9")})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.1,1.2"), CALLER)
    assert (result.patients, result.studies, result.series, result.instances) == (2, 2, 2, 4)
    xml = manifest_of(s3, result.manifest_id)
    assert validate(xml) == []
    a, b = read_manifest(xml)
    # a: the caller's token goes where an oauth2 url asks for it.
    assert (a.arc_id, a.base_url, a.http_tags) == (
        "a",
        "https://pacs-a.example/wado",
        {"Authorization": f"Bearer {CALLER.token}"},
    )
    # b: force-basic wins over oauth2; no token leaves for an archive that does not need it.
    assert (b.arc_id, b.base_url, b.http_tags) == ("b", "https://pacs-b.example/wado", {"X-Site": "hospital"})
    assert b.attributes["webLogin"] == "dmlld2VyOnB3"
    assert b.series[0]["WadoTransferSyntaxUID"] == "*"
    assert {i.sop_uid for i in a.instances} == {"1.1.1.0", "1.1.1.1"}
    assert result.expires_at == dt.datetime.fromtimestamp(NOW + 300, tz=dt.UTC)


def test_archive_param_selects_and_unknown_archive_is_refused(config: AppConfig, s3: ManifestStore) -> None:
    service, fakes = make_service(config, s3, {"a": instances("1.1"), "b": instances("1.2"), "c": instances("1.3")})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.3&archive=c"), CALLER)
    [c] = read_manifest(manifest_of(s3, result.manifest_id))
    assert (c.arc_id, c.base_url, c.http_tags) == ("c", "https://pacs-c.example/wado", {})
    assert fakes["a"].calls == [] and fakes["b"].calls == []
    with pytest.raises(UnknownArchive, match="nope"):
        service.create_manifest(criteria_from_query_string("studyUID=1.3&archive=nope"), CALLER)


def test_deactivated_criterion_skips_that_archive_or_refuses_when_none_is_left(
    config: AppConfig, s3: ManifestStore
) -> None:
    service, fakes = make_service(config, s3, {"a": instances("1.1"), "b": instances("1.2")})
    result = service.create_manifest(criteria_from_query_string("patientID=P1"), CALLER)
    assert [o.archive_id for o in result.archives] == ["a"] and fakes["b"].calls == []
    assert result.warnings == ["The archive b was not searched: searching by patientID is deactivated there."]
    before = stored_objects()
    with pytest.raises(CriterionDeactivated, match="patientID"):
        service.create_manifest(criteria_from_query_string("patientID=P1&archive=b"), CALLER)
    assert stored_objects() == before


def test_a_failing_archive_gets_a_warning_while_the_others_are_served(config: AppConfig, s3: ManifestStore) -> None:
    service, _ = make_service(config, s3, {"a": instances("1.1"), "b": failing(ArchiveTimeout("no answer in 15 s"))})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER)
    assert [f.archive_id for f in result.failed_archives] == ["b"]
    a, b = read_manifest(manifest_of(s3, result.manifest_id))
    assert len(a.instances) == 2 and a.message is None
    assert b.message is not None and b.message["severity"] == "WARN" and "no answer in 15 s" in b.message["description"]
    assert validate(manifest_of(s3, result.manifest_id)) == []


def test_when_every_archive_fails_nothing_is_stored(config: AppConfig, s3: ManifestStore) -> None:
    service, _ = make_service(
        config, s3, {"a": failing(ArchiveError("HTTP 500")), "b": failing(ArchiveTimeout("slow"))}
    )
    with pytest.raises(AllArchivesFailed) as err:
        service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER)
    assert {(f.archive_id, f.kind) for f in err.value.failures} == {("a", "bad-response"), ("b", "timeout")}
    assert stored_objects() == []


def test_a_crashing_connector_is_contained(config: AppConfig, s3: ManifestStore) -> None:
    def crash(builder: StudyTreeBuilder) -> None:
        raise RuntimeError("bug")

    service, _ = make_service(config, s3, {"a": instances("1.1"), "b": crash})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER)
    assert [f.kind for f in result.failed_archives] == ["bad-response"]


def test_a_slow_archive_is_cut_at_the_deadline(config: AppConfig, s3: ManifestStore) -> None:
    release = threading.Event()

    def slow(builder: StudyTreeBuilder) -> None:
        release.wait(60)  # answers (with nothing) only once the test is over: a service that waited would pass b

    service, _ = make_service(config, s3, {"a": instances("1.1"), "b": slow}, archive_deadline_seconds=0.2)
    try:
        result = service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER)
        assert [(f.archive_id, f.kind) for f in result.failed_archives] == [("b", "timeout")]
    finally:
        release.set()  # let the abandoned query finish (and log) inside the test
        for thread in threading.enumerate():
            if thread.name.startswith("archive"):
                thread.join(5)


def test_answers_are_rechecked_against_the_criteria(config: AppConfig, s3: ManifestStore) -> None:
    # A PACS that ignores IssuerOfPatientID returns both patients; only the asked one reaches the manifest.
    def both(builder: StudyTreeBuilder) -> None:
        instances("1.1", issuer="A")(builder)
        instances("1.2", issuer="B")(builder)

    service, _ = make_service(config, s3, {"a": both, "b": instances("9.9")})
    result = service.create_manifest(criteria_from_query_string("patientID=P1^^^B&archive=a"), CALLER)
    [a] = read_manifest(manifest_of(s3, result.manifest_id))
    assert {(i.patient_id, i.issuer, i.study_uid) for i in a.instances} == {("P1", "B", "1.2")}


def test_no_match_is_a_valid_manifest_with_a_warning(config: AppConfig, s3: ManifestStore) -> None:
    service, _ = make_service(config, s3, {"a": lambda b: None, "b": lambda b: None})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER)
    assert result.instances == 0
    xml = manifest_of(s3, result.manifest_id)
    assert validate(xml) == []
    assert all(v.message and v.message["title"] == "No images found" for v in read_manifest(xml))


def test_a_token_expiring_before_the_manifest_is_reported(config: AppConfig, s3: ManifestStore) -> None:
    service, _ = make_service(config, s3, {"a": instances("1.1"), "b": instances("1.2")})
    short = Caller(token=CALLER.token, subject="s", scopes=frozenset(), expires_at=int(NOW) + 120, claims={})
    result = service.create_manifest(criteria_from_query_string("studyUID=1.1,1.2"), short)
    assert result.warnings and "expires in 120 s" in result.warnings[0]
    a, b = read_manifest(manifest_of(s3, result.manifest_id))
    assert a.message is not None and a.message["title"] == "Access token expires soon"  # a carries the token
    assert b.message is None  # b uses basic authentication: the token does not matter there


def test_every_manifest_gets_a_new_key(config: AppConfig, s3: ManifestStore) -> None:
    service, _ = make_service(config, s3, {"a": instances("1.1"), "b": instances("1.2")})
    ids = {service.create_manifest(criteria_from_query_string("studyUID=1.1"), CALLER).manifest_id for _ in range(5)}
    assert len(ids) == 5 and len(stored_objects()) == 5


_: type[Connector] = FakeConnector  # the fake honours the protocol
