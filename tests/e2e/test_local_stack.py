"""The service as `make run` serves it, driven over HTTP the way a portal and Weasis use it (issue #2's acceptance)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from weasis_link_dev.pytest_stack import StackHandle
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of, read_manifest, validate

pytestmark = pytest.mark.e2e
SAMPLE_SQL = Path(__file__).resolve().parents[2] / "layers/shared/weasis_link/sample_archive/sample_archive.sql"


@pytest.fixture(scope="module")
def archive() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SAMPLE_SQL.read_text())
    return conn


def sample_answer(archive: sqlite3.Connection, where: str, *params: object) -> set[tuple[str, str | None, str]]:
    """(PatientID, issuer, SOPInstanceUID) as the sample archive holds them."""
    sql = (
        "SELECT p.pat_id, p.pat_id_issuer, i.sop_iuid FROM patient p JOIN study st ON st.patient_fk = p.pk "
        f"JOIN series se ON se.study_fk = st.pk JOIN instance i ON i.series_fk = se.pk WHERE {where}"
    )
    return set(archive.execute(sql, params))


def manifest_for(stack: StackHandle, query: str) -> tuple[dict[str, object], bytes, str]:
    token = stack.token()
    status, headers, body = stack.get(f"/manifests?{query}", token)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert manifest_url_of(str(answer["weasisUrl"])) == answer["manifestLink"]
    fetched = fetch_manifest(str(answer["manifestUrl"]), rule="extension")
    assert fetched.raw[:2] == b"\x1f\x8b"
    return answer, fetched.xml, token


@pytest.mark.parametrize(
    ("query", "where", "params"),
    [
        ("studyUID={study}", "st.accession_no = ?", ("ACC-2024-0001",)),
        ("patientID=WLS-1003%5E%5E%5ECLINIC-B", "p.pat_id = ? AND p.pat_id_issuer = ?", ("WLS-1003", "CLINIC-B")),
        ("patientID=WLS-1004", "p.pat_id = ?", ("WLS-1004",)),  # no issuer at all: one patient
        ("accessionNumber=ACC-2021-0042", "st.accession_no = ?", ("ACC-2021-0042",)),
    ],
)
def test_manifest_lists_exactly_the_sample_archives_instances(
    local_stack: StackHandle, archive: sqlite3.Connection, query: str, where: str, params: tuple[str, ...]
) -> None:
    study = archive.execute("SELECT study_iuid FROM study WHERE accession_no = 'ACC-2024-0001'").fetchone()[0]
    answer, xml, token = manifest_for(local_stack, query.format(study=study))
    assert validate(xml) == []
    [view] = read_manifest(xml)
    assert view.http_tags == {"Authorization": f"Bearer {token}"}
    got = {(i.patient_id, i.issuer, i.sop_uid) for i in view.instances}
    assert got == sample_answer(archive, where, *params)
    assert answer["instances"] == len(got)
    assert {"manifestUrl", "weasisUrl", "expiresAt", "patients", "studies", "series", "instances"} <= set(answer)


def test_emr_link_redirects_to_weasis(local_stack: StackHandle) -> None:
    status, headers, _ = local_stack.get("/weasis?patientID=WLS-1001&access_token=" + local_stack.token())
    assert status == 302
    xml = fetch_manifest(manifest_url_of(headers["Location"])).xml
    assert validate(xml) == []


@pytest.mark.parametrize(
    ("claims", "status", "challenge"),
    [
        ({"lifetime": -300}, 401, 'error="invalid_token"'),
        ({"audience": "another-api"}, 401, 'error="invalid_token"'),
        ({"scope": "openid profile"}, 403, 'error="insufficient_scope"'),
    ],
)
def test_refused_tokens_write_nothing(
    local_stack: StackHandle, claims: dict[str, object], status: int, challenge: str
) -> None:
    before = local_stack.object_keys()
    code, headers, body = local_stack.get("/manifests?patientID=WLS-1001", local_stack.token(**claims))
    assert code == status
    assert challenge in headers["WWW-Authenticate"]
    assert json.loads(body)["status"] == status
    assert local_stack.object_keys() == before


def test_forged_token_and_bad_criteria_write_nothing(local_stack: StackHandle) -> None:
    from weasis_link_dev.dev_keys import SigningKey, access_token_claims

    before = local_stack.object_keys()
    forged = SigningKey.generate("dev-1").sign(access_token_claims())
    assert local_stack.get("/manifests?patientID=WLS-1001", forged)[0] == 401
    token = local_stack.token()
    status, headers, body = local_stack.get("/manifests?studyUID=1.2.x", token)
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["errors"][0]["field"] == "studyUID[0]"
    assert local_stack.get("/manifests?modalitiesInStudy=CT", local_stack.token())[0] == 400
    assert local_stack.object_keys() == before
    log = local_stack.log()
    assert forged not in log and token not in log
