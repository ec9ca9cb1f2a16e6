"""The audit trail over HTTP on the local stack: each request produces exactly the expected FHIR AuditEvents on the
local EventBridge (moto: bus -> rule -> SQS -> the stack's `{"auditEvent": ...}` lines), each a valid FHIR R4
AuditEvent with BALP's required elements and without a token, a name, a manifest id or a URL; with the bus down,
requests fail closed (503, nothing stored), unless the deployment opts for fail-open."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from importlib import resources
from typing import Any

import pytest

from weasis_link_dev.audit_checks import balp_problems, forbidden_content, kind, validate_fhir
from weasis_link_dev.local_stack import free_port
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of

pytestmark = pytest.mark.e2e
PATIENT = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO"
# Every patient name of the embedded sample archive: none may reach an event.
NAMES = sorted(
    set(
        re.findall(
            r"'([A-Z][A-Za-z-]+\^[A-Z][A-Za-z-]+)'",
            resources.files("weasis_link").joinpath("sample_archive/sample_archive.sql").read_text(),
        )
    )
)
QUIET_SECONDS = 2.5  # the printer polls every second: after this, no further event of a request can come


class Trail:
    """The events a stack printed, read in order."""

    def __init__(self, stack: StackHandle) -> None:
        self.stack = stack
        self.seen = 0

    def _all(self) -> list[dict[str, Any]]:
        return self.stack.audit_log()

    def new(self, expected: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The events since the last call: waits for `expected`, then makes sure no more arrive."""
        deadline = time.monotonic() + timeout
        while len(self._all()) - self.seen < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(QUIET_SECONDS)
        events = self._all()[self.seen :]
        self.seen += len(events)
        return events


@pytest.fixture(scope="module")
def stack(local_stack_factory: StackFactory) -> StackHandle:
    return local_stack_factory()


@pytest.fixture(scope="module")
def trail(stack: StackHandle) -> Trail:
    return Trail(stack)


def check(events: list[dict[str, Any]], forbidden: list[str]) -> None:
    for event in events:
        validate_fhir(event)
        assert balp_problems(event) == [], event
        assert forbidden_content(event, forbidden) == [], event


def patients_of(event: dict[str, Any]) -> list[str]:
    return [e["what"]["identifier"]["value"] for e in event["entity"] if e.get("role", {}).get("code") == "1"]


def test_a_manifest_then_its_short_link(stack: StackHandle, trail: Trail) -> None:
    trail.new(0)
    token = stack.token(client_id="portal")
    status, _, body = stack.get(f"/manifests?{PATIENT}&modalitiesInStudy=CT,MR", token)
    assert status == 200
    answer = json.loads(body)
    secrets = [token, *NAMES, answer["manifestId"], answer["manifestUrl"], answer["manifestLink"], stack.api_url]
    secrets += [answer["weasisUrl"], stack.s3_endpoint]
    [issued] = trail.new(1)
    check([issued], secrets)
    assert kind(issued) == "manifest-issued" and patients_of(issued) == ["WLS-1001^^^WEASIS-DEMO"]
    text = json.dumps(issued)
    assert '"value":"portal"' in text.replace(" ", "") and "dev-user" in text and "127.0.0.1" in text
    studies = [e for e in issued["entity"] if e["type"].get("code") == "ImagingStudy"]
    assert len(studies) == answer["studies"] > 0

    fetched = fetch_manifest(manifest_url_of(answer["weasisUrl"]))
    assert fetched.redirects == 1
    [redeemed] = trail.new(1)
    check([redeemed], secrets)
    assert kind(redeemed) == "manifest-redeemed" and patients_of(redeemed) == ["WLS-1001^^^WEASIS-DEMO"]
    digests = [
        e["what"]["identifier"]["value"]
        for event in (issued, redeemed)
        for e in event["entity"]
        if e.get("role", {}).get("code") == "20"
    ]
    assert len(set(digests)) == 1  # the two events join on the manifest's digest


@pytest.mark.parametrize(
    "path",
    [f"/weasis?{PATIENT}", f"/IHEInvokeImageDisplay?requestType=PATIENT&{PATIENT}"],
)
def test_a_launch_records_its_query_then_the_builder_its_manifest(stack: StackHandle, trail: Trail, path: str) -> None:
    trail.new(0)
    token = stack.token()
    status, headers, _ = stack.get(f"{path}&access_token={token}")
    assert status == 302
    link = manifest_url_of(headers["Location"])
    events = trail.new(2)
    check(events, [token, *NAMES, link, link.rsplit("/", 1)[1], stack.api_url])
    assert sorted(kind(e) for e in events) == ["manifest-issued", "query"]
    query = next(e for e in events if kind(e) == "query")
    assert patients_of(query) == ["WLS-1001^^^WEASIS-DEMO"]
    assert query["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
    ]


def test_uploads(stack: StackHandle, trail: Trail) -> None:
    trail.new(0)
    token = stack.token()
    _, _, body = stack.get(f"/manifests?{PATIENT}", token)
    built = fetch_manifest(json.loads(body)["manifestUrl"]).xml
    trail.new(1)
    status, _, raw = stack.request("POST", "/manifests", token, headers={"Content-Type": "application/xml"}, body=built)
    assert status == 201
    answer = json.loads(raw)
    [uploaded] = trail.new(1)
    check([uploaded], [token, *NAMES, answer["manifestId"], answer["manifestUrl"], stack.api_url])
    assert kind(uploaded) == "upload" and patients_of(uploaded) == ["WLS-1001^^^WEASIS-DEMO"]

    uids = [e["what"]["identifier"]["value"].removeprefix("urn:oid:") for e in uploaded["entity"]]
    uids = [u for u in uids if re.fullmatch(r"[0-9.]+", u)]
    status, _, raw = stack.request(
        "POST", "/manifests", token, headers={"Content-Type": "application/json"}, body=json.dumps(uids).encode()
    )
    assert status == 201
    [resolved] = trail.new(1)
    check([resolved], [token, *NAMES, json.loads(raw)["manifestId"]])
    assert kind(resolved) == "manifest-issued"


@pytest.mark.parametrize(
    ("token_args", "status", "type_code"),
    [
        (None, 401, "110114"),
        ({"lifetime": -600}, 401, "110114"),
        ({"scope": "openid"}, 403, "110113"),
    ],
)
def test_refusals(
    stack: StackHandle, trail: Trail, token_args: dict[str, Any] | None, status: int, type_code: str
) -> None:
    trail.new(0)
    token = None if token_args is None else stack.token(**token_args)
    answer, _, _ = stack.get(f"/manifests?{PATIENT}", token)
    assert answer == status
    [refusal] = trail.new(1)
    check([refusal], [token or "", *NAMES, stack.api_url])
    assert kind(refusal) == "refusal" and refusal["type"]["code"] == type_code
    assert refusal["outcomeDesc"].startswith(str(status))


@pytest.mark.parametrize("path", ["/manifests?patientID=", "/nowhere", "/manifests/1000000000-" + "a" * 32])
def test_requests_that_touch_no_patient_data_record_nothing(stack: StackHandle, trail: Trail, path: str) -> None:
    trail.new(0)
    stack.get(path, stack.token())
    assert trail.new(0) == []


# --- the bus down ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bus_down(local_stack_factory: StackFactory) -> StackHandle:
    return local_stack_factory(args=["--events-endpoint", f"http://127.0.0.1:{free_port()}"])


def test_with_the_bus_down_requests_fail_closed_and_nothing_is_stored(bus_down: StackHandle) -> None:
    token = bus_down.token()
    status, _, body = bus_down.get(f"/manifests?{PATIENT}", token)
    assert status == 503 and json.loads(body)["type"] == "urn:weasis-link:problem:audit-unavailable"
    status, _, _ = bus_down.get(f"/weasis?{PATIENT}&access_token={token}")
    assert status == 503
    status, _, _ = bus_down.request(
        "POST", "/manifests", token, headers={"Content-Type": "application/json"}, body=b'["1.2.3"]'
    )
    assert status == 503
    assert bus_down.object_keys() == []
    # a refusal is still a refusal: the client must learn that its token is wrong
    assert bus_down.get(f"/manifests?{PATIENT}")[0] == 401


def test_fail_open_serves_and_logs(local_stack_factory: StackFactory) -> None:
    stack = local_stack_factory(
        env={"AUDIT_FAIL_OPEN": "true"}, args=["--events-endpoint", f"http://127.0.0.1:{free_port()}"]
    )
    status, _, body = stack.get(f"/manifests?{PATIENT}", stack.token())
    assert status == 200
    assert urllib.parse.urlsplit(json.loads(body)["manifestUrl"]).path.endswith(".xml.gz")
    assert len(stack.object_keys()) == 1
    assert "audit event not recorded (AUDIT_FAIL_OPEN)" in stack.log()
