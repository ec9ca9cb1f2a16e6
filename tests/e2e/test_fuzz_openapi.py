"""schemathesis, driven by the committed OpenAPI document, against the local stack over HTTP.

Checks: no 5xx; every status, content type, header and body documented; authentication enforced on every route
that needs it (`ignored_auth`). Not checked: schemathesis' positive/negative data acceptance and undeclared-method
probes, because the API has rules OpenAPI cannot express (at least one search key, one token method per
RFC 6750, Weasis-protected property keys), and API Gateway itself answers methods no route declares.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from weasis_link_dev.openapi import DOCUMENT
from weasis_link_dev.pytest_stack import StackHandle

pytestmark = pytest.mark.e2e
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance,ignored_auth"
)


@pytest.mark.timeout(960)  # schemathesis has its own 900 s limit below
def test_api_conforms_to_its_openapi_document(local_stack: StackHandle, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(DOCUMENT),
        "--url",
        local_stack.api_url,
        "-H",
        f"Authorization: Bearer {local_stack.token(lifetime=7200)}",
        "--checks",
        CHECKS,
        "--max-examples",
        "120",
        "--seed",
        "20261122",
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    generated = int(re.search(r"(\d+) generated", output).group(1))  # type: ignore[union-attr]
    assert generated >= 1000, output[-2000:]
