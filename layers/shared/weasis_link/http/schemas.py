"""HTTP shapes of the API: query parameters (for the OpenAPI document) and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from weasis_link import dicom_values as dv
from weasis_link.criteria import CONNECTOR_ID, MAX_MOST_RECENT
from weasis_link.manifest_links import MAX_SELF_REDIRECTS


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class FailedArchive(_Camel):
    archive: str = Field(description="Connector id (the arcQuery's arcId)")
    kind: str = Field(description="unavailable | timeout | bad-response")
    detail: str


class ManifestResponse(_Camel):
    manifest_id: str = Field(alias="manifestId", description="Unguessable id of the stored manifest")
    manifest_url: str = Field(
        alias="manifestUrl", description="Presigned HTTPS URL of the gzipped manifest in S3 (PRESIGN_EXPIRES_SECONDS)"
    )
    manifest_link: str = Field(
        alias="manifestLink",
        description="Short link <api>/manifests/{id}: answers 302 to a fresh presigned URL until the manifest expires"
        " (what weasisUrl carries)",
    )
    weasis_url: str = Field(alias="weasisUrl", description="weasis:// URI that opens the manifest in Weasis")
    expires_at: dt.datetime = Field(alias="expiresAt", description="When the links stop working (UTC)")
    patients: int
    studies: int
    series: int
    instances: int
    failed_archives: list[FailedArchive] = Field(default_factory=list, alias="failedArchives")
    warnings: list[str] = Field(default_factory=list)


class ProblemField(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documents the API (OpenAPI): not built at cold start

    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(defer_build=True)  # documents the API (OpenAPI): not built at cold start

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] | None = None
    failed_archives: list[FailedArchive] | None = Field(default=None, alias="failedArchives")
    issuers: list[str | None] | None = Field(
        default=None, description="409 ambiguous-patient: the IssuerOfPatientID values found (null: none)"
    )
    patients: int | None = Field(default=None, description="409: how many patients the request matched")
    max_patients: int | None = Field(default=None, alias="maxPatients", description="409 too-many-patients: the bound")


# Redirects answer an empty text/plain body.
EMPTY_BODY: dict[str, Any] = {"text/plain": {"schema": {"type": "string", "maxLength": 0}}}


def problem_responses(*statuses: int) -> dict[int, Any]:
    return {
        status: {
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"model": Problem}},
        }
        for status in statuses
    }


_PROBLEM_DESCRIPTIONS = {
    400: "Invalid search criteria, launch options or token syntax",
    401: "Missing, expired or invalid bearer token",
    403: "Token lacks the required scope, or a search criterion is deactivated",
    404: "Unknown, malformed or expired manifest id",
    409: "The request matches several patients: add the issuer (patientID=ID^^^Issuer) or narrow the wildcard",
    413: "Uploaded manifest too large",
    415: "Upload in a format other than a Weasis XML manifest or a JSON list of UIDs",
    422: "Request validation failed",
    502: "The archive answered with an error",
    503: "An archive, the identity provider or the storage is unavailable",
    504: "The archive did not answer in time",
}

# Query parameters, declared once for the OpenAPI document. The values are parsed from the raw query string by
# weasis_link.criteria (API Gateway joins repeated parameters with commas, which would split a PatientID that
# contains one), so these declarations describe the interface but do not feed the handlers.
# The item constraints below are the ones criteria.py enforces, from the same constants (criteria, dicom_values,
# manifest_links); what OpenAPI cannot say (at least one search key, no wildcard-only ID) is in the descriptions.
_IdLo = Annotated[str, StringConstraints(min_length=1, max_length=dv.MAX_LO, pattern=r"^[^\\\x00-\x1f]+$")]
_IdSh = Annotated[str, StringConstraints(min_length=1, max_length=dv.MAX_SH, pattern=r"^[^\\\x00-\x1f]+$")]
_UidList = Annotated[str, StringConstraints(min_length=1, pattern=r"^[0-9]+(\.[0-9]+)*( *, *[0-9]+(\.[0-9]+)*)*$")]
_DateTime = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
    ),
]
_KEYS = "At least one of patientID, studyUID, accessionNumber, seriesUID, objectUID is required; "
PatientIdParam = Annotated[
    list[_IdLo] | None,
    Query(
        alias="patientID",
        description=_KEYS + "PatientID, or ID^^^Issuer to match IssuerOfPatientID; "
        "repeatable; * and ? wildcards (not alone)",
    ),
]
StudyUidParam = Annotated[
    list[_UidList] | None, Query(alias="studyUID", description="StudyInstanceUID (or a comma list); repeatable")
]
AccessionParam = Annotated[
    list[_IdSh] | None, Query(alias="accessionNumber", description="AccessionNumber; repeatable; * and ? wildcards")
]
SeriesUidParam = Annotated[
    list[_UidList] | None, Query(alias="seriesUID", description="SeriesInstanceUID (or a comma list); repeatable")
]
ObjectUidParam = Annotated[
    list[_UidList] | None, Query(alias="objectUID", description="SOPInstanceUID (or a comma list); repeatable")
]
ArchiveParam = Annotated[
    list[Annotated[str, StringConstraints(pattern=f"^{CONNECTOR_ID}$")]] | None,
    Query(alias="archive", description="Connector id to query; repeatable; default: connector.default"),
]
ModalitiesParam = Annotated[
    str | None,
    Query(
        alias="modalitiesInStudy",
        pattern=rf"^[A-Za-z0-9 _]{{1,{dv.MAX_CS}}}(,[A-Za-z0-9 _]{{1,{dv.MAX_CS}}})*$",
        description="Comma-separated modalities; any of them",
    ),
]
DescriptionParam = Annotated[
    str | None,
    Query(
        alias="containsInDescription",
        max_length=1024,
        description="Comma-separated terms, case/accent-insensitive; any of them",
    ),
]
LowerDateParam = Annotated[
    _DateTime | None, Query(alias="lowerDateTime", description="Keep studies at or BEFORE this ISO date(-time)")
]
UpperDateParam = Annotated[
    _DateTime | None, Query(alias="upperDateTime", description="Keep studies at or AFTER this ISO date(-time)")
]
MostRecentParam = Annotated[
    int | None,
    Query(alias="mostRecentResults", ge=1, le=MAX_MOST_RECENT, description="Keep each patient's N most recent studies"),
]
CdbParam = Annotated[
    str | None,
    Query(alias="cdb", description="$weasis:config codebase URL: one of launch-options.cdb (empty: installed Weasis)"),
]
ProParam = Annotated[
    list[str] | None,
    Query(alias="pro", description="$weasis:config property 'key value': the key must be in launch-options.pro"),
]
ArgParam = Annotated[
    list[str] | None,
    Query(alias="arg", description="$weasis:config command: must match a pattern of launch-options.arg"),
]

# IHE Invoke Image Display (documentation only; weasis_link.iid parses the raw query string).
RequestTypeParam = Annotated[
    Literal["STUDY", "PATIENT"] | None,
    Query(alias="requestType", description="STUDY or PATIENT (those enabled by IID_REQUEST_TYPES)"),
]
IidPatientIdParam = Annotated[
    str | None, Query(alias="patientID", description="PATIENT: required; STUDY: optional restriction. ID^^^Issuer")
]
IidStudyUidParam = Annotated[
    str | None, Query(alias="studyUID", description="STUDY: comma-separated StudyInstanceUIDs")
]
IidAccessionParam = Annotated[
    str | None, Query(alias="accessionNumber", description="STUDY: comma-separated accession numbers")
]
ViewerTypeParam = Annotated[str | None, Query(alias="viewerType", description="Accepted and ignored (Weasis)")]
DiagnosticQualityParam = Annotated[
    Literal["true", "false"] | None, Query(alias="diagnosticQuality", description="accepted and ignored")
]
KeyImagesOnlyParam = Annotated[
    Literal["true", "false"] | None,
    Query(alias="keyImagesOnly", description="accepted and ignored (all images shown)"),
]
FormatParam = Annotated[
    Literal["html", "redirect"] | None,
    Query(alias="format", description="html: the browser launch page; redirect: 302. Default: by the Accept header"),
]
AttemptParam = Annotated[
    int,
    Query(
        alias="attempt", ge=0, le=MAX_SELF_REDIRECTS, description="Set by the link itself when it redirects to itself"
    ),
]
InjectTokenParam = Annotated[
    bool,
    Query(
        alias="injectToken",
        description="XML uploads: inject the caller's token into arcQueries of configured archives (re-serialises)",
    ),
]


# What the two launch routes answer: a redirect to Weasis, or the launch page for a browser.
LAUNCH_RESPONSES: Final[dict[int, Any]] = {
    302: {"description": "Location: weasis://?…", "content": EMPTY_BODY},
    200: {
        "description": "HTML launch page (Accept: text/html or format=html)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    **problem_responses(400, 401, 403, 409, 422, 502, 503, 504),
}
