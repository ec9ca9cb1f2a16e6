"""The PACS database used by the DB connector's tests: schema, standard query, and a fast loader.

Our own small patient / study / series / instance schema, for the connector's generic behaviour (any select, SQL
DATE / TIME columns, SQLite files, injection) and for the embedded sample archive: it is not any PACS's schema.
dcm4chee-arc-light's real database is loaded from the archive's own DDL by `dcm4chee_arc` (the shipped profile is
tested there). PostgreSQL gets real DATE / TIME columns (so the connector's SQL-date → DICOM DA/TM normalisation is
exercised); SQLite keeps the DICOM strings `YYYYMMDD` / `HHMMSS`, as the embedded sample archive does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeEngine

from weasis_link_dev.dataset import InstanceRecord

__all__ = [
    "DB_QUERY",
    "DB_QUERY_YAML",
    "ISSUER_OF_PATIENT_ID_COLUMN",
    "SELECT_ALIASES",
    "STANDARD_SELECT",
    "Dialect",
    "LoadResult",
    "create_schema",
    "dicom_date",
    "dicom_time",
    "load_records",
    "metadata_for",
    "schema_ddl",
]

Dialect = Literal["postgresql", "sqlite"]

# -- schema -------------------------------------------------------------------------------------------------------

# BIGINT keys; SQLite needs exactly "INTEGER PRIMARY KEY" for a rowid alias.
_PK: Final[TypeEngine[int]] = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def metadata_for(dialect: Dialect) -> sa.MetaData:
    """The four tables, with DATE/TIME columns for PostgreSQL and DICOM strings for SQLite."""
    temporal_as_text = dialect == "sqlite"
    date_type: TypeEngine[Any] = sa.String(8) if temporal_as_text else sa.Date()
    # VARCHAR(16) leaves room for a fraction (HHMMSS.FFFFFF) should a loader ever keep one.
    time_type: TypeEngine[Any] = sa.String(16) if temporal_as_text else sa.Time()
    metadata = sa.MetaData()
    sa.Table(
        "patient",
        metadata,
        sa.Column("pk", _PK, primary_key=True),
        sa.Column("pat_id", sa.String(64), nullable=False),
        sa.Column("pat_id_issuer", sa.String(64)),
        sa.Column("pat_name", sa.String(255)),
        sa.Column("pat_birthdate", date_type),
        sa.Column("pat_sex", sa.String(16)),
        sa.Index("patient_pat_id_idx", "pat_id"),
    )
    sa.Table(
        "study",
        metadata,
        sa.Column("pk", _PK, primary_key=True),
        sa.Column("patient_fk", _PK, sa.ForeignKey("patient.pk"), nullable=False),
        sa.Column("study_iuid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_id", sa.String(16)),
        sa.Column("study_date", date_type),
        sa.Column("study_time", time_type),
        sa.Column("accession_no", sa.String(16)),
        sa.Column("ref_physician", sa.String(255)),
        sa.Column("study_desc", sa.String(255)),
        sa.Column("mods_in_study", sa.String(255)),
        sa.Index("study_patient_fk_idx", "patient_fk"),
        sa.Index("study_accession_no_idx", "accession_no"),
    )
    sa.Table(
        "series",
        metadata,
        sa.Column("pk", _PK, primary_key=True),
        sa.Column("study_fk", _PK, sa.ForeignKey("study.pk"), nullable=False),
        sa.Column("series_iuid", sa.String(64), nullable=False, unique=True),
        sa.Column("series_no", sa.Integer()),
        sa.Column("modality", sa.String(16)),
        sa.Column("series_desc", sa.String(255)),
        sa.Column("series_date", date_type),
        sa.Column("series_time", time_type),
        sa.Index("series_study_fk_idx", "study_fk"),
    )
    sa.Table(
        "instance",
        metadata,
        sa.Column("pk", _PK, primary_key=True),
        sa.Column("series_fk", _PK, sa.ForeignKey("series.pk"), nullable=False),
        sa.Column("sop_iuid", sa.String(64), nullable=False, unique=True),
        sa.Column("sop_cuid", sa.String(64)),
        sa.Column("inst_no", sa.Integer()),
        sa.Index("instance_series_fk_idx", "series_fk"),
    )
    return metadata


_METADATA: Final[dict[str, sa.MetaData]] = {"postgresql": metadata_for("postgresql"), "sqlite": metadata_for("sqlite")}
# PGDialect.__init__ lacks annotations in SQLAlchemy 2.1.
_DIALECTS: Final[dict[str, sa.Dialect]] = {
    "postgresql": PGDialect(),  # type: ignore[no-untyped-call]
    "sqlite": SQLiteDialect(),
}


def schema_ddl(dialect: Dialect) -> str:
    """The schema as a SQL script (CREATE TABLE + CREATE INDEX, `;`-terminated), e.g. for a sample archive file."""
    metadata = _METADATA[dialect]
    statements: list[str] = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=_DIALECTS[dialect])).strip())
        statements.extend(
            str(CreateIndex(index).compile(dialect=_DIALECTS[dialect])).strip()
            for index in sorted(table.indexes, key=lambda index: str(index.name))
        )
    return ";\n\n".join(statements) + ";\n"


def _metadata_of(bind: Engine | Connection) -> sa.MetaData:
    name = bind.dialect.name
    if name not in _METADATA:
        raise ValueError(f"no PACS schema for the {name!r} dialect (only postgresql and sqlite)")
    return _METADATA[name]


def create_schema(bind: Engine | Connection) -> None:
    """Create the four tables and their indexes (no-op for tables that exist)."""
    _metadata_of(bind).create_all(bind)


# -- the DB connector's query -------------------------------------------------------------------------------------

SELECT_ALIASES: Final[tuple[str, ...]] = (
    "patientId",
    "issuerOfPatientId",
    "patientName",
    "patientBirthDate",
    "patientSex",
    "studyInstanceUid",
    "studyDate",
    "studyTime",
    "accessionNumber",
    "studyId",
    "referringPhysicianName",
    "studyDescription",
    "seriesInstanceUid",
    "modality",
    "seriesDescription",
    "seriesNumber",
    "seriesDate",
    "seriesTime",
    "sopInstanceUid",
    "sopClassUid",
    "instanceNumber",
)

# One row per instance. Aliases are quoted so PostgreSQL keeps their case. No WHERE and no ORDER BY: the
# connector appends its own `WHERE <column> = :param` using the *-column settings below.
_SELECT_LINES: Final[tuple[str, ...]] = (
    'SELECT p.pat_id AS "patientId", p.pat_id_issuer AS "issuerOfPatientId", p.pat_name AS "patientName",',
    'p.pat_birthdate AS "patientBirthDate", p.pat_sex AS "patientSex",',
    'st.study_iuid AS "studyInstanceUid", st.study_date AS "studyDate", st.study_time AS "studyTime",',
    'st.accession_no AS "accessionNumber", st.study_id AS "studyId",',
    'st.ref_physician AS "referringPhysicianName", st.study_desc AS "studyDescription",',
    'se.series_iuid AS "seriesInstanceUid", se.modality AS "modality", se.series_desc AS "seriesDescription",',
    'se.series_no AS "seriesNumber", se.series_date AS "seriesDate", se.series_time AS "seriesTime",',
    'i.sop_iuid AS "sopInstanceUid", i.sop_cuid AS "sopClassUid", i.inst_no AS "instanceNumber"',
    "FROM patient p",
    "JOIN study st ON st.patient_fk = p.pk",
    "JOIN series se ON se.study_fk = st.pk",
    "JOIN instance i ON i.series_fk = se.pk",
)
STANDARD_SELECT: Final[str] = " ".join(_SELECT_LINES)

# The `query:` block of a DB connector (keys as in weasis-pacs-connector's connector model).
DB_QUERY: Final[Mapping[str, str]] = {
    "select": STANDARD_SELECT,
    "accession-number-column": "st.accession_no",
    "patient-id-column": "p.pat_id",
    "study-instance-uid-column": "st.study_iuid",
    "serie-instance-uid-column": "se.series_iuid",
    "sop-instance-uid-column": "i.sop_iuid",
}

# Not part of the upstream connector model; for a connector that also filters patients by issuer.
ISSUER_OF_PATIENT_ID_COLUMN: Final[str] = "p.pat_id_issuer"


def _yaml_query_block() -> str:
    # Built from the same lines as DB_QUERY so the two never drift; `>-` folds them back into one line.
    lines = ["query:", "  select: >-", *(f"    {line}" for line in _SELECT_LINES)]
    lines.extend(f"  {key}: {value}" for key, value in DB_QUERY.items() if key != "select")
    return "\n".join(lines) + "\n"


DB_QUERY_YAML: Final[str] = _yaml_query_block()

# -- DICOM strings → SQL values -----------------------------------------------------------------------------------


def dicom_date(value: str | None) -> dt.date | None:
    """DA `YYYYMMDD` (or ACR-NEMA `YYYY.MM.DD`) → date; None when absent or invalid."""
    if not value:
        return None
    text = value.strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def dicom_time(value: str | None) -> dt.time | None:
    """TM `HH[MM[SS[.F{1,6}]]]` (or ACR-NEMA `HH:MM:SS`) → time; None when absent or invalid."""
    if not value:
        return None
    whole, _, fraction = value.strip().replace(":", "").partition(".")
    if len(whole) not in (2, 4, 6) or not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    if len(fraction) > 6:
        return None
    parts = [int(whole[index : index + 2]) for index in range(0, len(whole), 2)]
    hour, minute, second = (*parts, 0, 0)[:3]
    try:
        return dt.time(hour, minute, second, int(fraction.ljust(6, "0")) if fraction else 0)
    except ValueError:  # includes the leap second 60, which datetime.time cannot hold
        return None


# -- loader -------------------------------------------------------------------------------------------------------

_ROWS_PER_INSERT: Final = 1000  # ≤ 10 columns × 1000 rows stays far below PostgreSQL's 65,535 bind parameters


@dataclass(frozen=True, slots=True)
class LoadResult:
    """How many rows `load_records` inserted into each table."""

    patients: int
    studies: int
    series: int
    instances: int


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # In-process: executemany costs no round trips, and avoids old SQLite's 999-parameter limit.
        conn.execute(table.insert(), list(rows))
        return
    # pg8000's executemany is one round trip per row; multi-row VALUES sends a thousand rows per statement.
    for chunk in _chunks(rows, _ROWS_PER_INSERT):
        conn.execute(table.insert().values(list(chunk)))


def _next_pk(conn: Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.pk), 0))).scalar_one()) + 1


def load_records(engine_or_url: Engine | Connection | str, records: Iterable[InstanceRecord]) -> LoadResult:
    """Insert instance records, creating each patient, study and series row once, in one transaction.

    Records sharing (pat_id, pat_id_issuer) are one patient; records sharing a study / series UID are one study /
    series row (the first record's attributes win). Patients, studies and series already in the database are
    reused, so a dataset can be loaded in several calls; an instance UID already present is an integrity error.
    Creates the schema when missing. Keys are assigned here, so rows go in with plain multi-row INSERTs.
    """
    if isinstance(engine_or_url, str):
        engine = sa.create_engine(engine_or_url)
        try:
            return load_records(engine, records)
        finally:
            engine.dispose()
    if isinstance(engine_or_url, Engine):
        with engine_or_url.begin() as conn:
            return _load(conn, records)
    conn = engine_or_url
    if conn.in_transaction():
        return _load(conn, records)
    with conn.begin():
        return _load(conn, records)


def _load(conn: Connection, records: Iterable[InstanceRecord]) -> LoadResult:
    metadata = _metadata_of(conn)
    metadata.create_all(conn)
    patient, study, series, instance = (metadata.tables[name] for name in ("patient", "study", "series", "instance"))
    as_sql_types = conn.dialect.name != "sqlite"
    date = dicom_date if as_sql_types else _as_is
    time_ = dicom_time if as_sql_types else _as_is

    # Existing rows by natural key, so that a second load joins the patients/studies/series already there.
    patient_pks: dict[tuple[str, str | None], int] = {
        (row.pat_id, row.pat_id_issuer): row.pk
        for row in conn.execute(sa.select(patient.c.pk, patient.c.pat_id, patient.c.pat_id_issuer))
    }
    study_pks: dict[str, int] = dict(conn.execute(sa.select(study.c.study_iuid, study.c.pk)).all())
    series_pks: dict[str, int] = dict(conn.execute(sa.select(series.c.series_iuid, series.c.pk)).all())
    next_pk = {table.name: _next_pk(conn, table) for table in (patient, study, series, instance)}
    patient_rows: list[dict[str, Any]] = []
    study_rows: list[dict[str, Any]] = []
    series_rows: list[dict[str, Any]] = []
    instance_rows: list[dict[str, Any]] = []
    modalities: dict[int, list[str]] = {}  # new study pk → modalities, in first-seen order

    for record in records:
        patient_key = (record.patient_id, record.issuer_of_patient_id)
        patient_pk = patient_pks.get(patient_key)
        if patient_pk is None:
            patient_pk = patient_pks[patient_key] = next_pk["patient"]
            next_pk["patient"] += 1
            patient_rows.append(
                {
                    "pk": patient_pk,
                    "pat_id": record.patient_id,
                    "pat_id_issuer": record.issuer_of_patient_id,
                    "pat_name": record.patient_name,
                    "pat_birthdate": date(record.patient_birth_date),
                    "pat_sex": record.patient_sex,
                }
            )
        study_pk = study_pks.get(record.study_instance_uid)
        if study_pk is None:
            study_pk = study_pks[record.study_instance_uid] = next_pk["study"]
            next_pk["study"] += 1
            modalities[study_pk] = []
            study_rows.append(
                {
                    "pk": study_pk,
                    "patient_fk": patient_pk,
                    "study_iuid": record.study_instance_uid,
                    "study_id": record.study_id,
                    "study_date": date(record.study_date),
                    "study_time": time_(record.study_time),
                    "accession_no": record.accession_number,
                    "ref_physician": record.referring_physician_name,
                    "study_desc": record.study_description,
                    "mods_in_study": None,  # filled below from the study's series
                }
            )
        series_pk = series_pks.get(record.series_instance_uid)
        if series_pk is None:
            series_pk = series_pks[record.series_instance_uid] = next_pk["series"]
            next_pk["series"] += 1
            study_modalities = modalities.get(study_pk)
            if study_modalities is not None and record.modality and record.modality not in study_modalities:
                study_modalities.append(record.modality)
            series_rows.append(
                {
                    "pk": series_pk,
                    "study_fk": study_pk,
                    "series_iuid": record.series_instance_uid,
                    "series_no": record.series_number,
                    "modality": record.modality,
                    "series_desc": record.series_description,
                    "series_date": date(record.series_date),
                    "series_time": time_(record.series_time),
                }
            )
        instance_rows.append(
            {
                "pk": next_pk["instance"],
                "series_fk": series_pk,
                "sop_iuid": record.sop_instance_uid,
                "sop_cuid": record.sop_class_uid,
                "inst_no": record.instance_number,
            }
        )
        next_pk["instance"] += 1

    for row in study_rows:
        # ModalitiesInStudy backslash-separated, as DICOM multi-values are.
        row["mods_in_study"] = "\\".join(modalities[row["pk"]]) or None

    _insert(conn, patient, patient_rows)
    _insert(conn, study, study_rows)
    _insert(conn, series, series_rows)
    _insert(conn, instance, instance_rows)
    if conn.dialect.name == "postgresql":
        _advance_sequences(conn, (patient, study, series, instance))
    return LoadResult(len(patient_rows), len(study_rows), len(series_rows), len(instance_rows))


def _as_is(value: str | None) -> str | None:
    return value


def _advance_sequences(conn: Connection, tables: Iterable[sa.Table]) -> None:
    # Keys were given explicitly, so the BIGSERIAL sequences did not move: move them past the highest key so a
    # later INSERT without a pk (a test adding a row by hand) does not collide.
    for table in tables:
        highest = sa.select(sa.func.max(table.c.pk)).scalar_subquery()
        conn.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence(table.name, "pk"), highest)))
