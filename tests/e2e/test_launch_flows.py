"""Launch flows over HTTP, as a portal, an EMR, an IHE IID invoker and Weasis use them (issue #5), on the local
stack: short manifest links, launch while building, IID, uploads, `$weasis:config` passthrough, token lifetime.
The 5,000-instance launch against Orthanc is in test_launch_orthanc.py, the browser page in test_launch_page.py."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request, unused_port
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.weasis_client import (
    fetch_manifest,
    manifest_url_of,
    parse_launch_uri,
    read_manifest,
    validate,
)

pytestmark = pytest.mark.e2e
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "functions/api/weasis-link.yaml"
SERVICE_TOKEN = "eyJzZXJ2aWNlLXRva2Vu.eyJzdWIiOiJ3ZWFzaXMtbGluayJ9.c2VydmljZQ"
UPLOAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<manifest xmlns="http://www.weasis.org/xsd/2.5" uid="e2e-upload">\n'
    b'  <arcQuery arcId="ris" baseUrl="https://pacs.example/wado" requireOnlySOPInstanceUID="false">\n'
    b'    <httpTag key="X-Site" value="main"/>\n'
    b'    <Patient PatientID="U-1" PatientName="Upload^Test" PatientSex="O">\n'
    b'      <Study StudyInstanceUID="1.2.826.0.1.3680043.10.1" StudyDate="20240101">\n'
    b'        <Series SeriesInstanceUID="1.2.826.0.1.3680043.10.1.1" Modality="CT" SeriesNumber="1">\n'
    b'          <Instance SOPInstanceUID="1.2.826.0.1.3680043.10.1.1.1" InstanceNumber="1"/>\n'
    b'          <Instance SOPInstanceUID="1.2.826.0.1.3680043.10.1.1.2" InstanceNumber="2"/>\n'
    b"        </Series>\n      </Study>\n    </Patient>\n  </arcQuery>\n</manifest>\n"
)


def follow(uri: str, rule: str = "magic") -> Any:
    """What the Weasis launcher does: decode once, split on $, fetch the -w URL (<= 3 redirects), gunzip."""
    return fetch_manifest(manifest_url_of(uri), rule=rule)  # type: ignore[arg-type]


def instances_of(xml: bytes) -> set[str]:
    return {i.sop_uid for view in read_manifest(xml) for i in view.instances}


# --- short links ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["extension", "magic"])
def test_short_link_serves_the_manifest_under_both_gzip_rules(local_stack: StackHandle, rule: str) -> None:
    status, _, body = local_stack.get("/manifests?patientID=WLS-1001", local_stack.token())
    assert status == 200
    answer = json.loads(body)
    link = answer["manifestLink"]
    assert link == f"{local_stack.api_url}/manifests/{answer['manifestId']}"
    assert manifest_url_of(answer["weasisUrl"]) == link
    assert len(answer["weasisUrl"]) <= 500
    fetched = follow(answer["weasisUrl"], rule)
    assert fetched.redirects == 1 and fetched.raw[:2] == b"\x1f\x8b"
    assert fetched.final_url.split("?")[0].endswith(f"/manifests/{answer['manifestId']}.xml.gz")
    assert validate(fetched.xml) == []
    assert len(instances_of(fetched.xml)) == answer["instances"] > 0


def test_launch_answers_at_once_and_the_link_yields_the_full_manifest(local_stack: StackHandle) -> None:
    token = local_stack.token()
    # With its issuer, nothing is left to decide after the query: the launch answers before the build.
    _, _, body = local_stack.get("/manifests?patientID=WLS-1003%5E%5E%5EWEASIS-DEMO", token)
    expected = instances_of(follow(json.loads(body)["weasisUrl"]).xml)
    status, headers, _ = local_stack.get(f"/weasis?patientID=WLS-1003%5E%5E%5EWEASIS-DEMO&access_token={token}")
    assert status == 302
    uri = headers["Location"]
    assert uri.startswith("weasis://?%24dicom%3Aget+-w+%22http%3A%2F%2F127.0.0.1") and len(uri) <= 500
    for rule in ("extension", "magic"):
        fetched = follow(uri, rule)
        assert validate(fetched.xml) == []
        assert instances_of(fetched.xml) == expected
        [view] = read_manifest(fetched.xml)
        assert view.http_tags == {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path",
    [
        "/manifests/nope",
        "/manifests/1000000000-" + "a" * 32,  # expired
        "/manifests/9999999990-" + "a" * 32,  # never issued
        "/manifests/1795342530-" + "a" * 31 + "%24",
    ],
)
def test_unknown_expired_or_malformed_links_are_404_problems(local_stack: StackHandle, path: str) -> None:
    status, headers, body = local_stack.get(path)
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:weasis-link:problem:manifest-not-found"


# --- IHE Invoke Image Display -----------------------------------------------------------------------------


def test_iid_study_and_patient_requests(local_stack: StackHandle) -> None:
    token = local_stack.token()
    status, headers, _ = local_stack.get(
        "/IHEInvokeImageDisplay?requestType=STUDY&accessionNumber=ACC-2024-0001,ACC-2021-0042"
        "&viewerType=IHE_BIR&diagnosticQuality=true&keyImagesOnly=false",
        token,
    )
    assert status == 302
    [view] = read_manifest(follow(headers["Location"]).xml)
    assert {s["AccessionNumber"] for s in view.studies} == {"ACC-2024-0001", "ACC-2021-0042"}
    status, headers, _ = local_stack.get(
        "/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1001%5E%5E%5EWEASIS-DEMO&mostRecentResults=1", token
    )
    assert status == 302
    [view] = read_manifest(follow(headers["Location"]).xml)
    assert {p["PatientID"] for p in view.patients} == {"WLS-1001"} and len(view.studies) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("studyUID=1.2.3", "requestType"),
        ("requestType=SERIES&studyUID=1.2.3", "requestType"),
        ("requestType=STUDY", "studyUID"),
        ("requestType=PATIENT", "patientID"),
        ("requestType=STUDY&studyUID=1.2.3&diagnosticQuality=maybe", "diagnosticQuality"),
    ],
)
def test_iid_refusals_are_400_problems(local_stack: StackHandle, query: str, field: str) -> None:
    before = local_stack.object_keys()
    status, _, body = local_stack.get(f"/IHEInvokeImageDisplay?{query}", local_stack.token())
    assert status == 400
    assert field in [e["field"] for e in json.loads(body)["errors"]]
    assert local_stack.object_keys() == before  # nothing registered, nothing built


# --- uploads ------------------------------------------------------------------------------------------------


def upload(stack: StackHandle, body: bytes, content_type: str, query: str = "", **headers: str) -> tuple[int, Any]:
    status, _, answer = stack.request(
        "POST", f"/manifests{query}", stack.token(), headers={"Content-Type": content_type, **headers}, body=body
    )
    return status, json.loads(answer)


@pytest.mark.parametrize("rule", ["extension", "magic"])
def test_uploaded_manifest_is_served_back_byte_equal(local_stack: StackHandle, rule: str) -> None:
    status, answer = upload(local_stack, UPLOAD, "application/xml")
    assert status == 201, answer
    assert answer["instances"] == 2 and manifest_url_of(answer["weasisUrl"]) == answer["manifestLink"]
    assert follow(answer["weasisUrl"], rule).xml == UPLOAD
    status, answer = upload(local_stack, gzip.compress(UPLOAD), "application/xml", **{"Content-Encoding": "gzip"})
    assert status == 201 and follow(answer["weasisUrl"], rule).xml == UPLOAD


def test_invalid_upload_is_refused_with_the_schema_error(local_stack: StackHandle) -> None:
    before = local_stack.object_keys()
    status, problem = upload(local_stack, UPLOAD.replace(b'PatientSex="O"', b'PatientSex="X"'), "application/xml")
    assert status == 422
    assert problem["type"] == "urn:weasis-link:problem:invalid-manifest"
    assert "PatientSex" in problem["detail"] and problem["errors"][0]["field"] == "line 5"
    status, problem = upload(local_stack, b"<manifest", "text/xml")
    assert status == 400
    status, problem = upload(local_stack, b"hello", "text/plain")
    assert status == 415
    assert local_stack.object_keys() == before


def test_uid_list_upload_is_resolved_with_the_callers_token(local_stack: StackHandle) -> None:
    token = local_stack.token()
    _, _, body = local_stack.get("/manifests?accessionNumber=ACC-2024-0001", token)
    [study] = read_manifest(follow(json.loads(body)["weasisUrl"]).xml)[0].studies
    status, _, raw = local_stack.request(
        "POST",
        "/manifests",
        token,
        headers={"Content-Type": "application/json"},
        body=json.dumps([study["StudyInstanceUID"]]).encode(),
    )
    assert status == 201
    answer = json.loads(raw)
    [view] = read_manifest(follow(answer["weasisUrl"]).xml)
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    assert len(view.instances) == answer["instances"] > 0


# --- $weasis:config passthrough -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def options_stack(local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> StackHandle:
    """The sample archive with launch options allowed (they are refused by default: test_safe_by_default.py)."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["launch-options"] = {
        "cdb": ["https://viewer.example/weasis"],
        "pro": ["weasis.aet", *(f"weasis.p{i}" for i in range(6))],
        "arg": ["dicom:close --all"],
    }
    path = tmp_path_factory.mktemp("launch-options") / "weasis-link.yaml"
    path.write_text(json.dumps(config))
    return local_stack_factory(config=path)


def test_launch_options_pass_through_and_protected_keys_are_refused(options_stack: StackHandle) -> None:
    local_stack = options_stack
    token = local_stack.token()
    query = (
        "patientID=WLS-1001&cdb=https%3A%2F%2Fviewer.example%2Fweasis&pro=weasis.aet+WEASISLINK&arg=dicom%3Aclose+--all"
    )
    status, headers, _ = local_stack.get(f"/weasis?{query}", token)
    assert status == 302
    commands = parse_launch_uri(headers["Location"])
    assert commands["weasis:config"] == [
        ["cdb=https://viewer.example/weasis", "pro=weasis.aet WEASISLINK", "arg=dicom:close --all"]
    ]
    assert len(headers["Location"]) <= 500
    for bad in (
        "pro=weasis.path+%2Ftmp",
        "pro=java.home+x",
        "pro=weasis.aet+%24dicom%3Aclose",
        "cdb=file%3A%2F%2F%2Fx",
    ):
        status, _, body = local_stack.get(f"/weasis?patientID=WLS-1001&{bad}", token)
        assert status == 400, bad
        assert json.loads(body)["errors"][0]["field"] in ("pro", "cdb")
    too_long = "&".join(f"pro=weasis.p{i}+{'x' * 60}" for i in range(6))  # each fine, the URI too long
    status, _, body = local_stack.get(f"/weasis?patientID=WLS-1001&{too_long}", token)
    assert status == 400 and "characters" in json.loads(body)["detail"]


# --- token lifetime -----------------------------------------------------------------------------------------


def test_a_short_lived_token_is_reported_in_json_and_in_the_manifest(local_stack: StackHandle) -> None:
    token = local_stack.token(lifetime=120)
    status, _, body = local_stack.get("/manifests?patientID=WLS-1001", token)
    answer = json.loads(body)
    assert status == 200 and len(answer["warnings"]) == 1 and "expires in" in answer["warnings"][0]
    [view] = read_manifest(follow(answer["weasisUrl"]).xml)
    assert view.message is not None and view.message["severity"] == "WARN"
    assert view.message["title"] == "Access token expires soon"
    status, headers, _ = local_stack.get(f"/weasis?patientID=WLS-1001&access_token={token}")
    [view] = read_manifest(follow(headers["Location"]).xml)  # the asynchronous build says it too
    assert view.message is not None and view.message["title"] == "Access token expires soon"


def test_no_token_reaches_the_log(local_stack: StackHandle) -> None:
    token = local_stack.token()
    local_stack.get(f"/weasis?patientID=WLS-1001&access_token={token}")
    local_stack.request("POST", "/manifests", token, headers={"Content-Type": "application/xml"}, body=UPLOAD)
    assert token not in local_stack.log()


# --- a stack with a failing archive, a service token and a small upload limit ------------------------------


def token_endpoint_answer(request: Request) -> Answer:
    """An OAuth2 token endpoint for the client-credentials grant (HTTP Basic client authentication)."""
    expected = "Basic " + base64.b64encode(b"weasis-link:s3cret").decode()
    if request.form().get("grant_type") != "client_credentials" or request.header("Authorization") != expected:
        return Answer.json({"error": "invalid_client"}, 401)
    return Answer.json({"access_token": SERVICE_TOKEN, "token_type": "Bearer", "expires_in": 3600})


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[LoopbackServer]:
    with LoopbackServer(token_endpoint_answer) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def special_stack(
    local_stack_factory: StackFactory, token_endpoint: LoopbackServer, tmp_path_factory: pytest.TempPathFactory
) -> StackHandle:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    sample = config["connector"]["config"]["sample"]
    sample["wado"] = {
        "authentication": {
            "oauth2": {
                "url": "http://127.0.0.1:3003/wado",
                "service-token": {
                    "use": "when-caller-token-expires",
                    "client-credentials": {
                        "token-url": token_endpoint.url("/token"),
                        "client-id": "weasis-link",
                        "client-secret": "env:E2E_CLIENT_SECRET",
                    },
                },
            }
        }
    }
    config["connector"]["config"]["down"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": f"http://127.0.0.1:{unused_port()}/dicom-web", "retries": 0},
    }
    path = tmp_path_factory.mktemp("special") / "weasis-link.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"UPLOAD_MAX_BYTES": "2048", "E2E_CLIENT_SECRET": "s3cret", "IID_REQUEST_TYPES": "STUDY"}
    return local_stack_factory(config=path, env=env)


def test_a_failed_build_gives_an_error_message_in_weasis(special_stack: StackHandle) -> None:
    query = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO&archive=down"  # with its issuer: nothing to decide first
    status, headers, _ = special_stack.get(f"/weasis?{query}", special_stack.token())
    assert status == 302  # the launch cannot know yet: the archive is queried while Weasis starts
    fetched = follow(headers["Location"])
    assert validate(fetched.xml) == []
    [view] = read_manifest(fetched.xml)
    assert view.arc_id == "down" and not view.instances and view.http_tags == {}
    assert view.message is not None and view.message["severity"] == "ERROR"
    assert "cannot be reached" in view.message["description"]


def test_a_launch_that_must_query_first_reports_a_failed_archive_as_http(special_stack: StackHandle) -> None:
    """Without issuer the launch queries before it answers (a 409 must reach the caller), so an archive that is
    down is a 503 problem here, with nothing stored."""
    before = special_stack.object_keys()
    status, headers, body = special_stack.get("/weasis?patientID=WLS-1001&archive=down", special_stack.token())
    assert status == 503 and headers["Content-Type"].startswith("application/problem+json"), body
    assert special_stack.object_keys() == before


def test_service_token_replaces_a_short_lived_callers_token(
    special_stack: StackHandle, token_endpoint: LoopbackServer
) -> None:
    long_lived = special_stack.token()
    _, _, body = special_stack.get("/manifests?patientID=WLS-1001", long_lived)
    [view] = read_manifest(follow(json.loads(body)["weasisUrl"]).xml)
    assert view.http_tags == {"Authorization": f"Bearer {long_lived}"}
    asked = len(token_endpoint.requests)
    short_lived = special_stack.token(lifetime=120)
    status, _, body = special_stack.get("/manifests?patientID=WLS-1001", short_lived)
    answer = json.loads(body)
    assert status == 200 and answer["warnings"] == []
    [view] = read_manifest(follow(answer["weasisUrl"]).xml)
    assert view.http_tags == {"Authorization": f"Bearer {SERVICE_TOKEN}"} and view.message is None
    assert len(token_endpoint.requests) == asked + 1
    assert SERVICE_TOKEN not in special_stack.log() and "s3cret" not in special_stack.log()


def test_oversized_upload_is_413(special_stack: StackHandle) -> None:
    before = special_stack.object_keys()
    big = UPLOAD.replace(b"</Series>", b"<!-- " + b"x" * 4096 + b" --></Series>")
    status, problem = upload(special_stack, big, "application/xml")
    assert status == 413 and problem["type"] == "urn:weasis-link:problem:payload-too-large"
    status, problem = upload(special_stack, gzip.compress(big), "application/gzip")
    assert status == 413
    assert special_stack.object_keys() == before


def test_iid_request_types_can_be_restricted(special_stack: StackHandle) -> None:
    token = special_stack.token()
    status, _, body = special_stack.get("/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1001", token)
    assert status == 400
    problem = json.loads(body)
    assert problem["type"] == "urn:weasis-link:problem:request-type-not-supported"
    assert "serves STUDY" in problem["detail"]
    status, _, _ = special_stack.get("/IHEInvokeImageDisplay?requestType=STUDY&accessionNumber=ACC-2024-0001", token)
    assert status == 302
