"""Images retrieved end to end the way Weasis does, from a DICOM_WEB archive (Orthanc):

token -> GET /manifests -> download the manifest as Weasis does (<= 3 redirects, gunzip by the URL's extension) ->
for every instance, the WADO-URI or WADO-RS URL exactly as Weasis builds it, every httpTag as a header, webLogin as
Basic -> GET from Orthanc -> a DICOM object whose SOPInstanceUID matches.

- Orthanc with basic auth (the webLogin path), WADO-URI and WADO-RS manifests.
- Orthanc accepting only bearer tokens of the stack's identity provider: the stack starts it itself
  (`--archive orthanc --orthanc-auth bearer`), because the stack's configuration is read at its cold start, which
  needs Orthanc's URL, while Orthanc needs the stack's JWKS URL: only the stack knows both in time. Without the
  injected header Orthanc refuses with 403 (Orthanc 1.10's request filter cannot answer 401), with it 200.

Orthanc 1.10 refuses Weasis's `contentType=application%2Fdicom` (it does not percent-decode query values) and keeps
the last of repeated parameters: the WADO-URI configurations add `&contentType=application/dicom` through
additionnalParameters, which Weasis <= 4.6 appends (4.7+ reads only `additionalParameters`: use WADO-RS there).

Run: .venv/bin/pytest tests/e2e/test_dicomweb_retrieval.py -q
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pydicom
import pytest
import requests

from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pytest_orthanc import BASIC_AUTH_PASSWORD, BASIC_AUTH_USER
from weasis_link_dev.pytest_stack import StackFactory, StackHandle
from weasis_link_dev.synthetic_studies import standard_dataset
from weasis_link_dev.weasis_client import (
    WADO_RS_ACCEPT,
    ArchiveView,
    fetch_manifest,
    multipart_parts,
    read_manifest,
    request_headers,
    validate,
    wado_rs_url,
    wado_uri_url,
)

pytestmark = pytest.mark.e2e

STANDARD = standard_dataset()
ORTHANC_CONTENT_TYPE = "&contentType=application/dicom"
UrlBuilder = Callable[[ArchiveView, int], str]


def manifest_view(stack: StackHandle, query: str) -> tuple[ArchiveView, str]:
    """The one arcQuery of the manifest the API builds for `query`, downloaded and read as Weasis does."""
    token = stack.token()
    status, _, body = stack.get(f"/manifests?{query}", token)
    assert status == 200, body
    answer = json.loads(body)
    fetched = fetch_manifest(answer["manifestUrl"], rule="extension")
    assert validate(fetched.xml) == []
    [view] = read_manifest(fetched.xml)
    assert view.instances and answer["instances"] == len(view.instances)
    return view, token


def uri_builder(view: ArchiveView) -> UrlBuilder:
    series = {s["SeriesInstanceUID"]: s for s in view.series}
    return lambda v, i: wado_uri_url(v, v.instances[i], series[v.instances[i].series_uid])


def rs_builder(view: ArchiveView, index: int) -> str:
    return wado_rs_url(view, view.instance_attributes[index])


def retrieve_all(view: ArchiveView, url_of: UrlBuilder, *, wado_rs: bool) -> None:
    """GET every instance as Weasis would and check it is the DICOM object the manifest names."""
    headers = request_headers(view)
    if wado_rs:
        headers["Accept"] = WADO_RS_ACCEPT
    with requests.Session() as session:
        for index, instance in enumerate(view.instances):
            response = session.get(url_of(view, index), headers=headers, timeout=30)
            assert response.status_code == 200, (response.status_code, response.text[:200])
            if wado_rs:
                [(content_type, data)] = multipart_parts(response.content, response.headers["Content-Type"])
                assert content_type == "application/dicom"
            else:
                assert response.headers["Content-Type"].startswith("application/dicom")
                data = response.content
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            assert dataset.SOPInstanceUID == instance.sop_uid
            assert dataset.StudyInstanceUID == instance.study_uid
            assert dataset.PatientID == instance.patient_id


def expected_sops(pid_prefix: str, issuer: str | None = None) -> set[str]:
    return {
        r.sop_instance_uid
        for r in STANDARD
        if r.patient_id.startswith(pid_prefix) and issuer in (None, r.issuer_of_patient_id)
    }


# ----------------------------------------------------------------------------------- basic auth: webLogin
@pytest.fixture(scope="module")
def basic_stack(
    local_stack_factory: StackFactory, orthanc_basic_auth: OrthancServer, tmp_path_factory: pytest.TempPathFactory
) -> StackHandle:
    pacs = orthanc_basic_auth
    credentials = {"login": BASIC_AUTH_USER, "password": BASIC_AUTH_PASSWORD}
    wado = {"authentication": {"basic": {"url": pacs.wado_url, **credentials}}}
    qido = {"url": pacs.dicomweb_url, "authentication": {"type": "BASIC", **credentials}}
    config = {
        "connector": {
            "default": ["uri"],
            "config": {
                "uri": {
                    "type": "DICOM_WEB",
                    # Wildcards are off by default: opted in here, bounded to the dataset's patients.
                    "search-criteria": {"wildcards": ["PATIENT_ID"], "wildcard-max-patients": 20},
                    "wado": wado,
                    "manifest": {"additionnal-parameters": ORTHANC_CONTENT_TYPE},
                    "dicom-web-connector": qido,
                },
                "rs": {"type": "DICOM_WEB", "wado": wado, "manifest": {"mode": "WADO_RS"}, "dicom-web-connector": qido},
            },
        }
    }
    path = tmp_path_factory.mktemp("basic") / "weasis-link.yaml"
    path.write_text(json.dumps(config))
    return local_stack_factory(config=path)


def test_wado_uri_with_web_login(basic_stack: StackHandle, orthanc_basic_auth: OrthancServer) -> None:
    view, token = manifest_view(basic_stack, "archive=uri&patientID=WLK-000*")
    assert {i.sop_uid for i in view.instances} == expected_sops("WLK-000")
    assert view.base_url == orthanc_basic_auth.wado_url
    assert "queryMode" not in view.attributes
    assert view.http_tags == {}  # basic: no token in the manifest
    assert "webLogin" in view.attributes
    retrieve_all(view, uri_builder(view), wado_rs=False)
    # Without webLogin, Orthanc refuses (basic auth answers 401).
    first = uri_builder(view)(view, 0)
    assert requests.get(first, timeout=10).status_code == 401
    assert token not in basic_stack.log()


def test_wado_rs_with_web_login(basic_stack: StackHandle, orthanc_basic_auth: OrthancServer) -> None:
    view, _ = manifest_view(basic_stack, "archive=rs&patientID=WLK-0002%5E%5E%5EHOSP-A")
    assert {i.sop_uid for i in view.instances} == expected_sops("WLK-0002", "HOSP-A")
    assert view.attributes["queryMode"] == "DICOM_WEB"
    assert view.base_url == orthanc_basic_auth.dicomweb_url  # the DICOMweb root, not the wado block's /wado
    assert all(a["DirectDownloadFile"].startswith("/studies/") for a in view.instance_attributes)
    retrieve_all(view, rs_builder, wado_rs=True)
    unauthenticated = requests.get(rs_builder(view, 0), headers={"Accept": WADO_RS_ACCEPT}, timeout=10)
    assert unauthenticated.status_code == 401


def test_orthanc_1_10_refuses_the_content_type_weasis_4_7_sends(
    basic_stack: StackHandle, orthanc_basic_auth: OrthancServer
) -> None:
    """The trap behind additionnalParameters above: Weasis 4.7+ ignores that attribute, so its WADO-URI requests
    end with contentType=application%2Fdicom, which Orthanc 1.10 takes literally and refuses (400)."""
    view, _ = manifest_view(basic_stack, "archive=uri&patientID=WLK-0003")
    weasis_4_7 = uri_builder(view)(view, 0).removesuffix(ORTHANC_CONTENT_TYPE)
    assert weasis_4_7.endswith("contentType=application%2Fdicom")
    assert requests.get(weasis_4_7, headers=request_headers(view), timeout=10).status_code == 400


# -------------------------------------------------------------------------------- bearer tokens: httpTag
@pytest.fixture(scope="module")
def bearer_stack(local_stack_factory: StackFactory) -> StackHandle:
    return local_stack_factory(args=["--archive", "orthanc", "--orthanc-auth", "bearer"], startup_timeout=120)


@pytest.mark.parametrize(("archive", "wado_rs"), [("orthanc", False), ("orthanc-rs", True)])
def test_token_protected_orthanc_needs_the_injected_header(
    bearer_stack: StackHandle, archive: str, wado_rs: bool
) -> None:
    view, token = manifest_view(bearer_stack, f"archive={archive}&patientID=WLK-0002%5E%5E%5EHOSP-B")
    assert {i.sop_uid for i in view.instances} == expected_sops("WLK-0002", "HOSP-B")
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    assert view.base_url.startswith(bearer_stack.extra["orthanc_url"])
    url_of = rs_builder if wado_rs else uri_builder(view)
    accept = {"Accept": WADO_RS_ACCEPT} if wado_rs else {}
    # Orthanc 1.10's request filter refuses with 403: it cannot produce a 401.
    assert requests.get(url_of(view, 0), headers=accept, timeout=10).status_code == 403
    stranger = bearer_stack.token(audience="another-api")
    refused = requests.get(url_of(view, 0), headers={**accept, "Authorization": f"Bearer {stranger}"}, timeout=10)
    assert refused.status_code == 403
    retrieve_all(view, url_of, wado_rs=wado_rs)
    assert token not in bearer_stack.log()
