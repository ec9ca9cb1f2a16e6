"""The private PostgreSQL cluster, the PACS schema, the loader and the DB connector's standard query.

Run: .venv/bin/pytest -p weasis_link_dev.pytest_postgres tests/integration/test_postgres_service.py
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.dbapi
import pytest
import sqlalchemy as sa
import yaml

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.pacs_database import (
    DB_QUERY,
    DB_QUERY_YAML,
    SELECT_ALIASES,
    STANDARD_SELECT,
    LoadResult,
    create_schema,
    dicom_date,
    dicom_time,
    load_records,
    schema_ddl,
)
from weasis_link_dev.postgres import PostgresServer, PostgresServerError
from weasis_link_dev.pytest_postgres import PacsDatabase

pytestmark = pytest.mark.integration

DatabaseFactory = Callable[..., PacsDatabase]


def _record(**overrides: Any) -> InstanceRecord:
    values: dict[str, Any] = {
        "patient_id": "PG-0001",
        "issuer_of_patient_id": "HOSP-A",
        "patient_name": "Test^Patient",
        "patient_birth_date": "19700101",
        "patient_sex": "F",
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "study_date": "20240229",
        "study_time": "101500",
        "accession_number": "ACC-PG-1",
        "study_id": "S1",
        "study_description": "Study",
        "referring_physician_name": "Ref^Doc",
        "series_instance_uid": "1.2.826.0.1.3680043.8.498.1.1",
        "modality": "CT",
        "series_number": 1,
        "series_description": "Series",
        "series_date": "20240229",
        "series_time": "101600",
        "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1.1.1",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "instance_number": 1,
    }
    values.update(overrides)
    return InstanceRecord(**values)


def _small_dataset() -> list[InstanceRecord]:
    """2 patients sharing a PatientID under two issuers; 3 studies, 4 series, 7 instances."""
    records: list[InstanceRecord] = []
    layout = {  # (patient, issuer, name) -> {study: {series: instance count}}
        ("PG-0002", "HOSP-A", "Müller^Jürgen"): {"1": {"1": 2, "2": 1}, "2": {"1": 1}},
        ("PG-0002", "HOSP-B", "山田^太郎"): {"3": {"1": 3}},
    }
    for (patient_id, issuer, name), studies in layout.items():
        for study, series_counts in studies.items():
            study_uid = f"1.2.826.0.1.3680043.8.498.9.{study}"
            for series, count in series_counts.items():
                series_uid = f"{study_uid}.{series}"
                records.extend(
                    _record(
                        patient_id=patient_id,
                        issuer_of_patient_id=issuer,
                        patient_name=name,
                        study_instance_uid=study_uid,
                        accession_number=f"ACC-{study}",
                        series_instance_uid=series_uid,
                        modality="MR" if series == "2" else "CT",
                        series_number=int(series),
                        sop_instance_uid=f"{series_uid}.{number}",
                        instance_number=number,
                    )
                    for number in range(1, count + 1)
                )
    return records


@pytest.fixture
def small_pacs(postgres_database_factory: DatabaseFactory) -> PacsDatabase:
    return postgres_database_factory(_small_dataset())


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], sa.Engine]]:
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engines.append(sa.create_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _process_ended(pid: int) -> bool:
    # A zombie counts as ended: the postmaster is daemonised, and reaping it is up to PID 1, not to us.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


# -- the cluster --------------------------------------------------------------------------------------------------


def test_private_cluster_starts_on_a_free_loopback_port_and_stops() -> None:
    with PostgresServer(user="lifecycle", password="pw-1", database="lifecycle_db") as server:
        root = server.data_dir.parent
        port = server.port
        pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
        assert server.running
        assert server.port != 5432
        assert _port_open(server.port)
        assert (server.socket_dir / f".s.PGSQL.{server.port}").is_socket()
        assert server.sqlalchemy_url == f"postgresql+pg8000://lifecycle:pw-1@127.0.0.1:{server.port}/lifecycle_db"
        assert server.start_seconds is not None
        print(f"cluster start: {server.start_seconds:.2f} s")
        engine = sa.create_engine(server.sqlalchemy_url)
        with engine.connect() as conn:
            settings = {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in ("listen_addresses", "server_encoding", "password_encryption")
            }
            assert conn.execute(sa.text("SELECT current_user, current_database()")).one() == (
                "lifecycle",
                "lifecycle_db",
            )
        engine.dispose()
        assert settings == {
            "listen_addresses": "127.0.0.1",
            "server_encoding": "UTF8",
            "password_encryption": "scram-sha-256",
        }
        admin = server.superuser_connection()  # data_directory is visible to superusers only
        assert admin.run("SHOW data_directory") == [[str(server.data_dir)]]
        admin.close()
    with pytest.raises(PostgresServerError, match="not running"):
        _ = server.port
    assert not root.exists()
    assert not _port_open(port)
    assert _process_ended(pid)


def test_password_authentication_is_required_over_tcp(postgres_server: PostgresServer) -> None:
    def connect(user: str, password: str) -> pg8000.dbapi.Connection:
        return pg8000.dbapi.connect(
            user=user, password=password, host="127.0.0.1", port=postgres_server.port, database=postgres_server.database
        )

    connect(postgres_server.user, postgres_server.password).close()
    with pytest.raises(pg8000.dbapi.DatabaseError) as wrong:
        connect(postgres_server.user, "wrong-password")
    assert wrong.value.args[0]["C"] == "28P01"  # invalid_password
    with pytest.raises(pg8000.dbapi.DatabaseError) as empty:
        connect(postgres_server.user, "")
    assert empty.value.args[0]["C"] == "28P01"
    # The superuser has no password: it must not get in over TCP at all (only through the private socket).
    with pytest.raises(pg8000.dbapi.DatabaseError) as superuser:
        connect("postgres", "postgres")
    assert superuser.value.args[0]["C"] == "28P01"

    admin = postgres_server.superuser_connection()
    try:
        rules = admin.run("SELECT type, address, auth_method FROM pg_hba_file_rules ORDER BY line_number")
        stored = admin.run("SELECT rolpassword FROM pg_authid WHERE rolname = :name", name=postgres_server.user)
    finally:
        admin.close()
    assert rules == [["local", None, "trust"], ["host", "127.0.0.1", "scram-sha-256"]]
    assert stored[0][0].startswith("SCRAM-SHA-256$")


# -- schema and loader --------------------------------------------------------------------------------------------


def test_utf8_names_round_trip(small_pacs: PacsDatabase, engine_for: Callable[[str], sa.Engine]) -> None:
    with engine_for(small_pacs.sqlalchemy_url).connect() as conn:
        names = conn.execute(sa.text("SELECT pat_name FROM patient ORDER BY pat_id_issuer")).scalars().all()
        matched = conn.execute(sa.text("SELECT pat_id_issuer FROM patient WHERE pat_name = :n"), {"n": "山田^太郎"})
        assert matched.scalar_one() == "HOSP-B"
    assert names == ["Müller^Jürgen", "山田^太郎"]


def test_loader_creates_one_row_per_patient_study_series_instance(
    small_pacs: PacsDatabase, engine_for: Callable[[str], sa.Engine]
) -> None:
    engine = engine_for(small_pacs.sqlalchemy_url)
    assert small_pacs.loaded == LoadResult(patients=2, studies=3, series=4, instances=7)
    assert [_count(engine, table) for table in ("patient", "study", "series", "instance")] == [2, 3, 4, 7]
    with engine.connect() as conn:
        modalities: dict[str, str | None] = dict(
            conn.execute(sa.text("SELECT study_iuid, mods_in_study FROM study")).all()
        )
    assert set(modalities.values()) == {"CT\\MR", "CT"}


def test_same_patient_id_under_two_issuers_stays_two_patients(
    small_pacs: PacsDatabase, engine_for: Callable[[str], sa.Engine]
) -> None:
    with engine_for(small_pacs.sqlalchemy_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.pat_id_issuer, p.pat_name, count(st.pk) FROM patient p JOIN study st ON st.patient_fk = p.pk"
                " WHERE p.pat_id = :pid GROUP BY p.pk ORDER BY p.pat_id_issuer"
            ),
            {"pid": "PG-0002"},
        ).all()
    assert [tuple(row) for row in rows] == [("HOSP-A", "Müller^Jürgen", 2), ("HOSP-B", "山田^太郎", 1)]


def test_loader_treats_a_missing_issuer_as_its_own_patient(
    postgres_database_factory: DatabaseFactory, engine_for: Callable[[str], sa.Engine]
) -> None:
    records = [
        _record(
            issuer_of_patient_id=None,
            study_instance_uid="1.9.1",
            series_instance_uid="1.9.1.1",
            sop_instance_uid="1.9.1.1.1",
        ),
        _record(
            issuer_of_patient_id=None,
            study_instance_uid="1.9.2",
            series_instance_uid="1.9.2.1",
            sop_instance_uid="1.9.2.1.1",
        ),
        _record(study_instance_uid="1.9.3", series_instance_uid="1.9.3.1", sop_instance_uid="1.9.3.1.1"),
    ]
    pacs = postgres_database_factory(records)
    assert pacs.loaded == LoadResult(patients=2, studies=3, series=3, instances=3)
    assert _count(engine_for(pacs.sqlalchemy_url), "patient") == 2


def test_date_and_time_columns_hold_sql_values(
    postgres_database_factory: DatabaseFactory, engine_for: Callable[[str], sa.Engine]
) -> None:
    records = [
        _record(
            patient_birth_date="19650707",
            study_date="20240229",
            study_time="235959.123456",
            series_date="20240229",
            series_time="0930",
        ),
        _record(  # absent and invalid values both become NULL
            patient_id="PG-0003",
            patient_birth_date=None,
            study_instance_uid="1.8.2",
            study_date="20230229",
            study_time="25",
            series_instance_uid="1.8.2.1",
            series_date="",
            series_time=None,
            sop_instance_uid="1.8.2.1.1",
        ),
    ]
    pacs = postgres_database_factory(records)
    engine = engine_for(pacs.sqlalchemy_url)
    with engine.connect() as conn:
        types: dict[str, str] = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE column_name IN ('pat_birthdate', 'study_date', 'study_time', 'series_date', 'series_time')"
                )
            ).all()
        )
        temporal = '"patientBirthDate", "studyDate", "studyTime", "seriesDate", "seriesTime"'
        query = f'SELECT {temporal} FROM ({STANDARD_SELECT}) q ORDER BY "patientId"'
        rows = conn.execute(sa.text(query)).all()
    assert types == {
        "pat_birthdate": "date",
        "study_date": "date",
        "study_time": "time without time zone",
        "series_date": "date",
        "series_time": "time without time zone",
    }
    assert [tuple(row) for row in rows] == [
        (dt.date(1965, 7, 7), dt.date(2024, 2, 29), dt.time(23, 59, 59, 123456), dt.date(2024, 2, 29), dt.time(9, 30)),
        (None, None, None, None, None),
    ]


def test_a_second_load_joins_existing_rows_and_keeps_sequences_usable(
    postgres_database_factory: DatabaseFactory, engine_for: Callable[[str], sa.Engine]
) -> None:
    pacs = postgres_database_factory(_small_dataset()[:2])
    more = [
        _record(**{**dataclasses.asdict(record), "sop_instance_uid": record.sop_instance_uid + ".9"})
        for record in _small_dataset()
    ]
    engine = engine_for(pacs.sqlalchemy_url)
    assert load_records(engine, more) == LoadResult(patients=1, studies=2, series=3, instances=7)
    assert [_count(engine, table) for table in ("patient", "study", "series", "instance")] == [2, 3, 4, 9]
    with engine.begin() as conn:  # a row added by hand, without a key, must not collide with the loaded ones
        conn.execute(sa.text("INSERT INTO patient (pat_id, pat_name) VALUES ('BY-HAND', 'Hand^Made')"))


# -- the DB connector's query -------------------------------------------------------------------------------------


def _expected_row(record: InstanceRecord) -> dict[str, Any]:
    return {
        "patientId": record.patient_id,
        "issuerOfPatientId": record.issuer_of_patient_id,
        "patientName": record.patient_name,
        "patientBirthDate": dicom_date(record.patient_birth_date),
        "patientSex": record.patient_sex,
        "studyInstanceUid": record.study_instance_uid,
        "studyDate": dicom_date(record.study_date),
        "studyTime": dicom_time(record.study_time),
        "accessionNumber": record.accession_number,
        "studyId": record.study_id,
        "referringPhysicianName": record.referring_physician_name,
        "studyDescription": record.study_description,
        "seriesInstanceUid": record.series_instance_uid,
        "modality": record.modality,
        "seriesDescription": record.series_description,
        "seriesNumber": record.series_number,
        "seriesDate": dicom_date(record.series_date),
        "seriesTime": dicom_time(record.series_time),
        "sopInstanceUid": record.sop_instance_uid,
        "sopClassUid": record.sop_class_uid,
        "instanceNumber": record.instance_number,
    }


def test_standard_dataset_is_loaded(postgres_pacs: PacsDatabase) -> None:
    records = postgres_pacs.records
    print(f"standard dataset ({len(records)} instances) load: {postgres_pacs.load_seconds:.3f} s")
    assert postgres_pacs.loaded == LoadResult(
        patients=len({(r.patient_id, r.issuer_of_patient_id) for r in records}),
        studies=len({r.study_instance_uid for r in records}),
        series=len({r.series_instance_uid for r in records}),
        instances=len(records),
    )
    # WLK-0002 is two people under two issuers in the standard dataset too.
    assert postgres_pacs.loaded.patients == len({r.patient_id for r in records}) + 1


def test_standard_select_returns_one_row_per_instance_with_the_aliases(
    postgres_pacs: PacsDatabase, engine_for: Callable[[str], sa.Engine]
) -> None:
    with engine_for(postgres_pacs.sqlalchemy_url).connect() as conn:
        result = conn.execute(sa.text(STANDARD_SELECT))
        assert tuple(result.keys()) == SELECT_ALIASES
        rows = {row["sopInstanceUid"]: dict(row) for row in result.mappings()}
    assert len(rows) == len(postgres_pacs.records)
    assert rows == {record.sop_instance_uid: _expected_row(record) for record in postgres_pacs.records}


@pytest.mark.parametrize(
    ("column_key", "attribute"),
    [
        ("patient-id-column", "patient_id"),
        ("accession-number-column", "accession_number"),
        ("study-instance-uid-column", "study_instance_uid"),
        ("serie-instance-uid-column", "series_instance_uid"),
        ("sop-instance-uid-column", "sop_instance_uid"),
    ],
)
def test_standard_select_filters_on_the_configured_columns(
    postgres_pacs: PacsDatabase, engine_for: Callable[[str], sa.Engine], column_key: str, attribute: str
) -> None:
    value = getattr(postgres_pacs.records[-1], attribute)
    # The connector appends `WHERE <column> = :param` with a bound parameter, as here.
    query = sa.text(f"{DB_QUERY['select']} WHERE {DB_QUERY[column_key]} = :value")
    with engine_for(postgres_pacs.sqlalchemy_url).connect() as conn:
        found = conn.execute(query, {"value": value}).mappings().all()
    expected = [r.sop_instance_uid for r in postgres_pacs.records if getattr(r, attribute) == value]
    assert sorted(row["sopInstanceUid"] for row in found) == sorted(expected)


def test_query_yaml_snippet_matches_the_dict() -> None:
    assert yaml.safe_load(DB_QUERY_YAML) == {"query": dict(DB_QUERY)}


# -- benchmark data -----------------------------------------------------------------------------------------------


def test_large_study_of_5000_instances_loads(
    postgres_large_study: Callable[[int], PacsDatabase], engine_for: Callable[[str], sa.Engine]
) -> None:
    # How fast it loads is the benchmarks' business (`make bench`), not a pass/fail limit here.
    pacs = postgres_large_study(5000)
    assert pacs.loaded.instances == 5000
    assert _count(engine_for(pacs.sqlalchemy_url), "instance") == 5000
    assert postgres_large_study(5000) is pacs  # cached for the session


# -- SQLite (the layer's embedded sample archive uses the same schema, with DICOM strings) -------------------------


def test_sqlite_schema_keeps_dicom_strings_and_the_same_select_works() -> None:
    engine = sa.create_engine("sqlite://")
    try:
        create_schema(engine)
        assert load_records(engine, _small_dataset()) == LoadResult(patients=2, studies=3, series=4, instances=7)
        with engine.connect() as conn:
            result = conn.execute(sa.text(STANDARD_SELECT + " WHERE p.pat_id_issuer = :issuer"), {"issuer": "HOSP-B"})
            assert tuple(result.keys()) == SELECT_ALIASES
            rows = result.mappings().all()
    finally:
        engine.dispose()
    assert len(rows) == 3
    assert {(row["patientName"], row["studyDate"], row["studyTime"], row["seriesTime"]) for row in rows} == {
        ("山田^太郎", "20240229", "101500", "101600")
    }
    assert "pat_birthdate VARCHAR(8)" in schema_ddl("sqlite")
    assert "pat_birthdate DATE" in schema_ddl("postgresql")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240229", dt.date(2024, 2, 29)),
        ("2024.02.29", dt.date(2024, 2, 29)),
        ("20230229", None),
        ("2024022", None),
        ("", None),
        (None, None),
    ],
)
def test_dicom_date(text: str | None, expected: dt.date | None) -> None:
    assert dicom_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("101500", dt.time(10, 15)),
        ("1015", dt.time(10, 15)),
        ("10", dt.time(10)),
        ("235959.5", dt.time(23, 59, 59, 500000)),
        ("10:15:30", dt.time(10, 15, 30)),
        ("246000", None),
        ("235960", None),
        ("10150", None),
        ("101500.1234567", None),
        (None, None),
    ],
)
def test_dicom_time(text: str | None, expected: dt.time | None) -> None:
    assert dicom_time(text) == expected
