"""Domain errors -> HTTP problem responses (RFC 9457 `application/problem+json`), in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from aws_lambda_powertools.event_handler import Response

from weasis_link.errors import (
    AllArchivesFailed,
    AmbiguousPatient,
    ArchiveForbidden,
    AuditUnavailable,
    AuthenticationError,
    BuilderUnavailable,
    CriterionDeactivated,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidManifest,
    InvalidRequest,
    ManifestNotFound,
    PatientContextRequired,
    PatientNotInContext,
    PayloadTooLarge,
    StorageError,
    TooManyPatients,
    UnsupportedMediaType,
    WeasisLinkError,
)

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
REALM: Final = "weasis-link"
NO_STORE: Final = {"Cache-Control": "no-store"}

# Exception class -> (status, title). Subclasses inherit their parent's entry unless listed.
# The first matching entry wins, so a subclass listed before its parent gets its own status.
STATUS_BY_ERROR: Final[dict[type[WeasisLinkError], tuple[int, str]]] = {
    # Well-formed XML that the Weasis schema refuses is unprocessable content, not a malformed request.
    InvalidManifest: (422, "Invalid manifest"),
    InvalidRequest: (400, "Invalid request"),
    CriterionDeactivated: (403, "Search criterion deactivated"),
    InsufficientScope: (403, "Insufficient scope"),
    ManifestNotFound: (404, "Manifest not found"),
    # One patient or a clear answer: the caller narrows the request (docs/security.md).
    AmbiguousPatient: (409, "Ambiguous patient"),
    TooManyPatients: (409, "Too many patients"),
    PayloadTooLarge: (413, "Payload too large"),
    UnsupportedMediaType: (415, "Unsupported media type"),
    IdentityProviderUnavailable: (503, "Identity provider unavailable"),
    BuilderUnavailable: (503, "Manifest builder unavailable"),
    StorageError: (503, "Manifest storage unavailable"),
    AuditUnavailable: (503, "Audit trail unavailable"),
    ArchiveForbidden: (403, "Archive not allowed"),
    PatientNotInContext: (403, "Patient not in context"),
    PatientContextRequired: (403, "Patient context required"),
}


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response[str]:
    body: dict[str, Any] = {
        "type": f"urn:weasis-link:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if extra:
        body.update(extra)
    return Response(
        status_code=status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=json.dumps(body, ensure_ascii=False),
        headers={**NO_STORE, **(headers or {})},
    )


def problem_for(error: WeasisLinkError) -> Response[str]:
    if isinstance(error, AuthenticationError):
        return _authentication_problem(error)
    if isinstance(error, InsufficientScope):
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{" ".join(error.required_scopes)}"'
        return problem(403, "Insufficient scope", error.detail, error.code, headers={"WWW-Authenticate": challenge})
    if isinstance(error, AllArchivesFailed):
        return _archives_problem(error)
    status, title = next((v for cls, v in STATUS_BY_ERROR.items() if isinstance(error, cls)), (500, "Internal error"))
    extra: dict[str, Any] = {}
    if isinstance(error, InvalidRequest) and error.problems:
        extra["errors"] = [{"field": p.field, "message": p.message} for p in error.problems]
    if isinstance(error, AmbiguousPatient):  # issuers and a count, never a name
        extra.update(issuers=error.issuers, patients=error.patients)
    if isinstance(error, TooManyPatients):
        extra.update(patients=error.patients, maxPatients=error.max_patients)
    headers = {"Retry-After": "30"} if status == 503 else None
    return problem(status, title, error.detail, error.code, headers=headers, extra=extra)


def _authentication_problem(error: AuthenticationError) -> Response[str]:
    if error.oauth_error is None:
        # No credentials at all: a bare challenge (RFC 6750 §3.1).
        return problem(
            401,
            "Authentication required",
            error.detail,
            error.code,
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    status = 400 if error.oauth_error == "invalid_request" else 401
    description = error.detail.replace('"', "'")
    challenge = f'Bearer realm="{REALM}", error="{error.oauth_error}", error_description="{description}"'
    title = "Invalid request" if status == 400 else "Invalid token"
    return problem(status, title, error.detail, error.code, headers={"WWW-Authenticate": challenge})


def _archives_problem(error: AllArchivesFailed) -> Response[str]:
    """Any archive answering garbage -> 502; else any unreachable -> 503; only timeouts -> 504."""
    kinds = {f.kind for f in error.failures}
    if kinds - {"timeout", "unavailable"}:
        status = HTTPStatus.BAD_GATEWAY
    elif "unavailable" in kinds:
        status = HTTPStatus.SERVICE_UNAVAILABLE
    else:
        status = HTTPStatus.GATEWAY_TIMEOUT
    failed = [{"archive": f.archive_id, "kind": f.kind, "detail": f.detail} for f in error.failures]
    return problem(int(status), "Archive unavailable", error.detail, error.code, extra={"failedArchives": failed})
