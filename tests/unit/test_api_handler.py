"""The API function's lambda_handler fed with the events/ files (S3 faked in-process by moto)."""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from weasis_link.storage import ManifestStore
from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.local_api import Handler, LambdaContext
from weasis_link_dev.stored import stored_manifest
from weasis_link_dev.weasis_client import manifest_url_of, read_manifest, validate

EVENTS = Path(__file__).resolve().parents[2] / "events"


def event(name: str, token: str | None, **changes: Any) -> dict[str, Any]:
    e: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if token is None:
        e["headers"].pop("authorization")
    else:
        e["headers"]["authorization"] = f"Bearer {token}"
    e.update(changes)
    return e


def invoke(api: Handler, e: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = api(e, LambdaContext(aws_request_id="test"))
    return response


def objects() -> int:
    return len(
        boto3.client("s3", region_name="eu-central-1").list_objects_v2(Bucket="weasis-link-test").get("Contents", [])
    )


@pytest.mark.parametrize(
    ("name", "instances"),
    [
        ("get_manifests_by_study.json", 14),
        ("get_manifests_by_patient.json", 4),
        ("get_manifests_by_accession.json", 14),
    ],
)
def test_manifest_routes_answer_json_and_store_a_valid_manifest(
    api: Handler, store: ManifestStore, signing_key: SigningKey, name: str, instances: int
) -> None:
    token = signing_key.sign(access_token_claims())
    response = invoke(api, event(name, token))
    assert response["statusCode"] == 200, response["body"]
    assert response["headers"]["Cache-Control"] == "no-store"
    body = json.loads(response["body"])
    assert set(body) >= {"manifestUrl", "weasisUrl", "expiresAt", "patients", "studies", "series", "instances"}
    assert body["instances"] == instances and body["expiresAt"].endswith("Z")
    assert manifest_url_of(body["weasisUrl"]) == body["manifestLink"]
    manifest_id = body["manifestUrl"].split("/manifests/", 1)[1].split(".xml.gz", 1)[0]
    xml = gzip.decompress(stored_manifest(store, manifest_id))
    assert validate(xml) == []
    [archive] = read_manifest(xml)
    assert archive.http_tags == {"Authorization": f"Bearer {token}"}
    assert len(archive.instances) == instances


def test_launch_route_redirects_to_weasis(api: Handler, store: ManifestStore, signing_key: SigningKey) -> None:
    response = invoke(api, event("get_weasis.json", signing_key.sign(access_token_claims())))
    assert response["statusCode"] == 302
    assert response["headers"]["Location"].startswith("weasis://?%24dicom%3Aget+-w+")
    assert "weasis%3Aconfig" not in response["headers"]["Location"]


def test_launch_options_are_refused_unless_configured(
    api: Handler, store: ManifestStore, signing_key: SigningKey
) -> None:
    query = "patientID=WLS-1001&pro=weasis.aet+WEASISLINK&arg=dicom%3Aclose+--all"
    response = invoke(api, event("get_weasis.json", signing_key.sign(access_token_claims()), rawQueryString=query))
    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["type"] == "urn:weasis-link:problem:launch-option-not-allowed"
    assert [e["field"] for e in body["errors"]] == ["pro", "arg"]
    assert objects() == 0


@pytest.mark.parametrize(
    ("token_claims", "status", "challenge"),
    [
        (None, 401, 'Bearer realm="weasis-link"'),
        ({"lifetime": -600}, 401, 'error="invalid_token"'),
        ({"audience": "other"}, 401, 'error="invalid_token"'),
        ({"scope": "openid"}, 403, 'error="insufficient_scope", scope="weasis.launch"'),
    ],
)
def test_bad_tokens_are_refused_with_a_challenge_and_nothing_is_stored(
    api: Handler,
    store: ManifestStore,
    signing_key: SigningKey,
    token_claims: dict[str, Any] | None,
    status: int,
    challenge: str,
) -> None:
    token = None if token_claims is None else signing_key.sign(access_token_claims(**token_claims))
    response = invoke(api, event("get_manifests_by_study.json", token))
    assert response["statusCode"] == status
    assert challenge in response["headers"]["WWW-Authenticate"]
    assert response["headers"]["Content-Type"] == "application/problem+json"
    problem = json.loads(response["body"])
    assert problem["status"] == status and problem["detail"]
    assert objects() == 0


def test_forged_token_is_refused(api: Handler, store: ManifestStore) -> None:
    forged = SigningKey.generate("test-key-1").sign(access_token_claims())
    response = invoke(api, event("get_manifests_by_study.json", forged))
    assert response["statusCode"] == 401
    assert objects() == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("studyUID=1.2.abc", "studyUID[0]"),
        ("", "query"),
        ("modalitiesInStudy=CT", "query"),
        ("patientID=x&mostRecentResults=abc", "mostRecentResults"),
    ],
)
def test_bad_criteria_are_400_problems_and_nothing_is_stored(
    api: Handler, store: ManifestStore, signing_key: SigningKey, query: str, field: str
) -> None:
    e = event("get_manifests_by_study.json", signing_key.sign(access_token_claims()), rawQueryString=query)
    e.pop("queryStringParameters", None)
    response = invoke(api, e)
    assert response["statusCode"] == 400
    problem = json.loads(response["body"])
    assert problem["type"] == "urn:weasis-link:problem:invalid-request"
    assert field in [p["field"] for p in problem["errors"]]
    assert objects() == 0


def test_unknown_route_is_a_404_problem(api: Handler, store: ManifestStore) -> None:
    e = event("get_manifests_by_study.json", None, rawPath="/nope")
    e["requestContext"]["http"]["path"] = "/nope"
    response = invoke(api, e)
    assert response["statusCode"] == 404
    assert response["headers"]["Content-Type"] == "application/problem+json"


def test_cleanup_function_runs_on_its_scheduled_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """functions/cleanup/app.py with events/scheduled_cleanup.json: expired manifests go, live ones stay."""
    import datetime as dt

    from weasis_link.storage import new_manifest_id

    for name, value in {
        "MANIFEST_BUCKET": "cleanup-test",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-central-1")
        s3.create_bucket(Bucket="cleanup-test", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        now = dt.datetime.now(dt.UTC)
        expired = f"manifests/{new_manifest_id(now - dt.timedelta(minutes=1))}.xml.gz"
        live = f"manifests/{new_manifest_id(now + dt.timedelta(minutes=5))}.xml.gz"
        for key in (expired, live):
            s3.put_object(Bucket="cleanup-test", Key=key, Body=b"x")
        cleanup = importlib.reload(importlib.import_module("functions.cleanup.app"))
        event = json.loads((EVENTS / "scheduled_cleanup.json").read_text())
        report = cleanup.lambda_handler(event, LambdaContext(aws_request_id="cleanup"))
        assert report["deleted"] == 1 and report["failed"] == 0
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="cleanup-test")["Contents"]] == [live]
