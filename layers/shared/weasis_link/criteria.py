"""Query criteria with the parameter names users already know (weasis-pacs-connector, ViewerHub, IHE IID).

Semantics (docs/configuration.md, "Query parameters"):
- Keys: `patientID` (`ID` or `ID^^^Issuer`), `studyUID`, `accessionNumber`, `seriesUID`, `objectUID`; each may
  repeat. Repeated values of one key are alternatives (OR); different keys must all hold (AND), so
  `patientID=P&accessionNumber=A` never shows the study of another patient that happens to carry accession A.
  UID keys also accept comma-separated lists (a UID cannot contain a comma); patientID and accessionNumber do not
  (DICOM allows commas in them). `*` and `?` are DICOM wildcards in patientID and accessionNumber.
- Filters restrict the studies the keys found: `modalitiesInStudy` (comma list, any of), `containsInDescription`
  (comma list, any of, case- and accent-insensitive substring of StudyDescription), `lowerDateTime` /
  `upperDateTime` with weasis-pacs-connector's semantics: lowerDateTime keeps studies *at or before* it,
  upperDateTime keeps studies *at or after* it; `mostRecentResults=N` keeps each patient's N most recent studies
  (per archive).

Connectors use the criteria to build their PACS query; `restrict()` then re-checks every answer against them, so a
PACS that ignores a matching key (IssuerOfPatientID, say) can never put another patient's images in a manifest.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from weasis_link import dicom_values as dv
from weasis_link.errors import FieldProblem, InvalidRequest
from weasis_link.study_tree import PatientKey, Study

MAX_VALUES_PER_KEY: Final = 100
MAX_MOST_RECENT: Final = 1000


class SearchKey(StrEnum):
    """The names of seed 002's `search-criteria.deactivated` list."""

    PATIENT_ID = "PATIENT_ID"
    STUDY_INSTANCE_UID = "STUDY_INSTANCE_UID"
    STUDY_ACCESSION_NUMBER = "STUDY_ACCESSION_NUMBER"
    SERIE_INSTANCE_UID = "SERIE_INSTANCE_UID"
    SOP_INSTANCE_UID = "SOP_INSTANCE_UID"


# Request parameter name -> search key.
KEY_PARAMETERS: Final = {
    "patientID": SearchKey.PATIENT_ID,
    "studyUID": SearchKey.STUDY_INSTANCE_UID,
    "accessionNumber": SearchKey.STUDY_ACCESSION_NUMBER,
    "seriesUID": SearchKey.SERIE_INSTANCE_UID,
    "objectUID": SearchKey.SOP_INSTANCE_UID,
}
FILTER_PARAMETERS: Final = (
    "modalitiesInStudy",
    "containsInDescription",
    "lowerDateTime",
    "upperDateTime",
    "mostRecentResults",
)
UID_PARAMETERS: Final = ("studyUID", "seriesUID", "objectUID")
_WILDCARDS: Final = re.compile(r"[*?]")
# A connector id: what `archive=` names and the configuration's connector.config keys are.
CONNECTOR_ID: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_ARCHIVE_ID: Final = re.compile(CONNECTOR_ID)


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """A requested patient: `ID` or the HL7 CX form `ID^^^Issuer` (issuer `NS&UID&TYPE` → its namespace)."""

    patient_id: str
    issuer: str | None = None

    def matches(self, key: PatientKey) -> bool:
        if self.issuer is not None and key.issuer != self.issuer:
            return False
        return wildcard_match(self.patient_id, key.patient_id)

    @classmethod
    def parse(cls, raw: str) -> PatientIdentifier:
        if "^^^" not in raw:
            return cls(raw)
        pid, _, rest = raw.partition("^^^")
        authority = rest.split("^", 1)[0]
        namespace, _, universal = authority.partition("&")
        issuer = namespace or universal.split("&", 1)[0]
        return cls(pid, issuer or None)


@dataclass(frozen=True, slots=True)
class QueryCriteria:
    patients: tuple[PatientIdentifier, ...] = ()
    study_uids: tuple[str, ...] = ()
    accession_numbers: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    object_uids: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()
    modalities: frozenset[str] = frozenset()
    description_terms: tuple[str, ...] = ()
    lower_date_time: dt.datetime | None = None
    upper_date_time: dt.datetime | None = None
    most_recent_results: int | None = None
    _study_uid_set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_study_uid_set", frozenset(self.study_uids))

    # --- what connectors need -------------------------------------------------------------------------------
    @property
    def search_keys(self) -> frozenset[SearchKey]:
        used = {
            SearchKey.PATIENT_ID: self.patients,
            SearchKey.STUDY_INSTANCE_UID: self.study_uids,
            SearchKey.STUDY_ACCESSION_NUMBER: self.accession_numbers,
            SearchKey.SERIE_INSTANCE_UID: self.series_uids,
            SearchKey.SOP_INSTANCE_UID: self.object_uids,
        }
        return frozenset(k for k, v in used.items() if v)

    @property
    def has_study_filters(self) -> bool:
        return bool(
            self.modalities
            or self.description_terms
            or self.lower_date_time
            or self.upper_date_time
            or self.most_recent_results
        )

    # --- the safety net: every connector's answer is checked here ---------------------------------------------
    def study_matches_keys(self, study: Study) -> bool:
        """Whether a study satisfies the study-level keys (patient, study UID, accession)."""
        if self.patients and not any(p.matches(study.patient.key) for p in self.patients):
            return False
        if self.study_uids and study.study_instance_uid not in self._study_uid_set:
            return False
        return not (
            self.accession_numbers
            and not any(wildcard_match(a, study.accession_number or "") for a in self.accession_numbers)
        )

    def study_passes_filters(self, study: Study) -> bool:
        """modalitiesInStudy, containsInDescription and the date bounds (mostRecentResults is applied on a list)."""
        if self.modalities and not (self.modalities & study.modalities):
            return False
        if self.description_terms:
            description = fold_text(study.description or "")
            if not any(term in description for term in self.description_terms):
                return False
        if self.lower_date_time or self.upper_date_time:
            when = study_datetime(study)
            if when is None:
                return False  # a study without a date cannot be shown to be inside the requested range
            if self.lower_date_time and when > self.lower_date_time:
                return False
            if self.upper_date_time and when < self.upper_date_time:
                return False
        return True

    def restrict(self, studies: Iterable[Study]) -> list[Study]:
        """Keep what the criteria ask for and nothing else: keys, filters, series and object UIDs, most recent N."""
        series_set = frozenset(self.series_uids)
        object_set = frozenset(self.object_uids)
        kept: list[Study] = []
        for study in studies:
            if not (self.study_matches_keys(study) and self.study_passes_filters(study)):
                continue
            if series_set:
                study.series = {uid: s for uid, s in study.series.items() if uid in series_set}
            if object_set:
                for s in study.series.values():
                    s.instances = [i for i in s.instances if i.sop_instance_uid in object_set]
                study.series = {uid: s for uid, s in study.series.items() if s.instances}
            if study.series:
                kept.append(study)
        return self.keep_most_recent(kept)

    def keep_most_recent(self, studies: list[Study]) -> list[Study]:
        """mostRecentResults: each patient's N most recent studies (undated studies count as the oldest)."""
        if not self.most_recent_results:
            return studies
        by_patient: dict[PatientKey, list[Study]] = {}
        for s in studies:
            by_patient.setdefault(s.patient.key, []).append(s)
        keep: set[str] = set()
        for patient_studies in by_patient.values():
            patient_studies.sort(key=lambda s: (s.sort_datetime, s.study_instance_uid), reverse=True)
            keep.update(s.study_instance_uid for s in patient_studies[: self.most_recent_results])
        return [s for s in studies if s.study_instance_uid in keep]


def wildcard_match(pattern: str, value: str) -> bool:
    """DICOM wildcard matching (`*` any run, `?` one character), case-sensitive as for LO/SH values."""
    if not _WILDCARDS.search(pattern):
        return pattern == value
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def fold_text(value: str) -> str:
    """Case- and accent-insensitive form for containsInDescription ("Crâne" matches "crane")."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def study_datetime(study: Study) -> dt.datetime | None:
    if not study.study_date:
        return None
    d = study.study_date
    t = (study.study_time or "").split(".", 1)
    hhmmss = t[0].ljust(6, "0")
    micro = int(t[1].ljust(6, "0")) if len(t) > 1 else 0
    return dt.datetime(int(d[:4]), int(d[4:6]), int(d[6:8]), int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:6]), micro)


# --- parsing ---------------------------------------------------------------------------------------------------


def criteria_from_pairs(pairs: Iterable[tuple[str, str]], *, require_key: bool = True) -> QueryCriteria:
    """Validate request parameters into criteria; every problem is reported at once (400 with a list)."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    problems: list[FieldProblem] = []

    def many(name: str) -> list[str]:
        raw = values.get(name, [])
        out: list[str] = []
        for i, v in enumerate(raw):
            parts = v.split(",") if name in UID_PARAMETERS else [v]
            for p in parts:
                p = p.strip() if name in UID_PARAMETERS else p
                if p == "":
                    problems.append(FieldProblem(f"{name}[{i}]", "is empty"))
                else:
                    out.append(p)
        if len(out) > MAX_VALUES_PER_KEY:
            problems.append(FieldProblem(name, f"has more than {MAX_VALUES_PER_KEY} values"))
        return list(dict.fromkeys(out))  # drop repeats, keep order

    def single(name: str) -> str | None:
        raw = values.get(name)
        if not raw:
            return None
        if len(raw) > 1:
            problems.append(FieldProblem(name, "must be given once"))
        return raw[0]

    patients = [_patient(v, i, problems) for i, v in enumerate(many("patientID"))]
    for name in UID_PARAMETERS:
        for i, v in enumerate(many(name)):
            if not dv.is_valid_uid(v):
                problems.append(FieldProblem(f"{name}[{i}]", "is not a DICOM UID (digits and dots, at most 64)"))
    accessions = many("accessionNumber")
    for i, a in enumerate(accessions):
        _check_identifier("accessionNumber", i, a, dv.MAX_SH, problems)
    archives = many("archive")
    for i, a in enumerate(archives):
        if not _ARCHIVE_ID.fullmatch(a):
            problems.append(FieldProblem(f"archive[{i}]", "is not a connector id (letters, digits, . _ -)"))

    modalities: set[str] = set()
    for raw_mods in values.get("modalitiesInStudy", []):
        for m in raw_mods.split(","):
            code = m.strip().upper()
            if not code:
                continue
            if dv.code_string(code) != code:
                problems.append(FieldProblem("modalitiesInStudy", "holds a value that is not a DICOM modality code"))
            modalities.add(code)
    terms: list[str] = []
    for raw_terms in values.get("containsInDescription", []):
        for t in raw_terms.split(","):
            folded = fold_text(t.strip())
            if len(folded) > dv.MAX_LO:
                problems.append(FieldProblem("containsInDescription", f"holds a term longer than {dv.MAX_LO}"))
            elif folded:
                terms.append(folded)

    lower = _datetime_bound("lowerDateTime", single("lowerDateTime"), end_of_day=True, problems=problems)
    upper = _datetime_bound("upperDateTime", single("upperDateTime"), end_of_day=False, problems=problems)
    most_recent = _positive_int("mostRecentResults", single("mostRecentResults"), problems)

    criteria = QueryCriteria(
        patients=tuple(patients),
        study_uids=tuple(many("studyUID")),
        accession_numbers=tuple(accessions),
        series_uids=tuple(many("seriesUID")),
        object_uids=tuple(many("objectUID")),
        archives=tuple(archives),
        modalities=frozenset(modalities),
        description_terms=tuple(dict.fromkeys(terms)),
        lower_date_time=lower,
        upper_date_time=upper,
        most_recent_results=most_recent,
    )
    if require_key and not criteria.search_keys and not problems:
        problems.append(
            FieldProblem(
                "query",
                "at least one of patientID, studyUID, accessionNumber, seriesUID or objectUID is required",
            )
        )
    if problems:
        raise InvalidRequest("The search criteria are not valid.", problems)
    return criteria


def _patient(raw: str, index: int, problems: list[FieldProblem]) -> PatientIdentifier:
    p = PatientIdentifier.parse(raw)
    _check_identifier("patientID", index, p.patient_id, dv.MAX_LO, problems)
    if p.issuer is not None and (dv.identifier(p.issuer) != p.issuer or _WILDCARDS.search(p.issuer)):
        problems.append(FieldProblem(f"patientID[{index}]", "has an issuer that is not a valid DICOM LO value"))
    return p


def _check_identifier(name: str, index: int, value: str, max_length: int, problems: list[FieldProblem]) -> None:
    where = f"{name}[{index}]"
    if dv.identifier(value, max_length) != value:
        problems.append(
            FieldProblem(where, f"must be at most {max_length} characters, without backslash or control characters")
        )
    elif not _WILDCARDS.sub("", value).strip():
        problems.append(FieldProblem(where, "is only wildcards, which would match every patient"))


def _datetime_bound(
    name: str, raw: str | None, *, end_of_day: bool, problems: list[FieldProblem]
) -> dt.datetime | None:
    """xs:dateTime or xs:date. A date alone covers its whole day. Time zones are dropped: PACS study times are
    local wall-clock times without a zone."""
    if raw is None:
        return None
    s = raw.strip()
    try:
        if len(s) == 10 and "T" not in s:
            day = dt.date.fromisoformat(s)
            return dt.datetime.combine(day, dt.time.max if end_of_day else dt.time.min)
        return dt.datetime.fromisoformat(s).replace(tzinfo=None)
    except ValueError:
        problems.append(FieldProblem(name, "must be an ISO 8601 date or date-time, e.g. 2024-01-31T12:00:00"))
        return None


def _positive_int(name: str, raw: str | None, problems: list[FieldProblem]) -> int | None:
    if raw is None:
        return None
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_MOST_RECENT:
        problems.append(FieldProblem(name, f"must be an integer from 1 to {MAX_MOST_RECENT}"))
        return None
    return n
