"""Trusted identity providers: the `auth:` block of the configuration file, plus the `OAUTH_*` settings as the
one-issuer shorthand.

```yaml
auth:
  issuers:
    - issuer: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC   # exact iss
      client-ids: [4f1d7n2example]   # client_id / azp / appid / cid must be one of these
      token-use: access
      required-scopes: [weasis/launch]
```

Each entry says how to recognise a token of that issuer (its exact `iss`, or an Entra ID multi-tenant template with
`{tenantid}`) and what the token must carry. docs/identity-providers.md has a recipe per provider.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from weasis_link.errors import ConfigurationError
from weasis_link.key_urls import checked_key_url
from weasis_link.patient_context import PatientContextConfig
from weasis_link.settings import AsymmetricAlgorithm, KeyUrl, ServiceSettings

TENANT_PLACEHOLDER: Final = "{tenantid}"
# Entra ID tenant ids are GUIDs; a looser pattern still keeps the template match to one path segment.
TENANT_ID_PATTERN: Final = r"[A-Za-z0-9-]{1,64}"
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
# Claims naming the client a token was issued to: RFC 9068 / Cognito, OIDC / Keycloak / Auth0 / Entra v2,
# Entra v1, Okta.
CLIENT_CLAIMS: Final = ("client_id", "azp", "appid", "cid")

Word = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^\S+$")]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _one_or_many(value: object) -> object:
    # `audiences: api://default` is as natural as a one-item list.
    return [value] if isinstance(value, str) else value


Words = Annotated[list[Word], BeforeValidator(_one_or_many)]


class _IdentityModel(BaseModel):
    # The same conventions as the rest of the configuration file (config.py): kebab-case keys, unknown keys refused.
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True)


class TrustedIssuerConfig(_IdentityModel):
    """One identity provider whose access tokens the service accepts."""

    issuer: str = Field(min_length=1, max_length=2048, pattern=r"^\S+$")
    jwks_url: KeyUrl | None = None
    audiences: Words = Field(default_factory=list)
    client_ids: Words = Field(default_factory=list)
    token_use: Literal["access"] | None = None
    required_scopes: Words = Field(default_factory=list)
    roles_as_scopes: bool = False
    tenants: Annotated[list[Annotated[str, Field(pattern=f"^{TENANT_ID_PATTERN}$")]], BeforeValidator(_one_or_many)] = (
        Field(default_factory=list)
    )
    algorithms: Annotated[list[AsymmetricAlgorithm], BeforeValidator(_one_or_many)] = Field(
        default=["RS256"], min_length=1
    )
    require_access_token_type: bool = False
    # SMART patient context: the claim that confines this issuer's tokens to one patient (patient_context.py).
    patient_context: PatientContextConfig | None = None

    @field_validator("tenants")
    @classmethod
    def _lower_tenants(cls, tenants: list[str]) -> list[str]:
        return [t.lower() for t in tenants]

    @model_validator(mode="after")
    def _complete(self) -> TrustedIssuerConfig:
        if not self.audiences and not self.client_ids:
            raise ValueError(f"issuer {self.issuer}: set audiences or client-ids (or both)")
        template = TENANT_PLACEHOLDER in self.issuer
        if self.issuer.replace(TENANT_PLACEHOLDER, "", 1).count("{") or self.issuer.count(TENANT_PLACEHOLDER) > 1:
            raise ValueError(f"issuer {self.issuer}: the only placeholder allowed is one {TENANT_PLACEHOLDER}")
        if template and not self.tenants:
            raise ValueError(f"issuer {self.issuer}: a {TENANT_PLACEHOLDER} issuer needs the list of tenants")
        if template and self.jwks_url is None:
            raise ValueError(
                f"issuer {self.issuer}: a {TENANT_PLACEHOLDER} issuer needs jwks-url "
                "(Entra ID: https://login.microsoftonline.com/common/discovery/v2.0/keys)"
            )
        if self.jwks_url is None:
            try:
                checked_key_url(self.discovery_url)
            except ValueError as exc:
                raise ValueError(f"issuer {self.issuer}: its discovery document {exc}; or set jwks-url") from None
        return self

    @property
    def is_template(self) -> bool:
        return TENANT_PLACEHOLDER in self.issuer

    @property
    def discovery_url(self) -> str:
        """OpenID Connect Discovery 1.0 §4: the issuer without a trailing slash + /.well-known/openid-configuration."""
        return self.issuer.rstrip("/") + DISCOVERY_PATH

    def tenant_in(self, iss: str) -> str | None:
        """For a `{tenantid}` issuer: the tenant named by a token's `iss`, when it fits the template."""
        if not self.is_template:
            return None
        before, _, after = self.issuer.partition(TENANT_PLACEHOLDER)
        m = re.fullmatch(f"{re.escape(before)}({TENANT_ID_PATTERN}){re.escape(after)}", iss)
        return m[1].lower() if m else None


class AuthConfig(_IdentityModel):
    """The top-level `auth:` block of the configuration file."""

    issuers: list[TrustedIssuerConfig] = Field(min_length=1)

    @field_validator("issuers")
    @classmethod
    def _distinct(cls, issuers: list[TrustedIssuerConfig]) -> list[TrustedIssuerConfig]:
        seen: set[str] = set()
        for entry in issuers:
            if entry.issuer in seen:
                raise ValueError(f"issuer {entry.issuer} is listed twice")
            seen.add(entry.issuer)
        return issuers


def issuer_from_settings(settings: ServiceSettings) -> TrustedIssuerConfig | None:
    """The `OAUTH_*` shorthand as one trusted issuer; None when OAUTH_ISSUER is unset (or empty)."""
    if not settings.oauth_issuer:
        return None
    if not settings.oauth_audiences:
        raise ConfigurationError("Invalid service settings: environment variable OAUTH_AUDIENCES is required")
    try:
        return TrustedIssuerConfig(
            issuer=settings.oauth_issuer,
            jwks_url=settings.oauth_jwks_url,
            audiences=list(settings.oauth_audiences),
            required_scopes=list(settings.oauth_required_scopes),
            algorithms=list(settings.oauth_algorithms),
        )
    except ValueError as exc:
        reason = str(exc).splitlines()[-1].strip() if str(exc) else "invalid"
        raise ConfigurationError(f"Invalid service settings: OAUTH_ISSUER: {reason}") from None


def trusted_issuers(settings: ServiceSettings, auth: AuthConfig | None) -> Sequence[TrustedIssuerConfig]:
    """Every trusted issuer: the OAUTH_* one first, then the configuration file's. At least one is required."""
    entries = [e for e in (issuer_from_settings(settings),) if e is not None]
    for entry in auth.issuers if auth is not None else []:
        if any(e.issuer == entry.issuer for e in entries):
            raise ConfigurationError(
                f"Issuer {entry.issuer} is configured twice: by OAUTH_ISSUER and in auth.issuers (keep one)"
            )
        entries.append(entry)
    if not entries:
        raise ConfigurationError(
            "No trusted identity provider: set OAUTH_ISSUER (and OAUTH_AUDIENCES), or list issuers under auth.issuers "
            "in the configuration file"
        )
    return tuple(entries)
