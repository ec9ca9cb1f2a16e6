"""Regenerate the embedded sample archive: layers/shared/weasis_link/sample_archive/sample_archive.sql.

A few patients, studies, series and instances with realistic (UUID-derived 2.25.*) UIDs, non-ASCII names,
several modalities, and the same PatientID under two issuers, in the small schema of
weasis_link_dev.pacs_database. The SQL file is committed; run `make sample-archive` after changing this script.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import sqlalchemy as sa

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.pacs_database import load_records

OUTPUT = Path(__file__).resolve().parents[1] / "layers/shared/weasis_link/sample_archive/sample_archive.sql"
NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4c59-9f53-7b8f0e1c2d3a")
SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",
}


def uid(*parts: object) -> str:
    """A UUID-derived UID (PS3.5 B.2), stable for the same parts."""
    return f"2.25.{uuid.uuid5(NAMESPACE, '/'.join(map(str, parts))).int}"


# (patient id, issuer, name, birth date, sex)
PATIENTS = {
    "p1": ("WLS-1001", "WEASIS-DEMO", "Müller^Jürgen", "19640312", "M"),
    "p2": ("WLS-1002", "WEASIS-DEMO", "Ødegård^Åse", "19811105", "F"),
    "p3": ("WLS-1003", "WEASIS-DEMO", "山田^太郎", "19550101", "M"),
    "p4": ("WLS-1003", "CLINIC-B", "Dupont^Élodie", "19900220", "F"),  # same PatientID, another issuer
    "p5": ("WLS-1004", None, "O'Brien^Siobhán", "20010707", "O"),
}
# (key, patient, date, time, accession, study id, description, referring, [(modality, number, description, count)])
STUDIES = [
    (
        "s1",
        "p1",
        "20240314",
        "101502",
        "ACC-2024-0001",
        "1",
        "CT Thorax",
        "Weber^Anna",
        [("CT", 2, "Thorax 5mm", 5), ("CT", 3, "Thorax 1mm", 8), ("SR", 900, "Dose report", 1)],
    ),
    (
        "s2",
        "p1",
        "20210602",
        "083000",
        "ACC-2021-0042",
        "2",
        "IRM Crâne",
        "Weber^Anna",
        [("MR", 1, "T1 sagittal", 4), ("MR", 2, "T2 axial", 4), ("MR", 3, "FLAIR", 3)],
    ),
    (
        "s3",
        "p2",
        "20231120",
        "141210",
        "ACC-2023-0777",
        "1",
        "Thorax face + profil",
        "Nilsen^Kari",
        [("CR", 1, "PA", 1), ("CR", 2, "Lateral", 1)],
    ),
    (
        "s4",
        "p2",
        "20220115",
        "090500",
        "ACC-2022-0015",
        "2",
        "Echographie abdominale",
        "Nilsen^Kari",
        [("US", 1, "Abdomen", 6)],
    ),
    (
        "s5",
        "p3",
        "20200930",
        "113000",
        "ACC-2020-0100",
        "1",
        "PET-CT corps entier",
        "鈴木^一郎",
        [("PT", 1, "PET WB", 10), ("CT", 2, "CT AC", 10)],
    ),
    (
        "s6",
        "p4",
        "20240808",
        "160000",
        "ACC-2024-0500",
        "1",
        "Mammographie de dépistage",
        "Martin^Luc",
        [("MG", 1, "R CC", 1), ("MG", 2, "L CC", 1), ("MG", 3, "R MLO", 1), ("MG", 4, "L MLO", 1)],
    ),
    ("s7", "p5", "20190202", None, None, None, None, None, [("DX", 1, "Hand", 2)]),
]


def records() -> list[InstanceRecord]:
    out = []
    for key, pkey, date, time, accession, study_id, description, referring, series in STUDIES:
        pid, issuer, name, birth, sex = PATIENTS[pkey]
        for modality, number, series_description, count in series:
            for i in range(count):
                out.append(
                    InstanceRecord(
                        patient_id=pid,
                        issuer_of_patient_id=issuer,
                        patient_name=name,
                        patient_birth_date=birth,
                        patient_sex=sex,
                        study_instance_uid=uid(key),
                        study_date=date,
                        study_time=time,
                        accession_number=accession,
                        study_id=study_id,
                        study_description=description,
                        referring_physician_name=referring,
                        series_instance_uid=uid(key, number),
                        modality=modality,
                        series_number=number,
                        series_description=series_description,
                        series_date=date,
                        series_time=time,
                        sop_instance_uid=uid(key, number, i),
                        sop_class_uid=SOP_CLASSES[modality],
                        instance_number=i + 1,
                    )
                )
    return out


def main() -> None:
    engine = sa.create_engine("sqlite://")
    load_records(engine, records())
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        dump = "\n".join(line for line in raw.iterdump() if line not in ("BEGIN TRANSACTION;", "COMMIT;"))
    header = (
        "-- The embedded sample archive (our own small patient/study/series/instance tables, not a PACS schema).\n"
        "-- Generated by tools/make_sample_archive.py: do not edit by hand.\n"
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(header + dump + "\n", encoding="utf-8")
    print(f"{OUTPUT}: {len(records())} instances")


if __name__ == "__main__":
    main()
