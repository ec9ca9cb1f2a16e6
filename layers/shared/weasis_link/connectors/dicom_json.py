"""DICOM JSON (PS3.18 Annex F) as the DICOMweb connector reads and writes it: attributes by keyword, the fields each
QIDO-RS level asks for, and matching values encoded so that every server reads them alike (dicomweb.py says why)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from weasis_link.study_tree import INSTANCE_KEYWORDS, PATIENT_KEYWORDS, SERIES_KEYWORDS, STUDY_KEYWORDS

# DICOM JSON (PS3.18 Annex F) is keyed by tag; the study tree by keyword.
TAGS: Final = {
    "PatientID": "00100020",
    "IssuerOfPatientID": "00100021",
    "PatientName": "00100010",
    "PatientBirthDate": "00100030",
    "PatientBirthTime": "00100032",
    "PatientSex": "00100040",
    "StudyInstanceUID": "0020000D",
    "StudyDate": "00080020",
    "StudyTime": "00080030",
    "StudyDescription": "00081030",
    "AccessionNumber": "00080050",
    "StudyID": "00200010",
    "ReferringPhysicianName": "00080090",
    "ModalitiesInStudy": "00080061",
    "NumberOfStudyRelatedInstances": "00201208",
    "SeriesInstanceUID": "0020000E",
    "Modality": "00080060",
    "SeriesNumber": "00200011",
    "SeriesDescription": "0008103E",
    "SeriesDate": "00080021",
    "SeriesTime": "00080031",
    "SOPInstanceUID": "00080018",
    "SOPClassUID": "00080016",
    "InstanceNumber": "00200013",
}
# ModalitiesInStudy is asked for separately, at study level only.
_PATIENT_STUDY: Final = tuple(k for k in (*PATIENT_KEYWORDS, *STUDY_KEYWORDS) if k != "ModalitiesInStudy")
_SERIES: Final = SERIES_KEYWORDS
_INSTANCE: Final = INSTANCE_KEYWORDS


def _includefield(keywords: Sequence[str]) -> tuple[str, str]:
    # PS3.18 §8.3.4.3 allows a comma-separated list; asking for a default attribute again costs nothing.
    return ("includefield", ",".join(TAGS[k] for k in keywords))


STUDY_FIELDS: Final = _includefield((*_PATIENT_STUDY, "ModalitiesInStudy", "NumberOfStudyRelatedInstances"))
# Study-scoped instance queries: the study's own attributes come from the study-level answer.
INSTANCE_FIELDS: Final = _includefield((*_SERIES[1:], *_INSTANCE[1:]))
SERIES_FIELDS: Final = _includefield(_SERIES[1:])
# Root-level queries (/series, /instances) must also bring the patient and study they belong to.
ROOT_SERIES_FIELDS: Final = _includefield((*_PATIENT_STUDY, *_SERIES[1:]))
ROOT_INSTANCE_FIELDS: Final = _includefield((*_PATIENT_STUDY, *_SERIES[1:], *_INSTANCE[1:]))

# Characters sent as they are in a matching value. Everything else in PatientID/AccessionNumber becomes a wildcard
# (module docstring); ';' and '+' are left out on purpose: some servers read them as separators or spaces.
_RAW_MATCHING: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~*?!$'():@/")
# RFC 3986 query characters minus the ones that delimit parameters: left unescaped in other values.
_QUERY_SAFE: Final = "-._~!$'()*,:@/?"
# --- DICOM JSON -------------------------------------------------------------------------------------------------


class QidoAttributes(Mapping[str, object]):
    """One DICOM JSON object read by keyword, as the study tree builder wants it: the first value of each
    attribute (PN: its Alphabetic group), or None when absent or empty. `fallback` completes the object (the
    series-level answer for an instance whose answer lacks the series attributes)."""

    __slots__ = ("_fallback", "_row")

    def __init__(self, row: Mapping[str, Any], fallback: Mapping[str, Any] | None = None) -> None:
        self._row = row
        self._fallback = fallback

    def __getitem__(self, keyword: str) -> object:
        tag = TAGS[keyword]  # KeyError for keywords we do not map, as a Mapping should
        element = self._row.get(tag)
        if element is None and self._fallback is not None:
            element = self._fallback.get(tag)
        if keyword == "ModalitiesInStudy":
            values = _values(element)
            return [v for v in values if isinstance(v, str)] or None
        return first_value(element)

    def get(self, keyword: str, default: object = None) -> object:
        """Mapping.get without its KeyError round trip: the study tree reads every attribute this way."""
        return self[keyword] if keyword in TAGS else default

    def __iter__(self) -> Iterator[str]:
        return iter(TAGS)  # every keyword we map; an absent attribute reads as None

    def __len__(self) -> int:
        return len(TAGS)


def _values(element: object) -> list[Any]:
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return values if isinstance(values, list) else []


def first_value(element: object) -> object:
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not values or not isinstance(values, list):
        return None  # empty attributes come as {"vr": "SH"} without a Value
    value = values[0]
    if isinstance(value, dict):  # PN: {"Alphabetic": "…", "Ideographic": "…"}
        return value.get("Alphabetic")
    return value


def uid_of(row: Mapping[str, Any], keyword: str) -> str | None:
    value = first_value(row.get(TAGS[keyword]))
    return value.strip() if isinstance(value, str) and value.strip() else None


def lacks_series_attributes(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Modality is Type 1 in every series: an answer where no instance has one did not include series attributes."""
    modality = TAGS["Modality"]
    return not any(first_value(row.get(modality)) for row in rows)


def lacks_series_uids(rows: Sequence[Mapping[str, Any]]) -> bool:
    tag = TAGS["SeriesInstanceUID"]
    return any(not first_value(row.get(tag)) for row in rows)


# --- query encoding ---------------------------------------------------------------------------------------------


def matching_value(value: str) -> str:
    """A PatientID/AccessionNumber as sent to the PACS: raw where every server reads it alike, wildcards elsewhere.

    A value that would become all wildcards (only non-ASCII letters, say) would match the whole archive: it is sent
    percent-encoded instead, as the standard says (Orthanc 1.10 then finds nothing: a limitation of that version).
    """
    out: list[str] = []
    for char in value:
        if char in _RAW_MATCHING:
            out.append(char)
        elif char.isascii():
            out.append("?")
        elif not out or out[-1] != "*":
            out.append("*")
    sent = "".join(out)
    if not sent.strip("*?"):
        return quote(value, safe=_QUERY_SAFE)
    return sent


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """`k=v&…` with RFC 3986 query characters left as they are (Orthanc does not decode %2A, %2C…)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=_QUERY_SAFE)}" for k, v in params)


def uid_chunks(values: Sequence[str], size: int) -> list[list[str]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]
