"""Service settings from environment variables (set by template.yaml parameters), validated at cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from weasis_link.errors import ConfigurationError
from weasis_link.key_urls import checked_key_url
from weasis_link.public_url import check_public_base_url

AsymmetricAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


def _split(separators: str) -> BeforeValidator:
    def split(value: object) -> object:
        if isinstance(value, str):
            for sep in separators[1:]:
                value = value.replace(sep, separators[0])
            return [v for v in value.split(separators[0]) if v.strip()]
        return value

    return BeforeValidator(split)


CommaList = Annotated[list[str], _split(", ")]
SpaceList = Annotated[list[str], _split(" ,")]
# A URL signing keys may be fetched from (key_urls.py): a JWKS over plain HTTP lets anyone on the path mint tokens.
KeyUrl = Annotated[str, Field(max_length=2048), AfterValidator(checked_key_url)]

# Environment variable -> field. One table, so the template, the docs and the error messages agree.
ENVIRONMENT: Final = {
    "MANIFEST_BUCKET": "manifest_bucket",
    "MANIFEST_PREFIX": "manifest_prefix",
    "MANIFEST_KMS_KEY_ARN": "manifest_kms_key_arn",
    "MANIFEST_TTL_SECONDS": "manifest_ttl_seconds",
    "PRESIGN_EXPIRES_SECONDS": "presign_expires_seconds",
    "OAUTH_ISSUER": "oauth_issuer",
    "OAUTH_AUDIENCES": "oauth_audiences",
    "OAUTH_JWKS_URL": "oauth_jwks_url",
    "OAUTH_REQUIRED_SCOPES": "oauth_required_scopes",
    "OAUTH_ALGORITHMS": "oauth_algorithms",
    "OAUTH_LEEWAY_SECONDS": "oauth_leeway_seconds",
    "OAUTH_JWKS_CACHE_SECONDS": "oauth_jwks_cache_seconds",
    "OAUTH_JWKS_COOLDOWN_SECONDS": "oauth_jwks_cooldown_seconds",
    "ALLOW_ACCESS_TOKEN_QUERY": "allow_access_token_query",
    "WEASIS_LINK_CONFIG": "config_file",
    "AWS_REGION": "aws_region",
    "AWS_ENDPOINT_URL_S3": "s3_endpoint_url",
    "PUBLIC_BASE_URL": "public_base_url",
    "BUILDER_FUNCTION_NAME": "builder_function_name",
    "ARCHIVE_DEADLINE_SECONDS": "archive_deadline_seconds",
    "BUILD_DEADLINE_SECONDS": "build_deadline_seconds",
    "TOKEN_EXPIRY_MARGIN_SECONDS": "token_expiry_margin_seconds",
    "MANIFEST_WAIT_SECONDS": "manifest_wait_seconds",
    "IID_REQUEST_TYPES": "iid_request_types",
    "UPLOAD_MAX_BYTES": "upload_max_bytes",
    "WEASIS_DOWNLOAD_URL": "weasis_download_url",
    "SECRETS_MAX_AGE_SECONDS": "secrets_max_age_seconds",
    "MANIFEST_MIN_TTL_SECONDS": "manifest_min_ttl_seconds",
    "OAUTH_READ_SCOPES": "oauth_read_scopes",
    "OAUTH_UPLOAD_SCOPES": "oauth_upload_scopes",
    "AUDIT_EVENT_BUS": "audit_event_bus",
    "AUDIT_FAIL_OPEN": "audit_fail_open",
    "AWS_ENDPOINT_URL_EVENTS": "events_endpoint_url",
}
_ENV_BY_FIELD: Final = {v: k for k, v in ENVIRONMENT.items()}


class ServiceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_bucket: str = Field(min_length=3, max_length=63)
    manifest_prefix: str = Field(default="manifests/", pattern=r"^([A-Za-z0-9._-]+/)+$")
    manifest_kms_key_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$"
    )
    manifest_ttl_seconds: int = Field(default=300, ge=30, le=86400)
    presign_expires_seconds: int = Field(default=300, ge=10, le=3600)
    # The one-issuer shorthand (weasis_link.identity): unset, every trusted issuer comes from the file's auth block.
    oauth_issuer: str | None = Field(default=None, min_length=1)
    oauth_audiences: CommaList = Field(default_factory=list)
    oauth_jwks_url: KeyUrl | None = None  # unset: from the issuer's OpenID discovery document, at the first token
    oauth_required_scopes: SpaceList = Field(default_factory=list)
    oauth_algorithms: Annotated[list[AsymmetricAlgorithm], _split(", ")] = Field(default=["RS256"], min_length=1)
    oauth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # How long the fetched key set is trusted (a removed key stops working after this), and the minimum time
    # between two refetches forced by unknown key ids (a flood of random kids cannot hammer the issuer).
    oauth_jwks_cache_seconds: int = Field(default=300, ge=1, le=86400)
    oauth_jwks_cooldown_seconds: int = Field(default=30, ge=0, le=3600)
    allow_access_token_query: bool = True
    config_file: Path | None = None
    aws_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    public_base_url: Annotated[str, AfterValidator(check_public_base_url)] | None = None
    builder_function_name: str | None = None
    # The whole query must end well inside API Gateway's 29 s integration limit.
    archive_deadline_seconds: float = Field(default=20.0, gt=0, le=25)
    # The asynchronous builder (launch while building) is not behind API Gateway: it may take longer, up to what
    # Weasis waits for the short link (three self-redirects of MANIFEST_WAIT_SECONDS each).
    build_deadline_seconds: float = Field(default=60.0, gt=0, le=110)
    token_expiry_margin_seconds: int = Field(default=60, ge=0, le=3600)
    # How long GET /manifests/{id} waits for a manifest still being built before it redirects to itself: below
    # API Gateway's 29 s and Weasis's 30 s read timeout.
    manifest_wait_seconds: float = Field(default=25.0, gt=0, le=27)
    # IHE Invoke Image Display request types this deployment serves.
    iid_request_types: Annotated[list[Literal["STUDY", "PATIENT"]], _split(", ")] = Field(
        default=["STUDY", "PATIENT"], min_length=1
    )
    # Largest uploaded manifest, in bytes of XML (after gunzip when the upload is compressed).
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    # The "Weasis not installed?" link of the browser launch page.
    weasis_download_url: str = Field(default="https://weasis.org/en/getting-started/", pattern=r"^https?://[^\s\"<>]+$")
    # Secret references (secretsmanager:, ssm:) are resolved again once the values in use are this old
    # (secret_refresh.py): a rotated PACS password reaches warm environments.
    secrets_max_age_seconds: int = Field(default=900, ge=60, le=86400)
    # A manifest (its short link, its presigned URL) never outlives the token that asked for it; a token with less
    # than this left is refused (401 token-expires-too-soon): Weasis needs that long to start and fetch the manifest.
    manifest_min_ttl_seconds: int = Field(default=30, ge=5, le=300)
    # Scopes each kind of route requires on top of OAUTH_REQUIRED_SCOPES: reading (GET /manifests, the launches)
    # and uploading (POST /manifests).
    oauth_read_scopes: SpaceList = Field(default_factory=list)
    oauth_upload_scopes: SpaceList = Field(default_factory=list)
    # The EventBridge bus (name or ARN) that receives the FHIR AuditEvents; empty: no audit trail (development).
    audit_event_bus: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._/:-]{1,1600}$")
    # true: a request whose audit event cannot be recorded is served anyway (logged); false: 503, nothing stored.
    audit_fail_open: bool = False
    events_endpoint_url: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if environ is None else environ
        data = {field: env[name] for name, field in ENVIRONMENT.items() if env.get(name, "") != ""}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(
                "Invalid service settings: " + "; ".join(_describe(e) for e in exc.errors())
            ) from None


def _describe(error: Mapping[str, object]) -> str:
    loc = error.get("loc") or ()
    field = str(loc[0]) if isinstance(loc, tuple) and loc else "?"
    # Name the environment variable, never echo its value (it may be a secret).
    return f"environment variable {_ENV_BY_FIELD.get(field, field)}: {error.get('msg')}"
