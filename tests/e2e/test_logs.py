"""What the service logs: useful facts, never a token, a password, a patient name or a patient identifier."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.pytest_stack import StackFactory
from weasis_link_dev.weasis_client import fetch_manifest, manifest_url_of

pytestmark = pytest.mark.e2e
BUNDLED = Path(__file__).resolve().parents[2] / "functions" / "api" / "weasis-link.yaml"
PASSWORD = "Pa55-w0rd!unique"
NAMES = ["Müller", "Jürgen", "Ødegård", "山田", "太郎", "Dupont", "Élodie", "O'Brien", "Siobhán", "Weber^Anna"]
PATIENT_IDS = ["WLS-1001", "WLS-1002", "WLS-1003", "WLS-1004"]


def test_logs_hold_facts_but_no_secret_or_patient_data(
    local_stack_factory: StackFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(BUNDLED.read_text())
    # A second archive with basic authentication: its password must not leak either.
    config["connector"]["config"]["sample-basic"] = config["connector"]["config"]["sample"] | {
        "wado": {
            "authentication": {
                "force-basic": True,
                "basic": {
                    "url": "http://127.0.0.1:3003/wado",
                    "login": "viewer",
                    "password": "env:SAMPLE_PACS_PASSWORD",
                },
            }
        }
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    monkeypatch.setenv("SAMPLE_PACS_PASSWORD", PASSWORD)  # inherited by the stack's process
    stack = local_stack_factory(config=path)
    token = stack.token()
    requests = [
        ("/manifests?patientID=WLS-1001", token),
        ("/manifests?patientID=WLS-1003%5E%5E%5ECLINIC-B&archive=sample&archive=sample-basic", token),
        ("/weasis?accessionNumber=ACC-2024-0001", token),
        (f"/weasis?patientID=WLS-1002%5E%5E%5EWEASIS-DEMO&access_token={token}", None),  # built in the background
        ("/manifests?patientID=WLS-1004", SigningKey.generate("dev-1").sign(access_token_claims())),
        ("/manifests?patientID=WLS-1001", stack.token(lifetime=-999)),
        ("/manifests?patientID=WLS-1001&studyUID=x.y", token),
        ("/manifests?patientID=WLS-1001&archive=nope", token),
        ("/manifests?patientID=WLS-1001&pro=java.home+/x", token),
        ("/no-such-route?patientID=WLS-1001", token),
        ("/manifests?patientID=WLS-1003", token),  # 409: two patients (issuers in the answer, nothing logged)
        ("/weasis?patientID=WLS-1001&pro=weasis.aet+X", token),  # launch options are not enabled
    ]
    answers = [stack.get(path_, tok) for path_, tok in requests]
    statuses = [status for status, _, _ in answers]
    assert statuses[:4] == [200, 200, 302, 302] and all(s >= 400 for s in statuses[4:])
    # Manifest ids and short links open a manifest without a token: they must not be logged either. Weasis
    # follows each launch's link (the access log sees that path too).
    links = [json.loads(body)["manifestLink"] for _, _, body in answers[:2]]
    links += [manifest_url_of(headers["Location"]) for _, headers, _ in answers[2:4]]
    for link in links:
        fetch_manifest(link)
    manifest_ids = [link.rsplit("/", 1)[1] for link in links]
    log = stack.log()  # once every launched build has ended: the builders log too
    # The audit trail is a sink of its own, which records patient IDs by design (test_audit_trail.py checks it).
    audit = [json.dumps(event, ensure_ascii=False) for event in stack.audit_log()]
    assert audit
    assert "archive answered" in log and "request refused" in log  # the log is not empty: the check means something
    assert "build stored" in log
    secrets = [token, PASSWORD, base64.b64encode(f"viewer:{PASSWORD}".encode()).decode()]
    for needle in secrets + NAMES + PATIENT_IDS + manifest_ids:
        assert needle not in log, f"{needle!r} reached the log"
    for needle in secrets + NAMES:
        assert not any(needle in line for line in audit), f"{needle!r} reached the audit trail"
    assert not re.search(r"X-Amz-Signature=[0-9a-f]{16}", log), "a presigned URL reached the log"
