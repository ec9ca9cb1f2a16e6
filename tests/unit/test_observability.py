"""Redaction is the last line of defence: whatever is logged, credentials are masked, tracebacks still appear."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re

from aws_lambda_powertools import Logger

from weasis_link.fingerprint import manifest_fingerprint
from weasis_link.observability import configure_logging, redact
from weasis_link.storage import new_manifest_id

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


def test_manifest_ids_become_fingerprints_wherever_they_appear() -> None:
    manifest_id = new_manifest_id(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    fingerprint = manifest_fingerprint(manifest_id)
    assert re.fullmatch(r"m-[0-9a-f]{12}", fingerprint)
    assert fingerprint == manifest_fingerprint(manifest_id) != manifest_fingerprint(new_manifest_id(dt.datetime.now()))
    for text in (
        manifest_id,
        f"GET /manifests/{manifest_id} 302",
        f"https://api.example/manifests/{manifest_id}",
        f"https://bucket.s3.amazonaws.com/manifests/{manifest_id}.xml.gz?X-Amz-Signature=abc",
        f'{{"manifest": "{manifest_id}"}}',
    ):
        redacted = redact(text)
        assert manifest_id not in redacted and fingerprint in redacted
    assert redact("study 1.2.840.10008.5.1") == "study 1.2.840.10008.5.1"  # other values are left alone


def test_logged_manifest_ids_are_fingerprinted_by_the_formatter() -> None:
    stream = io.StringIO()
    logger = Logger(service="fingerprint-test", logger_handler=logging.StreamHandler(stream))
    configure_logging(logger)
    manifest_id = new_manifest_id(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    logging.getLogger("weasis_link.test").warning("oops %s", manifest_id, extra={"link": f"/manifests/{manifest_id}"})
    assert manifest_id not in stream.getvalue()
    assert manifest_fingerprint(manifest_id) in stream.getvalue()
