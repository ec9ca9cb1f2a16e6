"""C-FIND identifiers for the DICOM connector: the request identifier of a query, and the answers read straight
off the association (pydicom's raw element generator, only the elements asked for, repeated values decoded once;
dicom.py says why)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from typing import Final, Literal

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.valuerep import PersonName
from pydicom.values import convert_PN, convert_single_string, convert_text

from weasis_link.study_tree import INSTANCE_KEYWORDS, PATIENT_KEYWORDS, SERIES_KEYWORDS, STUDY_KEYWORDS

# Return keys per query level (the matching keys are added to these).
STUDY_KEYS: Final = (*PATIENT_KEYWORDS, *STUDY_KEYWORDS)
SERIES_KEYS: Final = SERIES_KEYWORDS
INSTANCE_KEYS: Final = INSTANCE_KEYWORDS
# An IMAGE-level query of one study: the instances, their series, and the patient each instance names.
IMAGE_KEYS: Final = ("StudyInstanceUID", *SERIES_KEYS, *INSTANCE_KEYS, "PatientID", "IssuerOfPatientID")

_SPECIFIC_CHARACTER_SET: Final = 0x00080005
_TEXT_VRS: Final = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT_VRS: Final = frozenset({"ST", "LT", "UT"})
# Values that differ for every instance are not worth remembering.
_UNCACHED: Final = frozenset({"SOPInstanceUID", "InstanceNumber"})

Level = Literal["STUDY", "SERIES", "IMAGE"]
Attributes = dict[str, object]


# --- reading identifiers ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    keyword: str
    kind: Literal["ascii", "text", "single", "pn"]
    cached: bool


def _key(keyword: str) -> tuple[int, _Key]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword} is not a DICOM keyword")
    vr = dictionary_VR(tag)
    kind: Literal["ascii", "text", "single", "pn"]
    if vr == "PN":
        kind = "pn"
    elif vr in _TEXT_VRS:
        kind = "text"
    elif vr in _SINGLE_TEXT_VRS:
        kind = "single"
    else:  # UI, CS, DA, TM, IS, AE: the default repertoire (ASCII) only, whatever the character set
        kind = "ascii"
    return tag, _Key(keyword, kind, keyword not in _UNCACHED)


_KEYS: Final = dict(_key(keyword) for keyword in (*STUDY_KEYS, *SERIES_KEYS, *INSTANCE_KEYS))


def person_name(value: PersonName) -> str:
    """The one name the manifest shows: the Alphabetic group, else the Ideographic, else the Phonetic one."""
    return value.alphabetic or value.ideographic or value.phonetic


class IdentifierReader:
    """Reads C-FIND answer identifiers into keyword -> value mappings for the study tree builder.

    Only the elements we asked for are converted; a value seen before (with the same character set) is not decoded
    again. One reader per association: it is not thread-safe, and its cache lives as long as the association.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, bytes, bytes], object] = {}
        self._encodings: dict[bytes, list[str]] = {}

    def read(self, stream: BytesIO, implicit_vr: bool) -> Attributes:
        stream.seek(0)
        attrs: Attributes = {}
        charset = b""
        encodings: list[str] | None = None
        for element in data_element_generator(stream, implicit_vr, True):
            # A plain int: pydicom's BaseTag compares (and so looks up) through a Python-level __eq__.
            tag = int(element.tag)
            if tag == _SPECIFIC_CHARACTER_SET:
                charset = bytes(element.value or b"")
                encodings = self._encodings_of(charset)
                continue
            key = _KEYS.get(tag)
            if key is None:
                continue
            raw = element.value
            if not isinstance(raw, bytes) or not raw:
                continue  # absent or empty (Type 2 attributes come back empty when unknown)
            if not key.cached:
                attrs[key.keyword] = self._decode(key, raw, encodings)
                continue
            cache_key = (tag, raw, charset)
            value = self._cache.get(cache_key)
            if value is None:
                value = self._cache[cache_key] = self._decode(key, raw, encodings)
            attrs[key.keyword] = value
        return attrs

    def _encodings_of(self, charset: bytes) -> list[str]:
        encodings = self._encodings.get(charset)
        if encodings is None:
            terms = [term.strip() for term in charset.decode("ascii", "replace").split("\\")]
            encodings = self._encodings[charset] = convert_encodings(terms)
        return encodings

    @staticmethod
    def _decode(key: _Key, raw: bytes, encodings: list[str] | None) -> object:
        if key.kind == "ascii":
            return raw.decode("ascii", "replace").strip(" \x00")
        if key.kind == "pn":
            names = convert_PN(raw, encodings)
            first = names if isinstance(names, PersonName) else (names[0] if names else None)
            return person_name(first) if first is not None else None
        vr = "LO" if key.kind == "text" else "LT"
        text = convert_text(raw, encodings, vr) if key.kind == "text" else convert_single_string(raw, encodings, vr)
        # A multi-valued text comes back as a list: the builder takes the first of backslash-separated values.
        return text if isinstance(text, str) else "\\".join(text)


# --- query identifiers ------------------------------------------------------------------------------------------


def query_identifier(level: Level, matching: Mapping[str, str | Sequence[str]], returned: Iterable[str]) -> Dataset:
    """A C-FIND request identifier: matching keys with their values (a list is UID list matching), return keys
    empty. Specific Character Set is sent only when a value needs more than ASCII."""
    ds = Dataset()
    if any(not v.isascii() for value in matching.values() for v in ([value] if isinstance(value, str) else value)):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for keyword in returned:
        if keyword not in matching:
            setattr(ds, keyword, "")
    for keyword, value in matching.items():
        setattr(ds, keyword, value if isinstance(value, str) else list(value))
    return ds
