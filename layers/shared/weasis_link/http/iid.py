"""IHE Invoke Image Display (IID, RAD-106): `requestType=STUDY|PATIENT` and its parameters -> search criteria.

- STUDY: `studyUID` and/or `accessionNumber`, each a comma-separated list; `patientID` may be added and then
  restricts the studies to that patient (both keys must hold, as for GET /weasis).
- PATIENT: `patientID` once (`ID^^^Issuer` or the CX form `ID^^^&OID&ISO`); filters `lowerDateTime`,
  `upperDateTime`, `mostRecentResults`, `modalitiesInStudy` (and our `containsInDescription`).
- `viewerType`, `diagnosticQuality` and `keyImagesOnly` are accepted and ignored (Weasis is the viewer, it shows
  the images at full quality, and key-image selection is not available from the archive queries);
  `diagnosticQuality` and `keyImagesOnly` must still be `true` or `false`.
- Errors: 400 for a missing, unknown or disabled requestType (IID_REQUEST_TYPES) and for missing or malformed
  parameters (the profile's Bad Request); authentication errors as everywhere else (401/403). A request that
  finds no images still opens Weasis, whose manifest says "No images found" (pacs-connector's behaviour).

Parameters that do not belong to the request type (seriesUID for a PATIENT request, say) are dropped rather than
silently narrowing what the profile says to show.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from weasis_link.errors import FieldProblem, InvalidRequest, RequestTypeNotSupported

REQUEST_TYPES: Final = ("STUDY", "PATIENT")
STUDY_PARAMETERS: Final = frozenset({"studyUID", "accessionNumber", "patientID", "archive"})
PATIENT_PARAMETERS: Final = frozenset(
    {
        "patientID",
        "lowerDateTime",
        "upperDateTime",
        "mostRecentResults",
        "modalitiesInStudy",
        "containsInDescription",
        "archive",
    }
)
BOOLEAN_PARAMETERS: Final = ("diagnosticQuality", "keyImagesOnly")
# IID lists are comma-separated; for accession numbers this is the profile's rule (our own API keeps commas,
# which DICOM allows in an AccessionNumber, and takes repeated parameters instead).
IID_LIST_PARAMETERS: Final = ("accessionNumber",)


def iid_criteria_pairs(pairs: Iterable[tuple[str, str]], allowed_types: Collection[str]) -> list[tuple[str, str]]:
    """The search-criteria parameters an IID request stands for (criteria.criteria_from_pairs validates them)."""
    pairs = list(pairs)
    request_types = [v for k, v in pairs if k == "requestType"]
    if not request_types:
        raise InvalidRequest(
            "requestType is required (STUDY or PATIENT).", [FieldProblem("requestType", "is required")]
        )
    if len(request_types) > 1:
        raise InvalidRequest("requestType must be given once.", [FieldProblem("requestType", "must be given once")])
    request_type = request_types[0].strip().upper()
    if request_type not in REQUEST_TYPES:
        raise RequestTypeNotSupported(
            f"requestType must be one of {', '.join(REQUEST_TYPES)}.",
            [FieldProblem("requestType", "is not a request type of the IHE Invoke Image Display profile")],
        )
    if request_type not in allowed_types:
        raise RequestTypeNotSupported(
            f"This service does not display {request_type} requests; it serves {', '.join(allowed_types)}.",
            [FieldProblem("requestType", "is not enabled on this service")],
        )
    problems = [
        FieldProblem(name, "must be true or false")
        for name, value in pairs
        if name in BOOLEAN_PARAMETERS and value.strip().lower() not in ("true", "false")
    ]
    kept = STUDY_PARAMETERS if request_type == "STUDY" else PATIENT_PARAMETERS
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if name not in kept:
            continue
        if name in IID_LIST_PARAMETERS:
            out.extend((name, part.strip()) for part in value.split(",") if part.strip())
        else:
            out.append((name, value))
    names = [name for name, _ in out]
    if request_type == "STUDY" and not ({"studyUID", "accessionNumber"} & set(names)):
        problems.append(FieldProblem("studyUID", "a STUDY request needs studyUID or accessionNumber"))
    if request_type == "PATIENT":
        count = names.count("patientID")
        if count != 1:
            problems.append(FieldProblem("patientID", "a PATIENT request needs exactly one patientID"))
    if problems:
        raise InvalidRequest("The Invoke Image Display request is not valid.", problems)
    return out
