"""The study tree: patients, studies, series and instances as every connector returns them.

Connectors feed flat attribute mappings keyed by DICOM keywords (what a QIDO answer, a C-FIND identifier or a
database row holds) into a `StudyTreeBuilder`. The builder normalises each value once (`dicom_values`), drops
records it cannot represent faithfully (counting why), and deduplicates: an instance appears exactly once, a
patient is PatientID *and* IssuerOfPatientID. Plain slotted dataclasses rather than pydantic models: a large study
holds 100,000 instances, and validation is already done by the normalisers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, Final

from weasis_link import dicom_values as dv

# DICOM keywords the builder reads; connectors map their native names onto these.
PATIENT_KEYWORDS: Final = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
)
STUDY_KEYWORDS: Final = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
)
SERIES_KEYWORDS: Final = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
)
INSTANCE_KEYWORDS: Final = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")
ALL_KEYWORDS: Final = PATIENT_KEYWORDS + STUDY_KEYWORDS + SERIES_KEYWORDS + INSTANCE_KEYWORDS


@dataclass(frozen=True, slots=True)
class PatientKey:
    """What identifies a patient: the same PatientID under two issuers is two people."""

    patient_id: str
    issuer: str | None


def _dicom(keyword: str, normalise: Callable[[object], object]) -> Any:
    """A field read from the DICOM attribute `keyword` through `normalise`: unknown (None) until an answer gives it,
    then kept (a later, richer answer completes an earlier one: _Completion)."""
    return field(default=None, metadata={"dicom": (keyword, normalise)})


@dataclass(slots=True)
class Patient:
    key: PatientKey
    name: str | None = None
    birth_date: str | None = None
    birth_time: str | None = None
    sex: str | None = None


@dataclass(slots=True)
class Instance:
    sop_instance_uid: str
    sop_class_uid: str | None = None
    instance_number: int | None = None


@dataclass(slots=True)
class Series:
    series_instance_uid: str
    modality: str | None = _dicom("Modality", dv.code_string)
    series_number: int | None = _dicom("SeriesNumber", dv.integer)
    description: str | None = _dicom("SeriesDescription", dv.text)
    series_date: str | None = _dicom("SeriesDate", dv.date)
    series_time: str | None = _dicom("SeriesTime", dv.time)
    instances: list[Instance] = field(default_factory=list)


@dataclass(slots=True)
class Study:
    study_instance_uid: str
    patient: Patient
    # ModalitiesInStudy gathers every answer's values (_fill_study); the `_dicom` attributes keep the first known.
    modalities_in_study: frozenset[str] = frozenset()
    study_date: str | None = _dicom("StudyDate", dv.date)
    study_time: str | None = _dicom("StudyTime", dv.time)
    description: str | None = _dicom("StudyDescription", dv.text)
    accession_number: str | None = _dicom("AccessionNumber", dv.short_identifier)
    study_id: str | None = _dicom("StudyID", dv.short_text)
    referring_physician_name: str | None = _dicom("ReferringPhysicianName", dv.text)
    series: dict[str, Series] = field(default_factory=dict)

    @property
    def modalities(self) -> frozenset[str]:
        """ModalitiesInStudy when the PACS gave it, else what the series say."""
        found = {s.modality for s in self.series.values() if s.modality}
        return self.modalities_in_study | found

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series.values())

    @property
    def sort_datetime(self) -> str:
        return dv.sort_datetime(self.study_date, self.study_time)


# Why a record was left out; reported to the user in the archive's <Message>.
SKIP_STUDY_UID: Final = "invalid StudyInstanceUID"
SKIP_SERIES_UID: Final = "invalid SeriesInstanceUID"
SKIP_SOP_UID: Final = "invalid SOPInstanceUID"
SKIP_PATIENT_ID: Final = "PatientID missing or not representable"
SKIP_DUPLICATE: Final = "duplicate SOPInstanceUID"
SKIP_CONFLICT: Final = "series UID reused under another study"
SKIP_PATIENT_CONFLICT: Final = "study UID reused under another patient"


class StudyTreeBuilder:
    """Accumulates flat records into studies; safe to feed study-level rows first, instance-level rows after."""

    def __init__(self) -> None:
        self._studies: dict[str, Study] = {}
        self._series_study: dict[str, str] = {}
        self._sops: set[str] = set()
        self._complete_series: set[str] = set()  # every attribute known: the next rows cannot change it
        # Study, series and SOP class UIDs repeat on every instance row: each distinct value is validated once.
        self._checked_uids: dict[str, str | None] = {}
        self.skipped: Counter[str] = Counter()

    def _repeated_uid(self, value: object) -> str | None:
        """dv.uid, memoised for values that repeat across rows (not SOPInstanceUID: unique by definition)."""
        if type(value) is not str:  # only strings: 1 == True would share an entry
            return dv.uid(value)
        try:
            return self._checked_uids[value]
        except KeyError:
            checked = self._checked_uids[value] = dv.uid(value)
            return checked

    def add_study(self, attrs: Mapping[str, object]) -> Study | None:
        """Add (or find) the study described by patient + study attributes; None when it cannot be represented,
        or when it names a study we already hold under another patient (never attach one patient's images to
        another's study)."""
        study_uid = self._repeated_uid(attrs.get("StudyInstanceUID"))
        if study_uid is None:
            self.skipped[SKIP_STUDY_UID] += 1
            return None
        key = _patient_key(attrs)
        if key is None:
            self.skipped[SKIP_PATIENT_ID] += 1
            return None
        study = self._studies.get(study_uid)
        if study is not None:
            if study.patient.key != key:
                self.skipped[SKIP_PATIENT_CONFLICT] += 1
                return None
            _fill_study(study, attrs)
            return study
        patient = Patient(
            key=key,
            name=dv.text(attrs.get("PatientName")),
            birth_date=dv.date(attrs.get("PatientBirthDate")),
            birth_time=dv.time(attrs.get("PatientBirthTime")),
            sex=dv.patient_sex(attrs.get("PatientSex")),
        )
        study = Study(study_instance_uid=study_uid, patient=patient)
        _fill_study(study, attrs)
        self._studies[study_uid] = study
        return study

    def add_instance(self, attrs: Mapping[str, object], study: Study | None = None) -> None:
        """Add one instance row (with its series attributes, and study/patient ones unless `study` is given)."""
        if study is None:
            study = self.add_study(attrs)
            if study is None:
                return
        instance = (attrs.get("SOPInstanceUID"), attrs.get("SOPClassUID"), attrs.get("InstanceNumber"))
        self.add_series_instances(study, attrs, (instance,))

    def add_series_instances(
        self, study: Study, series_attrs: Mapping[str, object], instances: Sequence[tuple[object, object, object]]
    ) -> None:
        """Instances given as (SOPInstanceUID, SOPClassUID, InstanceNumber) that share `series_attrs`: the same
        checks, counts and result as add_instance for each, the series attributes read once (a database answer
        repeats them on every row of a series)."""
        series_uid = self._repeated_uid(series_attrs.get("SeriesInstanceUID"))
        if series_uid is None:
            if instances:
                self.skipped[SKIP_SERIES_UID] += len(instances)
            return
        study_uid = study.study_instance_uid
        owner: str | None = None
        series: Series | None = None
        sops = self._sops
        for sop_value, class_value, number in instances:
            sop_uid = dv.uid(sop_value)
            if sop_uid is None:
                self.skipped[SKIP_SOP_UID] += 1
                continue
            if owner is None:
                owner = self._series_study.setdefault(series_uid, study_uid)
            if owner != study_uid:
                self.skipped[SKIP_CONFLICT] += 1
                continue
            if sop_uid in sops:
                self.skipped[SKIP_DUPLICATE] += 1
                continue
            sops.add(sop_uid)
            if series is None:
                series = study.series.get(series_uid)
                if series is None:
                    series = study.series[series_uid] = Series(series_instance_uid=series_uid)
                # Once: the attributes are the same for every instance here.
                if series_uid not in self._complete_series and _SERIES.complete(series, series_attrs):
                    self._complete_series.add(series_uid)
            series.instances.append(Instance(sop_uid, self._repeated_uid(class_value), dv.integer(number)))

    def add_instances(self, rows: Iterable[Mapping[str, object]], study: Study | None = None) -> None:
        for row in rows:
            self.add_instance(row, study)

    def studies(self) -> list[Study]:
        """The studies that hold at least one instance (the XSD needs Series+ and Instance+)."""
        return [s for s in self._studies.values() if s.series]


def _patient_key(attrs: Mapping[str, object]) -> PatientKey | None:
    """(PatientID, IssuerOfPatientID), or None when either cannot be represented exactly: an issuer we dropped
    would silently merge this patient with another."""
    patient_id = dv.identifier(attrs.get("PatientID"))
    if patient_id is None:
        return None
    raw_issuer = attrs.get("IssuerOfPatientID")
    if raw_issuer is None or str(raw_issuer).strip(" \x00") == "":
        return PatientKey(patient_id, None)
    issuer = dv.identifier(raw_issuer)
    return PatientKey(patient_id, issuer) if issuer is not None else None


class _Completion:
    """Fills the `_dicom` fields of one level (study, series) that are still unknown. One C-level read
    tells whether anything is missing, as most records find their series complete (a study of 100,000 instances)."""

    __slots__ = ("_current", "_table")

    def __init__(self, level: type) -> None:
        self._table = tuple((f.name, *f.metadata["dicom"]) for f in fields(level) if "dicom" in f.metadata)
        self._current = attrgetter(*(name for name, _, _ in self._table))

    def complete(self, target: Study | Series, attrs: Mapping[str, object]) -> bool:
        """Set the attributes that are still unknown from `attrs`; True when none is left unknown."""
        current = self._current(target)
        if None not in current:
            return True
        known = True
        # Every normaliser maps None to None: an absent attribute leaves the value unknown.
        for value, (name, keyword, normalise) in zip(current, self._table, strict=True):
            if value is not None:
                continue
            if (raw := attrs.get(keyword)) is not None and (found := normalise(raw)) is not None:
                setattr(target, name, found)
            else:
                known = False
        return known


_STUDY, _SERIES = _Completion(Study), _Completion(Series)


def _fill_study(study: Study, attrs: Mapping[str, object]) -> None:
    _STUDY.complete(study, attrs)
    mods = attrs.get("ModalitiesInStudy")
    if mods:
        values = mods if isinstance(mods, list | tuple | set | frozenset) else str(mods).split("\\")
        study.modalities_in_study = study.modalities_in_study | {
            m for m in (dv.code_string(v) for v in values) if m is not None
        }


def sorted_studies(studies: Iterable[Study]) -> list[Study]:
    """Most recent study first; studies without a date last (then by UID, for a stable order)."""
    dated = sorted(studies, key=lambda s: s.study_instance_uid)
    return sorted(dated, key=lambda s: s.sort_datetime, reverse=True)


def by_patient(studies: Iterable[Study]) -> list[tuple[Patient, list[Study]]]:
    """Studies grouped by patient (PatientID, IssuerOfPatientID), patients in the order of their most recent study:
    the manifest's <Patient> elements, in document order."""
    groups: dict[PatientKey, tuple[Patient, list[Study]]] = {}
    for study in sorted_studies(studies):
        groups.setdefault(study.patient.key, (study.patient, []))[1].append(study)
    return list(groups.values())


def sorted_series(study: Study) -> list[Series]:
    """By SeriesNumber (missing last), then UID; instances by InstanceNumber (missing last), then UID."""
    series = sorted(
        study.series.values(),
        key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid),
    )
    for s in series:
        s.instances.sort(key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_instance_uid))
    return series
