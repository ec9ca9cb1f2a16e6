"""Claims-based authorization over HTTP on the local stack: a token whose patient context is A gets A's images and
nothing else (keys of B are 403, a shared accession number yields A's studies, filters and wildcards stay inside A);
an archive whose `access` rule the token fails is never queried (the archive's request counter proves it) and
`archive=` naming it is 403; a manifest, its short link and its presigned URL never outlive the token, in every
route."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from weasis_link.storage import expiry_of
from weasis_link_dev.dev_keys import DEV_AUDIENCE, DEV_ISSUER
from weasis_link_dev.loopback_http import LoopbackServer, no_match
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of, read_manifest, validate

pytestmark = pytest.mark.e2e
SAMPLE = resources.files("weasis_link").joinpath("sample_archive/sample_archive.sql").read_text()
A = "WLS-1001^^^WEASIS-DEMO"
A_STUDIES = {"2.25.135498294846748676357076407460509085147", "2.25.132953653948316057684454118730805204052"}
B_STUDY = "2.25.155137131818434352310225194993931353110"  # WLS-1002's, accession ACC-2023-0777
B_SERIES = "2.25.14106213091918088582950861930379045013"
SHARED_ACCESSION = "ACC-2024-0001"  # A's CT study; the test archive gives it to B's second study too
DB_QUERY_CONFIG = Path(__file__).resolve().parents[2] / "functions/api/weasis-link.yaml"


def b_object() -> str:
    """An instance of B's study (series pk 7, of study pk 3, of patient 2) in the sample archive."""
    for line in SAMPLE.splitlines():
        if line.startswith('INSERT INTO "instance" VALUES(') and ",7,'" in line.split("(", 1)[1][:8]:
            return line.split("'")[1]
    raise AssertionError("no instance of series 7")


def archive_config(tmp: Path, extra_connectors: str = "", auth: str = "", default: str = "[sample]") -> Path:
    """The embedded sample archive (B's study 4 sharing A's accession number), plus what a test adds."""
    script = tmp / "archive.sql"
    script.write_text(SAMPLE + f"\nUPDATE study SET accession_no = '{SHARED_ACCESSION}' WHERE pk = 4;\n")
    base = DB_QUERY_CONFIG.read_text()
    base = base.replace("init-script: sample_archive/sample_archive.sql", f"init-script: {script}")
    base = base.replace("  default: [sample]", f"  default: {default}")
    path = tmp / "weasis-link.yaml"
    path.write_text(auth + base + extra_connectors)
    return path


def studies(stack: StackHandle, answer: dict[str, Any]) -> set[str]:
    fetched = fetch_manifest(answer["manifestUrl"])
    assert validate(fetched.xml) == []
    return {s["StudyInstanceUID"] for view in read_manifest(fetched.xml) for s in view.studies}


# --- patient context ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def context_stack(local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> StackHandle:
    auth = f"""auth:
  issuers:
    - issuer: {DEV_ISSUER}
      jwks-url: ${{OAUTH_JWKS_URL}}
      audiences: [{DEV_AUDIENCE}]
      patient-context: {{claim: patient, form: id-issuer, required: true}}
"""
    config = archive_config(tmp_path_factory.mktemp("context"), auth=auth)
    return local_stack_factory(config, env={"OAUTH_ISSUER": ""})  # the auth block is the only trusted issuer


@pytest.fixture(scope="module")
def token_a(context_stack: StackHandle) -> str:
    return context_stack.token(patient=A)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("patientID=WLS-1001%5E%5E%5EWEASIS-DEMO", A_STUDIES),
        ("patientID=WLS-1001", A_STUDIES),
        ("patientID=WLS-*", A_STUDIES),  # a wildcard stays inside the context
        ("modalitiesInStudy=MR", {"2.25.132953653948316057684454118730805204052"}),  # filters only
        (f"accessionNumber={SHARED_ACCESSION}", {"2.25.135498294846748676357076407460509085147"}),  # shared with B
        ("studyUID=2.25.135498294846748676357076407460509085147", {"2.25.135498294846748676357076407460509085147"}),
    ],
)
def test_the_context_patient_gets_its_images_only(
    context_stack: StackHandle, token_a: str, query: str, expected: set[str]
) -> None:
    status, _, body = context_stack.get(f"/manifests?{query}", token_a)
    assert status == 200, body
    assert studies(context_stack, json.loads(body)) == expected


@pytest.mark.parametrize(
    "query",
    [
        "patientID=WLS-1002%5E%5E%5EWEASIS-DEMO",
        "patientID=WLS-1003%5E%5E%5ECLINIC-B",
        "patientID=WLS-1001%5E%5E%5ECLINIC-B",  # the same ID under another issuer is another person
        f"studyUID={B_STUDY}",
        "accessionNumber=ACC-2023-0777",
        f"seriesUID={B_SERIES}",
        "objectUID=OBJECT",
    ],
)
def test_asking_for_another_patient_is_403(context_stack: StackHandle, token_a: str, query: str) -> None:
    before = context_stack.object_keys()
    query = query.replace("OBJECT", b_object())
    status, _, body = context_stack.get(f"/manifests?{query}", token_a)
    assert status == 403, body
    assert json.loads(body)["type"] == "urn:weasis-link:problem:patient-not-in-context"
    assert context_stack.object_keys() == before


@pytest.mark.parametrize(
    "path",
    [
        "/weasis?patientID=WLS-1002",
        f"/weasis?studyUID={B_STUDY}",
        "/weasis?accessionNumber=ACC-2023-0777",
        f"/weasis?seriesUID={B_SERIES}",
        "/weasis?objectUID=OBJECT",
        f"/IHEInvokeImageDisplay?requestType=STUDY&studyUID={B_STUDY}",
        "/IHEInvokeImageDisplay?requestType=STUDY&accessionNumber=ACC-2023-0777",
    ],
)
def test_a_launch_for_another_patient_is_403(context_stack: StackHandle, token_a: str, path: str) -> None:
    """The launch routes are confined too; they query first when only the answers can tell whose a UID is: a 403,
    not a Weasis dialog."""
    before = context_stack.object_keys()
    status, _, body = context_stack.get(f"{path.replace('OBJECT', b_object())}&access_token={token_a}")
    assert status == 403, body
    assert json.loads(body)["type"] == "urn:weasis-link:problem:patient-not-in-context"
    assert context_stack.object_keys() == before


@pytest.mark.parametrize("path", ["/weasis?modalitiesInStudy=CT", f"/weasis?accessionNumber={SHARED_ACCESSION}"])
def test_a_launch_within_the_context_shows_only_its_patient(
    context_stack: StackHandle, token_a: str, path: str
) -> None:
    """A search the context confines, and a key another patient shares: the manifest holds the context patient."""
    status, headers, _ = context_stack.get(f"{path}&access_token={token_a}")
    assert status == 302
    fetched = fetch_manifest(manifest_url_of(headers["Location"]))
    assert validate(fetched.xml) == []
    patients = {(p["PatientID"], p.get("IssuerOfPatientID")) for v in read_manifest(fetched.xml) for p in v.patients}
    assert patients == {("WLS-1001", "WEASIS-DEMO")}


def test_a_token_without_the_required_context_is_403(context_stack: StackHandle) -> None:
    status, _, body = context_stack.get("/manifests?patientID=WLS-1001", context_stack.token())
    assert status == 403 and json.loads(body)["type"] == "urn:weasis-link:problem:patient-context-required"


def test_refusals_are_audited(context_stack: StackHandle, token_a: str) -> None:
    context_stack.get(f"/manifests?studyUID={B_STUDY}", token_a)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        refusals = [e for e in context_stack.audit_log() if "patient-not-in-context" in e.get("outcomeDesc", "")]
        if refusals:
            break
        time.sleep(0.2)
    assert refusals and refusals[-1]["outcomeDesc"] == "403 patient-not-in-context"


# --- archive access by claims ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def research() -> Iterator[LoopbackServer]:
    """A DICOMweb archive that answers every QIDO with no match and records the requests."""
    with LoopbackServer(no_match) as archive:
        yield archive


@pytest.fixture(scope="module")
def access_stack(
    local_stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory, research: LoopbackServer
) -> StackHandle:
    extra = f"""    research:
      type: DICOM_WEB
      manifest: {{mode: WADO_RS}}
      access:
        any-of:
          - {{claim: groups, contains: radiology}}
          - {{claim: realm_access.roles, contains: pacs-read}}
      dicom-web-connector: {{url: "{research.url("/dicom-web")}"}}
"""
    config = archive_config(tmp_path_factory.mktemp("access"), extra_connectors=extra, default="[sample, research]")
    return local_stack_factory(config)


def test_a_caller_without_the_group_never_causes_a_query_to_that_archive(
    access_stack: StackHandle, research: LoopbackServer
) -> None:
    token = access_stack.token(groups=["nursing"])
    status, _, body = access_stack.get("/manifests?patientID=WLS-1001", token)
    assert status == 200 and studies(access_stack, json.loads(body)) == A_STUDIES
    status, _, body = access_stack.get("/manifests?patientID=WLS-1001&archive=research", token)
    assert status == 403 and json.loads(body)["type"] == "urn:weasis-link:problem:archive-forbidden"
    status, _, _ = access_stack.get(f"/weasis?patientID=WLS-1001&archive=research&access_token={token}")
    assert status == 403
    assert len(research.requests) == 0


@pytest.mark.parametrize("claims", [{"groups": ["radiology"]}, {"realm_access": {"roles": ["pacs-read"]}}])
def test_a_caller_with_the_claim_queries_it(
    access_stack: StackHandle, research: LoopbackServer, claims: dict[str, Any]
) -> None:
    before = len(research.requests)
    status, _, _ = access_stack.get("/manifests?patientID=WLS-1001&archive=research", access_stack.token(**claims))
    assert status == 200
    assert len(research.requests) > before


# --- a capability never outlives its token --------------------------------------------------------------------
def presign_seconds(url: str) -> int:
    return int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"][0])


def test_every_route_caps_the_manifest_at_a_token_expiring_in_60_s(local_stack: StackHandle) -> None:
    token = local_stack.token(lifetime=60)
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]

    status, _, body = local_stack.get("/manifests?patientID=WLS-1001", token)
    answer = json.loads(body)
    assert status == 200
    assert expiry_of(answer["manifestId"]).timestamp() <= exp  # type: ignore[union-attr]
    assert answer["expiresAt"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
    assert presign_seconds(answer["manifestUrl"]) <= 60
    # the short link's redirect is signed for what is left of the manifest, at most
    _, headers, _ = local_stack.get(urllib.parse.urlsplit(answer["manifestLink"]).path)
    assert presign_seconds(headers["Location"]) <= 60

    for path in ("/weasis?patientID=WLS-1001", "/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1001"):
        status, headers, _ = local_stack.get(f"{path}&access_token={token}")
        assert status == 302
        link = manifest_url_of(headers["Location"])
        assert expiry_of(link.rsplit("/", 1)[1]).timestamp() <= exp  # type: ignore[union-attr]

    built = fetch_manifest(answer["manifestUrl"]).xml
    status, _, raw = local_stack.request(
        "POST", "/manifests", token, headers={"Content-Type": "application/xml"}, body=built
    )
    assert status == 201
    assert expiry_of(json.loads(raw)["manifestId"]).timestamp() <= exp  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path",
    [
        "/manifests?patientID=WLS-1001",
        "/weasis?patientID=WLS-1001",
        "/IHEInvokeImageDisplay?requestType=PATIENT&patientID=WLS-1001",
    ],
)
def test_a_token_below_the_floor_is_401_in_every_route(local_stack: StackHandle, path: str) -> None:
    before = local_stack.object_keys()
    token = local_stack.token(lifetime=10)
    status, headers, body = local_stack.get(path, token)
    assert status == 401, body
    assert json.loads(body)["type"] == "urn:weasis-link:problem:token-expires-too-soon"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert local_stack.object_keys() == before
