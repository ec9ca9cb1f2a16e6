"""Domain errors. Each names what went wrong in words a caller can act on; the API maps them to HTTP in one place
(weasis_link/http/problems.py). Messages never carry a token, a password or a patient name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class WeasisLinkError(Exception):
    """Base class: `code` is a stable machine-readable identifier, the message is for humans."""

    code: ClassVar[str] = "error"

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        # The stable code is part of the class statement: `class StorageError(WeasisLinkError, code="...")`.
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(WeasisLinkError, code="configuration-error"):
    """The deployment is misconfigured (raised at cold start, never because of a request)."""


# --- the request: refusals a caller can act on (docs/security.md: safe by default) -----------------------------
@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid request field: where it is and why it was refused."""

    field: str
    message: str


class InvalidRequest(WeasisLinkError, code="invalid-request"):
    """The request is malformed: bad UID, missing key, unknown parameter value..."""

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class UnknownArchive(InvalidRequest, code="unknown-archive"):
    """`archive=` names a connector that is not configured."""


class InvalidManifest(InvalidRequest, code="invalid-manifest"):
    """An uploaded manifest that is not well-formed XML or not valid against the Weasis manifest schema."""


class RequestTypeNotSupported(InvalidRequest, code="request-type-not-supported"):
    """IHE Invoke Image Display: a requestType this deployment does not serve (unknown, or not enabled)."""


class LaunchOptionNotAllowed(InvalidRequest, code="launch-option-not-allowed"):
    """cdb / pro / arg that the configuration's launch-options allow-lists do not admit."""


class WildcardNotAllowed(InvalidRequest, code="wildcard-not-allowed"):
    """A wildcard in patientID or accessionNumber where no selected archive opted in, or too short a prefix."""


class CriterionDeactivated(WeasisLinkError, code="criterion-deactivated"):
    """Every selected archive refuses one of the search keys used (search-criteria.deactivated)."""


class PayloadTooLarge(WeasisLinkError, code="payload-too-large"):
    """A request body (an upload) larger than this service accepts."""


class UnsupportedMediaType(WeasisLinkError, code="unsupported-media-type"):
    """An upload in a format we do not read (neither a Weasis XML manifest nor a JSON list of UIDs)."""


# --- the token ---------------------------------------------------------------------------------------------------
class AuthenticationError(WeasisLinkError, code="unauthorized"):
    """The bearer token is missing or invalid (RFC 6750 error codes: invalid_request, invalid_token)."""

    def __init__(self, detail: str, oauth_error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        # None means "no credentials at all": RFC 6750 §3.1 says to send no error code then.
        self.oauth_error = oauth_error


class TokenExpiresTooSoon(AuthenticationError, code="token-expires-too-soon"):
    """The token dies before the shortest manifest Weasis can use (MANIFEST_MIN_TTL_SECONDS): get a fresh one."""


class InsufficientScope(WeasisLinkError, code="insufficient-scope"):
    """The token lacks a scope the route requires (named in the challenge)."""

    def __init__(self, detail: str, required_scopes: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.required_scopes = required_scopes


class IdentityProviderUnavailable(WeasisLinkError, code="identity-provider-unavailable"):
    """The issuer's JWKS could not be fetched: we cannot tell a good token from a forged one."""


# --- the patients: one patient or a clear answer, and only the token's patient -----------------------------------
class AmbiguousPatient(WeasisLinkError, code="ambiguous-patient"):
    """A patientID without issuer (or an accession number) matches several patient identities: the caller must say
    which one (`ID^^^Issuer`). Carries the issuers found, never a name."""

    def __init__(self, detail: str, issuers: list[str | None], patients: int) -> None:
        super().__init__(detail)
        self.issuers = issuers
        self.patients = patients


class PatientNotInContext(WeasisLinkError, code="patient-not-in-context"):
    """The token carries a patient context and the request names (or found) another patient."""


class TooManyPatients(WeasisLinkError, code="too-many-patients"):
    """A wildcard query matched more patients than the archive allows (search-criteria.wildcard-max-patients)."""

    def __init__(self, detail: str, patients: int, max_patients: int) -> None:
        super().__init__(detail)
        self.patients = patients
        self.max_patients = max_patients


class PatientContextRequired(WeasisLinkError, code="patient-context-required"):
    """The issuer's patient-context rule is required and the token has no (usable) patient claim."""


# --- the archives ------------------------------------------------------------------------------------------------
class ArchiveError(WeasisLinkError, code="archive-error"):
    """Raised by a connector: the PACS is down, too slow, or answered something we cannot use."""

    def __init__(self, detail: str, kind: str = "bad-response") -> None:
        super().__init__(detail)
        self.kind = kind


class ArchiveTimeout(ArchiveError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, kind="timeout")


class ArchiveUnavailable(ArchiveError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, kind="unavailable")


@dataclass(frozen=True, slots=True)
class ArchiveFailure:
    """Why one archive could not be queried. `kind` is unavailable | timeout | bad-response | refused."""

    archive_id: str
    kind: str
    detail: str


class AllArchivesFailed(WeasisLinkError, code="archives-failed"):
    """No selected archive answered: nothing is stored, the caller gets 502/503/504."""

    def __init__(self, failures: list[ArchiveFailure]) -> None:
        super().__init__("; ".join(f"archive '{f.archive_id}': {f.detail}" for f in failures) or "no archive answered")
        self.failures = failures


class ArchiveForbidden(WeasisLinkError, code="archive-forbidden"):
    """`archive=` names an archive whose `access` rule the caller's token does not satisfy (or none is allowed)."""


# --- the manifests and the services they go through ----------------------------------------------------------------
class BuilderUnavailable(WeasisLinkError, code="builder-unavailable"):
    """The asynchronous manifest builder could not be started: the launch is refused rather than left hanging."""


class StorageError(WeasisLinkError, code="storage-unavailable"):
    """S3 refused or failed a write/read: nothing half-written is left behind."""

    def __init__(self, what: str, cause: Exception) -> None:
        # The AWS error code says enough; its message could name the bucket or the key.
        super().__init__(f"{what} ({error_code(cause)}).")


class ManifestNotFound(WeasisLinkError, code="manifest-not-found"):
    """Unknown, malformed or expired manifest id."""


class AuditUnavailable(WeasisLinkError, code="audit-unavailable"):
    """The audit trail refused the event: the request fails closed (nothing stored) unless AUDIT_FAIL_OPEN."""


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, else the exception's class name (never its message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
