"""The synthetic PACS content shared by every test archive (Orthanc, PostgreSQL, SQLite).

One flat record per instance, the shape a PACS database query or an IMAGE-level C-FIND returns. Loaders turn a
dataset into DICOM files (Orthanc) or rows (SQL); tests compare manifests against each PACS's own answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One instance with its patient, study and series attributes, as DICOM strings (DA YYYYMMDD, TM HHMMSS)."""

    patient_id: str
    issuer_of_patient_id: str | None
    patient_name: str
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str | None
    series_date: str | None
    series_time: str | None
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
