"""The query matrix every connector is proven against (DICOMweb, C-FIND, SQL).

Each case is a request query string and the instance set it must produce, computed from a PACS's own answer
(Orthanc's REST API, or the database rows) by `reference_select`: a deliberately plain reimplementation of the
documented semantics that shares no code with weasis_link.criteria, so a bug there cannot hide itself.

A manifest passes a case when its instance set equals the expected set (0 missing, 0 extra) and every instance sits
under the patient (PatientID, IssuerOfPatientID) the PACS has for it (0 from another patient).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from weasis_link_dev.dataset import InstanceRecord
from weasis_link_dev.synthetic_studies import (
    SHARED_ACCESSION_SAME_PATIENT,
    SHARED_ACCESSION_TWO_PATIENTS,
    standard_dataset,
)


@dataclass(frozen=True)
class Selection:
    patients: tuple[tuple[str, str | None], ...] = ()  # (PatientID pattern, issuer or None)
    study_uids: tuple[str, ...] = ()
    accessions: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    description_terms: tuple[str, ...] = ()
    at_or_before: dt.datetime | None = None  # lowerDateTime
    at_or_after: dt.datetime | None = None  # upperDateTime
    most_recent: int | None = None


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def _when(r: InstanceRecord) -> dt.datetime | None:
    if not r.study_date:
        return None
    t = (r.study_time or "000000").ljust(6, "0")
    return dt.datetime.strptime(r.study_date + t[:6], "%Y%m%d%H%M%S")


def _dicom_match(pattern: str, value: str | None) -> bool:
    # fnmatchcase: * and ? like DICOM; brackets do not occur in our patterns.
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def reference_select(records: Iterable[InstanceRecord], s: Selection) -> set[str]:
    """SOPInstanceUIDs the documented semantics select: keys ANDed, repeated values ORed, filters on studies."""
    records = list(records)
    studies: dict[str, list[InstanceRecord]] = {}
    for r in records:
        studies.setdefault(r.study_instance_uid, []).append(r)
    kept: list[str] = []
    for uid, rs in studies.items():
        first = rs[0]
        if s.patients and not any(
            _dicom_match(p, first.patient_id) and (i is None or first.issuer_of_patient_id == i) for p, i in s.patients
        ):
            continue
        if s.study_uids and uid not in s.study_uids:
            continue
        if s.accessions and not any(_dicom_match(a, first.accession_number) for a in s.accessions):
            continue
        if s.modalities and not {r.modality for r in rs} & set(s.modalities):
            continue
        if s.description_terms and not any(t in _plain(first.study_description or "") for t in s.description_terms):
            continue
        if s.at_or_before or s.at_or_after:
            when = _when(first)
            if when is None or (s.at_or_before and when > s.at_or_before) or (s.at_or_after and when < s.at_or_after):
                continue
        kept.append(uid)
    if s.most_recent:
        by_patient: dict[tuple[str, str | None], list[str]] = {}
        for uid in kept:
            f = studies[uid][0]
            by_patient.setdefault((f.patient_id, f.issuer_of_patient_id), []).append(uid)
        kept = []
        for uids in by_patient.values():
            uids.sort(key=lambda u: (_when(studies[u][0]) or dt.datetime.min, u), reverse=True)
            kept.extend(uids[: s.most_recent])
    out = set()
    for uid in kept:
        for r in studies[uid]:
            if s.series_uids and r.series_instance_uid not in s.series_uids:
                continue
            if s.sop_uids and r.sop_instance_uid not in s.sop_uids:
                continue
            out.add(r.sop_instance_uid)
    return out


@dataclass(frozen=True)
class MatrixCase:
    name: str
    query: str
    selection: Selection
    must_match_something: bool = True
    keys: frozenset[str] = field(default_factory=frozenset)  # search keys used (for deactivation tests)

    def expected(self, truth: Iterable[InstanceRecord]) -> set[str]:
        return reference_select(truth, self.selection)


def _q(**params: str | list[str]) -> str:
    parts = []
    for name, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{name}={quote(v, safe='')}")
    return "&".join(parts)


def standard_cases(records: list[InstanceRecord] | None = None) -> list[MatrixCase]:
    """The matrix over the standard dataset: every key, wildcards, issuers, combinations, each filter."""
    recs = records if records is not None else standard_dataset()

    def study_of(pid: str, issuer: str | None, modality: str) -> InstanceRecord:
        return next(
            r for r in recs if r.patient_id == pid and r.issuer_of_patient_id == issuer and r.modality == modality
        )

    dupont_ct = study_of("WLK-0001", "HOSP-A", "CT")
    martin_us = study_of("WLK-0002", "HOSP-B", "US")
    odegard_mr = study_of("WLK-0003", None, "MR")
    series_mr = next(r for r in recs if r.study_instance_uid == odegard_mr.study_instance_uid)
    one_sop = [r for r in recs if r.series_instance_uid == series_mr.series_instance_uid][3]
    yamada_ko = study_of("WLK-0010", "HOSP-A", "KO")
    sparse = study_of("WLK-1004", "HOSP-B", "MG")

    def d(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text)

    return [
        MatrixCase("patient", _q(patientID="WLK-0001"), Selection(patients=(("WLK-0001", None),))),
        MatrixCase(
            "patient with issuer A", _q(patientID="WLK-0002^^^HOSP-A"), Selection(patients=(("WLK-0002", "HOSP-A"),))
        ),
        MatrixCase(
            "patient with issuer B", _q(patientID="WLK-0002^^^HOSP-B"), Selection(patients=(("WLK-0002", "HOSP-B"),))
        ),
        MatrixCase("one PatientID, two issuers", _q(patientID="WLK-0002"), Selection(patients=(("WLK-0002", None),))),
        MatrixCase("patient without issuer", _q(patientID="WLK-0003"), Selection(patients=(("WLK-0003", None),))),
        MatrixCase(
            "patient, unknown issuer",
            _q(patientID="WLK-0002^^^HOSP-C"),
            Selection(patients=(("WLK-0002", "HOSP-C"),)),
            must_match_something=False,
        ),
        MatrixCase(
            "patient, other case (IDs are case-sensitive)",
            _q(patientID="wlk-0001"),
            Selection(patients=(("wlk-0001", None),)),
            must_match_something=False,
        ),
        MatrixCase("patient wildcard *", _q(patientID="WLK-000*"), Selection(patients=(("WLK-000*", None),))),
        MatrixCase("patient wildcard ?", _q(patientID="WLK-000?"), Selection(patients=(("WLK-000?", None),))),
        MatrixCase(
            "two patients",
            _q(patientID=["WLK-0001", "WLK-0003"]),
            Selection(patients=(("WLK-0001", None), ("WLK-0003", None))),
        ),
        MatrixCase(
            "unknown patient",
            _q(patientID="NOBODY-1"),
            Selection(patients=(("NOBODY-1", None),)),
            must_match_something=False,
        ),
        MatrixCase(
            "study", _q(studyUID=dupont_ct.study_instance_uid), Selection(study_uids=(dupont_ct.study_instance_uid,))
        ),
        MatrixCase(
            "two studies",
            _q(studyUID=f"{dupont_ct.study_instance_uid},{martin_us.study_instance_uid}"),
            Selection(study_uids=(dupont_ct.study_instance_uid, martin_us.study_instance_uid)),
        ),
        MatrixCase(
            "accession, two studies of one patient",
            _q(accessionNumber=SHARED_ACCESSION_SAME_PATIENT),
            Selection(accessions=(SHARED_ACCESSION_SAME_PATIENT,)),
        ),
        MatrixCase(
            "accession shared by two patients",
            _q(accessionNumber=SHARED_ACCESSION_TWO_PATIENTS),
            Selection(accessions=(SHARED_ACCESSION_TWO_PATIENTS,)),
        ),
        MatrixCase("accession wildcard", _q(accessionNumber="ACC-2023*"), Selection(accessions=("ACC-2023*",))),
        MatrixCase(
            "series",
            _q(seriesUID=series_mr.series_instance_uid),
            Selection(series_uids=(series_mr.series_instance_uid,)),
        ),
        MatrixCase("object", _q(objectUID=one_sop.sop_instance_uid), Selection(sop_uids=(one_sop.sop_instance_uid,))),
        MatrixCase(
            "non-image objects (SR/KO)",
            _q(studyUID=yamada_ko.study_instance_uid),
            Selection(study_uids=(yamada_ko.study_instance_uid,)),
        ),
        MatrixCase(
            "sparse study (no accession, time, description)",
            _q(studyUID=sparse.study_instance_uid),
            Selection(study_uids=(sparse.study_instance_uid,)),
        ),
        MatrixCase(
            "patient + shared accession: only that patient",
            _q(patientID="WLK-0003", accessionNumber=SHARED_ACCESSION_TWO_PATIENTS),
            Selection(patients=(("WLK-0003", None),), accessions=(SHARED_ACCESSION_TWO_PATIENTS,)),
        ),
        MatrixCase(
            "patient + another patient's study: nothing",
            _q(patientID="WLK-0001", studyUID=martin_us.study_instance_uid),
            Selection(patients=(("WLK-0001", None),), study_uids=(martin_us.study_instance_uid,)),
            must_match_something=False,
        ),
        MatrixCase(
            "study + series",
            _q(studyUID=odegard_mr.study_instance_uid, seriesUID=series_mr.series_instance_uid),
            Selection(study_uids=(odegard_mr.study_instance_uid,), series_uids=(series_mr.series_instance_uid,)),
        ),
        MatrixCase(
            "modalitiesInStudy",
            _q(patientID="WLK-000*", modalitiesInStudy="MR,US"),
            Selection(patients=(("WLK-000*", None),), modalities=("MR", "US")),
        ),
        MatrixCase(
            "containsInDescription (accent-insensitive)",
            _q(patientID="WLK-*", containsInDescription="crane,ECHO"),
            Selection(patients=(("WLK-*", None),), description_terms=("crane", "echo")),
        ),
        MatrixCase(
            "lowerDateTime keeps older studies",
            _q(patientID="WLK-0002", lowerDateTime="2023-06-12T07:45:00"),
            Selection(patients=(("WLK-0002", None),), at_or_before=d("2023-06-12T07:45:00")),
        ),
        MatrixCase(
            "upperDateTime keeps newer studies",
            _q(patientID="WLK-0002", upperDateTime="2023-06-12"),
            Selection(patients=(("WLK-0002", None),), at_or_after=d("2023-06-12T00:00:00")),
        ),
        MatrixCase(
            "date window",
            _q(patientID="WLK-*", upperDateTime="2021-01-01", lowerDateTime="2022-12-31"),
            Selection(
                patients=(("WLK-*", None),),
                at_or_after=d("2021-01-01T00:00:00"),
                at_or_before=d("2022-12-31T23:59:59.999999"),
            ),
        ),
        MatrixCase(
            "mostRecentResults per patient",
            _q(patientID="WLK-0002", mostRecentResults="1"),
            Selection(patients=(("WLK-0002", None),), most_recent=1),
        ),
        MatrixCase(
            "mostRecentResults after a filter",
            _q(patientID="WLK-0001", modalitiesInStudy="CT,MR", mostRecentResults="1"),
            Selection(patients=(("WLK-0001", None),), modalities=("CT", "MR"), most_recent=1),
        ),
    ]


def instance_patients(records: Iterable[InstanceRecord]) -> Mapping[str, tuple[str, str | None]]:
    """SOPInstanceUID -> (PatientID, IssuerOfPatientID) as the PACS holds it: the 'another patient' check."""
    return {r.sop_instance_uid: (r.patient_id, r.issuer_of_patient_id) for r in records}


@dataclass
class CaseResult:
    missing: set[str]
    extra: set[str]
    wrong_patient: set[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong_patient)


def check(
    answered: Mapping[str, tuple[str, str | None]], expected: set[str], truth: Mapping[str, tuple[str, str | None]]
) -> CaseResult:
    """answered: SOPInstanceUID -> (PatientID, issuer) as the manifest places it."""
    got = set(answered)
    return CaseResult(
        missing=expected - got,
        extra=got - expected,
        wrong_patient={sop for sop, who in answered.items() if truth.get(sop) != who},
    )


Checker = Callable[[MatrixCase], CaseResult]
