"""The launch-flow routes of the API function and the builder function, fed with the events/ files (S3 on moto,
the embedded sample archive): short links, launch while building, IID, uploads, the launch page."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from weasis_link.fingerprint import manifest_fingerprint
from weasis_link.metrics import BuildFailed
from weasis_link.runtime import Runtime
from weasis_link.storage import ManifestStore
from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.local_api import Handler, LambdaContext
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import manifest_url_of, read_manifest, validate

EVENTS = Path(__file__).resolve().parents[2] / "events"
DOMAIN = "abc123.execute-api.eu-central-1.amazonaws.com"


@pytest.fixture
def token(signing_key: SigningKey) -> str:
    return signing_key.sign(access_token_claims())


def event(name: str, token: str | None = None, **changes: Any) -> dict[str, Any]:
    e: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if token is not None:
        e["headers"]["authorization"] = f"Bearer {token}"
    else:
        e["headers"].pop("authorization", None)
    e.update(changes)
    return e


def with_path(e: dict[str, Any], path: str, query: str = "") -> dict[str, Any]:
    e["rawPath"] = e["requestContext"]["http"]["path"] = path
    e["rawQueryString"] = query
    e.pop("queryStringParameters", None)
    if query:
        e["queryStringParameters"] = dict(parse_qsl(query))
    return e


def invoke(api: Handler, e: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = api(e, LambdaContext(aws_request_id="test", deadline=1e12))
    return response


def follow_short_link(api: Handler, store: ManifestStore, link: str) -> bytes:
    """GET /manifests/{id} as API Gateway delivers it, then read the object its 302 points at."""
    assert link.startswith(f"https://{DOMAIN}/manifests/")
    path = urlsplit(link).path
    response = invoke(api, with_path(event("get_manifest_short_link.json"), path))
    assert response["statusCode"] == 302, response["body"]
    assert response["headers"]["Cache-Control"] == "no-store"
    location = urlsplit(response["headers"]["Location"])
    assert location.path == f"{path}.xml.gz" and "X-Amz-Signature=" in location.query
    return gzip.decompress(stored_manifest(store, path.rsplit("/", 1)[1]))


def test_launch_answers_a_short_link_that_redirects_to_the_built_manifest(
    api: Handler, store: ManifestStore, token: str
) -> None:
    response = invoke(api, event("get_weasis.json", token))
    assert response["statusCode"] == 302
    uri = response["headers"]["Location"]
    assert len(uri) <= 500
    xml = follow_short_link(api, store, manifest_url_of(uri))
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.http_tags == {"Authorization": f"Bearer {token}"} and view.instances


def test_the_json_route_returns_the_short_link_too(api: Handler, store: ManifestStore, token: str) -> None:
    body = json.loads(invoke(api, event("get_manifests_by_study.json", token))["body"])
    assert body["manifestLink"] == f"https://{DOMAIN}/manifests/{body['manifestId']}"
    assert manifest_url_of(body["weasisUrl"]) == body["manifestLink"]
    assert body["manifestUrl"].startswith("https://weasis-link-test.s3.eu-central-1.amazonaws.com/manifests/")
    assert validate(follow_short_link(api, store, body["manifestLink"])) == []


def test_browsers_get_the_launch_page(api: Handler, store: ManifestStore, token: str) -> None:
    response = invoke(api, event("get_weasis_html.json", token))
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Referrer-Policy"] == "no-referrer" and "default-src 'none'" in headers["Content-Security-Policy"]
    assert 'href="weasis://?%24dicom%3Aget+-w+%22https%3A%2F%2F' in response["body"]
    forced = invoke(api, event("get_weasis_html.json", token, rawQueryString="patientID=WLS-1001&format=redirect"))
    assert forced["statusCode"] == 302


def test_iid_study_request(api: Handler, store: ManifestStore, token: str) -> None:
    response = invoke(api, event("get_iid_study.json", token))
    assert response["statusCode"] == 302, response["body"]
    [view] = read_manifest(follow_short_link(api, store, manifest_url_of(response["headers"]["Location"])))
    assert {s["AccessionNumber"] for s in view.studies} == {"ACC-2024-0001"}


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("studyUID=1.2.3", 400, "requestType"),
        ("requestType=SERIES&studyUID=1.2.3", 400, "requestType"),
        ("requestType=PATIENT", 400, "patientID"),
        ("requestType=STUDY&studyUID=1.2.x", 400, "studyUID[0]"),
    ],
)
def test_iid_errors(api: Handler, store: ManifestStore, token: str, query: str, status: int, field: str) -> None:
    e = event("get_iid_study.json", token, rawQueryString=query)
    e.pop("queryStringParameters")
    response = invoke(api, e)
    assert response["statusCode"] == status
    assert field in [p["field"] for p in json.loads(response["body"])["errors"]]
    assert invoke(api, event("get_iid_study.json", None))["statusCode"] == 401


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/manifests/9795342830-REPLACE_WITH_MANIFEST_ID_32CHARS", "", 404),  # never issued
        ("/manifests/1000000000-REPLACE_WITH_MANIFEST_ID_32CHARS", "", 404),  # expired
        ("/manifests/..%2F..%2Fsecret", "", 404),
        ("/manifests/9795342830-REPLACE_WITH_MANIFEST_ID_32CHARS", "attempt=9", 422),
    ],
)
def test_unknown_links_are_problems(api: Handler, store: ManifestStore, path: str, query: str, status: int) -> None:
    response = invoke(api, with_path(event("get_manifest_short_link.json"), path, query))
    assert response["statusCode"] == status
    assert response["headers"]["Content-Type"] == "application/problem+json"


def test_xml_upload_is_served_back_byte_equal(api: Handler, store: ManifestStore, token: str) -> None:
    e = event("post_manifests_xml.json", token)
    response = invoke(api, e)
    assert response["statusCode"] == 201, response["body"]
    body = json.loads(response["body"])
    assert response["headers"]["Location"] == body["manifestLink"]
    assert follow_short_link(api, store, body["manifestLink"]) == e["body"].encode()
    assert (body["patients"], body["instances"]) == (1, 1)


def test_gzipped_binary_upload(api: Handler, store: ManifestStore, token: str) -> None:
    e = event("post_manifests_xml.json", token)
    xml = e["body"].encode()
    e["headers"]["content-encoding"] = "gzip"
    e.update(body=base64.b64encode(gzip.compress(xml)).decode(), isBase64Encoded=True)
    response = invoke(api, e)
    assert response["statusCode"] == 201
    assert follow_short_link(api, store, json.loads(response["body"])["manifestLink"]) == xml


def test_invalid_oversized_and_unsupported_uploads(
    api: Handler,
    store: ManifestStore,
    token: str,
    function_modules: dict[str, Any],
    runtime_factory: Callable[..., Runtime],
) -> None:
    e = event("post_manifests_xml.json", token)
    e["body"] = e["body"].replace('Modality="CT"', 'Modality="ct"')
    response = invoke(api, e)
    assert response["statusCode"] == 422
    problem = json.loads(response["body"])
    assert (
        problem["type"] == "urn:weasis-link:problem:invalid-manifest" and "Modality" in problem["errors"][0]["message"]
    )
    e = event("post_manifests_xml.json", token)
    e["headers"]["content-type"] = "text/plain"
    assert invoke(api, e)["statusCode"] == 415
    small = function_modules["api"].make_handler(runtime_factory(upload_max_bytes=1024))
    e = event("post_manifests_xml.json", token)
    e["body"] += " " * 1024  # white space after the root element: still the same valid manifest, but too large
    assert invoke(small, e)["statusCode"] == 413
    assert store.delete_expired(2e9).scanned == 0  # nothing was stored


def test_uid_list_upload(api: Handler, store: ManifestStore, token: str) -> None:
    study = read_manifest(
        gzip.decompress(
            stored_manifest(
                store, json.loads(invoke(api, event("get_manifests_by_study.json", token))["body"])["manifestId"]
            )
        )
    )[0].studies[0]["StudyInstanceUID"]
    e = event("post_manifests_uids.json", token)
    e["body"] = e["body"].replace("REPLACE_WITH_A_STUDY_UID", study)
    response = invoke(api, e)
    assert response["statusCode"] == 201, response["body"]
    body = json.loads(response["body"])
    [view] = read_manifest(follow_short_link(api, store, body["manifestLink"]))
    assert view.http_tags == {"Authorization": f"Bearer {token}"} and body["instances"] == len(view.instances) > 0


def test_protected_properties_are_refused(api: Handler, store: ManifestStore, token: str) -> None:
    e = event("get_weasis.json", token, rawQueryString="patientID=WLS-1001&pro=java.home+%2Ftmp")
    e.pop("queryStringParameters")
    response = invoke(api, e)
    assert response["statusCode"] == 400
    assert [p["field"] for p in json.loads(response["body"])["errors"]] == ["pro"]


# --- the builder function -----------------------------------------------------------------------------------


def test_builder_function_builds_the_requested_manifest(
    builder_handler: Handler, store: ManifestStore, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    request = json.loads((EVENTS / "build_request.json").read_text())
    manifest_id = f"{int(2e9)}-" + "A" * 32
    request.update(manifest_id=manifest_id, expires_at=int(2e9), token=token, token_expires_at=int(2e9))
    answer = builder_handler(request, LambdaContext(aws_request_id="b"))
    # The answer and the log lines name the manifest by its fingerprint: the id is a capability.
    assert answer == {"manifest": manifest_fingerprint(manifest_id), "outcome": "built"}
    assert manifest_id not in capsys.readouterr().out
    [view] = read_manifest(gzip.decompress(stored_manifest(store, manifest_id)))
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    with pytest.raises(BuildFailed):  # counted in the builder's Errors, never retried (template.yaml)
        builder_handler({"token": token}, LambdaContext(aws_request_id="c"))
    assert token not in capsys.readouterr().out
