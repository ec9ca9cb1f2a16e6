"""S3 refusing writes, failing, or gone: a 503 problem JSON, and nothing (half-)written left behind.

A small proxy in front of moto's S3 server refuses or fails PutObject while everything else passes through, so the
bucket can be inspected afterwards exactly as the service left it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from weasis_link_dev.local_stack import BUCKET, REGION, create_bucket, moto_s3
from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request, forward, unused_port
from weasis_link_dev.pytest_stack import StackFactory, StackHandle

pytestmark = pytest.mark.e2e
ERRORS = {
    "refuse": (403, "AccessDenied", "Access Denied"),
    "fail": (500, "InternalError", "We encountered an internal error. Please try again."),
    "throttle": (503, "SlowDown", "Please reduce your request rate."),
}


class FaultyS3:
    """Forwards to moto; PUTs get the configured error (or pass when mode is None)."""

    def __init__(self, upstream: str) -> None:
        self.mode: str | None = None
        self.puts = 0
        self._upstream = upstream
        self._server = LoopbackServer(self._answer, http11=True).start()  # keep-alive, as S3 clients expect
        self.url = self._server.base_url

    def _answer(self, request: Request) -> Answer:
        if request.method == "PUT":
            self.puts += 1
            if self.mode is not None:
                status, code, message = ERRORS[self.mode]
                xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                return Answer(status, xml, {"Content-Type": "application/xml"})
        return forward(self._upstream, request, timeout=30)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def faulty(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[tuple[FaultyS3, str]]:
    with moto_s3() as endpoint:
        monkeypatch_module.setenv("AWS_ACCESS_KEY_ID", "local")
        monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "local")
        create_bucket(endpoint)
        proxy = FaultyS3(endpoint)
        yield proxy, endpoint
        proxy.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def stack(local_stack_factory: StackFactory, faulty: tuple[FaultyS3, str]) -> StackHandle:
    proxy, _ = faulty
    return local_stack_factory(args=["--s3-endpoint", proxy.url])


def stored(endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.parametrize("mode", list(ERRORS))
@pytest.mark.parametrize("route", ["/manifests?patientID=WLS-1001", "/weasis?patientID=WLS-1001"])
def test_refused_writes_are_503_and_leave_nothing(
    stack: StackHandle, faulty: tuple[FaultyS3, str], mode: str, route: str
) -> None:
    proxy, endpoint = faulty
    before = stored(endpoint)
    proxy.mode, proxy.puts = mode, 0
    try:
        status, headers, body = stack.get(route, stack.token())
    finally:
        proxy.mode = None
    assert status == 503, body
    problem = json.loads(body)
    assert headers["Content-Type"] == "application/problem+json"
    assert problem["type"] == "urn:weasis-link:problem:storage-unavailable"
    assert ERRORS[mode][1] in problem["detail"] and headers.get("Retry-After")
    assert proxy.puts >= 1
    assert stored(endpoint) == before


def test_the_same_stack_serves_again_once_s3_accepts_writes(stack: StackHandle, faulty: tuple[FaultyS3, str]) -> None:
    _proxy, endpoint = faulty
    before = set(stored(endpoint))
    status, _, body = stack.get("/manifests?patientID=WLS-1001", stack.token())
    assert status == 200, body
    assert len(set(stored(endpoint)) - before) == 1


def test_s3_gone_is_503(local_stack_factory: StackFactory) -> None:
    stack = local_stack_factory(args=["--s3-endpoint", f"http://127.0.0.1:{unused_port()}"], startup_timeout=90)
    try:
        status, _headers, body = stack.get("/manifests?patientID=WLS-1001", stack.token())
        assert status == 503, body
        assert json.loads(body)["type"] == "urn:weasis-link:problem:storage-unavailable"
    finally:
        stack.stop()
