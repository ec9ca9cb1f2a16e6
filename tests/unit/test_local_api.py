"""The local stack's front door (tools/weasis_link_dev/local_api.py): links from its own address, routes in its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from weasis_link_dev.local_api import http_api_event, route_key
from weasis_link_dev.pytest_stack import leaked_manifest_ids, manifest_ids_in


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/manifests", "GET /manifests"),
        ("POST", "/manifests", "POST /manifests"),
        ("GET", "/manifests/1795342530-abcdefghijklmnopqrstuvwxyzABCDEF", "GET /manifests/{id}"),
        ("GET", "/weasis", "GET /weasis"),
        ("GET", "/IHEInvokeImageDisplay", "GET /IHEInvokeImageDisplay"),
        ("DELETE", "/manifests/1795342530-abcdefghijklmnopqrstuvwxyzABCDEF", "$default"),
        ("GET", "/manifests/1795342530-abcdefghijklmnopqrstuvwxyzABCDEF/x", "$default"),
        ("None", "", "$default"),
    ],
)
def test_the_access_log_names_the_route_never_the_path(method: str, path: str, route: str) -> None:
    assert route_key(method, path) == route


def test_the_event_carries_the_servers_address_not_the_host_header() -> None:
    event = http_api_event("GET", "/manifests?patientID=P", [("Host", "evil.example")], b"", domain="127.0.0.1:3000")
    assert event["requestContext"]["domainName"] == "127.0.0.1:3000"


def test_the_session_check_finds_issued_ids_in_logs_raw_or_encoded(tmp_path: Path) -> None:
    issued = "1795342530-abcdefghijklmnopqrstuvwxyzABCDEF"
    other = "1795342531-abcdefghijklmnopqrstuvwxyzABCDEF"
    uri = "weasis://?%24dicom%3Aget+-w+%22http%3A%2F%2F127.0.0.1%3A3000%2Fmanifests%2F" + issued + "%22"
    assert manifest_ids_in(uri) == {issued}
    clean, leaky, encoded = tmp_path / "clean.log", tmp_path / "leaky.log", tmp_path / "encoded.log"
    clean.write_text(f"GET /manifests/{{id}} 302 manifest=m-0123456789ab {other}\n")
    leaky.write_text(f'{{"message": "build stored", "manifest": "{issued}"}}\n')
    encoded.write_text(f"location: {uri}\n")
    leaks = leaked_manifest_ids([clean, leaky, encoded, tmp_path / "missing.log"], {issued})
    assert leaks == {str(leaky): [issued], str(encoded): [issued]}
