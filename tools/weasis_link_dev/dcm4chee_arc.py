"""dcm4chee-arc-light's real database, for the DB connector's tests and benchmarks (PostgreSQL and MariaDB/MySQL).

The schema is the archive's own DDL, read from `<repo>/../shared/reference/dcm4chee-arc-light/` (upstream,
unmodified, never copied into this project). Rows go in the way the archive stores them:

- identifiers in `patient_id` (one row per identifier of a patient; the issuer's local namespace in `entity_id`);
- names in `person_name` (alphabetic, ideographic and phonetic groups), each group padded with empty components
  (`DOE^JOHN^^^`); an absent group, like every absent string attribute, stored as `'*'`, not NULL;
- a merged patient keeps its record and identifiers with `merge_fk` pointing at the surviving patient, which holds
  the studies (the archive moves them on merge);
- a rejected instance keeps its `instance` row and gets a `rejected_instance` row; its series' and study's
  `rejection_state` say PARTIAL (1) or COMPLETE (2);
- every entity references its own `dicomattrs` blob.

Columns this loader has no value for get what the archive writes for an absent value: `'*'` for strings, 0 for
counters and states, the load time for timestamps (found by reflecting the loaded schema, so the loader follows the
DDL rather than a copy of it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from weasis_link_dev.dataset import InstanceRecord

__all__ = [
    "ArcDataset",
    "ArcLoadResult",
    "PatientKey",
    "create_schema",
    "ddl_statements",
    "load_dataset",
    "person_name_groups",
    "reference_dir",
]

PatientKey = tuple[str, str | None]  # (PatientID, IssuerOfPatientID)

_TABLES: Final = (
    "code",
    "dicomattrs",
    "person_name",
    "patient",
    "patient_id",
    "study",
    "series",
    "instance",
    "rejected_instance",
)
_ROWS_PER_INSERT: Final = 1000  # ≤ 40 columns × 1000 rows stays below PostgreSQL's 65,535 bind parameters
# The rejection note code dcm4chee-arc-light ships for "Rejected for Quality Reasons".
_REJECTION_CODE: Final = {
    "code_value": "113001",
    "code_designator": "DCM",
    "code_meaning": "Rejected for Quality Reasons",
}
NONE, PARTIAL, COMPLETE = 0, 1, 2  # RejectionState ordinals (NONE, PARTIAL, COMPLETE, EMPTY)


def reference_dir() -> Path:
    """`<repo>/../shared/reference/dcm4chee-arc-light` (the repo root is two levels above this package)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "dcm4chee-arc-light"


def ddl_statements(dialect: str) -> list[str]:
    """The archive's DDL as statements: tables, sequences and indexes (PostgreSQL adds its FK and case-insensitive
    index scripts, as the archive's installation guide runs them)."""
    base = reference_dir()
    files = (
        [base / "create-psql.sql", base / "create-fk-index.sql", base / "create-case-insensitive-index.sql"]
        if dialect == "postgresql"
        else [base / "mysql" / "create-mysql.sql"]
    )
    statements: list[str] = []
    for path in files:
        if not path.exists():
            raise FileNotFoundError(f"{path}: the dcm4chee-arc-light DDL (../shared/reference) is missing")
        text = re.sub(r"(?m)^\s*--.*$", "", path.read_text(encoding="utf-8"))
        statements.extend(s.strip() for s in text.split(";") if s.strip())
    return statements


def create_schema(bind: Engine | Connection) -> None:
    """Load the archive's DDL into an empty database."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            create_schema(conn)
        return
    for statement in ddl_statements(bind.dialect.name):
        bind.exec_driver_sql(statement)


def person_name_groups(name: str | None) -> tuple[str, str, str] | None:
    """A DICOM PN as the archive's three columns: each group padded to five components, absent groups `'*'`;
    None (no person_name row) when the name is empty."""
    if not name or not name.replace("=", "").replace("^", ""):
        return None
    groups = [*name.split("="), "", ""][:3]

    def padded(group: str) -> str:
        if not group.replace("^", ""):
            return "*"
        components = group.split("^")
        return "^".join(components + [""] * (5 - len(components)))

    alphabetic, ideographic, phonetic = (padded(g) for g in groups)
    return alphabetic, ideographic, phonetic


@dataclass(frozen=True)
class ArcDataset:
    """What the archive holds: visible instances (the ground truth) plus what must never be shown."""

    records: Sequence[InstanceRecord]
    # More identifiers of the patient a record names: (PatientID, issuer) -> further (PatientID, issuer).
    extra_identifiers: Mapping[PatientKey, Sequence[PatientKey]] = field(default_factory=dict)
    # Merged patients: the merged record's identifier -> the surviving patient's (which holds the studies).
    merged: Mapping[PatientKey, PatientKey] = field(default_factory=dict)
    # Stored, then rejected (a rejection note): in `instance`, and in `rejected_instance`.
    rejected: Sequence[InstanceRecord] = ()
    # The issuer stored as a universal entity ID only (entity_id '*'), for these patients.
    issuer_as_uid: frozenset[PatientKey] = frozenset()


@dataclass(frozen=True, slots=True)
class ArcLoadResult:
    patients: int
    studies: int
    series: int
    instances: int
    rejected: int


class _Tables:
    """The reflected tables, each with the values the archive writes for columns we leave out."""

    def __init__(self, conn: Connection) -> None:
        metadata = sa.MetaData()
        metadata.reflect(conn, only=list(_TABLES))
        self.tables = {name: metadata.tables[name] for name in _TABLES}
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.defaults = {name: _absent_values(table, now) for name, table in self.tables.items()}
        self.next_pk = {
            name: int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.pk), 0))).scalar_one()) + 1
            for name, t in self.tables.items()
        }
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _TABLES}

    def add(self, table: str, values: Mapping[str, Any]) -> int:
        pk = self.next_pk[table]
        self.next_pk[table] += 1
        row = dict(self.defaults[table])
        # None is the archive's '*' (or 0) for a NOT NULL column, NULL for a nullable one.
        row.update({k: v for k, v in values.items() if v is not None or k not in row})
        row["pk"] = pk
        if "dicomattrs_fk" in row:
            row["dicomattrs_fk"] = self.add("dicomattrs", {"attrs": b"\x00"})
        self.rows[table].append(row)
        return pk


def _absent_values(table: sa.Table, now: dt.datetime) -> dict[str, Any]:
    by_type: dict[object, object] = {str: "*", bool: False, int: 0, float: 0, dt.datetime: now, bytes: b"\x00"}
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.nullable or column.primary_key:
            continue
        try:
            python_type: object = column.type.python_type
        except NotImplementedError:  # MySQL BIT and the like
            python_type = None
        values[column.name] = by_type.get(python_type, 0)
    return values


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def load_dataset(engine_or_conn: Engine | Connection, dataset: ArcDataset) -> ArcLoadResult:
    """Insert the dataset as dcm4chee-arc-light stores it, in one transaction; the schema is created when missing."""
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return load_dataset(conn, dataset)
    conn = engine_or_conn
    if not sa.inspect(conn).has_table("patient"):
        create_schema(conn)
    t = _Tables(conn)
    rejection_code = t.add("code", {**_REJECTION_CODE, "code_version": "*"})

    def name_pk(name: str | None) -> int | None:
        groups = person_name_groups(name)
        if groups is None:
            return None
        a, i, p = groups
        return t.add("person_name", {"alphabetic_name": a, "ideographic_name": i, "phonetic_name": p})

    def identifier(pk: int, key: PatientKey) -> None:
        pat_id, issuer = key
        as_uid = key in dataset.issuer_as_uid
        t.add(
            "patient_id",
            {
                "pat_id": pat_id,
                "entity_id": None if as_uid else issuer,
                "entity_uid": issuer if as_uid else None,
                "entity_uid_type": "ISO" if as_uid else None,
                "patient_fk": pk,
            },
        )

    patients: dict[PatientKey, int] = {}
    studies: dict[str, int] = {}
    series: dict[str, int] = {}
    series_state: dict[int, list[bool]] = {}  # series pk -> rejected flag per instance
    series_study: dict[int, int] = {}
    rejected_uids = {r.sop_instance_uid for r in dataset.rejected}
    all_records: Iterable[InstanceRecord] = [*dataset.records, *dataset.rejected]
    instance_count = 0
    for r in all_records:
        key = (r.patient_id, r.issuer_of_patient_id)
        patient_pk = patients.get(key)
        if patient_pk is None:
            patient_pk = patients[key] = t.add(
                "patient",
                {
                    "pat_name_fk": name_pk(r.patient_name),
                    "pat_birthdate": r.patient_birth_date,
                    "pat_sex": r.patient_sex,
                },
            )
            identifier(patient_pk, key)
            for extra in dataset.extra_identifiers.get(key, ()):
                identifier(patient_pk, extra)
        study_pk = studies.get(r.study_instance_uid)
        if study_pk is None:
            study_pk = studies[r.study_instance_uid] = t.add(
                "study",
                {
                    "patient_fk": patient_pk,
                    "study_iuid": r.study_instance_uid,
                    "study_date": r.study_date,
                    "study_time": r.study_time,
                    "accession_no": r.accession_number,
                    "study_id": r.study_id,
                    "study_desc": r.study_description,
                    "ref_phys_name_fk": name_pk(r.referring_physician_name),
                },
            )
        series_pk = series.get(r.series_instance_uid)
        if series_pk is None:
            series_pk = series[r.series_instance_uid] = t.add(
                "series",
                {
                    "study_fk": study_pk,
                    "series_iuid": r.series_instance_uid,
                    "series_no": r.series_number,
                    "modality": r.modality,
                    "series_desc": r.series_description,
                    "sop_cuid": r.sop_class_uid,
                    "metadata_update_load_objects": False,
                },
            )
            series_state[series_pk] = []
            series_study[series_pk] = study_pk
        t.add(
            "instance",
            {
                "series_fk": series_pk,
                "sop_iuid": r.sop_instance_uid,
                "sop_cuid": r.sop_class_uid,
                "inst_no": r.instance_number,
            },
        )
        instance_count += 1
        rejected = r.sop_instance_uid in rejected_uids
        series_state[series_pk].append(rejected)
        if rejected:
            t.add(
                "rejected_instance",
                {
                    "study_iuid": r.study_instance_uid,
                    "series_iuid": r.series_instance_uid,
                    "sop_iuid": r.sop_instance_uid,
                    "sop_cuid": r.sop_class_uid,
                    "reject_code_fk": rejection_code,
                },
            )
    for old, survivor in dataset.merged.items():
        merged_pk = t.add("patient", {"merge_fk": patients[survivor]})
        identifier(merged_pk, old)

    _set_rejection_states(t, series_state, series_study)
    for name in _TABLES:  # parents first: the DDL's foreign keys are checked row by row
        table = t.tables[name]
        _insert(conn, table, t.rows[name])
    if conn.dialect.name == "postgresql":
        for name in _TABLES:  # keys were given explicitly: move the archive's sequences past them
            conn.execute(sa.text(f"SELECT setval('{name}_pk_seq', {t.next_pk[name]})"))
    return ArcLoadResult(
        patients=len(patients) + len(dataset.merged),
        studies=len(studies),
        series=len(series),
        instances=instance_count,
        rejected=len(rejected_uids),
    )


def _insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Multi-row INSERTs written at the driver level: SQLAlchemy's multi-values compilation costs more than the
    round trips it saves, at 50,000 rows. Both drivers (pg8000, PyMySQL) take `%s` placeholders."""
    if not rows:
        return
    columns = sorted({k for row in rows for k in row})  # reflected names, never request values
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "  # noqa: S608 - reflected names
    for chunk in _chunks(rows, _ROWS_PER_INSERT):
        values = tuple(row.get(c) for row in chunk for c in columns)
        conn.exec_driver_sql(head + ", ".join([placeholders] * len(chunk)), values)


def _set_rejection_states(t: _Tables, series_state: dict[int, list[bool]], series_study: dict[int, int]) -> None:
    series_rows = {row["pk"]: row for row in t.rows["series"]}
    study_rows = {row["pk"]: row for row in t.rows["study"]}
    per_study: dict[int, list[int]] = {}
    for pk, flags in series_state.items():
        state = COMPLETE if all(flags) else PARTIAL if any(flags) else NONE
        series_rows[pk]["rejection_state"] = state
        per_study.setdefault(series_study[pk], []).append(state)
    for pk, states in per_study.items():
        state = COMPLETE if all(s == COMPLETE for s in states) else PARTIAL if any(states) else NONE
        study_rows[pk]["rejection_state"] = state


def analyze(conn: Connection) -> None:
    """Fresh planner statistics (a PACS database has them; a just-loaded one has not)."""
    for name in _TABLES:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {name}")
        else:
            conn.exec_driver_sql(f"ANALYZE TABLE {name}")


# -- datasets -----------------------------------------------------------------------------------------------------

# The standard dataset's traps, plus what only the archive's own schema can hold.
THREE_GROUP_NAME: Final = "Yamada^Tarou=山田^太郎=やまだ^たろう"  # WLK-0010's name
TWO_GROUP_REFERRING: Final = "Kim^Minjun=김^민준"  # a referring physician with alphabetic + ideographic groups
TWO_IDS: Final[PatientKey] = ("WLK-2001", "HOSP-A")  # a patient with a second identifier...
SECOND_ID: Final[PatientKey] = ("X2001", "HOSP-C")  # ...that sorts after the first
MERGED_ID: Final[PatientKey] = ("WLK-3001", "HOSP-B")  # merged into WLK-0001/HOSP-A (its studies were moved there)
SURVIVOR: Final[PatientKey] = ("WLK-0001", "HOSP-A")
UID_ISSUER: Final[PatientKey] = ("WLK-4001", "1.2.40.0.13.1.99")  # issuer known by its universal entity ID only
_ROOT: Final = "1.2.826.0.1.3680043.8.498.77"


def _patient_record(base: InstanceRecord, key: PatientKey, name: str, n: int, study: int) -> list[InstanceRecord]:
    """A small study (2 series of 3 CT instances) for another patient, derived from a standard record."""
    study_uid = f"{_ROOT}.{n}.{study}"
    return [
        dataclasses.replace(
            base,
            patient_id=key[0],
            issuer_of_patient_id=key[1],
            patient_name=name,
            study_instance_uid=study_uid,
            accession_number=f"ACC-X{n}{study}",
            series_instance_uid=f"{study_uid}.{series}",
            series_number=series,
            series_date=None,
            series_time=None,
            sop_instance_uid=f"{study_uid}.{series}.{number}",
            instance_number=number,
        )
        for series in (1, 2)
        for number in (1, 2, 3)
    ]


def standard_arc_dataset() -> ArcDataset:
    """The standard query-matrix dataset as dcm4chee-arc-light holds it, with the archive's own traps added:

    - WLK-0010's name has three groups (`THREE_GROUP_NAME`); one referring physician has two;
    - WLK-2001/HOSP-A has a second identifier X2001/HOSP-C (two `patient_id` rows, one patient);
    - WLK-3001/HOSP-B is a merged patient (merge_fk -> WLK-0001/HOSP-A, which holds the studies);
    - WLK-4001's issuer is stored as a universal entity ID only;
    - one rejected instance in a visible series of WLK-0001, and one rejected series (all its instances) in a
      study of WLK-0003;
    - every absent string (the sparse study's accession, time, description...) stored as `'*'`.

    The archive does not store SeriesDate/SeriesTime in a column: the ground truth has none.
    """
    from weasis_link_dev.synthetic_studies import standard_dataset

    records = []
    for r in standard_dataset():
        changes: dict[str, Any] = {"series_date": None, "series_time": None}
        if r.patient_id == "WLK-0010":
            changes["patient_name"] = THREE_GROUP_NAME
        if r.patient_id == "WLK-0002" and r.issuer_of_patient_id == "HOSP-B":
            changes["referring_physician_name"] = TWO_GROUP_REFERRING
        records.append(dataclasses.replace(r, **changes))
    dupont = next(r for r in records if (r.patient_id, r.issuer_of_patient_id) == SURVIVOR)
    records += _patient_record(dupont, TWO_IDS, "Nguyen^Van An", 2001, 1)
    records += _patient_record(dupont, UID_ISSUER, "Okafor^Chidi", 4001, 1)
    # A rejected instance beside visible ones, and a whole rejected series in a visible study.
    rejected = [dataclasses.replace(dupont, sop_instance_uid=f"{dupont.series_instance_uid}.999", instance_number=999)]
    odegard = next(r for r in records if r.patient_id == "WLK-0003")
    rejected += [
        dataclasses.replace(
            odegard,
            series_instance_uid=f"{odegard.study_instance_uid}.99",
            series_number=99,
            series_description="Rejected",
            sop_instance_uid=f"{odegard.study_instance_uid}.99.{number}",
            instance_number=number,
        )
        for number in (1, 2)
    ]
    return ArcDataset(
        records=records,
        extra_identifiers={TWO_IDS: [SECOND_ID]},
        merged={MERGED_ID: SURVIVOR},
        rejected=rejected,
        issuer_as_uid=frozenset({UID_ISSUER}),
    )


def large_arc_dataset(instance_count: int, *, studies: int = 1) -> ArcDataset:
    """`studies` patients with one study each, `instance_count` instances in all, for sizing and benchmarks."""
    from weasis_link_dev.synthetic_studies import large_study

    per_study, extra = divmod(instance_count, studies)
    records: list[InstanceRecord] = []
    for index in range(studies):
        study = large_study(per_study + (1 if index < extra else 0), seed=f"arc-{index}")
        # One accession per study, as in a real archive (large_study names it after its size only).
        records += [dataclasses.replace(r, accession_number=f"ACC-{index:08d}") for r in study]
    return ArcDataset(records=records)
