"""`python -m weasis_link.check_config` (what `make check-config` runs) on real archives: the shipped
dcm4chee-arc-light example files against dcm4chee-arc-light's schema in PostgreSQL and MariaDB, Orthanc over DICOM
(C-ECHO + C-FIND) and DICOMweb (QIDO-RS); then a stopped database and a closed DICOM port: the reason, non-zero.

Run: .venv/bin/pytest tests/integration/test_check_config.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from weasis_link_dev import dcm4chee_arc as arc
from weasis_link_dev.loopback_http import unused_port
from weasis_link_dev.mariadb import MariaDBServer
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.postgres import PostgresServer

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def environ_for(url: str) -> dict[str, str]:
    parsed = sa.engine.make_url(url)
    return {
        "PACS_DB_URI": parsed.set(username=None, password=None, query={}).render_as_string(hide_password=False),
        "PACS_DB_USER": str(parsed.username),
        "PACS_DB_PASSWORD": str(parsed.password),
    }


def check_config(path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weasis_link.check_config", str(path), "--timeout", "5", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def loaded(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        arc.load_dataset(engine, arc.standard_arc_dataset())
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize(
    ("backend", "example"),
    [("postgresql", "dcm4chee-arc-light-postgresql.yaml"), ("mariadb", "dcm4chee-arc-light-mysql.yaml")],
)
def test_the_example_files_are_reachable_on_the_real_schema(
    request: pytest.FixtureRequest, backend: str, example: str
) -> None:
    server: PostgresServer | MariaDBServer = request.getfixturevalue(
        "postgres_server" if backend == "postgresql" else "mariadb_server"
    )
    env = environ_for(loaded(server.create_database("arc_check")))
    result = check_config(EXAMPLES / example, env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("valid (1 archive(s))")
    assert len(lines) == 2
    assert lines[1].startswith("dcm4chee-db (DB): reachable in ")
    assert "the configured select answered (1 row with LIMIT 1)" in lines[1]
    assert env["PACS_DB_PASSWORD"] not in result.stdout + result.stderr


def test_a_stopped_database_is_reported_with_its_reason_and_a_non_zero_exit() -> None:
    with PostgresServer() as server:
        env = environ_for(loaded(server.sqlalchemy_url))
    # The cluster is stopped (and deleted) now: nothing listens on its port.
    result = check_config(EXAMPLES / "dcm4chee-arc-light-postgresql.yaml", env)
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stdout.splitlines()[1]
    assert line.startswith("dcm4chee-db (DB): NOT REACHABLE in ")
    assert "the database cannot be reached" in line and "Error" in line, line
    assert env["PACS_DB_PASSWORD"] not in result.stdout + result.stderr


def test_a_select_the_schema_does_not_have_is_reported_with_the_column(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    env = environ_for(loaded(postgres_server.create_database("arc_check_wrong")))
    text = (EXAMPLES / "dcm4chee-arc-light-postgresql.yaml").read_text(encoding="utf-8")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("pid.pat_id AS patientId", "p.pat_id AS patientId"), encoding="utf-8")
    result = check_config(wrong, env)
    assert result.returncode == 1
    assert "the configured select failed" in result.stdout and "p.pat_id" in result.stdout, result.stdout
    assert "42703" in result.stdout


def test_an_invalid_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("connector: {config: {x: {type: DB}}}\n", encoding="utf-8")
    result = check_config(path, {})
    assert result.returncode == 2
    assert "INVALID" in result.stdout


def test_dicom_and_dicomweb_archives_are_probed(orthanc: OrthancServer, tmp_path: Path) -> None:
    dicom = {"calling-aet": "WEASIS-LINK", "aet": orthanc.aet, "host": orthanc.dicom_host}
    config = {
        "wado": {"url": orthanc.wado_url},
        "connector": {
            "config": {
                "dimse": {"type": "DICOM", "dicom-connector": {**dicom, "port": orthanc.dicom_port}},
                "web": {"type": "DICOM_WEB", "dicom-web-connector": {"url": orthanc.dicomweb_url}},
                "down": {"type": "DICOM", "dicom-connector": {**dicom, "port": unused_port()}},
            }
        },
    }
    path = tmp_path / "archives.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = check_config(path, {})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines()[1:])
    assert lines["dimse (DICOM)"].startswith("reachable in ")
    assert "C-ECHO answered; a bounded C-FIND was answered" in lines["dimse (DICOM)"]
    assert lines["web (DICOM_WEB)"].startswith("reachable in ")
    assert "QIDO-RS" in lines["web (DICOM_WEB)"]
    assert lines["down (DICOM)"].startswith("NOT REACHABLE in ")
    assert "cannot be reached" in lines["down (DICOM)"]
    only = check_config(path, {}, "--archive", "web")
    assert only.returncode == 0 and len(only.stdout.splitlines()) == 2
