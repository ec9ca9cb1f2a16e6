"""Every problem the API answers, over HTTP on the local stack: its status, its exact `type` (the stable code
clients switch on), `application/problem+json`, and `Retry-After` where the caller should simply try again.

One stack refuses in every way a request can be refused (a small upload limit, one IID request type, an archive
that is down, one with a deactivated search key, a builder function that cannot be invoked); two more have their
identity provider or their S3 unreachable. The 500 of an unexpected exception is proven in
tests/unit/test_api_errors.py (no request can cause one on purpose); a few codes are asserted by the tests of
their own feature (ASSERTED_ELSEWHERE). A completeness check ties the table to the
domain's error classes, so a new error code cannot go untested."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from weasis_link import errors
from weasis_link_dev.loopback_http import unused_port
from weasis_link_dev.pytest_stack import StackFactory, StackHandle

pytestmark = pytest.mark.e2e
BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"
PREFIX = "urn:weasis-link:problem:"
MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<manifest xmlns="http://www.weasis.org/xsd/2.5" uid="problems">\n'
    '  <arcQuery arcId="ris" baseUrl="https://pacs.example/wado">\n'
    '    <Patient PatientID="U-1" PatientName="Upload^Test" PatientSex="O">\n'
    '      <Study StudyInstanceUID="1.2.826.0.1.3680043.10.1">\n'
    '        <Series SeriesInstanceUID="1.2.826.0.1.3680043.10.1.1" Modality="CT">\n'
    '          <Instance SOPInstanceUID="1.2.826.0.1.3680043.10.1.1.1"/>\n'
    "        </Series>\n      </Study>\n    </Patient>\n  </arcQuery>\n</manifest>\n"
)
# Codes that are never the answer to a request: a misconfiguration stops the function at cold start; one archive's
# failure is reported inside `archives-failed` (its failedArchives) or as a WARN in the manifest.
NOT_ANSWERS = {"configuration-error", "archive-error"}
# A launch the builder takes over (a patient with its issuer: no identity check to answer first).
LAUNCHED = "patientID=WLS-1001%5E%5E%5EWEASIS-DEMO"


@pytest.fixture(scope="module")
def refusing(local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> StackHandle:
    config = yaml.safe_load(BUNDLED.read_text())
    archives = config["connector"]["config"]
    archives["no-patient-search"] = archives["sample"] | {"search-criteria": {"deactivated": ["PATIENT_ID"]}}
    archives["wild"] = archives["sample"] | {
        "search-criteria": {"wildcards": ["PATIENT_ID"], "wildcard-max-patients": 1}
    }
    archives["down"] = {
        "type": "DICOM_WEB",
        "dicom-web-connector": {"url": f"http://127.0.0.1:{unused_port()}/dicom-web", "retries": 0},
    }
    path = tmp_path_factory.mktemp("problems") / "weasis-link.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        "UPLOAD_MAX_BYTES": "2048",
        "IID_REQUEST_TYPES": "STUDY",
        # Launches go to a builder function whose Lambda endpoint refuses connections.
        "BUILDER_FUNCTION_NAME": "weasis-link-builder",
        "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{unused_port()}",
    }
    return local_stack_factory(config=path, env=env)


Request = Callable[[StackHandle], tuple[int, dict[str, str], bytes]]


def upload(body: str, content_type: str = "application/xml") -> Request:
    return lambda s: s.request(
        "POST", "/manifests", s.token(), headers={"Content-Type": content_type}, body=body.encode()
    )


def get(path: str, token: Callable[[StackHandle], str | None] = lambda s: s.token()) -> Request:
    return lambda s: s.get(path, token(s))


# code -> (status, a request the `refusing` stack answers with it)
REFUSALS: dict[str, tuple[int, Request]] = {
    "invalid-request": (400, get("/manifests?studyUID=x.y")),
    "unknown-archive": (400, get("/manifests?patientID=WLS-1001&archive=nope")),
    "request-type-not-supported": (400, get("/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1001")),
    "unauthorized": (401, get("/manifests?patientID=WLS-1001", token=lambda s: None)),
    "criterion-deactivated": (403, get("/manifests?patientID=WLS-1001&archive=no-patient-search")),
    "insufficient-scope": (403, get("/manifests?patientID=WLS-1001", token=lambda s: s.token(scope="openid"))),
    "manifest-not-found": (404, get("/manifests/1795342530-" + "a" * 32, token=lambda s: None)),
    "not-found": (404, get("/no-such-route")),
    "payload-too-large": (413, upload(MANIFEST.replace("</Series>", "<!-- " + "x" * 4096 + " --></Series>"))),
    "unsupported-media-type": (415, upload("hello", "text/plain")),
    "invalid-manifest": (422, upload(MANIFEST.replace('PatientSex="O"', 'PatientSex="X"'))),
    "validation-error": (422, get("/manifests/1795342530-" + "a" * 32 + "?attempt=9", token=lambda s: None)),
    "archives-failed": (503, get("/manifests?patientID=WLS-1001&archive=down")),
    "builder-unavailable": (503, get(f"/weasis?{LAUNCHED}")),
    "wildcard-not-allowed": (400, get("/manifests?patientID=WLS-10*")),
    "launch-option-not-allowed": (400, get("/manifests?patientID=WLS-1001&pro=weasis.aet+X")),
    "ambiguous-patient": (409, get("/manifests?patientID=WLS-1003")),  # under two issuers in the sample archive
    "too-many-patients": (409, get("/manifests?patientID=WLS-100*&archive=wild")),
}
# Answered by the stacks whose identity provider or S3 is down (below).
UNAVAILABLE = {"identity-provider-unavailable", "storage-unavailable"}
# Asserted, exact type included, by the test file named (the 500 is answered in-process; the authorization and
# audit refusals need their own identity provider and audit sink).
ASSERTED_ELSEWHERE = {
    "internal-error": "tests/unit/test_api_errors.py",
    "archive-forbidden": "tests/e2e/test_authorization.py",
    "patient-context-required": "tests/e2e/test_authorization.py",
    "patient-not-in-context": "tests/e2e/test_authorization.py",
    "token-expires-too-soon": "tests/e2e/test_authorization.py",
    "audit-unavailable": "tests/e2e/test_audit_trail.py",
}
REPO = Path(__file__).resolve().parents[2]


def problem_of(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = answer
    assert headers["Content-Type"] == "application/problem+json", (status, body)
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return status, headers, problem


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_each_refusal_has_its_status_and_exact_problem_type(refusing: StackHandle, code: str) -> None:
    expected_status, send = REFUSALS[code]
    status, headers, problem = problem_of(send(refusing))
    assert (status, problem["type"]) == (expected_status, PREFIX + code), problem
    if status == 503 and code != "archives-failed":
        assert headers["Retry-After"] == "30"  # nothing is wrong with the request: try it again shortly


def test_an_unavailable_builder_refuses_the_launch_and_leaves_no_manifest(refusing: StackHandle) -> None:
    before = [k for k in refusing.object_keys() if k.endswith(".xml.gz")]
    status, headers, problem = problem_of(refusing.get(f"/weasis?{LAUNCHED}", refusing.token()))
    assert status == 503 and headers["Retry-After"] == "30"
    assert problem["type"] == PREFIX + "builder-unavailable"
    assert "could not be started" in problem["detail"]
    assert "Location" not in headers  # no weasis:// URI: Weasis is not started on a link that would never fill
    assert [k for k in refusing.object_keys() if k.endswith(".xml.gz")] == before
    assert "builder invocation failed" in refusing.log()


def test_an_unreachable_identity_provider_is_a_503_to_retry(local_stack_factory: StackFactory) -> None:
    stack = local_stack_factory(env={"OAUTH_JWKS_URL": f"http://127.0.0.1:{unused_port()}/jwks"})
    status, headers, problem = problem_of(stack.get("/manifests?patientID=WLS-1001", stack.token()))
    assert (status, problem["type"]) == (503, PREFIX + "identity-provider-unavailable")
    assert headers["Retry-After"] == "30"


def test_an_unreachable_manifest_store_is_a_503_to_retry(local_stack_factory: StackFactory) -> None:
    stack = local_stack_factory(args=["--s3-endpoint", f"http://127.0.0.1:{unused_port()}"], startup_timeout=90)
    status, headers, problem = problem_of(stack.get("/manifests?patientID=WLS-1001", stack.token()))
    assert (status, problem["type"]) == (503, PREFIX + "storage-unavailable")
    assert headers["Retry-After"] == "30"


def _codes(cls: type[errors.WeasisLinkError]) -> set[str]:
    return {cls.code} | {code for sub in cls.__subclasses__() for code in _codes(sub)}


def test_every_error_code_of_the_domain_is_answered_by_a_test_here() -> None:
    domain = _codes(errors.WeasisLinkError) - {errors.WeasisLinkError.code}
    tested = set(REFUSALS) | UNAVAILABLE | set(ASSERTED_ELSEWHERE)
    for code, path in ASSERTED_ELSEWHERE.items():
        assert f'"{PREFIX}{code}"' in (REPO / path).read_text(encoding="utf-8"), (code, path)
    assert domain - NOT_ANSWERS <= tested, f"untested error codes: {sorted(domain - NOT_ANSWERS - tested)}"
    assert domain >= NOT_ANSWERS  # the exceptions listed still exist
