"""Each PACS backend is imported only when a connector of its type is configured (cold-start budget): a fresh
process serves one real request through `lambda_handler`, then reports which heavy packages it imported.

cryptography.x509 (imported by PyJWT) is never executed, nor the Powertools event handler's and event data classes'
package __init__ (AppSync's resolver, asyncio, forty event classes; pg8000 imports asyncio itself); a JSON
configuration never imports PyYAML.

- DB only (PostgreSQL): SQLAlchemy and pg8000, never pydicom or pynetdicom.
- DICOM only (Orthanc's DICOM port): pydicom and pynetdicom, never SQLAlchemy or a database driver.
- DICOM_WEB only: none of them.
- The embedded SQLite archive (the bundled configuration): none of them (sqlite3, not SQLAlchemy).

Run: .venv/bin/pytest tests/integration/test_lazy_imports.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from weasis_link_dev.dev_keys import SigningKey, access_token_claims
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pacs_database import DB_QUERY
from weasis_link_dev.pytest_postgres import PacsDatabase

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# Library code weasis_link.lazy_imports keeps off the cold path: what executing cryptography.x509 imports, and
# what the Powertools event_handler and data_classes packages' __init__ would import (AppSync's resolver, asyncio,
# Kafka's event...); and PyYAML, which the configurations here (JSON) do not need.
DEFERRED = (
    "cryptography.x509.verification",
    "cryptography.x509.base",
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.utilities.data_classes.kafka_event",
    "asyncio",
    "yaml",
)
HEAVY = ("pydicom", "pynetdicom", "sqlalchemy", "pg8000", "pymysql", "numpy", "PIL", "dicomweb_client")

# Runs in a fresh interpreter: the function's cold start and one request, then the packages it imported.
SERVE_ONE_REQUEST = r"""
import json, os, sys
import boto3
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"]).create_bucket(Bucket=os.environ["MANIFEST_BUCKET"])
before = {m.split(".")[0] for m in sys.modules}
from functions.api.app import lambda_handler
from weasis_link_dev.local_api import LambdaContext, http_api_event
event = http_api_event(
    "GET", "/manifests?" + os.environ["TEST_QUERY"], [("authorization", "Bearer " + os.environ["TEST_TOKEN"])], b""
)
answer = lambda_handler(event, LambdaContext())
heavy = json.loads(os.environ["TEST_HEAVY"])
print(json.dumps({
    "status": answer["statusCode"],
    "body": answer["body"][:500],
    "imported": sorted(m for m in heavy if m in sys.modules),
    "before_handler": sorted(m for m in heavy if m in before),
    "deferred": sorted(m for m in json.loads(os.environ["TEST_DEFERRED"]) if m in sys.modules),
}))
"""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def serve_one_request(
    config: dict[str, object],
    query: str,
    tmp_path: Path,
    service_env: dict[str, str],
    signing_key: SigningKey,
    moto_endpoint: str,
) -> dict[str, object]:
    config_file = tmp_path / "weasis-link.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "WEASIS_LINK_"))},
        **service_env,
        "WEASIS_LINK_CONFIG": str(config_file),
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "TEST_QUERY": query,
        "TEST_TOKEN": signing_key.sign(access_token_claims()),
        "TEST_HEAVY": json.dumps(HEAVY),
        "TEST_DEFERRED": json.dumps(DEFERRED),
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert report["before_handler"] == []  # nothing heavy before the function's own imports
    return report


def wado(orthanc: OrthancServer) -> dict[str, object]:
    return {"url": orthanc.wado_url}


def test_db_only_configuration_never_imports_dicom_libraries(
    postgres_pacs: PacsDatabase,
    orthanc: OrthancServer,
    tmp_path: Path,
    service_env: dict[str, str],
    signing_key: SigningKey,
    moto_endpoint: str,
) -> None:
    config = {
        "wado": wado(orthanc),
        "connector": {
            "config": {"sql": {"type": "DB", "db-connector": {"uri": postgres_pacs.sqlalchemy_url, "query": DB_QUERY}}}
        },
    }
    report = serve_one_request(config, "patientID=WLK-0001", tmp_path, service_env, signing_key, moto_endpoint)
    assert "sqlalchemy" in report["imported"] and "pg8000" in report["imported"]
    assert not {"pydicom", "pynetdicom", "pymysql"} & set(report["imported"])  # type: ignore[arg-type]
    assert report["deferred"] == ["asyncio"]  # pg8000 imports asyncio; no x509, no AppSync resolver


def test_dicom_only_configuration_never_imports_sqlalchemy(
    orthanc: OrthancServer,
    tmp_path: Path,
    service_env: dict[str, str],
    signing_key: SigningKey,
    moto_endpoint: str,
) -> None:
    dicom = {"calling-aet": "WEASIS-LINK", "aet": orthanc.aet, "host": orthanc.dicom_host, "port": orthanc.dicom_port}
    config = {"wado": wado(orthanc), "connector": {"config": {"dimse": {"type": "DICOM", "dicom-connector": dicom}}}}
    report = serve_one_request(config, "patientID=WLK-0001", tmp_path, service_env, signing_key, moto_endpoint)
    assert "pynetdicom" in report["imported"] and "pydicom" in report["imported"]
    assert not {"sqlalchemy", "pg8000", "pymysql"} & set(report["imported"])  # type: ignore[arg-type]
    assert report["deferred"] == []  # no x509, no AppSync resolver, no asyncio


def test_dicomweb_only_configuration_imports_no_pacs_library(
    orthanc: OrthancServer,
    tmp_path: Path,
    service_env: dict[str, str],
    signing_key: SigningKey,
    moto_endpoint: str,
) -> None:
    config = {
        "wado": wado(orthanc),
        "connector": {"config": {"web": {"type": "DICOM_WEB", "dicom-web-connector": {"url": orthanc.dicomweb_url}}}},
    }
    report = serve_one_request(config, "patientID=WLK-0001", tmp_path, service_env, signing_key, moto_endpoint)
    assert report["imported"] == []  # no DICOM toolkit, no SQL driver, no numpy or pillow
    assert report["deferred"] == []  # no x509, no AppSync resolver, no asyncio


def test_the_embedded_sqlite_archive_never_imports_sqlalchemy(
    tmp_path: Path, service_env: dict[str, str], signing_key: SigningKey, moto_endpoint: str
) -> None:
    # make run's default: the bundled configuration, the sample archive in SQLite, asked through sqlite3 (SQLAlchemy
    # would cost about 110 ms of the cold start).
    config = yaml.safe_load((REPO_ROOT / "functions/api/weasis-link.yaml").read_text(encoding="utf-8"))
    report = serve_one_request(config, "patientID=WLS-1001", tmp_path, service_env, signing_key, moto_endpoint)
    assert report["imported"] == []  # no SQLAlchemy, no database driver, no DICOM toolkit
    assert report["deferred"] == []  # no x509, no AppSync resolver, no asyncio
