"""The test PACS itself: Orthanc starts, holds the synthetic data, enforces its auth modes, and its ground truth holds.

Run alone with ``-p weasis_link_dev.pytest_orthanc`` until tests/conftest.py lists the plugin.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE

from weasis_link_dev import dicom_files
from weasis_link_dev import orthanc as orthanc_module
from weasis_link_dev.dicom_files import ensure_dicom_files
from weasis_link_dev.loopback_http import Answer, LoopbackServer
from weasis_link_dev.orthanc import (
    OrthancServer,
    diff_against_truth,
    instance_count,
    instance_truth,
    patient_key,
    record_from_tags,
)
from weasis_link_dev.pytest_orthanc import BASIC_AUTH_PASSWORD, BASIC_AUTH_USER, LARGE_STUDY_SIZES, BearerFactory
from weasis_link_dev.synthetic_studies import (
    SHARED_ACCESSION_SAME_PATIENT,
    SHARED_ACCESSION_TWO_PATIENTS,
    large_study,
    standard_dataset,
)

STANDARD = standard_dataset()
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _wado_url(server: OrthancServer) -> str:
    record = STANDARD[0]
    return (
        f"{server.wado_url}?requestType=WADO&studyUID={record.study_instance_uid}"
        f"&seriesUID={record.series_instance_uid}&objectUID={record.sop_instance_uid}&contentType=application/dicom"
    )


# ------------------------------------------------------------------------------------------ dataset properties
def test_standard_dataset_is_deterministic_and_has_its_traps() -> None:
    again = standard_dataset()
    assert again == STANDARD
    assert 250 <= len(STANDARD) <= 400
    assert len({record.sop_instance_uid for record in STANDARD}) == len(STANDARD)
    people = {patient_key(record): record.patient_name for record in STANDARD}
    assert people[("WLK-0002", "HOSP-A")] == "Müller^Jürgen"
    assert people[("WLK-0002", "HOSP-B")] == "Martin^Claire"
    assert ("WLK-0003", None) in people
    patients_by_accession: dict[str, set[tuple[str, str | None]]] = {}
    studies_by_accession: dict[str, set[str]] = {}
    for record in STANDARD:
        if record.accession_number:
            patients_by_accession.setdefault(record.accession_number, set()).add(patient_key(record))
            studies_by_accession.setdefault(record.accession_number, set()).add(record.study_instance_uid)
    assert len(studies_by_accession[SHARED_ACCESSION_SAME_PATIENT]) == 2
    assert len(patients_by_accession[SHARED_ACCESSION_SAME_PATIENT]) == 1
    assert len(patients_by_accession[SHARED_ACCESSION_TWO_PATIENTS]) == 2
    assert any(record.study_description is None and record.accession_number is None for record in STANDARD)
    assert any(record.instance_number is None for record in STANDARD)
    for record in STANDARD:
        for uid in (record.study_instance_uid, record.series_instance_uid, record.sop_instance_uid):
            assert len(uid) <= 64
            assert set(uid) <= set("0123456789.")


def test_large_study_shape() -> None:
    records = large_study(1000)
    assert len(records) == 1000
    assert len({record.study_instance_uid for record in records}) == 1
    assert len({record.series_instance_uid for record in records}) == 10
    assert large_study(1000) == records
    assert {record.sop_instance_uid for record in large_study(1000, seed="other")}.isdisjoint(
        record.sop_instance_uid for record in records
    )


def test_dicom_files_carry_every_record_attribute_and_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = [record for record in STANDARD if record.patient_id in {"WLK-1004", "WLK-0010"}]
    paths = ensure_dicom_files(sample, cache_dir=tmp_path)
    for record, path in zip(sample, paths, strict=True):
        dataset = dcmread(path)
        assert dataset.SpecificCharacterSet == "ISO_IR 192"
        assert dataset.file_meta.MediaStorageSOPInstanceUID == record.sop_instance_uid
        simplified = {
            element.keyword: "" if element.value is None else str(element.value)
            for element in dataset
            if element.keyword
        }
        assert record_from_tags(simplified) == record

    def refuse(*_: object) -> None:
        raise AssertionError("a cached file was generated again")

    monkeypatch.setattr(dicom_files, "write_instance", refuse)
    assert ensure_dicom_files(sample, cache_dir=tmp_path) == paths


# --------------------------------------------------------------------------------------------- the server
@pytest.mark.integration
def test_server_starts_from_the_warm_cache_and_stops_cleanly(
    orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the storage cache (built for the orthanc fixture) should make the upload unnecessary")

    monkeypatch.setattr(orthanc_module, "stow_upload", refuse)
    server = OrthancServer(datasets=[STANDARD])
    with server:
        system = requests.get(f"{server.http_url}/system", timeout=5).json()
        assert system["DicomAet"] == server.aet
        assert system["DicomPort"] == server.dicom_port
        plugins = requests.get(f"{server.http_url}/plugins", timeout=5).json()
        # Only what the config lists, not every plugin Debian installed ("explorer.js" is Orthanc's own UI hook).
        assert set(plugins) - {"explorer.js"} == {"dicom-web"}
        assert instance_count(server) == len(STANDARD)
        workdir = server.workdir
        process = server._process
        assert process is not None
    assert process.returncode == 0  # a clean SIGTERM shutdown, not a SIGKILL
    assert not workdir.exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.dicom_port)) != 0


@pytest.mark.integration
def test_standard_dataset_is_loaded(orthanc: OrthancServer) -> None:
    statistics = orthanc.get_json("/statistics")
    assert instance_count(orthanc) == len(STANDARD)
    assert statistics["CountStudies"] == len({record.study_instance_uid for record in STANDARD})
    assert statistics["CountSeries"] == len({record.series_instance_uid for record in STANDARD})


@pytest.mark.integration
def test_ground_truth_agrees_with_the_dataset(orthanc: OrthancServer) -> None:
    truth = instance_truth(orthanc)
    assert truth == {record.sop_instance_uid: record for record in STANDARD}


@pytest.mark.integration
def test_orthanc_merges_patients_but_the_truth_does_not(orthanc: OrthancServer) -> None:
    """The trap the ground truth exists for: one Orthanc patient for WLK-0002, two people in the files."""
    patients = orthanc.get_json("/patients", expand="")
    wlk2 = [patient for patient in patients if patient["MainDicomTags"]["PatientID"] == "WLK-0002"]
    assert len(wlk2) == 1
    names = {record.patient_name for record in instance_truth(orthanc).values() if record.patient_id == "WLK-0002"}
    assert names == {"Müller^Jürgen", "Martin^Claire"}


@pytest.mark.integration
def test_diff_against_truth_flags_missing_extra_and_wrong_patient(orthanc: OrthancServer) -> None:
    truth = instance_truth(orthanc)
    muller = [record for record in STANDARD if patient_key(record) == ("WLK-0002", "HOSP-A")]
    martin = [record for record in STANDARD if patient_key(record) == ("WLK-0002", "HOSP-B")]
    answer = {record.sop_instance_uid: patient_key(record) for record in muller[1:]}
    answer[martin[0].sop_instance_uid] = ("WLK-0002", "HOSP-A")  # Martin's image filed under Müller
    diff = diff_against_truth(answer, muller, truth)
    assert diff.missing == {muller[0].sop_instance_uid}
    assert diff.extra == {martin[0].sop_instance_uid}
    assert diff.wrong_patient == {martin[0].sop_instance_uid}
    assert not diff.ok
    perfect = diff_against_truth({record.sop_instance_uid: patient_key(record) for record in muller}, muller, truth)
    assert perfect.ok


@pytest.mark.integration
@pytest.mark.timeout(900)  # the first user of orthanc_large generates and seeds it
def test_large_fixture_holds_one_study_per_size(orthanc_large: OrthancServer) -> None:
    statistics = orthanc_large.get_json("/statistics")
    assert statistics["CountInstances"] == sum(LARGE_STUDY_SIZES) == len(orthanc_large.records)
    assert statistics["CountStudies"] == len(LARGE_STUDY_SIZES)
    assert statistics["CountSeries"] == 10 * len(LARGE_STUDY_SIZES)


@pytest.mark.integration
def test_dimse_accepts_any_calling_aet(orthanc: OrthancServer) -> None:
    ae = AE(ae_title="ANY-SCU")
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(STUDY_ROOT_FIND)
    association = ae.associate(orthanc.dicom_host, orthanc.dicom_port, ae_title="WHATEVER")
    assert association.is_established
    try:
        assert association.send_c_echo().Status == 0
        query = _study_query(PatientID="WLK-0001")
        answers = [
            identifier
            for status, identifier in association.send_c_find(query, STUDY_ROOT_FIND)
            if status is not None and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        association.release()
    assert len(answers) == len({r.study_instance_uid for r in STANDARD if r.patient_id == "WLK-0001"})


def _study_query(**keys: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    return query


# ---------------------------------------------------------------------------------------------- basic auth
@pytest.mark.integration
def test_basic_auth_is_required(orthanc_basic_auth: OrthancServer) -> None:
    qido = f"{orthanc_basic_auth.dicomweb_url}/studies?PatientID=WLK-0001"
    for url in (qido, _wado_url(orthanc_basic_auth), f"{orthanc_basic_auth.http_url}/system"):
        refused = requests.get(url, timeout=10)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(url, auth=(BASIC_AUTH_USER, "wrong"), timeout=10).status_code == 401
        assert requests.get(url, auth=(BASIC_AUTH_USER, BASIC_AUTH_PASSWORD), timeout=10).status_code == 200
    assert instance_count(orthanc_basic_auth) == len(STANDARD)  # the harness session carries the credentials


# -------------------------------------------------------------------------------------------- bearer tokens
@dataclass
class IdentityProvider:
    """An RSA key and its JWKS served over HTTP on loopback, like an OAuth2 server's ``jwks_uri``."""

    key: rsa.RSAPrivateKey
    kid: str
    jwks_url: str
    issuer: str = "https://idp.test/realms/weasis"
    audience: str = "pacs"

    def token(self, *, key: rsa.RSAPrivateKey | None = None, lifetime: int = 300, **claims: object) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": "doctor", "iat": now, "exp": now + lifetime}
        payload.update(claims)
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def identity_provider() -> Iterator[IdentityProvider]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "test-key-1"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}
    with LoopbackServer(lambda _: Answer.json(jwks)) as server:
        yield IdentityProvider(key, kid, server.url("/jwks"))


@pytest.mark.integration
def test_bearer_token_mode(orthanc_bearer_factory: BearerFactory, identity_provider: IdentityProvider) -> None:
    idp = identity_provider
    server = orthanc_bearer_factory(idp.jwks_url, idp.issuer, idp.audience)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    urls = [f"{server.dicomweb_url}/studies?PatientID=WLK-0001", _wado_url(server)]
    refused_headers = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {idp.token(aud='other')}"},
        {"Authorization": f"Bearer {idp.token(iss='https://evil.test')}"},
        {"Authorization": f"Bearer {idp.token(lifetime=-60)}"},  # expired
        {"Authorization": f"Bearer {idp.token(key=stranger)}"},  # right kid, wrong signature
        {"Authorization": "Basic " + base64.b64encode(b"weasis:weasis").decode()},
    ]
    for url in urls:
        for headers in refused_headers:
            # Orthanc 1.10 answers a refused request 403 (a filter cannot produce 401 on this version).
            assert requests.get(url, headers=headers, timeout=10).status_code == 403, headers
        accepted = requests.get(url, headers={"Authorization": f"Bearer {idp.token()}"}, timeout=10)
        assert accepted.status_code == 200
    answer = requests.get(urls[0], headers={"Authorization": f"Bearer {idp.token()}"}, timeout=10).json()
    assert len(answer) == len({r.study_instance_uid for r in STANDARD if r.patient_id == "WLK-0001"})
    assert instance_count(server) == len(STANDARD)  # the harness key gets the test harness through
