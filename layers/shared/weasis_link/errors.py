"""Domain errors. Each names what went wrong in words a caller can act on; the API maps them to HTTP in one place
(weasis_link/http/problems.py). Messages never carry a token, a password or a patient name."""

from __future__ import annotations

from dataclasses import dataclass


class WeasisLinkError(Exception):
    """Base class: `code` is a stable machine-readable identifier, the message is for humans."""

    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(WeasisLinkError):
    """The deployment is misconfigured (raised at cold start, never because of a request)."""

    code = "configuration-error"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid request field: where it is and why it was refused."""

    field: str
    message: str


class InvalidRequest(WeasisLinkError):
    """The request is malformed: bad UID, missing key, unknown parameter value..."""

    code = "invalid-request"

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class UnknownArchive(InvalidRequest):
    """`archive=` names a connector that is not configured."""

    code = "unknown-archive"


class CriterionDeactivated(WeasisLinkError):
    """Every selected archive refuses one of the search keys used (search-criteria.deactivated)."""

    code = "criterion-deactivated"


class PayloadTooLarge(WeasisLinkError):
    code = "payload-too-large"


class UnsupportedMediaType(WeasisLinkError):
    """An upload in a format we do not read (neither a Weasis XML manifest nor a JSON list of UIDs)."""

    code = "unsupported-media-type"


class InvalidManifest(InvalidRequest):
    """An uploaded manifest that is not well-formed XML or not valid against the Weasis manifest schema."""

    code = "invalid-manifest"


class RequestTypeNotSupported(InvalidRequest):
    """IHE Invoke Image Display: a requestType this deployment does not serve (unknown, or not enabled)."""

    code = "request-type-not-supported"


class ManifestNotFound(WeasisLinkError):
    """Unknown, malformed or expired manifest id."""

    code = "manifest-not-found"


class AuthenticationError(WeasisLinkError):
    """The bearer token is missing or invalid (RFC 6750 error codes: invalid_request, invalid_token)."""

    code = "unauthorized"

    def __init__(self, detail: str, oauth_error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        # None means "no credentials at all": RFC 6750 §3.1 says to send no error code then.
        self.oauth_error = oauth_error


class InsufficientScope(WeasisLinkError):
    code = "insufficient-scope"

    def __init__(self, detail: str, required_scopes: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.required_scopes = required_scopes


class IdentityProviderUnavailable(WeasisLinkError):
    """The issuer's JWKS could not be fetched: we cannot tell a good token from a forged one."""

    code = "identity-provider-unavailable"


@dataclass(frozen=True, slots=True)
class ArchiveFailure:
    """Why one archive could not be queried. `kind` is unavailable | timeout | bad-response | refused."""

    archive_id: str
    kind: str
    detail: str


class ArchiveError(WeasisLinkError):
    """Raised by a connector: the PACS is down, too slow, or answered something we cannot use."""

    code = "archive-error"

    def __init__(self, detail: str, kind: str = "bad-response") -> None:
        super().__init__(detail)
        self.kind = kind


class ArchiveTimeout(ArchiveError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, kind="timeout")


class ArchiveUnavailable(ArchiveError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, kind="unavailable")


class AllArchivesFailed(WeasisLinkError):
    """No selected archive answered: nothing is stored, the caller gets 502/503/504."""

    code = "archives-failed"

    def __init__(self, failures: list[ArchiveFailure]) -> None:
        super().__init__("; ".join(f"archive '{f.archive_id}': {f.detail}" for f in failures) or "no archive answered")
        self.failures = failures


class BuilderUnavailable(WeasisLinkError):
    """The asynchronous manifest builder could not be started: the launch is refused rather than left hanging."""

    code = "builder-unavailable"


class StorageError(WeasisLinkError):
    """S3 refused or failed a write/read: nothing half-written is left behind."""

    code = "storage-unavailable"


# --- safe by default (docs/security.md): refusals a caller can act on ------------------------------------------


class LaunchOptionNotAllowed(InvalidRequest):
    """cdb / pro / arg that the configuration's launch-options allow-lists do not admit."""

    code = "launch-option-not-allowed"


class WildcardNotAllowed(InvalidRequest):
    """A wildcard in patientID or accessionNumber where no selected archive opted in, or too short a prefix."""

    code = "wildcard-not-allowed"


class AmbiguousPatient(WeasisLinkError):
    """A patientID without issuer (or an accession number) matches several patient identities: the caller must say
    which one (`ID^^^Issuer`). Carries the issuers found, never a name."""

    code = "ambiguous-patient"

    def __init__(self, detail: str, issuers: list[str | None], patients: int) -> None:
        super().__init__(detail)
        self.issuers = issuers
        self.patients = patients


class TooManyPatients(WeasisLinkError):
    """A wildcard query matched more patients than the archive allows (search-criteria.wildcard-max-patients)."""

    code = "too-many-patients"

    def __init__(self, detail: str, patients: int, max_patients: int) -> None:
        super().__init__(detail)
        self.patients = patients
        self.max_patients = max_patients


class AuditUnavailable(WeasisLinkError):
    """The audit trail refused the event: the request fails closed (nothing stored) unless AUDIT_FAIL_OPEN."""

    code = "audit-unavailable"


class ArchiveForbidden(WeasisLinkError):
    """`archive=` names an archive whose `access` rule the caller's token does not satisfy (or none is allowed)."""

    code = "archive-forbidden"


class PatientNotInContext(WeasisLinkError):
    """The token carries a patient context and the request names (or found) another patient."""

    code = "patient-not-in-context"


class PatientContextRequired(WeasisLinkError):
    """The issuer's patient-context rule is required and the token has no (usable) patient claim."""

    code = "patient-context-required"


class TokenExpiresTooSoon(AuthenticationError):
    """The token dies before the shortest manifest Weasis can use (MANIFEST_MIN_TTL_SECONDS): get a fresh one."""

    code = "token-expires-too-soon"


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, else the exception's class name (never its message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
