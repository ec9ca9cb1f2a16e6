"""The local stack's front door (tools/weasis_link_dev/local_api.py): links from its own address, routes in its log."""

from __future__ import annotations

import pytest

from weasis_link_dev.local_api import http_api_event, route_key


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
