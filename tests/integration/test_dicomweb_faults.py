"""DICOM_WEB failures through the API (the local stack over HTTP): Orthanc stopped -> 503, slower than the read
timeout -> 504, HTTP 500 / malformed JSON -> 502; each time a problem JSON naming the archive, nothing in S3, and
no token in the log. With several archives, a failing one is named and the others are served.

One stack serves every case: each failure is a connector of its own (`archive=` selects it), backed by a stopped
Orthanc or by `FaultyPacs`, a loopback server whose path prefix picks the failure.

Run: .venv/bin/pytest tests/integration/test_dicomweb_faults.py -q
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.synthetic_studies import standard_dataset
from weasis_link_dev.weasis_client import fetch_manifest, read_manifest, validate

pytestmark = pytest.mark.integration

STUDY_UID = standard_dataset()[0].study_instance_uid
# A patient query: the study-level query comes first and alone (a studyUID query would also start its instance
# query at once, which would make the request counts below depend on timing).
QUERY = "patientID=WLK-0001"
SLOW_SECONDS = 4.0
READ_TIMEOUT = 0.5


class FaultyPacs:
    """`/<behaviour>/dicom-web/...`: slow (answers after SLOW_SECONDS), error (500), garbage (200, not JSON),
    busy (always 503), flaky (503 twice, then an empty answer). Counts requests per behaviour."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._answer).start()

    def _answer(self, request: Request) -> Answer:
        behaviour = request.path.split("/")[1]
        with self._lock:
            self.hits[behaviour] += 1
            count = self.hits[behaviour]
        if behaviour == "slow":
            time.sleep(SLOW_SECONDS)
            return self._send(200, b"[]")
        if behaviour == "error":
            return self._send(500, b'{"error": "internal"}')
        if behaviour == "garbage":
            return self._send(200, b'[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}')
        if behaviour == "busy" or (behaviour == "flaky" and count <= 2):
            return self._send(503, b"busy")
        return self._send(200, b"[]")

    @staticmethod
    def _send(status: int, body: bytes) -> Answer:
        return Answer(status, body, {"Content-Type": "application/dicom+json"})

    def url(self, behaviour: str) -> str:
        return self._server.url(f"/{behaviour}/dicom-web")

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def faulty_pacs() -> Iterator[FaultyPacs]:
    pacs = FaultyPacs()
    yield pacs
    pacs.stop()


@pytest.fixture(scope="module")
def stopped_orthanc_url() -> str:
    """The DICOMweb root of an Orthanc that ran and was stopped: its port now refuses connections."""
    server = OrthancServer()
    with server:
        pass
    return server.dicomweb_url


@pytest.fixture(scope="module")
def stack(
    local_stack_factory: StackFactory,
    orthanc: OrthancServer,
    faulty_pacs: FaultyPacs,
    stopped_orthanc_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> StackHandle:
    connectors = {
        "good": {"url": orthanc.dicomweb_url},
        "down": {"url": stopped_orthanc_url},
        "slow": {"url": faulty_pacs.url("slow"), "read-timeout-seconds": READ_TIMEOUT},
        "broken": {"url": faulty_pacs.url("error")},
        "garbage": {"url": faulty_pacs.url("garbage")},
        "busy": {"url": faulty_pacs.url("busy"), "retries": 2},
        "flaky": {"url": faulty_pacs.url("flaky"), "retries": 2},
    }
    config = {
        "wado": {"authentication": {"oauth2": {"url": orthanc.wado_url}}},
        "connector": {
            "default": ["good"],
            "config": {cid: {"type": "DICOM_WEB", "dicom-web-connector": c} for cid, c in connectors.items()},
        },
    }
    path: Path = tmp_path_factory.mktemp("faults") / "weasis-link.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return local_stack_factory(config=path)


def refused(stack: StackHandle, archive: str, status: int) -> dict[str, Any]:
    """GET /manifests for one archive; checks the problem JSON, that S3 is untouched and the log token-free."""
    before = stack.object_keys()
    token = stack.token()
    code, headers, body = stack.get(f"/manifests?archive={archive}&{QUERY}", token)
    assert code == status, body
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status
    assert f"archive '{archive}'" in problem["detail"]
    assert [f["archive"] for f in problem["failedArchives"]] == [archive]
    assert stack.object_keys() == before
    assert token not in stack.log()
    return problem


def test_orthanc_stopped_is_503(stack: StackHandle) -> None:
    problem = refused(stack, "down", 503)
    assert problem["failedArchives"][0]["kind"] == "unavailable"
    assert "connection refused" in problem["detail"]  # refused at once: not a timeout


def test_pacs_slower_than_the_read_timeout_is_504(stack: StackHandle, faulty_pacs: FaultyPacs) -> None:
    hits = faulty_pacs.hits["slow"]
    problem = refused(stack, "slow", 504)
    assert problem["failedArchives"][0]["kind"] == "timeout"  # the 0.5 s read timeout, before the 4 s answer
    assert faulty_pacs.hits["slow"] - hits == 1  # not retried: a slow PACS is not asked again


def test_http_500_is_502_and_not_retried(stack: StackHandle, faulty_pacs: FaultyPacs) -> None:
    hits = faulty_pacs.hits["error"]
    problem = refused(stack, "broken", 502)
    assert problem["failedArchives"][0]["kind"] == "bad-response"
    assert "HTTP 500" in problem["detail"]
    assert faulty_pacs.hits["error"] - hits == 1


def test_malformed_json_is_502(stack: StackHandle) -> None:
    problem = refused(stack, "garbage", 502)
    assert "not JSON" in problem["detail"]


def test_503_is_retried_with_backoff_then_502(stack: StackHandle, faulty_pacs: FaultyPacs) -> None:
    hits = faulty_pacs.hits["busy"]
    problem = refused(stack, "busy", 502)
    assert "HTTP 503" in problem["detail"]
    assert faulty_pacs.hits["busy"] - hits == 3  # the first try and two retries


def test_a_pacs_that_recovers_within_the_retries_is_served(stack: StackHandle, faulty_pacs: FaultyPacs) -> None:
    code, _, body = stack.get(f"/manifests?archive=flaky&{QUERY}", stack.token())
    assert code == 200, body
    assert faulty_pacs.hits["flaky"] == 3
    assert json.loads(body)["instances"] == 0


def test_with_several_archives_the_failing_one_is_named_and_the_others_served(stack: StackHandle) -> None:
    code, _, body = stack.get(f"/manifests?archive=good&archive=broken&studyUID={STUDY_UID}", stack.token())
    assert code == 200, body
    answer = json.loads(body)
    assert [(f["archive"], f["kind"]) for f in answer["failedArchives"]] == [("broken", "bad-response")]
    assert answer["instances"] == sum(r.study_instance_uid == STUDY_UID for r in standard_dataset())
    xml = fetch_manifest(answer["manifestUrl"]).xml
    assert validate(xml) == []
    views = {v.arc_id: v for v in read_manifest(xml)}
    assert views["broken"].message is not None and views["broken"].message["severity"] == "WARN"
    assert "HTTP 500" in views["broken"].message["description"]
    assert views["broken"].instances == []
    assert views["good"].message is None and views["good"].instances
