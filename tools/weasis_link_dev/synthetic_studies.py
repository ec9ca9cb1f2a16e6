"""Deterministic synthetic PACS content: the query-matrix dataset and large single-study datasets.

Everything is derived from fixed tables and string seeds (UIDs are hashes of their parents' names, orderings come from
``random.Random(str)``), so two runs produce identical records and generated files can be cached by fingerprint.
No pydicom here: the SQL loaders use these records without paying its import.

The standard dataset deliberately contains the traps a Weasis launcher must survive; see ``standard_dataset``.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from weasis_link_dev.dataset import InstanceRecord

# pydicom's registered root, meant for UIDs made by its users. Hashes fill the UIDs to exactly 64 characters, the
# maximum: manifests and SQL columns get tested at the limit.
UID_PREFIX = "1.2.826.0.1.3680043.8.498."

# Storage SOP classes per modality. SR/KO are non-image objects: the file writer gives them no pixel data.
SOP_CLASS_BY_MODALITY: dict[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image Storage - For Presentation
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image Storage
    "NM": "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image Storage
    "XA": "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image Storage
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "SR": "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR Storage
    "KO": "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document Storage
}
NON_IMAGE_SOP_CLASSES = frozenset({SOP_CLASS_BY_MODALITY["SR"], SOP_CLASS_BY_MODALITY["KO"]})


@dataclass(frozen=True, slots=True)
class _Patient:
    patient_id: str
    issuer: str | None
    name: str
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True, slots=True)
class _Series:
    number: int | None
    modality: str
    description: str | None
    count: int
    minutes_after_study: int | None  # None: no SeriesDate/SeriesTime at all
    shuffle_instances: bool = False
    first_instance_number: int | None = 1  # None: instances carry no InstanceNumber (Type 2, empty)


@dataclass(frozen=True, slots=True)
class _Study:
    key: str
    date: str | None
    time: str | None
    accession: str | None
    study_id: str | None
    description: str | None
    referring: str | None
    series: tuple[_Series, ...]


def make_uid(*parts: str) -> str:
    """A deterministic UID: the root + the decimal SHA-512 of the parts, cut to 64 characters (like pydicom's
    ``generate_uid(entropy_srcs=...)``, but with a separator so ("a", "bc") and ("ab", "c") differ)."""
    digest = hashlib.sha512("\x1f".join(["weasis-link-synthetic", *parts]).encode("utf-8")).hexdigest()
    # int() never yields a leading zero, which a UID component must not have.
    return (UID_PREFIX + str(int(digest, 16)))[:64]


def _add_minutes(time: str, minutes: int) -> str:
    """HHMMSS + minutes, clamped at 23:59:59 so the result stays a valid TM on the same day."""
    total = min(int(time[0:2]) * 3600 + int(time[2:4]) * 60 + int(time[4:6]) + minutes * 60, 86399)
    return f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"


def _expand(patient: _Patient, study: _Study, namespace: str) -> list[InstanceRecord]:
    study_uid = make_uid(namespace, patient.patient_id, patient.issuer or "", study.key)
    records: list[InstanceRecord] = []
    for series_index, series in enumerate(study.series):
        series_uid = make_uid(namespace, study_uid, "series", str(series_index))
        numbers: list[int | None]
        if series.first_instance_number is None:
            numbers = [None] * series.count
        else:
            numbers = list(range(series.first_instance_number, series.first_instance_number + series.count))
            if series.shuffle_instances:
                # A seeded shuffle: creation order (and UID order) then differs from InstanceNumber order.
                random.Random(series_uid).shuffle(numbers)  # noqa: S311  # reproducible, not secret
        if series.minutes_after_study is None or study.date is None:
            series_date = series_time = None
        else:
            series_date = study.date
            series_time = _add_minutes(study.time or "000000", series.minutes_after_study)
        for position, number in enumerate(numbers):
            records.append(
                InstanceRecord(
                    patient_id=patient.patient_id,
                    issuer_of_patient_id=patient.issuer,
                    patient_name=patient.name,
                    patient_birth_date=patient.birth_date,
                    patient_sex=patient.sex,
                    study_instance_uid=study_uid,
                    study_date=study.date,
                    study_time=study.time,
                    accession_number=study.accession,
                    study_id=study.study_id,
                    study_description=study.description,
                    referring_physician_name=study.referring,
                    series_instance_uid=series_uid,
                    modality=series.modality,
                    series_number=series.number,
                    series_description=series.description,
                    series_date=series_date,
                    series_time=series_time,
                    sop_instance_uid=make_uid(namespace, series_uid, "instance", str(position)),
                    sop_class_uid=SOP_CLASS_BY_MODALITY[series.modality],
                    instance_number=number,
                )
            )
    return records


# Patients of the standard dataset. WLK-0002 exists under two issuers with different people behind it, WLK-0003 has
# no issuer, XWLK-0005 contains "WLK-000" but must not match the prefix wildcard WLK-000*, nor must WLK-0010/WLK-1004.
DUPONT = _Patient("WLK-0001", "HOSP-A", "Dupont^Hélène", "19580314", "F")
MULLER = _Patient("WLK-0002", "HOSP-A", "Müller^Jürgen", "19650707", "M")
MARTIN = _Patient("WLK-0002", "HOSP-B", "Martin^Claire", "19900102", "F")
ODEGARD = _Patient("WLK-0003", None, "Ødegård^Åse", "19720830", "F")
YAMADA = _Patient("WLK-0010", "HOSP-A", "山田^太郎", "19800405", "M")
LINDQVIST = _Patient("WLK-1004", "HOSP-B", "Lindqvist^Björn", None, None)
LEFEVRE = _Patient("XWLK-0005", "HOSP-A", "Lefèvre^Zoë", "20010911", "O")

# Accession-number traps: ACC-2023-0777 names two studies of Müller (a PET-CT ordered once, stored as two studies);
# ACC-2021-0007 names studies of two *different* patients (Martin and Ødegård) on the same day.
SHARED_ACCESSION_SAME_PATIENT = "ACC-2023-0777"
SHARED_ACCESSION_TWO_PATIENTS = "ACC-2021-0007"

_STANDARD: tuple[tuple[_Patient, tuple[_Study, ...]], ...] = (
    (
        DUPONT,
        (
            _Study(
                "ct-2019",
                "20190506",
                "091500",
                "ACC-2019-0101",
                "CT190506",
                "Scanner Crâne sans injection",
                "Leclerc^François",
                (
                    _Series(2, "CT", "Crâne axial 5 mm", 24, 3, shuffle_instances=True),
                    _Series(1, "CT", "Topogramme", 2, 1),
                    _Series(3, "CT", "Crâne coronal", 12, 6),
                ),
            ),
            _Study(
                "mr-2022",
                "20221121",
                "140210",
                "ACC-2022-0555",
                "MR221121",
                "IRM Crâne",
                "Leclerc^François",
                (
                    _Series(1, "MR", "T1 sagittal", 12, 2),
                    _Series(4, "MR", "FLAIR axial", 15, 14, shuffle_instances=True),
                    _Series(2, "MR", "Diffusion", 10, 8),
                ),
            ),
            _Study(
                "cr-2024",
                "20240229",
                "080000",
                "ACC-2024-0013",
                "CR240229",
                "Thorax face et profil",
                "Girard^Amélie",
                (
                    _Series(1, "CR", "Thorax PA", 1, 0),
                    _Series(2, "CR", "Thorax profil", 1, 1),
                ),
            ),
        ),
    ),
    (
        MULLER,
        (
            _Study(
                "ct-2020",
                "20200115",
                "113000",
                "ACC-2020-0042",
                "CT200115",
                "Thorax/Abdomen mit KM",
                "Schröder^Käthe",
                (
                    _Series(3, "CT", "Thorax 1 mm", 20, 5, shuffle_instances=True),
                    _Series(4, "CT", "Abdomen venös", 20, 7),
                    _Series(1, "CT", "Übersicht", 1, 0),
                ),
            ),
            _Study(
                "pet-ct-ct",
                "20230612",
                "074500",
                SHARED_ACCESSION_SAME_PATIENT,
                "PT230612A",
                "PET-CT Ganzkörper (CT)",
                "Schröder^Käthe",
                (_Series(1, "CT", "CT Schwächungskorrektur", 20, 2),),
            ),
            _Study(
                "pet-ct-pt",
                "20230612",
                "074630",
                SHARED_ACCESSION_SAME_PATIENT,
                "PT230612B",
                "PET-CT Ganzkörper (PET)",
                "Schröder^Käthe",
                (
                    _Series(2, "PT", "PET NAC", 10, 20),
                    _Series(1, "PT", "PET AC", 20, 20, shuffle_instances=True),
                ),
            ),
            _Study(
                "sr-2023",
                "20230613",
                "101500",
                "ACC-2023-0778",
                "SR230613",
                "Befund PET-CT",
                "Schröder^Käthe",
                (_Series(1, "SR", "Befundbericht", 1, 0),),
            ),
        ),
    ),
    (
        MARTIN,
        (
            _Study(
                "us-2021",
                "20210903",
                "162000",
                SHARED_ACCESSION_TWO_PATIENTS,
                "US210903",
                "Échographie Abdomen",
                "Leclerc^François",
                (
                    _Series(1, "US", "Foie", 6, 1),
                    _Series(2, "US", "Reins", 4, 9),
                ),
            ),
            _Study(
                "mr-2024",
                "20240418",
                "101010",
                "ACC-2024-0210",
                "MR240418",
                "IRM Genou droit",
                "Girard^Amélie",
                (
                    _Series(101, "MR", "DP FS sagittal", 14, 3),
                    _Series(102, "MR", "T1 coronal", 12, 10, shuffle_instances=True),
                ),
            ),
        ),
    ),
    (
        ODEGARD,
        (
            _Study(
                "dx-2021",
                "20210903",
                "090500",
                SHARED_ACCESSION_TWO_PATIENTS,
                "DX210903",
                "Håndledd høyre",
                "Østergaard^Søren",
                (
                    _Series(1, "DX", "PA", 1, 0),
                    _Series(2, "DX", "Lateral", 1, 1),
                ),
            ),
            _Study(
                "mr-2023",
                "20230309",
                "131313",
                "ACC-2023-0301",
                "MR230309",
                "MR Hjerne",
                "Østergaard^Søren",
                (
                    _Series(2, "MR", "T2 aksial", 15, 4, shuffle_instances=True),
                    _Series(1, "MR", "T1 sagittal", 12, 1),
                ),
            ),
        ),
    ),
    (
        YAMADA,
        (
            _Study(
                "ct-2022",
                "20220707",
                "070707",
                "ACC-2022-0707",
                "CT220707",
                "胸部CT Thorax",
                "佐藤^花子",
                (
                    _Series(1, "CT", "胸部 5mm", 16, 2),
                    _Series(2, "CT", "肺野条件", 16, 2, shuffle_instances=True),
                ),
            ),
            _Study(
                "sr-2024",
                "20240110",
                "150000",
                "ACC-2024-0110",
                "SR240110",
                "読影レポート",
                "佐藤^花子",
                (
                    _Series(1, "SR", "Report", 1, 30),
                    _Series(2, "KO", "Key images", 1, 31),
                ),
            ),
        ),
    ),
    (
        LINDQVIST,
        (
            # The sparse study: no description, accession, time, StudyID or referring physician; one series has no
            # number, description or series date/time, one instance has no InstanceNumber.
            _Study(
                "sparse-2020",
                "20200202",
                None,
                None,
                None,
                None,
                None,
                (
                    _Series(None, "MG", None, 4, None),
                    _Series(2, "OT", "Capture", 1, None, first_instance_number=None),
                ),
            ),
            _Study(
                "us-2025",
                "20250505",
                "083000",
                "ACC-2025-0001",
                "US250505",
                "Échographie cardiaque",
                "Girard^Amélie",
                (_Series(1, "US", "Cœur", 8, 2),),
            ),
        ),
    ),
    (
        LEFEVRE,
        (
            _Study(
                "nm-2021",
                "20210214",
                "110000",
                "ACC-2021-0214",
                "NM210214",
                "Scintigraphie osseuse",
                "Leclerc^François",
                (_Series(1, "NM", "Corps entier", 2, 180),),
            ),
            _Study(
                "xa-2019",
                "20190808",
                "235000",
                "ACC-2019-0808",
                "XA190808",
                "Coronarographie",
                "Girard^Amélie",
                # The series time is clamped at 23:59:59: the procedure "runs past midnight" on the same date.
                (_Series(7, "XA", "Coronaire gauche", 10, 15),),
            ),
        ),
    ),
)


def standard_dataset() -> list[InstanceRecord]:
    """The query-matrix dataset (293 instances, 7 patients under 6 PatientIDs, 17 studies, 2018-2025).

    Traps it contains, for connector and manifest tests:
    - ``WLK-0002`` is two people: issuer ``HOSP-A`` "Müller^Jürgen" and issuer ``HOSP-B`` "Martin^Claire";
      ``WLK-0003`` ("Ødegård^Åse") has no issuer.
    - ``WLK-000*`` matches WLK-0001/0002/0003 but not ``WLK-0010``, ``WLK-1004`` or ``XWLK-0005``.
    - ``ACC-2023-0777``: two studies of Müller; ``ACC-2021-0007``: one study of Martin and one of Ødegård.
    - Non-ASCII names and descriptions (French, German, Scandinavian, Japanese).
    - One sparse study (patient WLK-1004, 2020-02-02): no description, accession, StudyID, time or referring
      physician; a series without number/description/date; an instance without InstanceNumber. WLK-1004 has no
      birth date and no sex.
    - Series numbers and instance numbers not in creation/UID order.
    """
    records: list[InstanceRecord] = []
    for patient, studies in _STANDARD:
        for study in studies:
            records.extend(_expand(patient, study, "standard"))
    return records


def _slug(seed: str) -> str:
    slug = re.sub(r"[^A-Z0-9]+", "-", seed.upper()).strip("-")
    return slug[:24] or "X"


def large_study(instance_count: int, *, seed: str = "large") -> list[InstanceRecord]:
    """One patient, one CT study of ``instance_count`` instances in 10 series (fewer if instance_count < 10).

    PatientID is ``BIG-<SEED>-<count>``, so studies of different sizes or seeds can share one archive.
    """
    if instance_count < 1:
        raise ValueError("instance_count must be >= 1")
    series_count = min(10, instance_count)
    base, extra = divmod(instance_count, series_count)
    patient = _Patient(f"BIG-{_slug(seed)}-{instance_count}", "HOSP-A", "Großmann^Léa", "19770123", "F")
    study = _Study(
        key=f"{seed}-{instance_count}",
        date="20240315",
        time="101500",
        accession=f"BIG-{instance_count}"[:16],
        study_id="BIG1",
        description="Scanner Thorax-Abdomen-Pelvis",
        referring="Leclerc^François",
        series=tuple(
            _Series(
                # Descending series numbers: creation order is the reverse of display order.
                number=series_count - index,
                modality="CT",
                description=f"Série {series_count - index}",
                count=base + (1 if index < extra else 0),
                minutes_after_study=index,
                shuffle_instances=index % 2 == 1,
            )
            for index in range(series_count)
        ),
    )
    return _expand(patient, study, f"large:{seed}")
