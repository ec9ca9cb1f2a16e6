"""The API function's last lines of defence, through its real lambda_handler: an unexpected exception is a 500
problem that shows nothing of it (and is logged, redacted), and a body API Gateway says is base64 but is not is a
400 problem (the handler over the shared test runtime: tests/conftest.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.local_api import LambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events"
SECRET_IN_ERROR = "s3cr3t-detail-of-the-failure"


Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class FailingContext(LambdaContext):
    """A Lambda context whose remaining-time call fails: a fault outside any domain error, inside a route."""

    def get_remaining_time_in_millis(self) -> int:
        raise RuntimeError(f"{SECRET_IN_ERROR} {self.aws_request_id}")


def load_event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    event.update(changes)
    return event


def test_an_unexpected_exception_is_a_500_problem_that_leaks_nothing_and_is_logged(
    api_handler: Handler,
    function_modules: dict[str, Any],
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = signing_key.sign(access_token_claims())
    event = load_event("get_manifest_short_link.json")
    event["headers"]["authorization"] = f"Bearer {token}"  # a token sent along must not reach the log either
    caplog.set_level(logging.INFO)
    response = api_handler(event, FailingContext(aws_request_id="req-500"))

    assert response["statusCode"] == 500
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert response["headers"]["Cache-Control"] == "no-store"
    assert json.loads(response["body"]) == {
        "type": "urn:weasis-link:problem:internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "The request failed unexpectedly; it has been logged.",
    }
    for leaked in (SECRET_IN_ERROR, "RuntimeError", "Traceback", event["pathParameters"]["id"]):
        assert leaked not in response["body"]

    [logged] = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
    # The line the function writes (its Powertools JSON formatter): the traceback is there for the operator.
    line = json.loads(function_modules["api"].logger.registered_formatter.format(logged))
    assert "RuntimeError" in line["exception"] and SECRET_IN_ERROR in line["exception"]
    assert any(getattr(r, "code", None) == "internal-error" for r in caplog.records)  # counted as a refusal
    assert token not in caplog.text


@pytest.mark.parametrize("body", ["@@not base64@@", "PG1hbmlmZXN0P", "bm90IHBhZGRlZA=x"])
def test_a_body_that_is_not_valid_base64_is_a_400_problem(
    api_handler: Handler, signing_key: SigningKey, body: str
) -> None:
    event = load_event("post_manifests_xml.json", body=body, isBase64Encoded=True)
    event["headers"]["authorization"] = f"Bearer {signing_key.sign(access_token_claims())}"
    response = api_handler(event, LambdaContext(aws_request_id="req-400"))
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "application/problem+json"
    problem = json.loads(response["body"])
    assert problem["type"] == "urn:weasis-link:problem:invalid-request"
    assert problem["detail"] == "The request body is not valid base64."
