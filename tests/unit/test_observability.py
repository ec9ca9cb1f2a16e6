"""Redaction is the last line of defence: whatever is logged, credentials are masked, tracebacks still appear."""

from __future__ import annotations

import io
import json
import logging

from aws_lambda_powertools import Logger

from weasis_link.observability import configure_logging, manifest_reference, redact

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def test_redact_masks_tokens_basic_credentials_and_signed_url_parts() -> None:
    text = redact(
        f"Authorization: Bearer {TOKEN} Basic dXNlcjpwYXNzd29yZA== ?access_token={TOKEN}&"
        "X-Amz-Signature=abc123&X-Amz-Security-Token=IQoJb3&password=hunter2"
    )
    for secret in (TOKEN, "dXNlcjpwYXNzd29yZA==", "abc123", "IQoJb3", "hunter2"):
        assert secret not in text


def test_records_and_tracebacks_are_redacted_not_dropped() -> None:
    stream = io.StringIO()
    logger = Logger(service="redaction-test", logger_handler=logging.StreamHandler(stream))
    configure_logging(logger)
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        logging.getLogger("weasis_link.test").exception("failed with %s", TOKEN, extra={"header": f"Bearer {TOKEN}"})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert TOKEN not in stream.getvalue()
    assert "ValueError" in line["exception"] and "[redacted-jwt]" in line["exception"]  # the traceback is kept
    assert line["message"] == "failed with [redacted-jwt]"


def test_a_manifest_reference_follows_a_build_without_opening_its_manifest() -> None:
    manifest_id = "1795342530-" + "Ab_-" * 8
    reference = manifest_reference(manifest_id)
    assert reference == manifest_reference(manifest_id)  # the launch and the builder log the same reference
    assert reference != manifest_reference("1795342530-" + "Ab_-" * 7 + "Ab_x")
    assert manifest_id not in reference and manifest_id[11:] not in reference and len(reference) == 18
