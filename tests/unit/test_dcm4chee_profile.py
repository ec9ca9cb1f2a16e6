"""The pieces of the dcm4chee-arc-light profile that need no database: the shipped example files and their place in
the docs, the patient-record rule, the driver messages we log, the first line of a QIDO error answer, the archive's
person-name storage, and check-config's handling of a broken file."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import urllib3
import yaml
from sqlalchemy.exc import OperationalError, ProgrammingError

from weasis_link.check_config import ProbeResult, main
from weasis_link.config import load_config
from weasis_link.connectors.database import driver_message
from weasis_link.connectors.database_rows import one_identity_per_record
from weasis_link.connectors.dicomweb import _first_line, _page
from weasis_link.errors import ArchiveError, ConfigurationError
from weasis_link_dev.dcm4chee_arc import person_name_groups

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("dcm4chee-arc-light-postgresql.yaml", "dcm4chee-arc-light-mysql.yaml")
ENV = {"PACS_DB_URI": "postgresql://db.test:5432/pacsdb", "PACS_DB_USER": "ro", "PACS_DB_PASSWORD": "pw-123"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_configuration_reference_shows_each_example_file_whole(name: str) -> None:
    text = (ROOT / "docs" / "examples" / name).read_text(encoding="utf-8").rstrip("\n")
    assert f"```yaml\n{text}\n```" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_file_needs_only_the_three_variables(name: str) -> None:
    config = load_config(ROOT / "docs" / "examples" / name, environ=ENV)
    db = config.connector.config["dcm4chee-db"].db_connector
    assert db is not None
    assert (db.uri, db.user, db.password and db.password.get_secret_value()) == (
        "postgresql://db.test:5432/pacsdb",
        "ro",
        "pw-123",
    )
    with pytest.raises(ConfigurationError, match="PACS_DB_URI"):
        load_config(ROOT / "docs" / "examples" / name, environ={})


def test_both_examples_share_one_select() -> None:
    blocks = [
        yaml.safe_load((ROOT / "docs" / "examples" / n).read_text(encoding="utf-8"))["connector"]["config"]
        for n in EXAMPLES
    ]
    assert blocks[0] == blocks[1]


def test_the_readme_and_makefile_say_how_to_run_and_check_your_own_configuration() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "WEASIS_LINK_CONFIG=my-pacs.yaml make run" in readme and "--ready-file" in readme
    assert "make check-config CONFIG=" in readme
    assert "\ncheck-config:" in makefile and "weasis_link.check_config" in makefile
    assert "mariadb-server" in makefile.split("DEBIAN_PACKAGES :=", 1)[1].split("\n\n", 1)[0]


# --------------------------------------------------------------------------------------------- patient records
def row(pid: str, issuer: str | None, record: int, sop: str) -> dict[str, object]:
    return {"PatientID": pid, "IssuerOfPatientID": issuer, "patientPk": record, "SOPInstanceUID": sop}


def identity(row: dict[str, object]) -> tuple[object, ...]:
    return (row["PatientID"], row["IssuerOfPatientID"])


def record(row: dict[str, object]) -> object:
    return row["patientPk"]


def test_one_record_with_two_identifiers_keeps_the_first_identifier_whatever_the_order() -> None:
    rows = [row("X2001", "HOSP-C", 7, "1"), row("WLK-2001", "HOSP-A", 7, "1"), row("X2001", "HOSP-C", 7, "2")]
    rows.append(row("WLK-2001", "HOSP-A", 7, "2"))
    for ordered in (rows, rows[::-1]):
        kept = one_identity_per_record(ordered, identity, record)
        assert sorted((r["PatientID"], r["SOPInstanceUID"]) for r in kept) == [("WLK-2001", "1"), ("WLK-2001", "2")]


def test_two_records_are_never_merged_even_with_the_same_identifier() -> None:
    rows = [row("WLK-0002", "HOSP-A", 1, "1"), row("WLK-0002", "HOSP-B", 2, "2")]
    assert one_identity_per_record(rows, identity, record) == rows


# --------------------------------------------------------------------------------------------- driver messages
class FakePgError(Exception):
    pass


def test_a_postgresql_error_keeps_state_column_and_hint_and_loses_values_and_password() -> None:
    fields = {"S": "ERROR", "C": "42703", "M": 'column p.pat_id does not exist near "WLK-0001"', "H": "Perhaps p.pk"}
    exc = ProgrammingError("SELECT ...", {"pid_1": "WLK-0001"}, FakePgError(fields))
    text = driver_message(exc, password="secret-pw")
    assert text == 'FakePgError: SQLSTATE 42703: column p.pat_id does not exist near "?" (hint: Perhaps p.pk)'


def test_a_mysql_error_keeps_number_and_column_and_loses_short_quoted_values() -> None:
    exc = OperationalError(
        "SELECT ...", ["A1", "ACC-77"], FakePgError(1054, "Unknown column 'p.pat_id' near 'A1' ACC-77")
    )
    text = driver_message(exc, password="pw")
    assert text == "FakePgError: error 1054: Unknown column 'p.pat_id' near '?' ?"


def test_the_password_never_survives_even_in_a_connection_error() -> None:
    exc = OperationalError(None, None, FakePgError("could not connect as weasis:hunter22@db"))
    assert "hunter22" not in driver_message(exc, password="hunter22")


# --------------------------------------------------------------------------------------------- QIDO answers
def test_the_first_line_of_an_error_answer_is_bounded_and_printable() -> None:
    assert _first_line(b"Internal error: bad query\nstack trace...") == "Internal error: bad query"
    assert _first_line(b"") == "(empty answer)"
    assert _first_line(b"x\x00y\x1b[31m") == "x y [31m"
    assert len(_first_line(b"a" * 5000)) == 201


def test_a_qido_error_logs_status_and_first_line(caplog: pytest.LogCaptureFixture) -> None:
    response = urllib3.HTTPResponse(body=b"Unknown attribute 00100020x\n<html>", status=400, preload_content=True)
    with caplog.at_level(logging.WARNING), pytest.raises(ArchiveError, match="HTTP 400"):
        _page(response, "study query")
    assert "HTTP 400 to the study query: Unknown attribute 00100020x" in caplog.text


# --------------------------------------------------------------------------------------------- person names
@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("Doe^John", ("Doe^John^^^", "*", "*")),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", ("Yamada^Tarou^^^", "山田^太郎^^^", "やまだ^たろう^^^")),
        ("=김^민준", ("*", "김^민준^^^", "*")),
        ("", None),
        ("^^^", None),
    ],
)
def test_names_are_stored_as_the_archive_stores_them(name: str, stored: tuple[str, str, str] | None) -> None:
    assert person_name_groups(name) == stored


# --------------------------------------------------------------------------------------------- check-config
def test_check_config_reports_an_invalid_file_without_probing(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("connector: {config: {pacs: {type: DB}}}\n", encoding="utf-8")
    out = io.StringIO()
    assert main([str(path)], out=out) == 2
    assert out.getvalue().startswith(f"{path}: INVALID: ")


def test_a_probe_line_names_archive_type_state_time_and_reason() -> None:
    line = ProbeResult("pacs", "DB", False, "the database cannot be reached (InterfaceError)", 1.23456).line()
    assert line == "pacs (DB): NOT REACHABLE in 1.235 s: the database cannot be reached (InterfaceError)"
