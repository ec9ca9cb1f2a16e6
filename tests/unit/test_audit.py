"""The audit trail's builders and sink: every event of the catalogue is a valid FHIR R4 AuditEvent with BALP's
required elements and nothing it must never hold; the EventBridge sink delivers to a bus (moto) with a client created
at the first event; a refusing bus fails the request closed (nothing stored) unless fail-open."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from weasis_link import audit
from weasis_link.audit import AuditContext, client_of, context_from_event, summarize_manifest
from weasis_link.audit_trail import AuditTrail, EventBridgeSink
from weasis_link.auth import Caller
from weasis_link.config import load_config
from weasis_link.connectors.base import QueryContext
from weasis_link.criteria import QueryCriteria
from weasis_link.errors import AuditUnavailable
from weasis_link.http.requests import criteria_from_query_string
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, put_while, s3_client
from weasis_link.study_tree import StudyTreeBuilder

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from weasis_link_dev.audit_checks import (
    Served,
    audit_mismatches,
    balp_problems,
    forbidden_content,
    kind,
    leaks,
    validate_fhir,
)

NOW = 1_795_342_530.0
TOKEN = "eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"
MANIFEST_ID = "1795342830-AbCdEfGhIjKlMnOpQrStUvWxYz012345"
NAME = "Weber^Anna"
CTX = AuditContext(
    route="GET /manifests",
    request_id="req-1",
    source_ip="203.0.113.7",
    user_agent="Weasis/4.7.2",
    server_host="viewer.example.org",
    issuer="https://idp.example.org/realms/h",
    subject="alice",
    client_id="portal",
    query=[("patientID", "P1^^^HOSP"), ("modalitiesInStudy", "CT")],
)
MANIFEST = f"""<?xml version="1.0" encoding="UTF-8"?>
<manifest xmlns="http://www.weasis.org/xsd/2.5" uid="u">
  <arcQuery arcId="pacs" baseUrl="https://pacs.example/wado">
    <Patient PatientID="P1" IssuerOfPatientID="HOSP" PatientName="{NAME}">
      <Study StudyInstanceUID="1.2.3">
        <Series SeriesInstanceUID="1.2.3.1"><Instance SOPInstanceUID="1.2.3.1.1"/><Instance SOPInstanceUID="1.2.3.1.2"/>
        </Series>
      </Study>
    </Patient>
    <Patient PatientID="P2" PatientName="Other^Name">
      <Study StudyInstanceUID="1.2.4"><Series SeriesInstanceUID="1.2.4.1"><Instance SOPInstanceUID="1.2.4.1.1"/>
      </Series></Study>
    </Patient>
  </arcQuery>
</manifest>""".encode()
FORBIDDEN = [TOKEN, NAME, "Other^Name", MANIFEST_ID, "https://pacs.example", "viewer.example.org/"]


def catalogue() -> dict[str, dict[str, Any]]:
    summary = summarize_manifest(gzip.compress(MANIFEST))
    expires = dt.datetime.fromtimestamp(NOW + 300, tz=dt.UTC)
    return {
        "query": audit.query_event(CTX, ["pacs"], ["P1^^^HOSP"]),
        "manifest-issued": audit.disclosure_event(CTX, MANIFEST_ID, summary, expires),
        "manifest-redeemed": audit.redemption_event(CTX.model_copy(update={"subject": None}), MANIFEST_ID, summary),
        "upload": audit.upload_event(CTX, MANIFEST_ID, summary, expires),
        "refusal-401": audit.refusal_event(CTX.model_copy(update={"subject": None}), 401, "unauthorized"),
        "refusal-403": audit.refusal_event(CTX, 403, "archive-forbidden"),
        "failed-query": audit.query_event(CTX, ["pacs"], outcome="8", outcome_desc="502 archives-failed"),
    }


@pytest.mark.parametrize("name", list(catalogue()))
def test_every_event_of_the_catalogue_is_a_valid_r4_audit_event_with_balps_elements(name: str) -> None:
    event = catalogue()[name]
    validate_fhir(event)
    assert balp_problems(event) == []
    assert forbidden_content(event, FORBIDDEN) == []
    assert kind(event) == name.split("-4")[0].replace("failed-", "")


def test_a_disclosure_names_who_from_where_what_and_the_manifest_by_digest_only() -> None:
    event = catalogue()["manifest-issued"]
    text = json.dumps(event)
    patients = [e["what"]["identifier"]["value"] for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    assert patients == ["P1^^^HOSP", "P2"]
    studies = [e["what"]["identifier"]["value"] for e in event["entity"] if e["type"].get("code") == "ImagingStudy"]
    assert studies == ["urn:oid:1.2.3", "urn:oid:1.2.4"]
    manifest = next(e for e in event["entity"] if e.get("role", {}).get("code") == "20")
    details = {d["type"]: d["valueString"] for d in manifest["detail"]}
    assert details == {
        "patients": "2",
        "studies": "2",
        "series": "2",
        "instances": "3",
        "archives": "pacs",
        "expires": "2026-11-22T10:20:30Z",
    }
    assert manifest["what"]["identifier"]["value"] == audit.manifest_digest(MANIFEST_ID)
    for expected in ("203.0.113.7", "Weasis/4.7.2", "alice", "portal", "https://idp.example.org/realms/h", "req-1"):
        assert expected in text
    # the same digest in the redemption: the two events join without the capability
    redeemed = catalogue()["manifest-redeemed"]
    assert audit.manifest_digest(MANIFEST_ID) in json.dumps(redeemed)


def test_the_summary_reads_identifiers_and_counts_never_names() -> None:
    summary = summarize_manifest(gzip.compress(MANIFEST))
    assert (summary.patients, summary.study_uids, summary.archives) == (
        ["P1^^^HOSP", "P2"],
        ["1.2.3", "1.2.4"],
        ["pacs"],
    )
    assert (summary.series, summary.instances) == (2, 3)
    assert NAME not in repr(summary)


def test_the_query_records_only_the_parameters_that_select_images() -> None:
    event = {
        "requestContext": {"requestId": "r", "http": {"method": "GET", "sourceIp": "10.0.0.1", "userAgent": "x\n\ty"}},
        "routeKey": "GET /weasis",
    }
    caller = Caller(TOKEN, "bob", frozenset(), int(NOW), {"iss": "https://idp", "azp": "portal"})
    pairs = [
        ("patientID", "P"),
        ("cdb", "https://evil.example/x"),
        ("arg", "$dicom:get -w https://x"),
        ("containsInDescription", NAME),
        ("access_token", TOKEN),
    ]
    ctx = context_from_event(event, caller, pairs)
    assert ctx.query == [("patientID", "P")]
    assert (ctx.route, ctx.user_agent, ctx.client_id, ctx.issuer, ctx.subject) == (  # routeKey as it is
        "GET /weasis",
        "xy",
        "portal",
        "https://idp",
        "bob",
    )


@pytest.mark.parametrize(
    ("claims", "client"),
    [
        ({"client_id": "cognito-app"}, "cognito-app"),
        ({"azp": "keycloak-client"}, "keycloak-client"),
        ({"appid": "entra-v1"}, "entra-v1"),
        ({"cid": "okta"}, "okta"),
        ({"aud": "weasis-link"}, None),
    ],
)
def test_the_client_comes_from_the_claim_each_provider_uses(claims: Mapping[str, Any], client: str | None) -> None:
    assert client_of(claims) == client


def test_many_studies_are_summarised_to_stay_under_the_eventbridge_entry_limit() -> None:
    uids = [f"1.2.{i}" for i in range(1000)]
    summary = audit.ManifestSummary(["P"], uids, ["pacs"], 1000, 1000)
    event = audit.disclosure_event(CTX, MANIFEST_ID, summary)
    validate_fhir(event)
    assert len(json.dumps(event)) < 256 * 1024
    manifest = next(e for e in event["entity"] if e.get("role", {}).get("code") == "20")
    assert {"type": "studies-not-listed", "valueString": "800"} in manifest["detail"]


# --- the trail and its sink -----------------------------------------------------------------------------------
class RefusingSink:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.calls += 1
        raise ConnectionError("bus down")


def test_a_refusing_bus_fails_the_request_closed_unless_fail_open() -> None:
    event = catalogue()["query"]
    with pytest.raises(AuditUnavailable):
        AuditTrail(RefusingSink()).record(event)
    sink = RefusingSink()
    AuditTrail(sink, fail_open=True).record(event)  # served anyway
    assert sink.calls == 1
    AuditTrail(RefusingSink()).record_refusal(catalogue()["refusal-401"])  # a refusal stays a refusal


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def bus_with_queue(name: str) -> str:
    """A bus whose rule copies every audit event into an SQS queue; returns the queue URL."""
    events, sqs = boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="copy", EventBusName=name, EventPattern='{"source": ["weasis-link.audit"]}')
    events.put_targets(Rule="copy", EventBusName=name, Targets=[{"Id": "q", "Arn": arn}])
    return str(queue_url)


def delivered(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_the_sink_makes_its_client_at_init_on_a_thread_of_its_own(aws: None) -> None:
    sink = EventBridgeSink("audit", "us-east-1")
    assert sink._client is None  # constructing it creates nothing
    sink.prepare()
    deadline = time.monotonic() + 10
    while sink._client is None and time.monotonic() < deadline:
        time.sleep(0.01)
    client = sink._client
    assert client is not None
    assert sink._events() is client  # the first event reuses it


def test_the_sink_puts_each_event_on_the_bus_with_a_client_made_once(aws: None) -> None:
    queue = bus_with_queue("audit")
    sink = EventBridgeSink("audit", "us-east-1")
    assert sink._client is None  # without prepare(), the first event makes it
    AuditTrail(sink).record(catalogue()["query"])
    client = sink._client
    AuditTrail(sink).record(catalogue()["refusal-403"])
    assert sink._client is client  # and then reuses it
    envelopes = delivered(queue)
    assert [(e["source"], e["detail-type"], kind(e["detail"])) for e in envelopes] == [
        ("weasis-link.audit", "FHIR AuditEvent", "query"),
        ("weasis-link.audit", "FHIR AuditEvent", "refusal"),
    ]


class OnePatient:
    def __init__(self, connector_id: str) -> None:
        self.connector_id = connector_id

    def find(self, criteria: QueryCriteria, context: QueryContext, builder: StudyTreeBuilder) -> None:
        builder.add_instance(
            {
                "PatientID": "P1",
                "IssuerOfPatientID": "HOSP",
                "PatientName": NAME,
                "StudyInstanceUID": "1.2.3",
                "SeriesInstanceUID": "1.2.3.1",
                "SOPInstanceUID": "1.2.3.1.1",
            }
        )


def test_a_manifest_is_recorded_before_it_is_stored_and_not_stored_when_the_bus_refuses(
    aws: None, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "wado: {url: 'https://pacs.example/wado'}\n"
        "connector: {config: {pacs: {type: DICOM, dicom-connector: {calling-aet: W, aet: A, host: a, port: 104}}}}\n"
    )
    config = load_config(path, environ={}, resolve_secret=lambda r: r)
    settings = ServiceSettings.model_validate(
        {"manifest_bucket": "bkt", "oauth_issuer": "i", "oauth_audiences": ["a"], "oauth_jwks_url": "https://i/j"}
    )
    s3 = s3_client("us-east-1")
    s3.create_bucket(Bucket="bkt")
    store = ManifestStore(s3, "bkt")
    service = ManifestService(settings, config, store, connector_factory=OnePatient)
    caller = Caller(TOKEN, "alice", frozenset(), int(dt.datetime.now().timestamp()) + 3600, {})
    criteria = criteria_from_query_string("patientID=P1^^^HOSP")

    queue = bus_with_queue("audit")
    trail = AuditTrail(EventBridgeSink("audit", "us-east-1"))
    result = service.create_manifest(criteria, caller, before_store=trail.disclosure_gate(CTX))
    (envelope,) = delivered(queue)
    event = envelope["detail"]
    validate_fhir(event)
    assert balp_problems(event) == []
    assert forbidden_content(event, [TOKEN, NAME, result.manifest_id, result.manifest_url]) == []
    assert [e["what"]["identifier"]["value"] for e in event["entity"] if e.get("role", {}).get("code") == "1"] == [
        "P1^^^HOSP"
    ]

    down = AuditTrail(EventBridgeSink("audit", "us-east-1", endpoint_url="http://127.0.0.1:9"))
    keys_before = s3.list_objects_v2(Bucket="bkt").get("KeyCount")
    with pytest.raises(AuditUnavailable):
        service.create_manifest(criteria, caller, before_store=down.disclosure_gate(CTX))
    assert s3.list_objects_v2(Bucket="bkt").get("KeyCount") == keys_before  # nothing stored


def test_the_route_never_carries_the_path() -> None:
    """A short link's path is a capability: without API Gateway's routeKey the event says `$default`, not the path."""
    event = {"requestContext": {"http": {"method": "GET", "path": "/manifests/1795342530-secret"}}}
    ctx = context_from_event(event, None)
    assert ctx.route == "GET $default"
    assert "secret" not in json.dumps(ctx.route)


@pytest.fixture
def bucket(aws: None) -> tuple[S3Client, ManifestStore, dt.datetime]:
    """An S3 client, the manifest store on a fresh bucket, and an expiry five minutes ahead."""
    s3 = s3_client("us-east-1")
    s3.create_bucket(Bucket="bkt")
    return s3, ManifestStore(s3, "bkt"), dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)


def test_the_event_is_sent_while_the_manifest_is_written_and_a_refusal_deletes_it(
    bucket: tuple[S3Client, ManifestStore, dt.datetime],
) -> None:
    """storage.put_while: PutEvents and PutObject at once (the request waits for the slower one, not both); when the
    event is refused, the object just written is deleted before the refusal is raised."""
    s3, store, expires = bucket
    written = threading.Event()
    seen: list[bool] = []

    def record() -> None:  # runs on its own thread: it sees the write happen meanwhile
        seen.append(written.wait(10))

    s3.meta.events.register("after-call.s3.PutObject", lambda **_: written.set())
    put_while(store, "1900000000-" + "a" * 32, b"m", expires, record)
    assert seen == [True] and store.exists("1900000000-" + "a" * 32)

    def refuse() -> None:
        raise AuditUnavailable("down")

    with pytest.raises(AuditUnavailable):
        put_while(store, "1900000000-" + "b" * 32, b"m", expires, refuse)
    assert not store.exists("1900000000-" + "b" * 32)  # nothing stays stored
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == [store.key_for("1900000000-" + "a" * 32)]


def test_a_built_manifest_is_written_while_its_event_is_sent(
    bucket: tuple[S3Client, ManifestStore, dt.datetime],
) -> None:
    """put_while with the function that writes the document (what create_manifest passes): the event is already
    on its way while the document is written, and what is stored is that document."""
    s3, store, expires = bucket
    sending = threading.Event()
    seen: list[bool] = []

    def record() -> None:
        sending.set()

    def write() -> bytes:  # runs on the request's thread once the event's thread has started
        seen.append(sending.wait(10))
        return b"document"

    put_while(store, "1900000000-" + "c" * 32, write, expires, record)
    assert seen == [True]
    assert s3.get_object(Bucket="bkt", Key=store.key_for("1900000000-" + "c" * 32))["Body"].read() == b"document"


def test_the_suite_check_wants_exactly_each_requests_events_and_nothing_forbidden() -> None:
    """weasis_link_dev.audit_checks.audit_mismatches, which the e2e suite runs after every test (pytest_stack)."""
    expires = dt.datetime.fromtimestamp(NOW + 300, tz=dt.UTC)
    summary = summarize_manifest(gzip.compress(MANIFEST))

    def ctx(request_id: str) -> AuditContext:
        return CTX.model_copy(update={"request_id": request_id})

    issued = audit.disclosure_event(ctx("a"), MANIFEST_ID, summary, expires)
    query = audit.query_event(ctx("b"), ["pacs"], ["P1^^^HOSP"])
    built = audit.disclosure_event(ctx("b"), MANIFEST_ID, summary, expires)
    refusal = audit.refusal_event(ctx("c"), 401, "unauthorized")
    served = [
        Served("a", "GET", "GET /manifests", 200, None),
        Served("b", "GET", "GET /weasis", 302, None),
        Served("c", "GET", "GET /manifests", 401, "urn:weasis-link:problem:unauthorized"),
        Served("d", "GET", "$default", 200, None),  # health: nothing
        Served("e", "GET", "GET /manifests", 400, "urn:weasis-link:problem:invalid-request"),
    ]
    assert audit_mismatches(served, [issued, query, built, refusal]) == []
    assert audit_mismatches(served, [query, built, refusal]) == [
        "GET GET /manifests -> 200: expected ['manifest-issued'], got []"
    ]
    assert audit_mismatches(served, [issued, query, built, refusal, built]) != []  # one event too many
    assert audit_mismatches(served[:1], [issued, refusal]) == ["events of no request served here (c): ['refusal']"]
    forbidden = audit.refusal_event(ctx("c"), 403, "archive-forbidden")  # a 401 is no Security Alert
    assert audit_mismatches(served[2:3], [forbidden]) == ["GET GET /manifests 401: refusal type 110114"]
    leaking = json.loads(json.dumps(issued).replace("Weasis/4.7.2", f"{TOKEN} https://x.example/{MANIFEST_ID} A^B"))
    assert sorted(leaks(leaking)) == ["name: a URL", "name: a manifest id", "name: a person name", "name: a token"]
